//! A restart's lifecycle as a pure state machine: `Restart::apply(transition, now)` changes
//! the restart and says what changed, for the event log. No I/O, no clock: every step is
//! unit-tested like `decide`. The pipeline applies transitions in one place
//! (`on_transition`), which persists the new version and logs the change.

use super::model::{Restart, Status};
use super::outcome::Judgement;
use super::scope::{Scope, ScopeKind};
use crate::github::DispatchResult;
use chrono::{DateTime, Utc};

snake_case_enum! {
/// What the event log says happened (its `kind` column, by these snake_case names).
pub enum EventKind {
    /// A restart was warranted but the policy held it back.
    Skipped,
    /// What the dispatch asks for was decided (full, or which jobs and tests, and why).
    Scoped,
    /// `RESTART_ACTION=log`: what would have been sent.
    DispatchDryRun,
    /// Handled again after a crash: the run is looked up before any POST.
    DispatchReplayed,
    Dispatched,
    /// The run of an unknown dispatch outcome was found by listing runs.
    RunFound,
    DispatchFailed,
    DispatchUnknown,
    DispatchNotSent,
    DispatchResent,
    LookupFailed,
    RunAttached,
    Confirmed,
    Unconfirmed,
    Outcome,
    /// The check run on the commit was created, found or updated.
    CheckRunShown,
    /// A check-run call failed (the restart goes on; it is tried again later).
    CheckRunFailed,
}
}

/// One step of a restart's life.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// What the dispatch asks for is decided (before the restart is first written).
    Scoped { scope: Scope },
    /// What the dispatch POST came to (`found`: the run was found by listing runs after an
    /// unknown outcome, rather than returned by the POST).
    Dispatch { result: DispatchResult, found: bool },
    /// The POST is about to be sent again; counted (and persisted) before it goes out.
    Resend,
    /// Listing the runs failed; nothing is resent without a successful lookup.
    LookupFailed { reason: String },
    /// No run was found and no resend is allowed.
    NoRunFound,
    /// A run on `trunk/<sha>` belongs to this restart.
    RunAttached { run_id: u64, run_url: String },
    /// The restart's jobs are visible in ClickHouse, after `queries` queries.
    Confirmed { queries: u32 },
    /// The confirmation window passed without the jobs becoming visible.
    WindowExpired { reason: String },
    /// The restarted run completed and was judged job by job.
    Judged {
        run_conclusion: String,
        judgement: Judgement,
    },
    /// What became of the restart's check run (never changes the restart's own state).
    CheckRun(CheckRunStep),
}

/// A step of the restart's check run on its commit.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckRunStep {
    /// GitHub shows the view with this digest, in check run `id` (`created`: by this call,
    /// else found by its external id or already known); the original run's failing jobs it
    /// listed (kept unless the restart knows them already).
    Shown {
        id: u64,
        url: String,
        digest: u32,
        completed: bool,
        created: bool,
        failing_jobs: Vec<String>,
    },
    /// A call failed; it is tried again at the restart's next change or by the reconciler.
    Failed { reason: String },
}

/// What a transition changed, as the event log records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: EventKind,
    pub message: String,
    /// JSON details for the event log (the judgement, for a verdict).
    pub details: Option<String>,
}

impl Change {
    pub fn new(kind: EventKind, message: impl Into<String>) -> Change {
        Change {
            kind,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: &impl serde::Serialize) -> Change {
        self.details = serde_json::to_string(details).ok();
        self
    }
}

/// A restart's dispatch POST is sent at most this many times in all, each resend only
/// after listing the runs on `trunk/<sha>` found none.
pub const MAX_DISPATCH_ATTEMPTS: u32 = 3;

impl Restart {
    /// Applies one transition at `now` and says what changed.
    pub fn apply(&mut self, t: &Transition, now: DateTime<Utc>) -> Change {
        match t {
            Transition::Scoped { scope } => {
                self.scope = Some(scope.clone());
                Change::new(EventKind::Scoped, scope.describe()).with_details(scope)
            }
            Transition::Dispatch { result, found } => self.dispatched(result, *found, now),
            Transition::Resend => {
                self.dispatch_attempts += 1;
                Change::new(
                    EventKind::DispatchResent,
                    format!(
                        "no run found after an unknown outcome; sending again (POST {} of at most {MAX_DISPATCH_ATTEMPTS})",
                        self.dispatch_attempts
                    ),
                )
            }
            Transition::LookupFailed { reason } => {
                self.reason = reason.clone();
                Change::new(EventKind::LookupFailed, reason)
            }
            Transition::NoRunFound => {
                self.status = Status::DispatchUnknown;
                self.reason = format!(
                    "no run found on {} after an unknown dispatch outcome",
                    self.trunk_ref()
                );
                Change::new(EventKind::DispatchUnknown, &self.reason)
            }
            Transition::RunAttached { run_id, run_url } => self.attach(*run_id, run_url),
            Transition::Confirmed { queries } => self.confirmed(*queries, now),
            Transition::WindowExpired { reason } => {
                if self.status != Status::Completed {
                    self.status = Status::Unconfirmed;
                    self.reason = reason.clone();
                }
                Change::new(EventKind::Unconfirmed, reason)
            }
            Transition::Judged {
                run_conclusion,
                judgement,
            } => self.judged(run_conclusion, judgement, now),
            Transition::CheckRun(step) => self.check_run(step),
        }
    }

    fn check_run(&mut self, step: &CheckRunStep) -> Change {
        match step {
            CheckRunStep::Shown {
                id,
                url,
                digest,
                completed,
                created,
                failing_jobs,
            } => {
                let c = &mut self.check;
                (c.id, c.shown) = (Some(*id), *digest);
                if c.evidence.failing_jobs.is_empty() {
                    c.evidence.failing_jobs = failing_jobs.clone();
                }
                if !url.is_empty() {
                    c.url = url.clone();
                }
                c.error.clear();
                let how = if *created { "created" } else { "updated" };
                let status = if *completed {
                    "completed, neutral"
                } else {
                    "in_progress"
                };
                Change::new(
                    EventKind::CheckRunShown,
                    format!("check run {id} {how} ({status})"),
                )
            }
            CheckRunStep::Failed { reason } => {
                self.check.error = reason.clone();
                Change::new(EventKind::CheckRunFailed, reason)
            }
        }
    }

    fn dispatched(&mut self, result: &DispatchResult, found: bool, now: DateTime<Utc>) -> Change {
        let ok = if found {
            EventKind::RunFound
        } else {
            EventKind::Dispatched
        };
        let kind = match result {
            DispatchResult::Created { run_id, html_url } => {
                self.status = Status::Dispatched;
                self.times.dispatched_at = Some(now);
                self.restart_run_id = Some(*run_id);
                self.run_url = html_url.clone();
                self.reason = format!("dispatched run {run_id}");
                ok
            }
            DispatchResult::Accepted => {
                self.status = Status::Dispatched;
                self.times.dispatched_at = Some(now);
                self.reason = "dispatched (GitHub returned no run id)".into();
                ok
            }
            DispatchResult::Rejected { status, message } => {
                self.status = Status::DispatchFailed;
                self.reason = if *status == 0 {
                    message.clone()
                } else {
                    format!("GitHub answered {status}: {message}")
                };
                EventKind::DispatchFailed
            }
            DispatchResult::Unknown { reason } => {
                self.status = Status::DispatchUnknown;
                self.reason = format!("{reason}; the run will be looked up before any resend");
                EventKind::DispatchUnknown
            }
            // Settled like an unknown outcome (runs looked up, then sent); the POST that
            // never went out does not count against the attempts.
            DispatchResult::NotSent { reason } => {
                self.status = Status::DispatchUnknown;
                self.dispatch_attempts = self.dispatch_attempts.saturating_sub(1);
                self.reason = format!(
                    "not sent: {reason}; it will be sent once GitHub answers (runs are looked up first)"
                );
                EventKind::DispatchNotSent
            }
        };
        Change::new(kind, &self.reason)
    }

    fn attach(&mut self, run_id: u64, run_url: &str) -> Change {
        self.restart_run_id = Some(run_id);
        if !run_url.is_empty() {
            self.run_url = run_url.to_string();
        }
        if matches!(self.status, Status::Dispatching | Status::DispatchUnknown) {
            self.status = Status::Dispatched;
            self.times
                .dispatched_at
                .get_or_insert(self.times.requested_at);
        }
        Change::new(
            EventKind::RunAttached,
            format!("run {run_id} belongs to this restart"),
        )
    }

    fn confirmed(&mut self, queries: u32, now: DateTime<Utc>) -> Change {
        self.times.confirmed_at = Some(now);
        if self.status != Status::Completed {
            self.status = Status::Confirmed;
        }
        let latency = self.times.confirm_latency_ms().unwrap_or(0);
        Change::new(
            EventKind::Confirmed,
            format!(
                "restart jobs visible in ClickHouse {latency} ms after dispatch ({queries} queries)"
            ),
        )
    }

    fn judged(&mut self, run_conclusion: &str, j: &Judgement, now: DateTime<Utc>) -> Change {
        let run_id = self.restart_run_id.unwrap_or(0);
        self.status = Status::Completed;
        self.times.completed_at = Some(now);
        self.outcome = Some(j.verdict);
        if let Some(scope) = self.scope.as_mut() {
            // The counts are final now: the original run's jobs are read whole to judge.
            scope.jobs_restarted = Some(j.jobs_restarted);
            scope.jobs_original = j.jobs_original;
            if scope.kind == ScopeKind::Full {
                scope.jobs_asked = j.jobs_original;
            }
        }
        self.reason = format!("run {run_id} concluded {run_conclusion}; {}", j.reason);
        self.check.evidence.verdicts = j.jobs.clone();
        Change {
            kind: EventKind::Outcome,
            message: format!("{}: {}", j.verdict, self.reason),
            details: None,
        }
        .with_details(j)
    }

    /// Whether confirming is still to do (not confirmed, not given up).
    pub fn awaits_confirmation(&self) -> bool {
        self.times.confirmed_at.is_none()
            && !matches!(self.status, Status::Unconfirmed | Status::Confirmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restart::model::fixtures::{at, dispatching};
    use crate::restart::outcome::Verdict;

    fn dispatch(result: DispatchResult) -> Transition {
        Transition::Dispatch {
            result,
            found: false,
        }
    }

    /// A dispatching restart after the POST came to `result`, at second 2.
    fn after(result: DispatchResult) -> (Restart, Change) {
        let mut r = dispatching();
        let c = r.apply(&dispatch(result), at(2));
        (r, c)
    }

    #[test]
    fn a_created_run_is_dispatched_with_its_id() {
        let (r, c) = after(DispatchResult::Created {
            run_id: 9,
            html_url: "u".into(),
        });
        assert_eq!(c.kind, EventKind::Dispatched);
        assert_eq!(r.status, Status::Dispatched);
        assert_eq!(
            (r.restart_run_id, r.times.dispatched_at),
            (Some(9), Some(at(2)))
        );
        assert_eq!(c.message, "dispatched run 9");
    }

    #[test]
    fn a_refusal_names_githubs_status_and_message() {
        let (r, c) = after(DispatchResult::Rejected {
            status: 422,
            message: "No ref found".into(),
        });
        assert_eq!(
            (c.kind, r.status),
            (EventKind::DispatchFailed, Status::DispatchFailed)
        );
        assert_eq!(r.reason, "GitHub answered 422: No ref found");
    }

    #[test]
    fn a_post_that_never_went_out_does_not_count() {
        let mut r = dispatching();
        let c = r.apply(
            &dispatch(DispatchResult::NotSent {
                reason: "down".into(),
            }),
            at(1),
        );
        assert_eq!(
            (c.kind, r.status),
            (EventKind::DispatchNotSent, Status::DispatchUnknown)
        );
        assert_eq!(r.dispatch_attempts, 0);
        r.apply(&Transition::Resend, at(2));
        assert_eq!(r.dispatch_attempts, 1);
    }

    #[test]
    fn a_found_run_is_logged_as_found() {
        let mut r = dispatching();
        let t = Transition::Dispatch {
            result: DispatchResult::Created {
                run_id: 3,
                html_url: String::new(),
            },
            found: true,
        };
        assert_eq!(r.apply(&t, at(1)).kind, EventKind::RunFound);
    }

    #[test]
    fn attaching_a_run_settles_an_unknown_dispatch_once() {
        let mut r = dispatching();
        r.apply(
            &dispatch(DispatchResult::Unknown {
                reason: "502".into(),
            }),
            at(1),
        );
        let t = Transition::RunAttached {
            run_id: 5,
            run_url: "u".into(),
        };
        r.apply(&t, at(3));
        assert_eq!(r.status, Status::Dispatched);
        assert_eq!(
            r.times.dispatched_at,
            Some(at(0)),
            "the request time, not now"
        );
        r.status = Status::Confirmed;
        r.apply(
            &Transition::RunAttached {
                run_id: 5,
                run_url: String::new(),
            },
            at(4),
        );
        assert_eq!((r.status, r.run_url.as_str()), (Status::Confirmed, "u"));
    }

    #[test]
    fn confirmation_measures_latency_and_never_undoes_completion() {
        let mut r = dispatching();
        r.apply(&dispatch(DispatchResult::Accepted), at(10));
        let c = r.apply(&Transition::Confirmed { queries: 2 }, at(13));
        assert_eq!(r.status, Status::Confirmed);
        assert_eq!(r.times.confirm_latency_ms(), Some(3000));
        assert!(c.message.contains("3000 ms") && c.message.contains("2 queries"));
        assert!(!r.awaits_confirmation());
        r.status = Status::Completed;
        r.apply(
            &Transition::WindowExpired {
                reason: "late".into(),
            },
            at(20),
        );
        assert_eq!(r.status, Status::Completed);
    }

    #[test]
    fn a_judged_restart_is_completed_with_its_verdict() {
        let mut r = dispatching();
        r.restart_run_id = Some(5);
        let j = crate::restart::outcome::judge(&[], &[], |_| true);
        let c = r.apply(
            &Transition::Judged {
                run_conclusion: "failure".into(),
                judgement: j,
            },
            at(60),
        );
        assert_eq!(
            (r.status, r.outcome),
            (Status::Completed, Some(Verdict::Inconclusive))
        );
        assert_eq!(r.times.completed_at, Some(at(60)));
        assert!(r.reason.starts_with("run 5 concluded failure; "));
        assert_eq!(c.kind, EventKind::Outcome);
        assert!(c.details.unwrap().contains("\"verdict\""));
    }

    #[test]
    fn no_run_found_leaves_the_dispatch_unknown() {
        let mut r = dispatching();
        let c = r.apply(&Transition::NoRunFound, at(1));
        assert_eq!(
            (c.kind, r.status),
            (EventKind::DispatchUnknown, Status::DispatchUnknown)
        );
        assert!(r.reason.contains("trunk/abc"));
        let c = r.apply(
            &Transition::LookupFailed {
                reason: "502".into(),
            },
            at(2),
        );
        assert_eq!(
            (c.kind, r.reason.as_str()),
            (EventKind::LookupFailed, "502")
        );
    }

    #[test]
    fn a_check_run_step_is_remembered_and_a_failure_recorded() {
        let mut r = dispatching();
        r.status = Status::Dispatched;
        let failing_jobs = vec!["a / test (default)".to_string()];
        let shown = Transition::CheckRun(CheckRunStep::Shown {
            id: 77,
            url: "https://github.com/o/r/runs/77".into(),
            digest: 5,
            completed: false,
            created: true,
            failing_jobs: failing_jobs.clone(),
        });
        let c = r.apply(&shown, at(3));
        assert_eq!(c.kind, EventKind::CheckRunShown);
        assert_eq!(c.message, "check run 77 created (in_progress)");
        assert_eq!((r.check.id, r.check.shown), (Some(77), 5));
        assert_eq!(r.check.evidence.failing_jobs, failing_jobs);
        assert_eq!(
            r.status,
            Status::Dispatched,
            "the restart itself is unchanged"
        );
        let failed = CheckRunStep::Failed {
            reason: "GitHub answered 502".into(),
        };
        let c = r.apply(&Transition::CheckRun(failed), at(4));
        assert_eq!(
            (c.kind, r.check.error.as_str()),
            (EventKind::CheckRunFailed, "GitHub answered 502")
        );
        assert_eq!(r.check.id, Some(77), "what was shown is kept");
        r.apply(&shown, at(5));
        assert!(r.check.error.is_empty(), "a success clears the error");
    }

    #[test]
    fn judging_keeps_the_per_job_verdicts_for_the_check_run() {
        let mut r = dispatching();
        let job = |n: &str, c: &str| crate::restart::JobState {
            id: 0,
            name: n.into(),
            status: crate::intake::states::RunStatus::Completed,
            conclusion: Some(c.into()),
        };
        let j =
            crate::restart::outcome::judge(&[job("a", "failure")], &[job("a", "success")], |_| {
                true
            });
        let t = Transition::Judged {
            run_conclusion: "success".into(),
            judgement: j.clone(),
        };
        r.apply(&t, at(9));
        assert_eq!(r.check.evidence.verdicts, j.jobs);
        assert_eq!(r.check.evidence.verdicts[0].verdict, Verdict::NotReproduced);
    }

    #[test]
    fn a_scope_is_kept_and_counts_the_restarted_jobs_when_judged() {
        let mut r = dispatching();
        let scope = Scope {
            kind: ScopeKind::Jobs,
            jobs: vec!["linux-jammy".into()],
            ..Scope::full("why")
        };
        let c = r.apply(
            &Transition::Scoped {
                scope: scope.clone(),
            },
            at(0),
        );
        assert_eq!(c.kind, EventKind::Scoped);
        assert!(
            c.message.contains("jobs-to-include: linux-jammy"),
            "{}",
            c.message
        );
        assert_eq!(r.scope.as_ref(), Some(&scope));
        // Judged: 7 jobs of the restart ran, 70 of the original.
        let judged = |r: &mut Restart, restarted, original| {
            let mut j = crate::restart::outcome::judge(&[], &[], |_| true);
            (j.jobs_restarted, j.jobs_original) = (restarted, original);
            let t = Transition::Judged {
                run_conclusion: "success".into(),
                judgement: j,
            };
            r.apply(&t, at(9));
        };
        judged(&mut r, 7, 70);
        let s = r.scope.unwrap();
        assert_eq!((s.jobs_restarted, s.jobs_original), (Some(7), 70));
        assert_eq!(s.jobs_asked, 0, "a job filter's count stays");
        let mut full = dispatching();
        full.scope = Some(Scope::full("no inputs"));
        judged(&mut full, 70, 70);
        assert_eq!(
            full.scope.unwrap().jobs_asked,
            70,
            "a full restart asks for all"
        );
    }

    #[test]
    fn event_kinds_are_snake_case() {
        assert_eq!(EventKind::DispatchNotSent.as_str(), "dispatch_not_sent");
        assert_eq!(EventKind::Outcome.to_string(), "outcome");
    }
}

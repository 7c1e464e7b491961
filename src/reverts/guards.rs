//! Which action a culprit gets: a pure function of the mode, the culprit, the facts GitHub
//! gave about its commit, and what the caller looked up (`Guards`), with the time passed in.
//!
//! The order: the mode `skip`; then the guards that stop everything (the kill switch, once
//! per commit ever, the signal no longer failing, the age limit); then where the comment
//! goes. A commit that is itself a revert, one with no PR, a PR labelled
//! `autorevert: disable` and an open PR turn a revert into a notify comment (or a skip when
//! no notify issue is configured); the daily cap counts reverts only. `log` chooses as
//! `revert` does and wraps what would be posted.

use super::message::{DISABLE_LABEL, is_revert};
use super::model::{Action, CommitFacts, Culprit, Reason, RevertMode};
use chrono::{DateTime, Utc};

/// LUCI Bisection's limits: a culprit at most 6 h old, at most 4 reverts landed a day.
pub const DEFAULT_MAX_AGE_HOURS: i64 = 6;
pub const DEFAULT_MAX_PER_DAY: u32 = 4;

/// What the caller looked up just before acting, and the limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Guards {
    /// The App already commented on this commit (a revert or a notify), ever.
    pub already_acted: bool,
    /// Revert comments the App posted in the last 24 hours (across the repository).
    pub reverts_last_day: u32,
    /// When the suspect landed on the main branch.
    pub landed_at: DateTime<Utc>,
    /// The kill switch is on (or its state is unknown: the caller fails closed).
    pub kill_switch: bool,
    /// The signals were decided again just before acting and still ask for a revert.
    pub still_failing: bool,
    /// `REVERT_MAX_AGE_HOURS`: a suspect landed longer ago is left alone.
    pub max_age: chrono::Duration,
    /// `REVERT_MAX_PER_DAY`.
    pub max_per_day: u32,
    /// `NOTIFY_ISSUE`: where notify comments go; None: nowhere (they become skips).
    pub notify_issue: Option<u64>,
}

impl Guards {
    /// Nothing against acting, with the default limits and no notify issue: a start for
    /// the caller to fill in.
    pub fn new(landed_at: DateTime<Utc>) -> Guards {
        Guards {
            already_acted: false,
            reverts_last_day: 0,
            landed_at,
            kill_switch: false,
            still_failing: true,
            max_age: chrono::Duration::hours(DEFAULT_MAX_AGE_HOURS),
            max_per_day: DEFAULT_MAX_PER_DAY,
            notify_issue: None,
        }
    }
}

/// The action for `culprit` in `mode`, at `now`.
pub fn choose(
    mode: RevertMode,
    culprit: &Culprit,
    facts: &CommitFacts,
    guards: &Guards,
    now: DateTime<Utc>,
) -> Action {
    if mode == RevertMode::Skip {
        return Action::Skip {
            reason: Reason::ModeSkip,
        };
    }
    if let Some(reason) = stopped(culprit, guards, now) {
        return Action::Skip { reason };
    }
    let action = match mode {
        RevertMode::Notify => notify(guards, Reason::ModeNotify),
        _ => target(culprit, facts, guards),
    };
    match mode {
        RevertMode::Log if action.posts() => Action::Log {
            would: Box::new(action),
        },
        _ => action,
    }
}

/// A guard that stops any comment.
fn stopped(culprit: &Culprit, g: &Guards, now: DateTime<Utc>) -> Option<Reason> {
    if g.kill_switch {
        Some(Reason::KillSwitch)
    } else if g.already_acted {
        Some(Reason::AlreadyReverted)
    } else if !g.still_failing || culprit.signals.is_empty() {
        Some(Reason::NoLongerFailing)
    } else if now - g.landed_at > g.max_age {
        Some(Reason::TooOld)
    } else {
        None
    }
}

/// A revert of the commit's PR, or a notify comment when the PR may not be reverted.
fn target(culprit: &Culprit, facts: &CommitFacts, g: &Guards) -> Action {
    if is_revert(&facts.message, &culprit.repo) {
        return notify(g, Reason::CommitIsRevert);
    }
    let Some(pr) = &facts.pr else {
        return notify(g, Reason::NoPrFound);
    };
    if pr
        .labels
        .iter()
        .any(|l| l.trim().eq_ignore_ascii_case(DISABLE_LABEL))
    {
        return notify(g, Reason::PrDisabledLabel);
    }
    if pr.open {
        return notify(g, Reason::PrOpen);
    }
    if g.reverts_last_day >= g.max_per_day {
        return Action::Skip {
            reason: Reason::DailyCap,
        };
    }
    Action::Revert { pr: pr.number }
}

/// A notify comment for `why`, or a skip with it when there is no issue to comment on.
fn notify(g: &Guards, why: Reason) -> Action {
    match g.notify_issue {
        Some(issue) => Action::Notify { issue, why },
        None if why == Reason::ModeNotify => Action::Skip {
            reason: Reason::NoNotifyIssue,
        },
        None => Action::Skip { reason: why },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reverts::model::{Evidence, PullFacts};

    const REPO: &str = "pytorch/pytorch";
    const SHA: &str = "2d3615f577894c7a117a55e85bb8371bb598ec50";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
            .unwrap()
            .to_utc()
    }

    fn culprit() -> Culprit {
        Culprit {
            repo: REPO.into(),
            sha: SHA.into(),
            signals: vec![Evidence {
                workflow: "trunk".into(),
                job: "linux-jammy-py3.10-gcc11 / test (default)".into(),
                failing_job_url: Evidence::job_url(REPO, 11, 22),
                run_id: 11,
                job_id: 22,
                restart_evidence: "suspect failed 3×, parent passed 2× in paired restarts".into(),
            }],
        }
    }

    fn merged(number: u64) -> CommitFacts {
        CommitFacts {
            message: format!(
                "Fix foo (#{number})\n\nPull Request resolved: https://github.com/{REPO}/pull/{number}\nApproved by: https://github.com/bar"
            ),
            pr: Some(PullFacts {
                number,
                open: false,
                merged: false,
                labels: vec!["Merged".into(), "ciflow/trunk".into()],
            }),
        }
    }

    fn guards() -> Guards {
        Guards {
            notify_issue: Some(163650),
            ..Guards::new(now() - chrono::Duration::hours(1))
        }
    }

    fn choose_with(mode: RevertMode, facts: &CommitFacts, g: &Guards) -> Action {
        choose(mode, &culprit(), facts, g, now())
    }

    fn skip(reason: Reason) -> Action {
        Action::Skip { reason }
    }

    fn notify_for(why: Reason) -> Action {
        Action::Notify { issue: 163650, why }
    }

    #[test]
    fn a_landed_pr_with_nothing_against_it_is_reverted() {
        let action = choose_with(RevertMode::Revert, &merged(160001), &guards());
        assert_eq!(action, Action::Revert { pr: 160001 });
    }

    #[test]
    fn each_mode_does_what_it_says() {
        let (facts, g) = (merged(160001), guards());
        assert_eq!(
            choose_with(RevertMode::Skip, &facts, &g),
            skip(Reason::ModeSkip)
        );
        assert_eq!(
            choose_with(RevertMode::Notify, &facts, &g),
            notify_for(Reason::ModeNotify)
        );
        assert_eq!(
            choose_with(RevertMode::Log, &facts, &g),
            Action::Log {
                would: Box::new(Action::Revert { pr: 160001 })
            }
        );
        let no_issue = Guards {
            notify_issue: None,
            ..guards()
        };
        assert_eq!(
            choose_with(RevertMode::Notify, &facts, &no_issue),
            skip(Reason::NoNotifyIssue)
        );
    }

    #[test]
    fn guards_that_stop_everything_skip_in_every_mode_in_their_order() {
        let facts = merged(160001);
        let cases = [
            (
                Guards {
                    kill_switch: true,
                    already_acted: true,
                    ..guards()
                },
                Reason::KillSwitch,
            ),
            (
                Guards {
                    already_acted: true,
                    still_failing: false,
                    ..guards()
                },
                Reason::AlreadyReverted,
            ),
            (
                Guards {
                    still_failing: false,
                    landed_at: now() - chrono::Duration::days(2),
                    ..guards()
                },
                Reason::NoLongerFailing,
            ),
            (
                Guards {
                    landed_at: now() - chrono::Duration::hours(6) - chrono::Duration::seconds(1),
                    ..guards()
                },
                Reason::TooOld,
            ),
        ];
        for (g, reason) in cases {
            for mode in [RevertMode::Log, RevertMode::Notify, RevertMode::Revert] {
                assert_eq!(choose_with(mode, &facts, &g), skip(reason), "{mode}");
            }
        }
        let exactly_six_hours = Guards {
            landed_at: now() - chrono::Duration::hours(6),
            ..guards()
        };
        assert_eq!(
            choose_with(RevertMode::Revert, &facts, &exactly_six_hours),
            Action::Revert { pr: 160001 }
        );
        let no_signals = Culprit {
            signals: vec![],
            ..culprit()
        };
        assert_eq!(
            choose(RevertMode::Revert, &no_signals, &facts, &guards(), now()),
            skip(Reason::NoLongerFailing)
        );
    }

    #[test]
    fn the_daily_cap_counts_reverts_only() {
        let capped = Guards {
            reverts_last_day: 4,
            ..guards()
        };
        assert_eq!(
            choose_with(RevertMode::Revert, &merged(1), &capped),
            skip(Reason::DailyCap)
        );
        assert_eq!(
            choose_with(RevertMode::Notify, &merged(1), &capped),
            notify_for(Reason::ModeNotify)
        );
        let below = Guards {
            reverts_last_day: 3,
            ..guards()
        };
        assert_eq!(
            choose_with(RevertMode::Revert, &merged(1), &below),
            Action::Revert { pr: 1 }
        );
    }

    fn with_pr(edit: impl FnOnce(&mut PullFacts)) -> CommitFacts {
        let mut facts = merged(160001);
        edit(facts.pr.as_mut().unwrap());
        facts
    }

    #[test]
    fn a_pr_that_may_not_be_reverted_is_notified_instead_or_skipped_without_an_issue() {
        let revert = CommitFacts {
            message: format!(
                "Revert \"Fix foo (#160001)\"\n\nThis reverts commit {SHA}.\n\nReverted https://github.com/{REPO}/pull/160001 on behalf of https://github.com/bar due to broke trunk"
            ),
            ..merged(160001)
        };
        let cases = [
            (revert, Reason::CommitIsRevert),
            (
                CommitFacts {
                    message: "Fix foo".into(),
                    pr: None,
                },
                Reason::NoPrFound,
            ),
            (
                with_pr(|p| p.labels.push("autorevert: disable".into())),
                Reason::PrDisabledLabel,
            ),
            (with_pr(|p| p.open = true), Reason::PrOpen),
        ];
        let no_issue = Guards {
            notify_issue: None,
            ..guards()
        };
        for (facts, why) in cases {
            assert_eq!(
                choose_with(RevertMode::Revert, &facts, &guards()),
                notify_for(why)
            );
            assert_eq!(
                choose_with(RevertMode::Log, &facts, &guards()),
                Action::Log {
                    would: Box::new(notify_for(why))
                }
            );
            assert_eq!(
                choose_with(RevertMode::Revert, &facts, &no_issue),
                skip(why)
            );
        }
    }

    #[test]
    fn a_revert_by_its_subject_alone_and_the_opt_out_label_in_any_case_count() {
        let subject_only = CommitFacts {
            message: "Revert \"Fix foo\"\n\nThis reverts commit abc.".into(),
            ..merged(160001)
        };
        assert_eq!(
            choose_with(RevertMode::Revert, &subject_only, &guards()),
            notify_for(Reason::CommitIsRevert)
        );
        let shouted = with_pr(|p| p.labels = vec!["Autorevert: Disable".into()]);
        assert_eq!(
            choose_with(RevertMode::Revert, &shouted, &guards()),
            notify_for(Reason::PrDisabledLabel)
        );
        let merged_on_github = with_pr(|p| p.merged = true);
        assert_eq!(
            choose_with(RevertMode::Revert, &merged_on_github, &guards()),
            Action::Revert { pr: 160001 }
        );
    }
}

//! The decision for one signal: `Revert(suspect)`, `Restart(commits)` or
//! `Ineligible(reason)`. PyTorch's rules (`Signal.process_valid_autorevert_pattern`,
//! pytorch-autorevert.md §4.3), in its order, with the thresholds of a `DecisionConfig`.

use super::bisect;
use super::config::DecisionConfig;
use super::partition::{Partition, Sandwich};
use super::repro::{self, Repro};
use crate::restart::snake_case_enum;
use crate::signals::{Outcome, Signal, SignalCommit, Track};
use serde::Serialize;

snake_case_enum! {
/// Why a signal cannot lead to a revert now.
pub enum IneligibleReason {
    /// Nothing failed in the window.
    NoFailures,
    /// The newest commit with a finished event passed: the signal recovered.
    Fixed,
    /// Nothing passed in the window: no baseline (a job born red).
    NoSuccesses,
    /// No failing streak above a passing one.
    NoPartition,
    /// A commit both passed and failed: flaky (or an intermittent outside problem).
    Flaky,
    /// The failure is not sandwiched in time between baseline successes.
    InfraNotConfirmed,
    /// Too few failure events (overall, or on the suspect for a job-track signal).
    InsufficientFailures,
    /// Too few success events on the baseline side.
    InsufficientSuccesses,
    /// Untested or still running commits between the failing and passing sides.
    PendingGap,
    /// No failure started after the newest baseline success (the engine's outage guard).
    NoFailureAfterGreen,
    /// One failure, on the newest finished commit: waiting for a newer commit's result.
    FirstFailure,
    /// No reproduction on the suspect ran alongside a success of its parent (the
    /// engine's pairing: an outage would have failed the parent too).
    UnpairedRepro,
}
}

snake_case_enum! {
/// Why a commit is restarted: the evidence it is asked for.
pub enum RestartReason {
    /// An untested commit between the failing and passing sides (bisection).
    Gap,
    /// The suspect: fewer failure events than needed.
    FewFailures,
    /// The baseline: fewer success events than needed.
    FewSuccesses,
    /// The suspect: no failure started after a success yet (time check).
    NeedsLaterFailure,
    /// The baseline: no success started after a failure yet (time check).
    NeedsLaterSuccess,
    /// The suspect of a job-track signal: the failure must reproduce on the same commit.
    SameRevisionRepro,
    /// The suspect: the failure must outlive a green baseline (the engine's outage guard).
    FailureAfterGreen,
    /// The baseline, restarted together with the suspect: a reproduction counts only
    /// with a parent success alongside it (the engine's pairing).
    PairedBaseline,
}
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ineligible {
    pub reason: IneligibleReason,
    pub detail: String,
}

/// One commit to restart and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestartCommit {
    pub sha: String,
    pub reasons: Vec<RestartReason>,
}

/// Commits to restart, newest first, and the jobs that failed on the failing side (the
/// shards to run again when a restart can name jobs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Restart {
    pub commits: Vec<RestartCommit>,
    pub failing_jobs: Vec<String>,
}

/// The evidence for a revert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Revert {
    pub suspect: String,
    pub baseline: String,
    /// Newer commits that also fail, newest first.
    pub newer_failing: Vec<String>,
    pub failure_events: usize,
    pub success_events: usize,
    /// A failing job on the suspect (for links).
    pub run_id: u64,
    pub job_id: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Revert(Revert),
    Restart(Restart),
    Ineligible(Ineligible),
}

impl Decision {
    /// `revert`, `restart` or the ineligible reason's name.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Revert(_) => "revert",
            Decision::Restart(_) => "restart",
            Decision::Ineligible(i) => i.reason.as_str(),
        }
    }
}

fn ineligible(reason: IneligibleReason, detail: impl Into<String>) -> Decision {
    Decision::Ineligible(Ineligible {
        reason,
        detail: detail.into(),
    })
}

/// The newest commit with a finished event passed.
fn fixed(s: &Signal) -> bool {
    s.commits
        .iter()
        .find(|c| c.has_success() || c.has_failure())
        .is_some_and(SignalCommit::has_success)
}

/// The signal's only failure is on the newest commit with a finished event.
fn first_failure(s: &Signal, p: &Partition) -> bool {
    let failed = p.failed_commits(s);
    let newest_finished = s
        .commits
        .iter()
        .position(|c| c.has_success() || c.has_failure());
    failed
        .iter()
        .map(|c| c.count(Outcome::Failure))
        .sum::<usize>()
        == 1
        && newest_finished == Some(p.failed.end - 1)
}

/// Decides one signal.
pub fn decide(s: &Signal, cfg: &DecisionConfig) -> Decision {
    if !s.has_failure() {
        return ineligible(IneligibleReason::NoFailures, "no failure in the window");
    }
    if fixed(s) {
        return ineligible(IneligibleReason::Fixed, "the newest finished commit passed");
    }
    if !s.commits.iter().any(SignalCommit::has_success) {
        return ineligible(
            IneligibleReason::NoSuccesses,
            "nothing passed in the window",
        );
    }
    let Some(p) = Partition::of(s) else {
        return ineligible(
            IneligibleReason::NoPartition,
            "no failing streak above a passing one",
        );
    };
    let scope = if cfg.flaky_across_window {
        &s.commits[..]
    } else {
        p.failed_commits(s)
    };
    if let Some(c) = scope.iter().find(|c| c.has_success() && c.has_failure()) {
        return ineligible(
            IneligibleReason::Flaky,
            format!("{} both passed and failed", c.sha),
        );
    }
    if !cfg.restart_on_first_failure && first_failure(s, &p) {
        return ineligible(
            IneligibleReason::FirstFailure,
            "one failure so far: waiting for a newer commit",
        );
    }
    let sandwich = p.sandwich(s);
    let restarts = restarts(s, &p, sandwich, cfg);
    if !restarts.is_empty() {
        let mut failing_jobs: Vec<String> = p
            .failed_commits(s)
            .iter()
            .flat_map(|c| c.events.iter())
            .filter(|e| e.status == Outcome::Failure && !e.job_name.is_empty())
            .map(|e| e.job_name.clone())
            .collect();
        failing_jobs.sort_unstable();
        failing_jobs.dedup();
        return Decision::Restart(Restart {
            commits: restarts,
            failing_jobs,
        });
    }
    final_checks(s, &p, sandwich, cfg).unwrap_or_else(|| Decision::Revert(revert(s, &p)))
}

/// The evidence still missing, as restarts (never of a commit with a pending event).
fn restarts(
    s: &Signal,
    p: &Partition,
    sandwich: Sandwich,
    cfg: &DecisionConfig,
) -> Vec<RestartCommit> {
    let mut wanted: Vec<(usize, RestartReason)> = Vec::new();
    let unknown = p.unknown_commits(s);
    if !unknown.iter().all(|c| !c.events.is_empty()) && cfg.bisection_limit != Some(0) {
        let covered: Vec<bool> = unknown.iter().map(|c| !c.events.is_empty()).collect();
        for i in bisect::plan(&covered, cfg.bisection_limit) {
            wanted.push((p.unknown.start + i, RestartReason::Gap));
        }
    }
    let suspect_i = p.failed.end - 1;
    let baseline_i = p.successful.start;
    let baseline = &s.commits[baseline_i];
    let for_suspect = suspect_wants(s, p, sandwich, cfg);
    // Paired: the suspect's parent (the baseline, or the gap commit just below) goes with
    // it, so that the restart can count as a reproduction. A parent whose restart is
    // running is awaited; its push run still running is not (a push run never pairs).
    let pairing = cfg.pairing_window_secs.is_some();
    let parent_free = !s.commits[suspect_i + 1]
        .events
        .iter()
        .any(|e| e.status == Outcome::Pending && (e.rerun || !pairing));
    if !for_suspect.is_empty() && !s.commits[suspect_i].has_pending() && (parent_free || !pairing) {
        wanted.extend(for_suspect.into_iter().map(|why| (suspect_i, why)));
        if pairing {
            wanted.push((suspect_i + 1, RestartReason::PairedBaseline));
        }
    }
    if !baseline.has_pending() {
        if sandwich == Sandwich::NeedsSuccess {
            wanted.push((baseline_i, RestartReason::NeedsLaterSuccess));
        }
        if p.success_events(s) < cfg.min_success_events {
            wanted.push((baseline_i, RestartReason::FewSuccesses));
        }
    }
    merge(s, wanted)
}

/// Why the suspect should run again, if it should.
fn suspect_wants(
    s: &Signal,
    p: &Partition,
    sandwich: Sandwich,
    cfg: &DecisionConfig,
) -> Vec<RestartReason> {
    let mut why = Vec::new();
    if sandwich == Sandwich::NeedsFailure {
        why.push(RestartReason::NeedsLaterFailure);
    }
    if p.failure_events(s) < cfg.min_failure_events {
        why.push(RestartReason::FewFailures);
    }
    let no_gap = p.unknown.is_empty();
    if s.track == Track::Job && no_gap && !repro::of(s, p, cfg).done(cfg) {
        why.push(RestartReason::SameRevisionRepro);
    }
    let settled = !p.failed_commits(s).iter().any(SignalCommit::has_pending);
    if cfg.require_failure_after_green
        && no_gap
        && settled
        && sandwich == Sandwich::Confirmed
        && !p.failure_after_green(s)
    {
        why.push(RestartReason::FailureAfterGreen);
    }
    why
}

/// Commit indices with reasons, as restarts newest first (one entry per commit).
fn merge(s: &Signal, mut wanted: Vec<(usize, RestartReason)>) -> Vec<RestartCommit> {
    wanted.sort_by_key(|(i, _)| *i);
    let mut out: Vec<RestartCommit> = Vec::new();
    for (i, why) in wanted {
        match out.last_mut() {
            Some(last) if last.sha == s.commits[i].sha => {
                if !last.reasons.contains(&why) {
                    last.reasons.push(why);
                }
            }
            _ => out.push(RestartCommit {
                sha: s.commits[i].sha.clone(),
                reasons: vec![why],
            }),
        }
    }
    out
}

/// PyTorch's checks after the restarts, in its order; None: every one passed.
fn final_checks(
    s: &Signal,
    p: &Partition,
    sandwich: Sandwich,
    cfg: &DecisionConfig,
) -> Option<Decision> {
    use IneligibleReason as R;
    let failures = p.failure_events(s);
    let successes = p.success_events(s);
    let suspect = p.suspect(s);
    let repro: Repro = repro::of(s, p, cfg);
    Some(if sandwich != Sandwich::Confirmed {
        ineligible(R::InfraNotConfirmed, format!("time check: {sandwich:?}"))
    } else if failures < cfg.min_failure_events {
        ineligible(
            R::InsufficientFailures,
            format!(
                "{failures} failure event(s), {} needed",
                cfg.min_failure_events
            ),
        )
    } else if successes < cfg.min_success_events {
        ineligible(
            R::InsufficientSuccesses,
            format!(
                "{successes} success event(s), {} needed",
                cfg.min_success_events
            ),
        )
    } else if s.track == Track::Job && repro.same_way < cfg.suspect_failures {
        let how = repro
            .job
            .as_deref()
            .map_or(String::new(), |j| format!(" failing {j}"));
        ineligible(
            R::InsufficientFailures,
            format!(
                "{} failure(s){how} on the suspect {}, {} needed",
                repro.same_way, suspect.sha, cfg.suspect_failures
            ),
        )
    } else if !p.unknown.is_empty() {
        let shas: Vec<&str> = p
            .unknown_commits(s)
            .iter()
            .map(|c| c.sha.as_str())
            .collect();
        ineligible(
            R::PendingGap,
            format!("untested or running: {}", shas.join(", ")),
        )
    } else if s.track == Track::Job && !repro.paired {
        ineligible(
            R::UnpairedRepro,
            format!(
                "no failure on {} ran alongside a success of its parent {}",
                suspect.sha,
                p.baseline(s).sha
            ),
        )
    } else if cfg.require_failure_after_green && !p.failure_after_green(s) {
        ineligible(
            R::NoFailureAfterGreen,
            "waiting for a failure newer than the newest baseline success",
        )
    } else {
        return None;
    })
}

fn revert(s: &Signal, p: &Partition) -> Revert {
    let suspect = p.suspect(s);
    let failing = suspect.events.iter().find(|e| e.status == Outcome::Failure);
    let failed = p.failed_commits(s);
    Revert {
        suspect: suspect.sha.clone(),
        baseline: p.baseline(s).sha.clone(),
        newer_failing: failed[..failed.len() - 1]
            .iter()
            .filter(|c| c.has_failure())
            .map(|c| c.sha.clone())
            .collect(),
        failure_events: p.failure_events(s),
        success_events: p.success_events(s),
        run_id: failing.map_or(0, |e| e.run_id),
        job_id: failing.map_or(0, |e| e.job_id),
    }
}

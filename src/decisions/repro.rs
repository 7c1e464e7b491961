//! The suspect's reproduction, the LUCI Bisection way: the suspect failed the same way
//! (the same job, i.e. shard) more than once, and one of those failures ran alongside a
//! success of its parent (the two restarted together), so that an outage or a broken
//! runner, which fails the parent too, is not taken for a breakage.

use super::config::DecisionConfig;
use super::partition::Partition;
use crate::signals::{Outcome, Signal, SignalEvent};
use chrono::Duration;

/// What the suspect's failures show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repro {
    /// Failures on the suspect that failed the same way: the most that share one job that
    /// newer failing commits fail too (every failure when `same_way_repro` is off).
    pub same_way: usize,
    /// The job they share (None: no failure, or `same_way_repro` off).
    pub job: Option<String>,
    /// One of those failures, in a restart, ran alongside a baseline success in a
    /// restart (always true when
    /// `pairing_window_secs` is unset).
    pub paired: bool,
}

impl Repro {
    /// Whether the suspect's evidence is complete: enough same-way failures, paired.
    pub fn done(&self, cfg: &DecisionConfig) -> bool {
        self.same_way >= cfg.suspect_failures && self.paired
    }
}

/// The suspect's reproduction, as far as the signal shows it.
pub fn of(s: &Signal, p: &Partition, cfg: &DecisionConfig) -> Repro {
    let failures: Vec<&SignalEvent> = p
        .suspect(s)
        .events
        .iter()
        .filter(|e| e.status == Outcome::Failure)
        .collect();
    let failed = p.failed_commits(s);
    let newer: Vec<&SignalEvent> = failed[..failed.len() - 1]
        .iter()
        .flat_map(|c| c.events.iter())
        .filter(|e| e.status == Outcome::Failure)
        .collect();
    let (job, same_way): (Option<String>, Vec<&SignalEvent>) = if cfg.same_way_repro {
        most_shared_job(&failures, &newer)
    } else {
        (None, failures)
    };
    let paired = match cfg.pairing_window_secs {
        None => true,
        Some(window) => {
            let window = Duration::seconds(i64::from(window));
            let greens: Vec<&SignalEvent> = p
                .baseline(s)
                .events
                .iter()
                .filter(|e| e.status == Outcome::Success && e.rerun)
                .collect();
            same_way.iter().filter(|f| f.rerun).any(|f| {
                greens
                    .iter()
                    .any(|g| (f.run_start() - g.run_start()).abs() <= window)
            })
        }
    };
    Repro {
        same_way: same_way.len(),
        job,
        paired,
    }
}

/// The job most of the suspect's failures share, and the failures that failed it (ties:
/// the first job by name). When newer commits failed too, only a job that also fails on
/// one of them counts: a breakage persists in the commits built on it, a flake that hit
/// the same shard twice does not (session 7's seed 13).
fn most_shared_job<'e>(
    failures: &[&'e SignalEvent],
    newer: &[&SignalEvent],
) -> (Option<String>, Vec<&'e SignalEvent>) {
    let mut jobs: Vec<&str> = failures.iter().flat_map(|e| e.failing_jobs()).collect();
    jobs.sort_unstable();
    jobs.dedup();
    if !newer.is_empty() {
        jobs.retain(|j| newer.iter().any(|e| e.failing_jobs().contains(j)));
    }
    let mut best: (Option<String>, Vec<&SignalEvent>) = (None, Vec::new());
    for job in jobs {
        let with: Vec<&SignalEvent> = failures
            .iter()
            .copied()
            .filter(|e| e.failing_jobs().contains(&job))
            .collect();
        if with.len() > best.1.len() {
            best = (Some(job.to_string()), with);
        }
    }
    best
}

//! A signal cut into its newest failing streak, the untested commits below it and the
//! passing streak below those (PyTorch's `partition_by_autorevert_pattern`), and the time
//! check on it (`confirm_not_an_infra_issue`).

use crate::signals::{Outcome, Signal, SignalCommit, SignalEvent};
use chrono::{DateTime, Utc};
use std::ops::Range;

/// Ranges into `signal.commits` (newest first): `failed`, then `unknown`, then
/// `successful`, contiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub failed: Range<usize>,
    pub unknown: Range<usize>,
    pub successful: Range<usize>,
}

/// Whether the failure is sandwiched in time between baseline successes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sandwich {
    /// A failure started strictly between the earliest and the latest baseline success.
    Confirmed,
    /// The times overlap, and pending events may still complete the sandwich.
    Pending,
    /// No success(-like) event started after a failure(-like) one: restart the baseline.
    NeedsSuccess,
    /// No failure(-like) event started after a success(-like) one: restart the suspect.
    NeedsFailure,
}

impl Partition {
    /// Newest to oldest: commits go to `failed` until the first commit with successes
    /// only, then to `successful` until the next failure. Commits at the old end of
    /// `failed` without a failure move to `unknown`. None: either side is empty.
    pub fn of(signal: &Signal) -> Option<Partition> {
        let commits = &signal.commits;
        if commits.len() < 2 {
            return None;
        }
        let mut failed_end = 0;
        let mut successful_end = None;
        for (i, c) in commits.iter().enumerate() {
            let pure_success = c.has_success() && !c.has_failure();
            match successful_end {
                None if pure_success => successful_end = Some(i + 1),
                None => failed_end = i + 1,
                Some(_) if c.has_failure() => break,
                Some(_) => successful_end = Some(i + 1),
            }
        }
        let successful_end = successful_end?;
        let unknown_end = failed_end;
        while failed_end > 0 && !commits[failed_end - 1].has_failure() {
            failed_end -= 1;
        }
        (failed_end > 0).then_some(Partition {
            failed: 0..failed_end,
            unknown: failed_end..unknown_end,
            successful: unknown_end..successful_end,
        })
    }

    /// The oldest failing commit: the one a revert would name.
    pub fn suspect<'s>(&self, s: &'s Signal) -> &'s SignalCommit {
        &s.commits[self.failed.end - 1]
    }

    /// The newest passing commit below the gap.
    pub fn baseline<'s>(&self, s: &'s Signal) -> &'s SignalCommit {
        &s.commits[self.successful.start]
    }

    pub fn failed_commits<'s>(&self, s: &'s Signal) -> &'s [SignalCommit] {
        &s.commits[self.failed.clone()]
    }

    pub fn unknown_commits<'s>(&self, s: &'s Signal) -> &'s [SignalCommit] {
        &s.commits[self.unknown.clone()]
    }

    pub fn successful_commits<'s>(&self, s: &'s Signal) -> &'s [SignalCommit] {
        &s.commits[self.successful.clone()]
    }

    pub fn failure_events(&self, s: &Signal) -> usize {
        count(self.failed_commits(s), Outcome::Failure)
    }

    pub fn success_events(&self, s: &Signal) -> usize {
        count(self.successful_commits(s), Outcome::Success)
    }

    /// The time check over the failed and successful sides (pending events count on
    /// both sides as "could still be"; only actual events confirm).
    pub fn sandwich(&self, s: &Signal) -> Sandwich {
        let failed = self.failed_commits(s);
        let successful = self.successful_commits(s);
        let success_like = bounds(successful, |e| e.status != Outcome::Failure);
        let failure_like = bounds(failed, |e| e.status != Outcome::Success);
        let (Some((min_succ_like, max_succ_like)), Some((min_fail_like, max_fail_like))) =
            (success_like, failure_like)
        else {
            return if success_like.is_none() {
                Sandwich::NeedsSuccess
            } else {
                Sandwich::NeedsFailure
            };
        };
        if max_succ_like <= min_fail_like {
            return Sandwich::NeedsSuccess;
        }
        if max_fail_like <= min_succ_like {
            return Sandwich::NeedsFailure;
        }
        if let Some((lo, hi)) = bounds(successful, |e| e.status == Outcome::Success) {
            let between = events(failed)
                .any(|e| e.status == Outcome::Failure && lo < e.started_at && e.started_at < hi);
            if between {
                return Sandwich::Confirmed;
            }
        }
        Sandwich::Pending
    }

    /// Some failure started after the newest baseline success started.
    pub fn failure_after_green(&self, s: &Signal) -> bool {
        let Some((_, newest_green)) =
            bounds(self.successful_commits(s), |e| e.status == Outcome::Success)
        else {
            return false;
        };
        events(self.failed_commits(s))
            .any(|e| e.status == Outcome::Failure && e.started_at > newest_green)
    }
}

fn events(commits: &[SignalCommit]) -> impl Iterator<Item = &SignalEvent> {
    commits.iter().flat_map(|c| c.events.iter())
}

fn count(commits: &[SignalCommit], status: Outcome) -> usize {
    commits.iter().map(|c| c.count(status)).sum()
}

/// Earliest and latest start among the events that `keep`.
fn bounds(
    commits: &[SignalCommit],
    keep: impl Fn(&SignalEvent) -> bool,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    events(commits)
        .filter(|e| keep(e))
        .map(|e| e.started_at)
        .fold(None, |acc, t| match acc {
            None => Some((t, t)),
            Some((lo, hi)) => Some((lo.min(t), hi.max(t))),
        })
}

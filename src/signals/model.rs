//! What a signal is: one column of the HUD-like grid. Rows are main's commits, newest
//! first; each cell holds the events seen for this (workflow, normalized job) on that
//! commit, one per run attempt (PyTorch's `signal.py` data model).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The outcome of one run attempt of a signal's jobs on one commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Pending,
}

/// One observation: a run attempt's jobs of this signal on one commit (shards merged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalEvent {
    pub status: Outcome,
    /// The effective start: the earliest of the attempt's jobs' `max(started_at, created_at)`.
    pub started_at: DateTime<Utc>,
    /// When the attempt's jobs were all done (resolved events only).
    pub ended_at: Option<DateTime<Utc>>,
    pub run_id: u64,
    pub attempt: u32,
    /// A failing job's name when there is one, else the first job's (synthetic: empty).
    pub job_name: String,
    /// That job's id (0: a synthetic pending event for a run whose jobs are not known yet).
    pub job_id: u64,
}

/// One commit of a signal: its events, oldest start first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalCommit {
    pub sha: String,
    pub events: Vec<SignalEvent>,
}

impl SignalCommit {
    pub fn new(sha: impl Into<String>, mut events: Vec<SignalEvent>) -> SignalCommit {
        events.sort_by_key(|e| (e.started_at, e.run_id));
        SignalCommit {
            sha: sha.into(),
            events,
        }
    }

    pub fn count(&self, status: Outcome) -> usize {
        self.events.iter().filter(|e| e.status == status).count()
    }

    pub fn has(&self, status: Outcome) -> bool {
        self.events.iter().any(|e| e.status == status)
    }

    pub fn has_success(&self) -> bool {
        self.has(Outcome::Success)
    }

    pub fn has_failure(&self) -> bool {
        self.has(Outcome::Failure)
    }

    pub fn has_pending(&self) -> bool {
        self.has(Outcome::Pending)
    }
}

/// A signal's identity: a workflow's display name and a normalized job name (config kept,
/// shards merged: `linux-jammy / test (default)`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SignalKey {
    pub workflow: String,
    pub job: String,
}

impl SignalKey {
    pub fn new(workflow: impl Into<String>, job: impl Into<String>) -> SignalKey {
        SignalKey {
            workflow: workflow.into(),
            job: job.into(),
        }
    }
}

impl std::fmt::Display for SignalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.workflow, self.job)
    }
}

/// Where a signal comes from. PyTorch has both; the App's own events give jobs only (test
/// rows live in PyTorch's `tests.all_test_runs`), so its signals are job-track, which is
/// the stricter track (a failure must reproduce on the same commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Track {
    Job,
    Test,
}

/// One column of the grid: every commit of the window, newest first, even those with no
/// events for this signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub key: SignalKey,
    pub track: Track,
    pub commits: Vec<SignalCommit>,
}

impl Signal {
    pub fn has_failure(&self) -> bool {
        self.commits.iter().any(SignalCommit::has_failure)
    }
}

//! What a signal is: one column of the HUD-like grid. Rows are main's commits, newest
//! first; each cell holds the events seen for this (workflow, normalized job) on that
//! commit, one per run attempt (PyTorch's `signal.py` data model).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The outcome of one run attempt of a signal's jobs on one commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    #[default]
    Pending,
}

/// One observation: a run attempt's jobs of this signal on one commit (shards merged).
/// `Default` gives a pending event at the epoch, for building one field by field.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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
    /// Every failed job of the attempt (the shards that failed), sorted; empty when none
    /// failed or when unknown (then `job_name` stands for the failure).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_jobs: Vec<String>,
    /// When the run (attempt) was created, when the run is known: a restart's dispatch
    /// time, which pairs a suspect's restart with its parent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_created_at: Option<DateTime<Utc>>,
    /// The run is a restart: a `workflow_dispatch` (the App's `trunk/{sha}` restarts) or
    /// a re-run attempt. Only restarts pair (push runs of neighbours are minutes apart by
    /// chance, and an outage can start between them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rerun: bool,
}

impl SignalEvent {
    /// The jobs this event failed: `failed_jobs`, or `job_name` for a failure that does
    /// not list them.
    pub fn failing_jobs(&self) -> Vec<&str> {
        if self.status != Outcome::Failure {
            return Vec::new();
        }
        if self.failed_jobs.is_empty() {
            return vec![self.job_name.as_str()];
        }
        self.failed_jobs.iter().map(String::as_str).collect()
    }

    /// When the run started, as far as known: its creation, else the jobs' start.
    pub fn run_start(&self) -> DateTime<Utc> {
        self.run_created_at.unwrap_or(self.started_at)
    }
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

//! What a policy is to the simulator: it sees GitHub's events (the App's own types) after
//! its visibility lag, may act on each or at its ticks, and answers with actions.

use crate::decisions::Decision;
use crate::intake::events::{Job, Run};
use crate::signals::SignalKey;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Simulated time zero: 2026-11-30T00:00:00Z.
pub fn epoch() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + Duration::seconds(1_795_996_800)
}

/// Simulated seconds as a time.
pub fn at(secs: i64) -> DateTime<Utc> {
    epoch() + Duration::seconds(secs)
}

/// One thing that happened on GitHub, as the App receives it.
#[derive(Debug, Clone)]
pub enum Observation {
    /// A push to main (`push` webhook): when, and its commits, oldest first.
    Push {
        at: i64,
        commits: Vec<String>,
    },
    Job(Box<Job>),
    Run(Box<Run>),
}

/// What a policy asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// `workflow_dispatch` on `trunk/<sha>`; `jobs`: the normalized job names to run
    /// (with the builds they need), or the whole workflow when absent.
    Restart {
        workflow: String,
        sha: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jobs: Option<Vec<String>>,
    },
    /// Revert this commit (once per commit; repeats are ignored).
    Revert { sha: String },
}

/// A decision on one signal, for the log (only when it changed).
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    pub at: i64,
    pub signal: SignalKey,
    #[serde(flatten)]
    pub decision: Decision,
}

pub trait Policy {
    fn name(&self) -> &str;
    /// The delay, in seconds (from, to), before an event is visible to this policy.
    fn lag(&self) -> (f64, f64);
    /// Seconds between ticks; None: the policy acts on events only.
    fn tick_every(&self) -> Option<i64>;
    fn observe(&mut self, now: i64, o: &Observation) -> anyhow::Result<Vec<Action>>;
    fn tick(&mut self, now: i64) -> anyhow::Result<Vec<Action>>;
    /// Decisions that changed since the last call.
    fn take_decisions(&mut self) -> Vec<DecisionRecord>;
    /// The run a restart became (`return_run_details`), for policies that keep track.
    fn dispatched(&mut self, _restart: &Action, _run_id: u64) {}
}

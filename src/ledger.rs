//! The restart ledger: what the App has restarted and where each restart stands.
//!
//! This in-memory model is what decisions read. Every state change is recorded in
//! ClickHouse (`restarts` table, one row per change, newest `version` wins; batched by the
//! recorder) and reloaded from there at start-up. Until a change is written, the delivery
//! that caused it stays unacknowledged in the delivery log, which replays it after a crash.

use crate::outcome::Verdict;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// One restart target: a workflow of a repository at one commit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RestartKey {
    pub repo: String,
    pub workflow: String,
    pub head_sha: String,
}

impl fmt::Display for RestartKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} @ {}", self.repo, self.workflow, self.head_sha)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Intent recorded, POST not answered yet. Found at start-up, it means the process
    /// died mid-dispatch: the run must be looked up before anything is sent again.
    Dispatching,
    /// `RESTART_ACTION=log`: recorded as it would have been dispatched; nothing was sent.
    DryRun,
    Dispatched,
    /// GitHub refused (4xx) with a message; nothing was created.
    DispatchFailed,
    /// 5xx, timeout or transport error: GitHub may or may not have created the run.
    DispatchUnknown,
    Confirmed,
    Unconfirmed,
    Completed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Dispatching => "dispatching",
            Status::DryRun => "dry_run",
            Status::Dispatched => "dispatched",
            Status::DispatchFailed => "dispatch_failed",
            Status::DispatchUnknown => "dispatch_unknown",
            Status::Confirmed => "confirmed",
            Status::Unconfirmed => "unconfirmed",
            Status::Completed => "completed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "dispatching" => Status::Dispatching,
            "dry_run" => Status::DryRun,
            "dispatched" => Status::Dispatched,
            "dispatch_failed" => Status::DispatchFailed,
            "dispatch_unknown" => Status::DispatchUnknown,
            "confirmed" => Status::Confirmed,
            "unconfirmed" => Status::Unconfirmed,
            "completed" => Status::Completed,
            _ => return None,
        })
    }

    /// Whether a run may still show up for this restart (it counts toward the cap either way).
    pub fn awaits_run(self) -> bool {
        matches!(
            self,
            Status::Dispatching | Status::Dispatched | Status::DispatchUnknown
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Restart {
    /// `{repo}/{workflow}/{sha}/{attempt}`: deterministic, so a replayed decision names the
    /// same restart and the ledger row cannot be duplicated under another id.
    pub restart_id: String,
    pub key: RestartKey,
    pub attempt: u32,
    pub workflow_file: String,
    pub original_run_id: u64,
    pub installation_id: Option<u64>,
    pub status: Status,
    /// Dispatch POSTs sent for this restart (the first one included).
    pub dispatch_attempts: u32,
    pub restart_run_id: Option<u64>,
    pub run_url: String,
    pub dry_run: bool,
    pub requested_at: DateTime<Utc>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub confirm_latency_ms: Option<u64>,
    pub completed_at: Option<DateTime<Utc>>,
    pub outcome: Option<Verdict>,
    pub reason: String,
    pub delivery_id: String,
    pub version: u64,
}

impl Restart {
    pub fn trunk_ref(&self) -> String {
        trunk_ref(&self.key.head_sha)
    }
}

/// The tag PyTorch pushes for every commit on main; restarts are dispatched on it.
pub fn trunk_ref(sha: &str) -> String {
    format!("trunk/{sha}")
}

/// Monotonic row versions that also order correctly across process restarts
/// (seeded from the wall clock in microseconds).
static VERSION: AtomicU64 = AtomicU64::new(0);

pub fn next_version() -> u64 {
    let now = Utc::now().timestamp_micros().max(0) as u64;
    let mut cur = VERSION.load(Ordering::Relaxed);
    loop {
        let next = now.max(cur + 1);
        match VERSION.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => cur = seen,
        }
    }
}

#[derive(Debug, Default)]
pub struct Ledger {
    by_key: HashMap<RestartKey, Vec<Restart>>,
    by_run: HashMap<u64, RestartKey>,
}

impl Ledger {
    pub fn restarts(&self, key: &RestartKey) -> &[Restart] {
        self.by_key.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn all(&self) -> impl Iterator<Item = &Restart> {
        self.by_key.values().flatten()
    }

    pub fn get(&self, restart_id: &str) -> Option<&Restart> {
        self.all().find(|r| r.restart_id == restart_id)
    }

    /// The restart a run on `trunk/{sha}` belongs to: the one that knows this run id, else
    /// the newest one still waiting for its run.
    /// With `adopt_dry_runs` (in-process replay), a dry-run restart counts as waiting too.
    pub fn for_run(&self, key: &RestartKey, run_id: u64, adopt_dry_runs: bool) -> Option<&Restart> {
        if let Some(k) = self.by_run.get(&run_id) {
            return self
                .restarts(k)
                .iter()
                .find(|r| r.restart_run_id == Some(run_id));
        }
        self.restarts(key).iter().rev().find(|r| {
            r.restart_run_id.is_none()
                && (r.status.awaits_run() || (adopt_dry_runs && r.status == Status::DryRun))
        })
    }

    /// Inserts or replaces a restart (matched by id), keeping the run index current.
    pub fn put(&mut self, restart: Restart) {
        if let Some(run) = restart.restart_run_id {
            self.by_run.insert(run, restart.key.clone());
        }
        let list = self.by_key.entry(restart.key.clone()).or_default();
        match list.iter_mut().find(|r| r.restart_id == restart.restart_id) {
            Some(slot) => {
                if restart.version >= slot.version {
                    *slot = restart
                }
            }
            None => {
                list.push(restart);
                list.sort_by_key(|r| r.attempt);
            }
        }
    }

    /// Applies `f` to a restart and gives back the updated copy with a fresh version.
    pub fn update(&mut self, restart_id: &str, f: impl FnOnce(&mut Restart)) -> Option<Restart> {
        let key = self.get(restart_id)?.key.clone();
        let slot = self
            .by_key
            .get_mut(&key)?
            .iter_mut()
            .find(|r| r.restart_id == restart_id)?;
        f(slot);
        slot.version = next_version();
        let updated = slot.clone();
        if let Some(run) = updated.restart_run_id {
            self.by_run.insert(run, key);
        }
        Some(updated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase() {
        let a = next_version();
        let b = next_version();
        assert!(b > a);
    }
}

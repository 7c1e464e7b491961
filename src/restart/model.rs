//! A restart: one `workflow_dispatch` of a watched workflow on `trunk/<sha>`, from the
//! decision to dispatch to the verdict on its jobs. How it changes is `lifecycle`.

use super::check_run::CheckRun;
use super::outcome::Verdict;
use super::scope::Scope;
use chrono::{DateTime, Utc};
use serde::Serialize;
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

snake_case_enum! {
/// Where a restart stands. Stored as its snake_case name.
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
}

impl Status {
    /// Whether a run may still show up for this restart (it counts toward the cap either way).
    pub fn awaits_run(self) -> bool {
        matches!(
            self,
            Status::Dispatching | Status::Dispatched | Status::DispatchUnknown
        )
    }
}

/// When a restart reached each step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    pub requested_at: DateTime<Utc>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Timeline {
    pub fn requested(at: DateTime<Utc>) -> Timeline {
        Timeline {
            requested_at: at,
            dispatched_at: None,
            confirmed_at: None,
            completed_at: None,
        }
    }

    /// From dispatch (or the request, when the dispatch time is unknown) to confirmation.
    pub fn confirm_latency_ms(&self) -> Option<u64> {
        let since = self.dispatched_at.unwrap_or(self.requested_at);
        self.confirmed_at
            .map(|c| (c - since).num_milliseconds().max(0) as u64)
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
    pub times: Timeline,
    pub outcome: Option<Verdict>,
    pub reason: String,
    pub delivery_id: String,
    pub version: u64,
    /// The check run showing this restart's evidence on its commit (`check_run.rs`).
    pub check: CheckRun,
    /// What the dispatch asks for (filters, why, the jobs it ran against the original's);
    /// `None` until it is decided, which is before the restart is first written.
    pub scope: Option<Scope>,
    /// The normalized job names the decision engine asked to run again (empty: a restart of
    /// a failed run, scoped from its failing jobs). Read only while the scope is decided,
    /// which is stored with the first row, so it is not stored itself.
    pub asked_jobs: Vec<String>,
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

/// Whether a run or job is a restart: `event = workflow_dispatch` on `trunk/{its sha}`.
pub fn is_restart_branch(head_branch: Option<&str>, head_sha: &str) -> bool {
    head_branch == Some(trunk_ref(head_sha).as_str())
}

/// Row versions of the ledger (`ReplacingMergeTree(version)`: the highest wins). They are
/// the wall clock in microseconds, but never at or below one handed out before: not when
/// the clock steps back while the process runs, and, once `seed` has been given the highest
/// version loaded from the ledger, not when the process starts again on a clock now behind.
/// Otherwise ClickHouse would keep an older row of a restart over its newer state.
#[derive(Debug, Default)]
pub struct Versions(AtomicU64);

impl Versions {
    pub const fn new() -> Versions {
        Versions(AtomicU64::new(0))
    }

    /// The next version at `now_micros` (the wall clock): above every one before.
    pub fn next(&self, now_micros: u64) -> u64 {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let next = now_micros.max(cur + 1);
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Versions handed out from now on are above `highest` (one already in the ledger).
    pub fn seed(&self, highest: u64) {
        self.0.fetch_max(highest, Ordering::Relaxed);
    }
}

static VERSIONS: Versions = Versions::new();

/// The next row version of this process.
pub fn next_version() -> u64 {
    VERSIONS.next(Utc::now().timestamp_micros().max(0) as u64)
}

/// Row versions of this process stay above `highest` (the highest loaded at start-up).
pub fn seed_versions(highest: u64) {
    VERSIONS.seed(highest);
}

/// A restart as tests of the domain start from.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// `secs` after a fixed instant.
    pub fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000 + secs, 0).unwrap()
    }

    /// Attempt 1 of trunk on `o/r` at `abc`, requested `at(0)`, its POST in flight.
    pub fn dispatching() -> Restart {
        Restart {
            restart_id: "o/r/trunk/abc/1".into(),
            key: RestartKey {
                repo: "o/r".into(),
                workflow: "trunk".into(),
                head_sha: "abc".into(),
            },
            attempt: 1,
            workflow_file: "trunk.yml".into(),
            original_run_id: 7,
            installation_id: None,
            status: Status::Dispatching,
            dispatch_attempts: 1,
            restart_run_id: None,
            run_url: String::new(),
            dry_run: false,
            times: Timeline::requested(at(0)),
            outcome: None,
            reason: String::new(),
            delivery_id: "d".into(),
            version: 1,
            check: CheckRun::default(),
            scope: None,
            asked_jobs: Vec::new(),
        }
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

    #[test]
    fn versions_never_go_back_when_the_clock_does() {
        let v = Versions::new();
        assert_eq!(v.next(1_000), 1_000);
        assert_eq!(v.next(2_000), 2_000);
        // The clock steps back: versions keep rising.
        assert_eq!(v.next(1), 2_001);
        assert_eq!(v.next(500), 2_002);
        assert_eq!(v.next(3_000), 3_000);
    }

    #[test]
    fn versions_start_above_the_highest_loaded_from_the_ledger() {
        // A new process on a clock now 5 minutes behind the one that wrote the ledger.
        let written = 1_750_000_000_000_000_u64;
        let now = written - 300_000_000;
        let v = Versions::new();
        v.seed(written);
        assert_eq!(v.next(now), written + 1);
        // A lower seed (an older restart loaded after) changes nothing.
        v.seed(written - 10);
        assert_eq!(v.next(now), written + 2);
        // Once the clock passes the ledger, it leads again.
        assert_eq!(v.next(written + 5_000), written + 5_000);
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in [Status::DispatchUnknown, Status::DryRun, Status::Completed] {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
        }
        assert_eq!(Status::DispatchFailed.as_str(), "dispatch_failed");
        assert!("nonsense".parse::<Status>().is_err());
    }
}

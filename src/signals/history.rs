//! The history the signals are built from: main's commits in landing order and every job
//! and run the App has seen on them, kept as their latest state. Building a signal follows
//! PyTorch's extractor (`signal_extraction.py`, pytorch-autorevert.md §4.2):
//!
//! * jobs are grouped by (commit, workflow, normalized job name, run, attempt): shards of a
//!   config merge, configs stay apart (`restart::outcome::base_name`);
//! * an attempt with a cancelled job, or with every job skipped, gives no event (missing);
//!   any failed job makes it a failure; all completed with success a success; otherwise it
//!   is pending;
//! * jobs named `*mem_leak_check*`, `*rerun_disabled_tests*`, `*unstable*` are dropped;
//! * a run of the signal's workflow on a commit that is not completed and has no job of
//!   this signal yet adds a synthetic pending event (its jobs may appear later: #7272).

use super::model::{Outcome, Signal, SignalCommit, SignalEvent, SignalKey, Track};
use crate::intake::events::{Job, Run};
use crate::intake::states::{Conclusion, RunStatus, Trigger, failed};
use crate::restart::outcome::{base_name, is_excluded};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Main's commits in the order they landed, oldest first (a ghstack push carries several:
/// they keep their order inside the push).
#[derive(Debug, Clone, Default)]
pub struct CommitOrder {
    commits: Vec<(String, DateTime<Utc>)>,
    index: HashMap<String, usize>,
    /// sha -> the commit before it on main, as its push said.
    parents: HashMap<String, String>,
}

impl CommitOrder {
    /// Adds a push's commits (oldest first) at its place in time: a push delivered late
    /// still goes before the newer ones. Commits already known keep their place.
    pub fn push<S: AsRef<str>>(&mut self, commits: &[S], at: DateTime<Utc>) -> usize {
        let pos = self.commits.partition_point(|(_, t)| *t <= at);
        self.insert(pos, commits, at)
    }

    /// Adds a push's commits right after `parent`, the commit main pointed at before the
    /// push (its `before`), when that one is known: pushes in the same second, or handled
    /// out of order, still land in order. Otherwise by time, as `push`.
    pub fn push_after<S: AsRef<str>>(
        &mut self,
        parent: &str,
        commits: &[S],
        at: DateTime<Utc>,
    ) -> usize {
        let mut before = parent;
        for sha in commits {
            self.parents
                .insert(sha.as_ref().to_string(), before.to_string());
            before = sha.as_ref();
        }
        if let Some(&i) = self.index.get(parent) {
            return self.insert(i + 1, commits, at);
        }
        // A child of the newest new commit is known already: just before it.
        let child = self
            .commits
            .iter()
            .position(|(s, _)| self.parents.get(s).map(String::as_str) == Some(before));
        match child {
            Some(i) => self.insert(i, commits, at),
            None => self.push(commits, at),
        }
    }

    fn insert<S: AsRef<str>>(&mut self, mut pos: usize, commits: &[S], at: DateTime<Utc>) -> usize {
        let appending = pos == self.commits.len();
        let mut added = 0;
        for sha in commits {
            let sha = sha.as_ref();
            if self.index.contains_key(sha) {
                continue;
            }
            self.index.insert(sha.to_string(), pos);
            self.commits.insert(pos, (sha.to_string(), at));
            pos += 1;
            added += 1;
        }
        if !appending && added > 0 {
            self.reindex();
        }
        added
    }

    fn reindex(&mut self) {
        self.index = self
            .commits
            .iter()
            .enumerate()
            .map(|(i, (s, _))| (s.clone(), i))
            .collect();
    }

    pub fn len(&self) -> usize {
        self.commits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commits.is_empty()
    }

    pub fn contains(&self, sha: &str) -> bool {
        self.index.contains_key(sha)
    }

    /// The commits, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &str> {
        self.commits.iter().rev().map(|(s, _)| s.as_str())
    }

    /// When the commit's push landed.
    pub fn pushed_at(&self, sha: &str) -> Option<DateTime<Utc>> {
        self.index.get(sha).map(|&i| self.commits[i].1)
    }

    /// The commit just before this one on main.
    pub fn parent(&self, sha: &str) -> Option<&str> {
        let i = *self.index.get(sha)?;
        i.checked_sub(1).map(|p| self.commits[p].0.as_str())
    }

    /// Forgets commits pushed before `cutoff`; returns them.
    fn forget_before(&mut self, cutoff: DateTime<Utc>) -> Vec<String> {
        let keep_from = self.commits.partition_point(|(_, at)| *at < cutoff);
        let gone: Vec<String> = self.commits.drain(..keep_from).map(|(s, _)| s).collect();
        self.reindex();
        for sha in &gone {
            self.parents.remove(sha);
        }
        gone
    }
}

/// The latest state of one job.
#[derive(Debug, Clone)]
struct JobSeen {
    name: String,
    status: RunStatus,
    conclusion: Option<Conclusion>,
    start: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
}

impl JobSeen {
    fn of(job: &Job) -> JobSeen {
        JobSeen {
            name: job.name.clone(),
            status: job.status.clone(),
            conclusion: job.conclusion.clone(),
            start: job.started_at.max(job.created_at),
            completed_at: job.completed_at,
        }
    }

    fn rank(&self) -> u64 {
        self.status.rank() * 2 + u64::from(self.conclusion.is_some())
    }
}

/// workflow -> (run id, attempt) -> latest state of a commit's runs.
type RunsOf = HashMap<String, BTreeMap<(u64, u32), RunSeen>>;

/// (run id, attempt) -> job id -> latest state.
type Attempts = BTreeMap<(u64, u32), BTreeMap<u64, JobSeen>>;

#[derive(Debug, Clone, Copy)]
struct RunSeen {
    rank: u64,
    completed: bool,
    created_at: DateTime<Utc>,
    /// A restart: a `workflow_dispatch` run or a re-run attempt.
    rerun: bool,
}

/// Everything seen about the window's commits, from which any signal can be built.
#[derive(Debug, Clone, Default)]
pub struct History {
    order: CommitOrder,
    cells: HashMap<SignalKey, HashMap<String, Attempts>>,
    /// sha -> workflow -> (run id, attempt) -> latest state.
    runs: HashMap<String, RunsOf>,
    failing: HashSet<SignalKey>,
    /// Runs known to run only some signals (a restart that named its jobs): run id ->
    /// normalized job names. Other runs may run every signal of their workflow.
    scopes: HashMap<u64, HashSet<String>>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    pub fn commits(&self) -> &CommitOrder {
        &self.order
    }

    /// A push to main: its commits, oldest first.
    pub fn push<S: AsRef<str>>(&mut self, commits: &[S], at: DateTime<Utc>) -> usize {
        self.order.push(commits, at)
    }

    /// A push to main on top of `parent` (its `before`): see `CommitOrder::push_after`.
    pub fn push_after<S: AsRef<str>>(
        &mut self,
        parent: &str,
        commits: &[S],
        at: DateTime<Utc>,
    ) -> usize {
        self.order.push_after(parent, commits, at)
    }

    /// Records a job's state; returns the signal it belongs to when that signal changed
    /// (an older state arriving late changes nothing).
    pub fn record_job(&mut self, job: &Job) -> Option<SignalKey> {
        if is_excluded(&job.name) {
            return None;
        }
        let key = SignalKey::new(job.workflow_name.clone(), base_name(&job.name));
        let seen = JobSeen::of(job);
        let attempts = self
            .cells
            .entry(key.clone())
            .or_default()
            .entry(job.head_sha.clone())
            .or_default();
        let jobs = attempts.entry((job.run_id, job.run_attempt)).or_default();
        if jobs
            .get(&job.id)
            .is_some_and(|old| old.rank() > seen.rank())
        {
            return None;
        }
        if failed(seen.conclusion.as_ref()) {
            self.failing.insert(key.clone());
        }
        jobs.insert(job.id, seen);
        Some(key)
    }

    /// Records a run's state (for synthetic pending events); true when it changed.
    pub fn record_run(&mut self, run: &Run) -> bool {
        let seen = RunSeen {
            rank: run.status.rank(),
            completed: run.status == RunStatus::Completed,
            created_at: run.created_at,
            rerun: run.event == Trigger::WorkflowDispatch || run.run_attempt > 1,
        };
        let runs = self
            .runs
            .entry(run.head_sha.clone())
            .or_default()
            .entry(run.name.clone())
            .or_default();
        let key = (run.id, run.run_attempt);
        let newer = runs.get(&key).is_none_or(|old| old.rank < seen.rank);
        if newer {
            runs.insert(key, seen);
        }
        newer
    }

    /// A run runs these normalized jobs only (known from the dispatch that made it): it is
    /// a synthetic pending event for them alone.
    pub fn scope_run(&mut self, run_id: u64, jobs: impl IntoIterator<Item = String>) {
        self.scopes.entry(run_id).or_default().extend(jobs);
    }

    /// The signals a run of this workflow may carry (None: all of them).
    pub fn run_scope(&self, run_id: u64) -> Option<&HashSet<String>> {
        self.scopes.get(&run_id)
    }

    /// Signals that had a failure in the window: the only ones a decision can act on.
    pub fn failing_keys(&self) -> impl Iterator<Item = &SignalKey> {
        self.failing.iter()
    }

    pub fn is_failing(&self, key: &SignalKey) -> bool {
        self.failing.contains(key)
    }

    /// Every signal seen.
    pub fn keys(&self) -> impl Iterator<Item = &SignalKey> {
        self.cells.keys()
    }

    /// The signal's column: every commit of the window, newest first.
    pub fn signal(&self, key: &SignalKey) -> Signal {
        let cells = self.cells.get(key);
        let commits = self
            .order
            .newest_first()
            .map(|sha| {
                let attempts = cells.and_then(|c| c.get(sha));
                let mut events: Vec<SignalEvent> = attempts
                    .into_iter()
                    .flatten()
                    .filter_map(|(&(run_id, attempt), jobs)| attempt_event(run_id, attempt, jobs))
                    .map(|mut e| {
                        let run = self.run_seen(sha, &key.workflow, e.run_id, e.attempt);
                        e.run_created_at = run.map(|r| r.created_at);
                        e.rerun = e.attempt > 1 || run.is_some_and(|r| r.rerun);
                        e
                    })
                    .collect();
                self.add_synthetic_pending(key, sha, attempts, &mut events);
                SignalCommit::new(sha, events)
            })
            .collect();
        Signal {
            key: key.clone(),
            track: Track::Job,
            commits,
        }
    }

    /// A run attempt of this workflow on this commit, when seen.
    fn run_seen(&self, sha: &str, workflow: &str, run_id: u64, attempt: u32) -> Option<&RunSeen> {
        self.runs.get(sha)?.get(workflow)?.get(&(run_id, attempt))
    }

    fn add_synthetic_pending(
        &self,
        key: &SignalKey,
        sha: &str,
        attempts: Option<&Attempts>,
        events: &mut Vec<SignalEvent>,
    ) {
        let Some(runs) = self.runs.get(sha).and_then(|w| w.get(&key.workflow)) else {
            return;
        };
        for (&(run_id, attempt), run) in runs {
            let has_jobs = attempts.is_some_and(|a| a.contains_key(&(run_id, attempt)));
            let in_scope = self
                .scopes
                .get(&run_id)
                .is_none_or(|s| s.contains(&key.job));
            if !run.completed && !has_jobs && in_scope {
                events.push(SignalEvent {
                    status: Outcome::Pending,
                    started_at: run.created_at,
                    ended_at: None,
                    run_id,
                    attempt,
                    job_name: String::new(),
                    job_id: 0,
                    failed_jobs: Vec::new(),
                    run_created_at: Some(run.created_at),
                    rerun: run.rerun || attempt > 1,
                });
            }
        }
    }

    /// Keeps the window: forgets commits pushed before `cutoff` and all they carried.
    pub fn forget_before(&mut self, cutoff: DateTime<Utc>) {
        let gone = self.order.forget_before(cutoff);
        if gone.is_empty() {
            return;
        }
        for cells in self.cells.values_mut() {
            for sha in &gone {
                cells.remove(sha);
            }
        }
        self.cells.retain(|_, c| !c.is_empty());
        self.runs.retain(|sha, _| self.order.contains(sha));
        let runs = &self.runs;
        self.scopes.retain(|id, _| {
            runs.values()
                .flat_map(|w| w.values())
                .any(|r| r.keys().any(|(run, _)| run == id))
        });
        let cells = &self.cells;
        self.failing.retain(|k| {
            cells.get(k).is_some_and(|c| {
                c.values()
                    .flat_map(|a| a.values())
                    .flat_map(|j| j.values())
                    .any(|j| failed(j.conclusion.as_ref()))
            })
        });
    }
}

/// One attempt's jobs of a signal as one event (None: missing).
fn attempt_event(run_id: u64, attempt: u32, jobs: &BTreeMap<u64, JobSeen>) -> Option<SignalEvent> {
    let cancelled = jobs
        .values()
        .any(|j| j.conclusion == Some(Conclusion::Cancelled));
    let all_skipped = jobs
        .values()
        .all(|j| j.conclusion == Some(Conclusion::Skipped));
    if jobs.is_empty() || cancelled || all_skipped {
        return None;
    }
    let failing = jobs.iter().find(|(_, j)| failed(j.conclusion.as_ref()));
    let all_passed = jobs.values().all(|j| {
        j.status == RunStatus::Completed
            && matches!(
                j.conclusion,
                Some(Conclusion::Success | Conclusion::Skipped | Conclusion::Neutral)
            )
    });
    let status = match (failing.is_some(), all_passed) {
        (true, _) => Outcome::Failure,
        (false, true) => Outcome::Success,
        (false, false) => Outcome::Pending,
    };
    let (job_id, job) = failing.or_else(|| jobs.iter().next())?;
    let started_at = jobs
        .values()
        .filter_map(|j| j.start)
        .min()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let ended_at = match status {
        Outcome::Pending => None,
        _ => jobs.values().filter_map(|j| j.completed_at).max(),
    };
    let mut failed_jobs: Vec<String> = jobs
        .values()
        .filter(|j| failed(j.conclusion.as_ref()))
        .map(|j| j.name.clone())
        .collect();
    failed_jobs.sort_unstable();
    failed_jobs.dedup();
    Some(SignalEvent {
        status,
        started_at,
        ended_at,
        run_id,
        attempt,
        job_name: job.name.clone(),
        job_id: *job_id,
        failed_jobs,
        run_created_at: None,
        rerun: attempt > 1,
    })
}

//! The decision engine in the App: it keeps, per repository, main's commit order (`push`)
//! and every job and run seen on those commits (`signals::History`), and re-decides a
//! signal whenever an event changes it (`decisions::decide`, pure). What comes out is data:
//! rows to record (commits, runs, changed decisions), restarts to ask for (`Asked`, claimed
//! through the restart ledger like any restart) and culprits to act on (`revert_flow`).
//!
//! The state is rebuilt from ClickHouse at start-up (`rebuild`), and bounded by
//! `DECIDE_LOOKBACK_HOURS`: commits pushed before the window are forgotten.

mod repo;

pub use repo::Blamed;

use crate::decisions::{Decision, DecisionConfig};
use crate::intake::Event;
use crate::restart::{Asked, Policy};
use crate::signals::{History, SignalKey};
use crate::store::recorder::Entry;
use crate::store::signal_state::SignalState;
use chrono::{DateTime, Utc};
use repo::RepoState;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// How the engine decides.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Off: nothing is kept or decided (`DECIDE=off`).
    pub enabled: bool,
    /// `DECIDE_LOOKBACK_HOURS`: how far back commits are kept.
    pub lookback: chrono::Duration,
    pub rules: DecisionConfig,
    /// What is done about a culprit (`REVERT_ACTION` and its limits).
    pub acting: crate::pipeline::follow_ups::revert::Acting,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            enabled: true,
            lookback: chrono::Duration::hours(16),
            rules: DecisionConfig::default(),
            acting: Default::default(),
        }
    }
}

/// A restart the engine asks for, and whether the decision behind it is new (a refusal
/// is logged only then: the same ask comes again with every event of the signal).
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub asked: Asked,
    pub new: bool,
}

/// What one event led to.
#[derive(Default)]
pub struct Decided {
    pub rows: Vec<Entry>,
    pub asks: Vec<Ask>,
    pub blamed: Vec<Blamed>,
}

pub struct Decider {
    settings: Settings,
    repos: Mutex<HashMap<String, RepoState>>,
}

impl Decider {
    pub fn new(settings: Settings) -> Decider {
        Decider {
            settings,
            repos: Mutex::default(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Each change is applied whole under the lock: a poisoned lock holds no half-change.
    fn repos(&self) -> MutexGuard<'_, HashMap<String, RepoState>> {
        self.repos.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes what ClickHouse kept (start-up); how many commits and jobs it holds.
    pub fn rebuild(&self, state: &SignalState, now: DateTime<Utc>) -> (usize, usize) {
        let mut repos = self.repos();
        for c in &state.commits {
            let r = repos.entry(c.repo.clone()).or_default();
            r.history
                .push_after(&c.parent, &[c.sha.as_str()], c.pushed_at);
        }
        for (repo, run) in state.runs() {
            repos.entry(repo.to_string()).or_default().record_run(&run);
        }
        for (repo, job) in state.jobs() {
            repos
                .entry(repo.to_string())
                .or_default()
                .history
                .record_job(&job);
        }
        let cutoff = now - self.settings.lookback;
        for r in repos.values_mut() {
            r.history.forget_before(cutoff);
            // Known at once (status page), and not written again as new by the next event.
            r.seed_decisions(&self.settings.rules);
        }
        (state.commits.len(), state.jobs.len())
    }

    /// Takes one event; decides the signals it changed.
    pub fn on_event(
        &self,
        event: &Event,
        delivery_id: &str,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Decided {
        if !self.settings.enabled || !policy.repo_allowed(event.repo()) {
            return Decided::default();
        }
        let repo = event.repo().to_string();
        let mut repos = self.repos();
        let state = repos.entry(repo.clone()).or_default();
        let (rows, keys) = state.observe(event, delivery_id, policy, now, self.settings.lookback);
        let mut decided = state.decide(&repo, &keys, &self.settings.rules, now);
        let mut all = rows;
        all.append(&mut decided.rows);
        decided.rows = all;
        decided
    }

    /// The restart of `sha`'s parent that goes with a restart of `sha` (LUCI's pair: a
    /// reproduction counts only beside a green parent run at the same time), for the jobs
    /// that failed on `sha`; None when the parent or the failures are not known.
    pub fn parent_of_restart(&self, key: &crate::restart::RestartKey) -> Option<Ask> {
        if !self.settings.enabled {
            return None;
        }
        let repos = self.repos();
        repos.get(&key.repo)?.parent_ask(key)
    }

    /// Decides one signal again, from what is known now (just before acting on it).
    pub fn recheck(&self, repo: &str, key: &SignalKey) -> Option<Decision> {
        let repos = self.repos();
        let state = repos.get(repo)?;
        let signal = state.history.signal(key);
        Some(crate::decisions::decide(&signal, &self.settings.rules))
    }

    /// The last decision of every signal decided so far (status page, `/api`).
    pub fn decisions(&self, repo: &str) -> Vec<(SignalKey, Decision)> {
        let repos = self.repos();
        let mut out: Vec<(SignalKey, Decision)> = repos
            .get(repo)
            .map(|s| s.last.iter().map(|(k, d)| (k.clone(), d.clone())).collect())
            .unwrap_or_default();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// A copy of a repository's history (`autorevert signals`).
    pub fn history(&self, repo: &str) -> Option<History> {
        self.repos().get(repo).map(|s| s.history.clone())
    }

    /// Every repository with a history.
    pub fn repos_known(&self) -> Vec<String> {
        let mut out: Vec<String> = self.repos().keys().cloned().collect();
        out.sort();
        out
    }

    /// Decides every signal of a repository that had a failure (`autorevert signals`).
    pub fn decide_all(&self, repo: &str) -> Vec<(SignalKey, Decision)> {
        let mut repos = self.repos();
        let Some(state) = repos.get_mut(repo) else {
            return Vec::new();
        };
        let keys: Vec<SignalKey> = state.history.failing_keys().cloned().collect();
        state.decide(repo, &keys, &self.settings.rules, Utc::now());
        drop(repos);
        self.decisions(repo)
    }
}

#[cfg(test)]
mod tests;

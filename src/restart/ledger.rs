//! The restart ledger: what the App has restarted and where each restart stands.
//!
//! This in-memory index is what decisions read. Every state change is recorded in
//! ClickHouse (`restarts` table, one row per change, newest `version` wins; batched by the
//! recorder) and reloaded from there at start-up. Until a change is written, the delivery
//! that caused it stays unacknowledged in the delivery log, which replays it after a crash.

use super::lifecycle::{Change, Transition};
use super::model::{Restart, RestartKey, Status, next_version};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

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

    pub fn len(&self) -> usize {
        self.by_key.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Applies a transition to a restart; gives back the updated copy, with a fresh
    /// version, and what changed.
    pub fn apply(
        &mut self,
        restart_id: &str,
        t: &Transition,
        now: DateTime<Utc>,
    ) -> Option<(Restart, Change)> {
        self.apply_if(restart_id, |_| true, t, now)
    }

    /// `apply`, only if the restart as it is now passes `guard` (a compare-and-set: the
    /// check and the change happen under one lock).
    pub fn apply_if(
        &mut self,
        restart_id: &str,
        guard: impl FnOnce(&Restart) -> bool,
        t: &Transition,
        now: DateTime<Utc>,
    ) -> Option<(Restart, Change)> {
        let key = self.get(restart_id)?.key.clone();
        let slot = self
            .by_key
            .get_mut(&key)?
            .iter_mut()
            .find(|r| r.restart_id == restart_id)?;
        if !guard(slot) {
            return None;
        }
        let change = slot.apply(t, now);
        slot.version = next_version();
        let updated = slot.clone();
        if let Some(run) = updated.restart_run_id {
            self.by_run.insert(run, key);
        }
        Some((updated, change))
    }
}

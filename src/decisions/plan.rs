//! From per-signal decisions to actions: restarts grouped per (workflow, commit) with the
//! jobs asked for, reverts grouped per suspect commit with the signals behind them.

use super::rules::Decision;
use crate::signals::SignalKey;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What the decisions ask for, deduplicated.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// (workflow, sha) -> the normalized job names to restart there.
    pub restarts: BTreeMap<(String, String), BTreeSet<String>>,
    /// (workflow, sha) -> the jobs that failed in those signals (the shards to rerun).
    pub restart_jobs: BTreeMap<(String, String), BTreeSet<String>>,
    /// suspect sha -> the signals that point at it.
    pub reverts: BTreeMap<String, Vec<SignalKey>>,
}

impl Plan {
    pub fn add(&mut self, key: &SignalKey, decision: &Decision) {
        match decision {
            Decision::Restart(r) => {
                for c in &r.commits {
                    let at = (key.workflow.clone(), c.sha.clone());
                    self.restart_jobs
                        .entry(at.clone())
                        .or_default()
                        .extend(r.failing_jobs.iter().cloned());
                    self.restarts.entry(at).or_default().insert(key.job.clone());
                }
            }
            Decision::Revert(r) => self
                .reverts
                .entry(r.suspect.clone())
                .or_default()
                .push(key.clone()),
            Decision::Ineligible(_) => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.restarts.is_empty() && self.reverts.is_empty()
    }
}

/// Groups decisions into one plan.
pub fn plan<'a>(decisions: impl IntoIterator<Item = (&'a SignalKey, &'a Decision)>) -> Plan {
    let mut p = Plan::default();
    for (k, d) in decisions {
        p.add(k, d);
    }
    p
}

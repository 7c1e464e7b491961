//! The part the built-in policies share: the history they have seen, and the decision
//! engine run over it (logging a signal's decision only when it changes).

use crate::decisions::{Decision, DecisionConfig, Plan, decide};
use crate::signals::{History, SignalKey};
use crate::simulator::policy::{DecisionRecord, Observation, at};
use std::collections::HashMap;

/// Which signals an observation may have changed.
pub enum Touched {
    None,
    One(SignalKey),
    /// These normalized jobs of a workflow (a run that carries only them).
    Jobs(String, Vec<String>),
    /// Every failing signal of a workflow (a run started or ended: synthetic pending).
    Workflow(String),
    All,
}

pub struct Judge {
    pub history: History,
    pub cfg: DecisionConfig,
    window_secs: i64,
    last: HashMap<SignalKey, Decision>,
    changed: Vec<DecisionRecord>,
}

impl Judge {
    pub fn new(cfg: DecisionConfig, window_hours: f64) -> Judge {
        Judge {
            history: History::new(),
            cfg,
            window_secs: (window_hours * 3600.0) as i64,
            last: HashMap::new(),
            changed: Vec::new(),
        }
    }

    pub fn observe(&mut self, now: i64, o: &Observation) -> Touched {
        match o {
            Observation::Push {
                at: pushed,
                commits,
            } => {
                self.history.push(commits, at(*pushed));
                self.history.forget_before(at(now - self.window_secs));
                Touched::All
            }
            Observation::Job(j) => self
                .history
                .record_job(j)
                .map_or(Touched::None, Touched::One),
            Observation::Run(r) => {
                if !self.history.record_run(r) {
                    Touched::None
                } else if let Some(scope) = self.history.run_scope(r.id) {
                    Touched::Jobs(r.name.clone(), scope.iter().cloned().collect())
                } else {
                    Touched::Workflow(r.name.clone())
                }
            }
        }
    }

    /// Decides the touched signals (failing ones only) into a plan.
    pub fn decide(&mut self, now: i64, touched: Touched) -> Plan {
        let keys: Vec<SignalKey> = match touched {
            Touched::None => vec![],
            Touched::One(k) => vec![k],
            Touched::Jobs(w, jobs) => jobs
                .into_iter()
                .map(|j| SignalKey::new(w.clone(), j))
                .collect(),
            Touched::Workflow(w) => self
                .history
                .failing_keys()
                .filter(|k| k.workflow == w)
                .cloned()
                .collect(),
            Touched::All => self.history.failing_keys().cloned().collect(),
        };
        let mut plan = Plan::default();
        for key in keys {
            if !self.history.is_failing(&key) {
                continue;
            }
            let d = decide(&self.history.signal(&key), &self.cfg);
            plan.add(&key, &d);
            if self
                .last
                .get(&key)
                .is_none_or(|last| gist(last) != gist(&d))
            {
                self.changed.push(DecisionRecord {
                    at: now,
                    signal: key.clone(),
                    decision: d.clone(),
                });
                self.last.insert(key, d);
            }
        }
        plan
    }

    pub fn take_decisions(&mut self) -> Vec<DecisionRecord> {
        std::mem::take(&mut self.changed)
    }
}

/// What a decision says, without its evidence counts: the log records a signal's decision
/// when this changes.
fn gist(d: &Decision) -> (String, Vec<&str>) {
    match d {
        Decision::Revert(r) => ("revert".into(), vec![r.suspect.as_str()]),
        Decision::Restart(r) => (
            "restart".into(),
            r.commits.iter().map(|c| c.sha.as_str()).collect(),
        ),
        Decision::Ineligible(i) => (i.reason.as_str().into(), vec![]),
    }
}

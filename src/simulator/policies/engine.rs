//! The App's engine: decides a signal the moment one of its events arrives (webhooks: a
//! second or two of lag), restarts only the jobs that failed (the failing shards, with
//! the builds they need), at most `MAX_PER_JOB` times per (commit, job), `SPACING` apart.

use super::judge::Judge;
use crate::decisions::{DecisionConfig, Plan};
use crate::simulator::policy::{Action, DecisionRecord, Observation, Policy};
use std::collections::{HashMap, HashSet};

const MAX_PER_JOB: u32 = 3;
const SPACING_SECS: i64 = 20 * 60;

pub struct Engine {
    judge: Judge,
    restarted: HashMap<(String, String), (u32, i64)>,
    reverted: HashSet<String>,
}

impl Engine {
    pub fn new(cfg: DecisionConfig, window_hours: f64) -> Engine {
        Engine {
            judge: Judge::new(cfg, window_hours),
            restarted: HashMap::new(),
            reverted: HashSet::new(),
        }
    }

    fn act(&mut self, now: i64, mut plan: Plan) -> Vec<Action> {
        let mut actions = Vec::new();
        for ((workflow, sha), signals) in plan.restarts {
            // The failing shards when known (a rerun of the failing tests), else the signals.
            let jobs = match plan.restart_jobs.remove(&(workflow.clone(), sha.clone())) {
                Some(jobs) if !jobs.is_empty() => jobs,
                _ => signals,
            };
            let jobs: Vec<String> = jobs
                .into_iter()
                .filter(|job| {
                    let (n, last) = self
                        .restarted
                        .get(&(sha.clone(), job.clone()))
                        .copied()
                        .unwrap_or((0, i64::MIN / 2));
                    n < MAX_PER_JOB && now - last >= SPACING_SECS
                })
                .collect();
            if jobs.is_empty() {
                continue;
            }
            for job in &jobs {
                let e = self
                    .restarted
                    .entry((sha.clone(), job.clone()))
                    .or_insert((0, now));
                *e = (e.0 + 1, now);
            }
            actions.push(Action::Restart {
                workflow,
                sha,
                jobs: Some(jobs),
            });
        }
        for sha in plan.reverts.into_keys() {
            if self.reverted.insert(sha.clone()) {
                actions.push(Action::Revert { sha });
            }
        }
        actions
    }
}

impl Policy for Engine {
    fn name(&self) -> &str {
        "engine"
    }

    fn lag(&self) -> (f64, f64) {
        (1.0, 3.0)
    }

    fn tick_every(&self) -> Option<i64> {
        None
    }

    fn observe(&mut self, now: i64, o: &Observation) -> anyhow::Result<Vec<Action>> {
        let touched = self.judge.observe(now, o);
        let plan = self.judge.decide(now, touched);
        Ok(self.act(now, plan))
    }

    fn tick(&mut self, _now: i64) -> anyhow::Result<Vec<Action>> {
        Ok(vec![])
    }

    fn take_decisions(&mut self) -> Vec<DecisionRecord> {
        self.judge.take_decisions()
    }

    /// The App knows the run its dispatch made (`return_run_details`) and the jobs it
    /// asked for: the run is pending for those signals only.
    fn dispatched(&mut self, restart: &Action, run_id: u64) {
        if let Action::Restart {
            jobs: Some(jobs), ..
        } = restart
        {
            let signals = jobs.iter().map(|j| crate::restart::outcome::base_name(j));
            self.judge.history.scope_run(run_id, signals);
        }
    }
}

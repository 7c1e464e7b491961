//! The baseline: PyTorch's autorevert Lambda. Every 5 minutes it reads what ClickHouse
//! holds (events reach it 2–10 minutes late), decides every signal with PyTorch's
//! thresholds and restarts whole workflows: at most 5 per (workflow, commit), none within
//! 20 minutes of the last (pytorch-autorevert.md §1.8).

use super::judge::{Judge, Touched};
use crate::decisions::DecisionConfig;
use crate::simulator::policy::{Action, DecisionRecord, Observation, Policy};
use std::collections::{HashMap, HashSet};

const CAP: u32 = 5;
const PACING_SECS: i64 = 20 * 60;

pub struct Lambda {
    judge: Judge,
    restarted: HashMap<(String, String), (u32, i64)>,
    reverted: HashSet<String>,
}

impl Lambda {
    pub fn new(window_hours: f64) -> Lambda {
        Lambda {
            judge: Judge::new(DecisionConfig::pytorch(), window_hours),
            restarted: HashMap::new(),
            reverted: HashSet::new(),
        }
    }
}

impl Policy for Lambda {
    fn name(&self) -> &str {
        "lambda"
    }

    fn lag(&self) -> (f64, f64) {
        (120.0, 600.0)
    }

    fn tick_every(&self) -> Option<i64> {
        Some(300)
    }

    fn observe(&mut self, now: i64, o: &Observation) -> anyhow::Result<Vec<Action>> {
        self.judge.observe(now, o);
        Ok(vec![])
    }

    fn tick(&mut self, now: i64) -> anyhow::Result<Vec<Action>> {
        let plan = self.judge.decide(now, Touched::All);
        let mut actions = Vec::new();
        for (workflow, sha) in plan.restarts.into_keys() {
            let e = self
                .restarted
                .entry((workflow.clone(), sha.clone()))
                .or_insert((0, i64::MIN / 2));
            if e.0 >= CAP || now - e.1 < PACING_SECS {
                continue;
            }
            *e = (e.0 + 1, now);
            actions.push(Action::Restart {
                workflow,
                sha,
                jobs: None,
            });
        }
        for sha in plan.reverts.into_keys() {
            if self.reverted.insert(sha.clone()) {
                actions.push(Action::Revert { sha });
            }
        }
        Ok(actions)
    }

    fn take_decisions(&mut self) -> Vec<DecisionRecord> {
        self.judge.take_decisions()
    }
}

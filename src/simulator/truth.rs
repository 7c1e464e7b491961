//! A seed's ground truth, drawn before anything runs so that every policy meets the same
//! trunk: the pushes to main (ghstack pushes carry several commits; only the newest is
//! tested by the push run), the commits that break a job, and the outages.

use super::rng::{Rng, hash_sha};
use super::workflow::Workflow;
use serde::Serialize;

/// What a simulated day looks like.
#[derive(Debug, Clone, Serialize)]
pub struct SimConfig {
    /// Hours during which commits land (the simulation runs `tail_hours` longer).
    pub hours: f64,
    pub tail_hours: f64,
    /// Mean minutes between pushes to main.
    pub push_every_mins: f64,
    /// Probability that a push is a ghstack stack of 2–4 commits.
    pub stack_rate: f64,
    /// Probability that any job run fails for no reason (a flaky test or runner).
    pub flake_rate: f64,
    pub breakages_per_day: f64,
    pub outages_per_day: f64,
    pub outage_mins: f64,
    /// A breakage nobody reverted is fixed by hand this many hours after it landed.
    pub human_fix_hours: (f64, f64),
    /// From a revert decision to the revert commit on main (pytorchbot's merge).
    pub revert_land_mins: f64,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            hours: 24.0,
            tail_hours: 8.0,
            push_every_mins: 12.0,
            stack_rate: 0.2,
            flake_rate: 0.02,
            breakages_per_day: 3.0,
            outages_per_day: 1.0,
            outage_mins: 60.0,
            human_fix_hours: (4.0, 8.0),
            revert_land_mins: 15.0,
        }
    }
}

/// One push to main: its commits, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct Push {
    pub at: i64,
    pub commits: Vec<String>,
}

/// A commit that breaks one job from then on, until reverted (or fixed by hand).
#[derive(Debug, Clone, Serialize)]
pub struct Breakage {
    pub sha: String,
    pub landed_at: i64,
    /// The full name of the job it breaks (one shard of a test config, or a build).
    pub job: String,
    /// The normalized job (the signal).
    pub signal: String,
    /// When a human lands a fix if no revert came first.
    pub human_fix_at: i64,
}

/// A runner class failing every job that starts on it in [start, end).
#[derive(Debug, Clone, Serialize)]
pub struct Outage {
    pub runner: String,
    pub start: i64,
    pub end: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Truth {
    pub seed: u64,
    pub pushes: Vec<Push>,
    pub breakages: Vec<Breakage>,
    pub outages: Vec<Outage>,
}

fn count(per_day: f64, hours: f64) -> usize {
    (per_day * hours / 24.0).round() as usize
}

impl Truth {
    pub fn draw(cfg: &SimConfig, wf: &Workflow, seed: u64) -> Truth {
        let mut rng = Rng::new(seed, 0x0074_7275_6e6b);
        let horizon = (cfg.hours * 3600.0) as i64;
        let mut pushes = Vec::new();
        let mut t = 0i64;
        let mut n = 0u64;
        loop {
            t += (rng.exponential(cfg.push_every_mins) * 60.0) as i64 + 1;
            if t >= horizon {
                break;
            }
            let size = if rng.chance(cfg.stack_rate) {
                rng.range(2, 5)
            } else {
                1
            };
            let commits = (0..size)
                .map(|_| {
                    n += 1;
                    hash_sha(seed, n)
                })
                .collect();
            pushes.push(Push { at: t, commits });
        }
        let all: Vec<(i64, &String)> = pushes
            .iter()
            .flat_map(|p| p.commits.iter().map(move |c| (p.at, c)))
            .collect();
        let mut breakages: Vec<Breakage> = Vec::new();
        for _ in 0..count(cfg.breakages_per_day, cfg.hours) {
            let (at, sha) = all[rng.range(0, all.len() as u64) as usize];
            if breakages.iter().any(|b| b.sha == *sha) {
                continue;
            }
            // Mostly a test (one shard of one config); a build now and then.
            let build = rng.chance(0.1);
            let candidates: Vec<usize> = (0..wf.jobs.len())
                .filter(|&i| wf.jobs[i].build == build)
                .collect();
            let job = &wf.jobs[candidates[rng.range(0, candidates.len() as u64) as usize]];
            let fix = rng.uniform(cfg.human_fix_hours.0, cfg.human_fix_hours.1);
            breakages.push(Breakage {
                sha: sha.clone(),
                landed_at: at,
                job: job.name.clone(),
                signal: job.signal.clone(),
                human_fix_at: at + (fix * 3600.0) as i64,
            });
        }
        let runners = wf.test_runners();
        let outages = (0..count(cfg.outages_per_day, cfg.hours))
            .map(|_| {
                let start = rng.uniform(3600.0, (horizon - 3600).max(3601) as f64) as i64;
                Outage {
                    runner: runners[rng.range(0, runners.len() as u64) as usize].to_string(),
                    start,
                    end: start + (cfg.outage_mins * 60.0) as i64,
                }
            })
            .collect();
        Truth {
            seed,
            pushes,
            breakages,
            outages,
        }
    }

    pub fn commits(&self) -> usize {
        self.pushes.iter().map(|p| p.commits.len()).sum()
    }
}

//! The trunk simulator: a seeded day of main (pushes, ghstack stacks, a trunk-like
//! workflow of 42 jobs, breakages, flaky jobs, a runner outage) in simulated time, with
//! GitHub answering a restart by a run whose jobs emit events after their duration. The
//! same seeds go through each policy: the App's decision engine, PyTorch's Lambda, or
//! any program (`--policy-cmd`). The figures: false reverts, missed breakages, time from
//! a breaking commit to its revert decision, restart job-hours.

pub mod cost;
pub mod log;
pub mod policies;
pub mod policy;
pub mod report;
pub mod rng;
pub mod truth;
pub mod workflow;
pub mod world;

pub use policy::{Action, Observation, Policy};
pub use report::{PolicyReport, SeedScore};
pub use truth::{SimConfig, Truth};
pub use workflow::Workflow;

use crate::decisions::DecisionConfig;
use anyhow::Result;
use std::path::PathBuf;

/// Which policies to score.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyChoice {
    /// The App's engine (event-driven, job-level restarts).
    Engine(DecisionConfig),
    /// PyTorch's Lambda (5-minute ticks, lagging data, whole-workflow restarts).
    Lambda,
    /// An external program (`sh -c CMD`), asked every `tick_secs`.
    Command { command: String, tick_secs: i64 },
}

#[derive(Debug, Clone)]
pub struct Options {
    pub sim: SimConfig,
    pub first_seed: u64,
    pub seeds: u64,
    pub policies: Vec<PolicyChoice>,
    /// The decision window (`DECIDE_LOOKBACK_HOURS`).
    pub window_hours: f64,
    pub out: Option<PathBuf>,
}

/// Everything a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub config: SimConfig,
    pub policies: Vec<PolicyReport>,
    pub seeds: Vec<SeedScore>,
}

fn make(choice: &PolicyChoice, window_hours: f64) -> Result<Box<dyn Policy>> {
    Ok(match choice {
        PolicyChoice::Engine(cfg) => Box::new(policies::Engine::new(cfg.clone(), window_hours)),
        PolicyChoice::Lambda => Box::new(policies::Lambda::new(window_hours)),
        PolicyChoice::Command { command, tick_secs } => Box::new(policies::External::start(
            command,
            *tick_secs,
            window_hours,
        )?),
    })
}

/// One seed under every policy (its truth and logs written when `--out` is set).
fn run_seed(opts: &Options, wf: &Workflow, seed: u64) -> Result<Vec<SeedScore>> {
    let truth = Truth::draw(&opts.sim, wf, seed);
    let dir = opts.out.as_ref().map(|d| d.join(format!("seed-{seed:04}")));
    if let Some(dir) = &dir {
        log::write_truth(dir, &truth)?;
    }
    let mut scores = Vec::new();
    for choice in &opts.policies {
        let mut policy = make(choice, opts.window_hours)?;
        let name = policy.name().to_string();
        let mut seed_log = dir
            .as_ref()
            .map(|d| log::SeedLog::create(d, &name))
            .transpose()?;
        let out = world::simulate(&opts.sim, wf, &truth, policy.as_mut(), seed_log.as_mut())
            .map_err(|e| e.context(format!("seed {seed}, policy {name}")))?;
        if let Some(l) = seed_log {
            l.finish()?;
        }
        scores.push(report::score(&truth, &name, &out));
    }
    Ok(scores)
}

/// Runs every seed under every policy, seeds in parallel on the available cores (the
/// outcome does not depend on how many).
pub fn run(opts: &Options) -> Result<Outcome> {
    let wf = Workflow::trunk();
    let all: Vec<u64> = (opts.first_seed..opts.first_seed + opts.seeds).collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(all.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(u64, Result<Vec<SeedScore>>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&seed) = all.get(i) else { break };
                        mine.push((seed, run_seed(opts, &wf, seed)));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a simulation thread panicked"))
            .collect()
    });
    results.sort_by_key(|(seed, _)| *seed);
    let mut seeds = Vec::new();
    for (_, r) in results {
        seeds.extend(r?);
    }
    let mut names: Vec<String> = Vec::new();
    for s in &seeds {
        if !names.contains(&s.policy) {
            names.push(s.policy.clone());
        }
    }
    let policies = names
        .iter()
        .map(|n| {
            let mine: Vec<SeedScore> = seeds.iter().filter(|s| s.policy == *n).cloned().collect();
            report::summarize(n, &mine)
        })
        .collect();
    let outcome = Outcome {
        config: opts.sim.clone(),
        policies,
        seeds,
    };
    if let Some(dir) = &opts.out {
        let path = dir.join("summary.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&outcome)?)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    Ok(outcome)
}

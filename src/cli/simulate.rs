//! `autorevert simulate`: scores decision policies on a simulated trunk.

use crate::decisions::DecisionConfig;
use crate::simulator::{self, Options, PolicyChoice, PolicyReport, SimConfig};
use anyhow::{Result, bail};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Builtin {
    /// The App's decision engine.
    Engine,
    /// PyTorch's autorevert Lambda.
    Lambda,
}

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// Seeds to run (each a simulated day).
    #[arg(long, default_value_t = 50)]
    seeds: u64,
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Hours during which commits land (the simulation runs 8 h longer).
    #[arg(long, default_value_t = 24.0)]
    hours: f64,
    /// Probability that a job run fails for no reason.
    #[arg(long, default_value_t = 0.02)]
    flake_rate: f64,
    #[arg(long, default_value_t = 1.0)]
    outages_per_day: f64,
    #[arg(long, default_value_t = 3.0)]
    breakages_per_day: f64,
    /// Built-in policies to score (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "engine,lambda"
    )]
    policies: Vec<Builtin>,
    /// Also score this program as a policy (`sh -c CMD`; JSON lines, see bench/README.md).
    #[arg(long)]
    policy_cmd: Option<String>,
    /// Seconds between the external policy's ticks.
    #[arg(long, default_value_t = 300)]
    policy_tick_secs: i64,
    /// The engine's BISECTION_LIMIT (unset: every untested commit in a gap at once).
    #[arg(long)]
    bisection_limit: Option<usize>,
    /// The engine restarts on a signal's first failure, as PyTorch does (by default it
    /// waits for a newer commit's result: far fewer restarts for flakes).
    #[arg(long)]
    restart_first_failure: bool,
    /// The engine's pairing window in seconds (a reproduction counts only with a parent
    /// success restarted alongside it); 0: no pairing, as PyTorch.
    #[arg(long, default_value_t = DecisionConfig::PAIRING_WINDOW_SECS)]
    pairing_window_secs: u32,
    /// The engine counts a reproduction on any shard of the signal, as PyTorch does (by
    /// default it must fail the same job as another failure on the suspect).
    #[arg(long)]
    any_shard_repro: bool,
    /// The engine's outage guard of session 6 (a failure must start after the newest
    /// baseline success), on or off.
    #[arg(long)]
    failure_after_green: Option<bool>,
    /// The decision window, hours (DECIDE_LOOKBACK_HOURS).
    #[arg(long, default_value_t = 16.0)]
    lookback_hours: f64,
    /// Write each seed's ground truth, events seen and decisions (JSON lines) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the whole outcome as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also time the decisions at PyTorch's scale (150 commits, 6 workflows, 2,000 signals).
    #[arg(long)]
    cost: bool,
}

impl SimulateArgs {
    fn options(&self) -> Result<Options> {
        if self.seeds == 0 {
            bail!("--seeds must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.flake_rate) {
            bail!(
                "--flake-rate {} is not a probability (0 to 1)",
                self.flake_rate
            );
        }
        for (name, v) in [
            ("--hours", self.hours),
            ("--lookback-hours", self.lookback_hours),
        ] {
            if !(v.is_finite() && v > 0.0) {
                bail!("{name} must be a positive number of hours, not {v}");
            }
        }
        for (name, v) in [
            ("--outages-per-day", self.outages_per_day),
            ("--breakages-per-day", self.breakages_per_day),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                bail!("{name} must be zero or more, not {v}");
            }
        }
        if self.policy_tick_secs <= 0 {
            bail!("--policy-tick-secs must be positive");
        }
        let defaults = DecisionConfig::default();
        let engine = DecisionConfig {
            bisection_limit: self.bisection_limit,
            restart_on_first_failure: self.restart_first_failure,
            pairing_window_secs: (self.pairing_window_secs > 0).then_some(self.pairing_window_secs),
            same_way_repro: !self.any_shard_repro,
            require_failure_after_green: self
                .failure_after_green
                .unwrap_or(defaults.require_failure_after_green),
            ..defaults
        };
        engine
            .validate()
            .map_err(|e| anyhow::anyhow!("engine rules: {e}"))?;
        let mut policies: Vec<PolicyChoice> = self
            .policies
            .iter()
            .map(|b| match b {
                Builtin::Engine => PolicyChoice::Engine(engine.clone()),
                Builtin::Lambda => PolicyChoice::Lambda,
            })
            .collect();
        if let Some(command) = &self.policy_cmd {
            policies.push(PolicyChoice::Command {
                command: command.clone(),
                tick_secs: self.policy_tick_secs,
            });
        }
        if policies.is_empty() {
            bail!("no policy to score: name --policies or give --policy-cmd");
        }
        Ok(Options {
            sim: SimConfig {
                hours: self.hours,
                flake_rate: self.flake_rate,
                outages_per_day: self.outages_per_day,
                breakages_per_day: self.breakages_per_day,
                ..SimConfig::default()
            },
            first_seed: self.first_seed,
            seeds: self.seeds,
            policies,
            window_hours: self.lookback_hours,
            out: self.out.clone(),
        })
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

fn compare(reports: &[PolicyReport]) -> Option<String> {
    let engine = reports.iter().find(|r| r.policy == "engine")?;
    let lambda = reports.iter().find(|r| r.policy == "lambda")?;
    Some(format!(
        "engine / lambda: time to revert median {}, p90 {}; restart job-hours {}",
        ratio(
            engine.time_to_revert_median_mins,
            lambda.time_to_revert_median_mins
        ),
        ratio(
            engine.time_to_revert_p90_mins,
            lambda.time_to_revert_p90_mins
        ),
        ratio(
            Some(engine.restart_job_hours),
            Some(lambda.restart_job_hours)
        ),
    ))
}

pub fn run(args: SimulateArgs) -> Result<ExitCode> {
    let opts = args.options()?;
    let outcome = simulator::run(&opts)?;
    let cost = args.cost.then(|| simulator::cost::measure(150, 6, 2000));
    if args.json {
        let v = serde_json::json!({"outcome": outcome, "cost": cost});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", simulator::report::table(&outcome.policies));
    if let Some(line) = compare(&outcome.policies) {
        println!("\n{line}");
    }
    if let Some(c) = cost {
        println!(
            "\ndecision cost: {} commits, {} workflows, {} signals ({} failing), {} jobs: per event {:.1} µs median, {:.1} µs p99, {:.1} µs max; all failing signals {:.1} ms; all signals {:.1} ms",
            c.commits,
            c.workflows,
            c.signals,
            c.failing_signals,
            c.jobs_recorded,
            c.per_event_micros.0,
            c.per_event_micros.1,
            c.per_event_micros.2,
            c.all_failing_millis,
            c.all_signals_millis
        );
    }
    if let Some(dir) = &opts.out {
        println!("\nwritten to {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

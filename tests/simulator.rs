//! The trunk simulator: seeded and repeatable, fair to every policy (the same trunk), and
//! scored against its ground truth; the real binary with `--out` and `--policy-cmd`.

use autorevert::decisions::DecisionConfig;
use autorevert::simulator::{self, Options, PolicyChoice, SimConfig, Truth, Workflow};
use std::process::Command;

fn options(seeds: u64, sim: SimConfig, policies: Vec<PolicyChoice>) -> Options {
    Options {
        sim,
        first_seed: 11,
        seeds,
        policies,
        window_hours: 16.0,
        out: None,
    }
}

fn short_day() -> SimConfig {
    SimConfig {
        hours: 8.0,
        tail_hours: 6.0,
        ..SimConfig::default()
    }
}

#[test]
fn a_seed_always_draws_the_same_trunk_and_outcome() {
    let wf = Workflow::trunk();
    let a = Truth::draw(&short_day(), &wf, 5);
    let b = Truth::draw(&short_day(), &wf, 5);
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    assert_ne!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&Truth::draw(&short_day(), &wf, 6)).unwrap()
    );
    assert!(a.commits() > 30, "{} commits in 8 h", a.commits());
    let opts = options(
        2,
        short_day(),
        vec![
            PolicyChoice::Engine(DecisionConfig::default()),
            PolicyChoice::Lambda,
        ],
    );
    let x = serde_json::to_string(&simulator::run(&opts).unwrap().seeds).unwrap();
    let y = serde_json::to_string(&simulator::run(&opts).unwrap().seeds).unwrap();
    assert_eq!(x, y);
}

#[test]
fn clean_breakages_are_caught_by_both_policies_without_false_reverts() {
    let sim = SimConfig {
        flake_rate: 0.0,
        outages_per_day: 0.0,
        breakages_per_day: 3.0,
        ..short_day()
    };
    let opts = options(
        3,
        sim,
        vec![
            PolicyChoice::Engine(DecisionConfig::default()),
            PolicyChoice::Lambda,
        ],
    );
    let out = simulator::run(&opts).unwrap();
    for p in &out.policies {
        assert_eq!(p.false_reverts, 0, "{p:?}");
        assert!(p.breakages >= 3, "{p:?}");
        assert!(p.caught * 2 >= p.breakages, "{p:?}");
        assert!(
            p.time_to_revert_median_mins.unwrap() > 60.0,
            "a job runs for an hour: {p:?}"
        );
        assert!(p.restart_runs > 0, "{p:?}");
    }
    let engine = &out.policies[0];
    let lambda = &out.policies[1];
    assert_eq!(
        (engine.policy.as_str(), lambda.policy.as_str()),
        ("engine", "lambda")
    );
    assert!(
        engine.restart_job_hours < lambda.restart_job_hours,
        "{engine:?} {lambda:?}"
    );
}

#[test]
fn without_breakages_a_revert_is_a_false_one() {
    let sim = SimConfig {
        breakages_per_day: 0.0,
        flake_rate: 0.05,
        ..short_day()
    };
    let naive = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/policies/naive.py");
    let opts = options(
        1,
        sim,
        vec![
            PolicyChoice::Engine(DecisionConfig::default()),
            PolicyChoice::Command {
                command: format!("python3 {naive}"),
                tick_secs: 300,
            },
        ],
    );
    let out = simulator::run(&opts).unwrap();
    let (engine, naive) = (&out.policies[0], &out.policies[1]);
    assert_eq!((engine.breakages, engine.caught), (0, 0), "{engine:?}");
    assert!(
        naive.false_reverts > 0,
        "revert-on-red at a 5 % flake rate: {naive:?}"
    );
    assert!(
        engine.false_reverts < naive.false_reverts,
        "{engine:?} {naive:?}"
    );
    assert_eq!(naive.restart_runs, 0);
}

#[test]
fn a_policy_command_that_breaks_its_protocol_is_a_clear_error() {
    let opts = options(
        1,
        short_day(),
        vec![PolicyChoice::Command {
            command: "read -r state; echo not-json; sleep 5".into(),
            tick_secs: 300,
        }],
    );
    let err = format!("{:#}", simulator::run(&opts).unwrap_err());
    assert!(
        err.contains("not an actions line") && err.contains("not-json"),
        "{err}"
    );
    let opts = options(
        1,
        short_day(),
        vec![PolicyChoice::Command {
            command: "true".into(),
            tick_secs: 300,
        }],
    );
    let err = format!("{:#}", simulator::run(&opts).unwrap_err());
    assert!(
        err.contains("exited without answering") || err.contains("stopped reading"),
        "{err}"
    );
}

#[test]
fn the_binary_writes_truth_events_and_decisions_as_json_lines() {
    let dir = std::env::temp_dir().join(format!("autorevert-sim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_autorevert"))
        .args([
            "simulate",
            "--seeds",
            "1",
            "--first-seed",
            "3",
            "--hours",
            "6",
            "--out",
        ])
        .arg(&dir)
        .args(["--policy-cmd", "while read -r line; do echo '{}'; done"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| engine |")
            && stdout.contains("| lambda |")
            && stdout.contains("| external |"),
        "{stdout}"
    );
    let seed = dir.join("seed-0003");
    let lines = |name: &str| -> Vec<serde_json::Value> {
        let text =
            std::fs::read_to_string(seed.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let truth = lines("truth.jsonl");
    assert!(truth.iter().any(|v| v["kind"] == "push"));
    assert!(
        truth
            .iter()
            .any(|v| v["kind"] == "breakage" && v["breakage"]["sha"].is_string())
    );
    let events = lines("engine.events.jsonl");
    assert!(
        events
            .iter()
            .any(|v| v["kind"] == "job" && v["conclusion"] == "failure")
    );
    let decisions = lines("engine.decisions.jsonl");
    assert!(
        decisions
            .iter()
            .any(|v| v["kind"] == "decision" && v["record"]["decision"] == "restart")
    );
    assert!(
        decisions
            .iter()
            .any(|v| v["kind"] == "action" && v["action"]["action"] == "restart")
    );
    assert!(lines("external.events.jsonl").len() > 100);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["policies"].as_array().unwrap().len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Session 6's engine: PyTorch's reproduction (any shard, no paired parent) with the
/// after-green outage guard.
fn session6() -> DecisionConfig {
    DecisionConfig {
        pairing_window_secs: None,
        same_way_repro: false,
        require_failure_after_green: true,
        ..DecisionConfig::default()
    }
}

/// The engine's false reverts on one full default day (2 % flakes, one outage).
fn false_reverts(seed: u64, cfg: DecisionConfig) -> Vec<String> {
    let opts = Options {
        first_seed: seed,
        ..options(1, SimConfig::default(), vec![PolicyChoice::Engine(cfg)])
    };
    let out = simulator::run(&opts).unwrap();
    out.seeds[0].false_revert_shas.clone()
}

#[test]
fn the_two_false_reverts_of_session_6_are_gone() {
    // Seed 5: `asan / build` reverted during the `linux.4xlarge` outage; seed 40: flakes
    // on different shards of `gcc11 / test (distributed)` added up to a reproduction.
    for seed in [5, 40] {
        assert_eq!(
            false_reverts(seed, session6()).len(),
            1,
            "seed {seed}: session 6's rules revert an innocent commit"
        );
        let now = false_reverts(seed, DecisionConfig::default());
        assert!(now.is_empty(), "seed {seed}: {now:?}");
    }
    // Seed 13: the first cut of session 7 reverted a real breakage's parent, whose shard 1
    // flaked twice; the reproduction must also fail on the newer commits.
    let seed13 = false_reverts(13, DecisionConfig::default());
    assert!(seed13.is_empty(), "seed 13: {seed13:?}");
}

#[test]
fn bad_settings_are_refused_with_the_flag_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_autorevert"))
        .args(["simulate", "--flake-rate", "1.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--flake-rate"));
    let out = Command::new(env!("CARGO_BIN_EXE_autorevert"))
        .args(["simulate", "--any-shard-repro", "--policies", "engine"])
        .args(["--failure-after-green", "maybe"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--failure-after-green"));
}

#[test]
fn the_cost_measure_builds_the_window_it_claims() {
    let c = simulator::cost::measure(20, 2, 60);
    assert_eq!((c.commits, c.workflows, c.signals), (20, 2, 60));
    assert!(c.failing_signals >= 6, "{c:?}");
    assert_eq!(c.jobs_recorded, 20 * 60);
    assert!(c.per_event_micros.0 > 0.0 && c.per_event_micros.0 <= c.per_event_micros.2);
}

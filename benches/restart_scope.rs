//! What a targeted restart saves: jobs restarted against jobs in the original run, runner
//! time, and an estimate of the time from dispatch to verdict (the verdict waits for the
//! restarted run to complete), with and without the filters. The scope is the App's own
//! decision (`restart::scope::plan`) on the same inputs the pipeline gives it.
//!
//!   bench/restart-scope.sh        (cargo bench --profile dev --bench restart_scope)
//!
//! Runs:
//! * the seed case (fixtures/seed-2d3615f): 3 jobs, shard 1 of `test (default)` failing;
//! * a PyTorch-sized trunk run: the build and test jobs of pytorch/pytorch's trunk.yml
//!   (the 2026 copy in the code index, commit 003763c7: its display names, configs, shard
//!   counts and runners, as GitHub names the jobs of reusable workflows), 79 jobs, with 2
//!   failing jobs in one display name, or in two.
//!
//! Durations come from the fixtures, the only measured ones at hand: a CUDA build 22 m 16 s
//! and a CPU build 10 m 49 s (`fixtures/github/pytorch.list-jobs-for-run.response.json`), a
//! pytorch/pytorch test shard 8 m 46 s (`pytorch.workflow_job.dynamodb-stream-record.json`),
//! the seed's jobs 3 m 18 s. Real test shards often run for an hour or more; the job counts
//! and the runner-time ratio do not depend on that, the critical path does. A test filter
//! shortens the shards it narrows; no fixture says by how much, so times with it are shown
//! as upper bounds (`≤`).

use autorevert::intake::states::{Conclusion, RunStatus};
use autorevert::restart::JobState;
use autorevert::restart::scope::{Declared, TestEvidence, TestFailure, plan, test_lookup};
use std::collections::HashMap;

const CUDA_BUILD: u32 = 22 * 60 + 16;
const CPU_BUILD: u32 = 10 * 60 + 49;
const TEST_SHARD: u32 = 8 * 60 + 46;
const SEED_JOB: u32 = 3 * 60 + 18;

/// One job of a run: its name, how long it ran, and the build it waits for (`None`: a
/// build, or a job that needs none).
struct Job {
    name: String,
    secs: u32,
    after: Option<String>,
}

/// A display name's build and its test shards: (config, shards, runner).
fn chain(display: &str, build: u32, tests: &[(&str, u32, &str)]) -> Vec<Job> {
    let build_name = format!("{display} / build");
    let mut jobs = vec![Job {
        name: build_name.clone(),
        secs: build,
        after: None,
    }];
    for (config, shards, runner) in tests {
        for shard in 1..=*shards {
            jobs.push(Job {
                name: format!("{display} / test ({config}, {shard}, {shards}, {runner})"),
                secs: TEST_SHARD,
                after: Some(build_name.clone()),
            });
        }
    }
    jobs
}

/// trunk.yml's build and test jobs (pytorch/pytorch 003763c7).
fn trunk() -> Vec<Job> {
    let l4 = "l-x86aavx2-11-41-l4";
    let mut jobs = vec![];
    jobs.extend(chain(
        "linux-jammy-cuda12.6-py3.11-gcc11-sm90-build-only",
        CUDA_BUILD,
        &[],
    ));
    jobs.extend(chain(
        "libtorch-linux-jammy-cuda13.2-py3.11-gcc11-debug",
        CUDA_BUILD,
        &[],
    ));
    jobs.extend(chain(
        "linux-jammy-cuda13.2-py3.11-gcc11",
        CUDA_BUILD,
        &[
            ("default", 14, l4),
            ("distributed", 10, "l-x86iavx512-45-172-t4-4"),
            ("pr_time_benchmarks", 1, "l-bx86iavx512-94-344-t4-8"),
        ],
    ));
    jobs.push(Job {
        name: format!(
            "cross-compile-linux-test-cuda132 / test (aoti_cross_compile_for_windows, 1, 1, {l4})"
        ),
        secs: TEST_SHARD,
        after: Some("linux-jammy-cuda13.2-py3.11-gcc11 / build".into()),
    });
    jobs.extend(chain(
        "linux-jammy-cuda13.2-py3.11-gcc11-no-ops",
        CUDA_BUILD,
        &[],
    ));
    jobs.extend(chain(
        "macos-py3-arm64",
        CPU_BUILD,
        &[
            ("default", 3, "macos-m1-stable"),
            ("mps", 1, "macos-m2-15"),
            ("openreg", 1, "macos-m1-stable"),
        ],
    ));
    let win = "windows.4xlarge.nonephemeral";
    jobs.extend(chain(
        "win-vs2022-cpu-py3",
        CPU_BUILD,
        &[("default", 12, win), ("openreg", 1, win)],
    ));
    jobs.extend(chain("win-vs2022-cuda13.2-py3", CUDA_BUILD, &[]));
    jobs.extend(chain(
        "linux-noble-rocm-py3.11-mi350",
        CUDA_BUILD,
        &[
            ("default", 8, "linux.rocm.gpu.mi350.dpx.1"),
            ("inductor", 2, "linux.rocm.gpu.mi350.dpx.1"),
            ("inductor-flydsl", 1, "linux.rocm.gpu.mi350.dpx.1"),
            ("distributed", 3, "linux.rocm.gpu.mi350.dpx.2"),
        ],
    ));
    jobs.extend(chain("inductor-build-cuda132", CUDA_BUILD, &[]));
    jobs.extend(chain("verify-cachebench-cpu-build", CPU_BUILD, &[]));
    jobs.push(Job {
        name: "verify-cachebench-cpu-test / test (verify_cachebench, 1, 1, l-x86iavx512-8-64)"
            .into(),
        secs: TEST_SHARD,
        after: Some("verify-cachebench-cpu-build / build".into()),
    });
    jobs.extend(chain(
        "linux-jammy-py3.11-gcc11-full-debug-build-only",
        CPU_BUILD,
        &[],
    ));
    jobs.extend(chain(
        "linux-jammy-aarch64-py3.11",
        CPU_BUILD,
        &[("default", 8, "l-arm64g3-16-62")],
    ));
    jobs
}

/// The seed case's run (fixtures/seed-2d3615f).
fn seed() -> Vec<Job> {
    let build = "linux-jammy-py3.10-gcc11 / build".to_string();
    let mut jobs = vec![Job {
        name: build.clone(),
        secs: SEED_JOB,
        after: None,
    }];
    for shard in 1..=2 {
        jobs.push(Job {
            name: format!("linux-jammy-py3.10-gcc11 / test (default, {shard}, 2, linux.4xlarge)"),
            secs: SEED_JOB,
            after: Some(build.clone()),
        });
    }
    jobs
}

/// From dispatch to the run's completion, over the jobs that run: the longest build → test
/// chain (all jobs start at once, tests once their build is done; no queueing).
fn critical_path(jobs: &[&Job]) -> u32 {
    let secs: HashMap<&str, u32> = jobs.iter().map(|j| (j.name.as_str(), j.secs)).collect();
    jobs.iter()
        .map(|j| {
            j.secs
                + j.after
                    .as_deref()
                    .and_then(|b| secs.get(b))
                    .copied()
                    .unwrap_or(0)
        })
        .max()
        .unwrap_or(0)
}

fn mins(secs: u32) -> String {
    format!("{}m{:02}s", secs / 60, secs % 60)
}

/// One case: the run, its failing jobs (name, classification rule, failing test files).
fn case(label: &str, run: &[Job], failing: &[(&str, &str, &[&str])]) {
    let states: Vec<JobState> = run
        .iter()
        .enumerate()
        .map(|(i, j)| {
            let failed = failing.iter().any(|(n, _, _)| *n == j.name);
            JobState {
                id: i as u64 + 1,
                name: j.name.clone(),
                status: RunStatus::Completed,
                conclusion: Some(if failed {
                    Conclusion::Failure
                } else {
                    Conclusion::Success
                }),
            }
        })
        .collect();
    let id_of = |name: &str| {
        states
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.id)
            .unwrap()
    };
    let declared: Result<Declared, String> = Ok(Declared {
        inputs: Some(vec!["jobs-to-include".into(), "tests-to-include".into()]),
        file: ".github/workflows/trunk.yml".into(),
    });
    let evidence = TestEvidence {
        rules: failing
            .iter()
            .map(|(n, rule, _)| (id_of(n), rule.to_string()))
            .collect(),
        failures: failing
            .iter()
            .flat_map(|(n, _, files)| {
                files.iter().map(move |f| TestFailure {
                    job_id: id_of(n),
                    file: f.to_string(),
                    classname: "TestX".into(),
                    name: "test_x".into(),
                })
            })
            .collect(),
        source: "fixture".into(),
    };
    let tests = test_lookup(&declared, &states).map(|_| Ok(evidence));
    let scope = plan(&declared, &states, "fixture", tests.as_ref());
    let all: Vec<&Job> = run.iter().collect();
    let asked: Vec<&Job> = run.iter().filter(|j| scope.asks_for(&j.name)).collect();
    let runner = |jobs: &[&Job]| jobs.iter().map(|j| j.secs).sum::<u32>();
    let narrowed = if scope.tests.is_empty() { "" } else { "≤ " };
    println!(
        "| {label} | {} | {} of {} ({:.0} %) | {} of {} ({:.0} %) | {} | {narrowed}{} |",
        scope.kind.as_str(),
        asked.len(),
        all.len(),
        100.0 * asked.len() as f64 / all.len() as f64,
        mins(runner(&asked)),
        mins(runner(&all)),
        100.0 * runner(&asked) as f64 / runner(&all) as f64,
        mins(critical_path(&all)),
        mins(critical_path(&asked)),
    );
    println!(
        "|  | inputs: `{}` | | | | |",
        scope.inputs().map(|v| v.to_string()).unwrap_or_default()
    );
}

fn main() {
    println!(
        "| run | scope | jobs restarted | runner time | dispatch → verdict, full | with the filter |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let seed_run = seed();
    let seed_failing = "linux-jammy-py3.10-gcc11 / test (default, 1, 2, linux.4xlarge)";
    case(
        "seed 2d3615f, 1 failing shard (no test rows)",
        &seed_run,
        &[(seed_failing, "", &[])],
    );
    case(
        "seed 2d3615f, the shard failing on `test_ops.py`",
        &seed_run,
        &[(seed_failing, "pytest failure", &["test_ops.py"])],
    );
    let run = trunk();
    let l4 = "l-x86aavx2-11-41-l4";
    let gpu_a = format!("linux-jammy-cuda13.2-py3.11-gcc11 / test (default, 3, 14, {l4})");
    let gpu_b = format!("linux-jammy-cuda13.2-py3.11-gcc11 / test (default, 9, 14, {l4})");
    let win = "win-vs2022-cpu-py3 / test (default, 7, 12, windows.4xlarge.nonephemeral)";
    let arm = "linux-jammy-aarch64-py3.11 / test (default, 2, 8, l-arm64g3-16-62)";
    case(
        "trunk, 2 failing shards of one display name (tests)",
        &run,
        &[
            (gpu_a.as_str(), "pytest failure", &["test_ops.py"]),
            (
                gpu_b.as_str(),
                "pytest failure",
                &["inductor/test_torchinductor.py"],
            ),
        ],
    );
    case(
        "trunk, 2 failing jobs in two CPU display names (tests)",
        &run,
        &[
            (win, "Python unittest failure", &["test_nn.py"]),
            (arm, "pytest failure", &["test_linalg.py"]),
        ],
    );
    case(
        "trunk, 2 failing: a GPU shard on tests, a CPU shard on infra",
        &run,
        &[
            (gpu_a.as_str(), "pytest failure", &["test_ops.py"]),
            (arm, "GHA error", &[]),
        ],
    );
}

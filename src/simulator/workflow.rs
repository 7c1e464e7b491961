//! The simulated workflow: a trunk-like set of platforms, each a build and its test
//! configs in shards, with the runner class each job needs and its typical duration
//! (shaped after pytorch/pytorch's `trunk.yml`; durations in minutes).

use crate::restart::outcome::base_name;

struct TestConfig {
    name: &'static str,
    shards: u32,
    minutes: f64,
    runner: &'static str,
}

struct Platform {
    name: &'static str,
    build_minutes: f64,
    build_runner: &'static str,
    tests: &'static [TestConfig],
}

const fn test(name: &'static str, shards: u32, minutes: f64, runner: &'static str) -> TestConfig {
    TestConfig {
        name,
        shards,
        minutes,
        runner,
    }
}

const TRUNK: &[Platform] = &[
    Platform {
        name: "linux-jammy-py3.10-gcc11",
        build_minutes: 30.0,
        build_runner: "linux.2xlarge",
        tests: &[
            test("default", 5, 45.0, "linux.2xlarge"),
            test("distributed", 2, 40.0, "linux.g4dn.12xlarge.nvidia.gpu"),
            test("backwards_compat", 1, 12.0, "linux.2xlarge"),
        ],
    },
    Platform {
        name: "linux-jammy-cuda12.8-py3.10-gcc11",
        build_minutes: 50.0,
        build_runner: "linux.4xlarge",
        tests: &[
            test("default", 5, 60.0, "linux.g5.4xlarge.nvidia.gpu"),
            test("distributed", 3, 50.0, "linux.g4dn.12xlarge.nvidia.gpu"),
        ],
    },
    Platform {
        name: "linux-jammy-rocm-py3.10",
        build_minutes: 45.0,
        build_runner: "linux.4xlarge",
        tests: &[
            test("default", 6, 75.0, "linux.rocm.gpu.2"),
            test("distributed", 2, 60.0, "linux.rocm.gpu.4"),
        ],
    },
    Platform {
        name: "macos-py3-arm64",
        build_minutes: 40.0,
        build_runner: "macos-m1-stable",
        tests: &[test("default", 3, 55.0, "macos-m1-stable")],
    },
    Platform {
        name: "win-vs2022-cpu-py3",
        build_minutes: 60.0,
        build_runner: "windows.4xlarge",
        tests: &[test("default", 3, 70.0, "windows.4xlarge.nonephemeral")],
    },
    Platform {
        name: "linux-jammy-py3.10-clang15-asan",
        build_minutes: 40.0,
        build_runner: "linux.4xlarge",
        tests: &[test("default", 6, 60.0, "linux.4xlarge")],
    },
];

/// One job of the workflow.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The job's name as GitHub shows it: `linux-jammy / test (default, 1, 5, linux.2xlarge)`.
    pub name: String,
    /// Its normalized name (the signal): `linux-jammy / test (default)`.
    pub signal: String,
    pub platform: usize,
    pub build: bool,
    pub runner: &'static str,
    pub minutes: f64,
}

/// A workflow: its display name and jobs (each platform's build comes first).
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub jobs: Vec<JobSpec>,
}

impl Workflow {
    /// The trunk-like workflow: 6 platforms, 42 jobs, 16 signals.
    pub fn trunk() -> Workflow {
        let mut jobs = Vec::new();
        for (p, platform) in TRUNK.iter().enumerate() {
            let build = format!("{} / build", platform.name);
            jobs.push(JobSpec {
                signal: base_name(&build),
                name: build,
                platform: p,
                build: true,
                runner: platform.build_runner,
                minutes: platform.build_minutes,
            });
            for t in platform.tests {
                for shard in 1..=t.shards {
                    let name = format!(
                        "{} / test ({}, {shard}, {}, {})",
                        platform.name, t.name, t.shards, t.runner
                    );
                    jobs.push(JobSpec {
                        signal: base_name(&name),
                        name,
                        platform: p,
                        build: false,
                        runner: t.runner,
                        minutes: t.minutes,
                    });
                }
            }
        }
        Workflow {
            name: "trunk".into(),
            jobs,
        }
    }

    /// The runner classes the tests run on (an outage takes one of them down).
    pub fn test_runners(&self) -> Vec<&'static str> {
        let mut r: Vec<&'static str> = self
            .jobs
            .iter()
            .filter(|j| !j.build)
            .map(|j| j.runner)
            .collect();
        r.sort_unstable();
        r.dedup();
        r
    }

    /// The jobs a restart runs: all of them (`None`, a whole-workflow dispatch), or the
    /// jobs named (a normalized name takes all its shards) plus the builds they need.
    pub fn select(&self, names: Option<&[String]>) -> Vec<usize> {
        let Some(names) = names else {
            return (0..self.jobs.len()).collect();
        };
        let wanted = |j: &JobSpec| names.iter().any(|s| *s == j.signal || *s == j.name);
        let platforms: Vec<usize> = self
            .jobs
            .iter()
            .filter(|j| wanted(j))
            .map(|j| j.platform)
            .collect();
        (0..self.jobs.len())
            .filter(|&i| {
                let j = &self.jobs[i];
                wanted(j) || (j.build && platforms.contains(&j.platform))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trunk_workflow_is_realistic_and_restarts_select_builds_with_tests() {
        let wf = Workflow::trunk();
        assert_eq!(wf.jobs.len(), 42);
        let mut signals: Vec<&str> = wf.jobs.iter().map(|j| j.signal.as_str()).collect();
        signals.sort_unstable();
        signals.dedup();
        assert_eq!(signals.len(), 16);
        assert!(signals.contains(&"linux-jammy-rocm-py3.10 / test (default)"));
        let picked = wf.select(Some(&["macos-py3-arm64 / test (default)".to_string()]));
        let names: Vec<&str> = picked.iter().map(|&i| wf.jobs[i].name.as_str()).collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert_eq!(names[0], "macos-py3-arm64 / build");
        assert_eq!(wf.select(None).len(), 42);
        let shard = "macos-py3-arm64 / test (default, 2, 3, macos-m1-stable)".to_string();
        assert_eq!(
            wf.select(Some(&[shard])).len(),
            2,
            "one shard and its build"
        );
    }
}

//! What a restart asks for (pure: no I/O). PyTorch's `trunk.yml` and `pull.yml` accept two
//! `workflow_dispatch` inputs that narrow a run (test-infra `signal_actions.py`):
//! * `jobs-to-include`: job display names, space separated; `job-filter.yml` runs a job when
//!   the padded list contains ` <its display name> `. A job's display name is the part of
//!   its base name before `" / "` (`linux-jammy / test (default, 1, 2, r)` -> `linux-jammy`),
//!   which also selects the build job the test depends on.
//! * `tests-to-include`: test module paths without `.py` (`distributed/test_c10d`), handed
//!   to `run_test.py --include`.
//!
//! The test filter is sent only when *every* originally failing job failed on tests whose
//! module is known; one job that failed otherwise (a build, an infra error, a test row with
//! no `file`) drops it for the whole restart, so that job is re-run whole (pytorch/test-infra
//! #8037: a bogus module made shards fail argparse, 15-25 spurious failures per commit).
//! Anything that cannot be read, or a filter that would be empty, means a full restart.

use super::outcome::{JobState, base_name, is_excluded};
use crate::intake::states::{Conclusion, failed};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

pub const JOBS_INPUT: &str = "jobs-to-include";
pub const TESTS_INPUT: &str = "tests-to-include";

/// The classification rules (`torchci_classification_kg.rule`) of a job that failed on
/// tests; any other rule, or none yet, is not a test failure (PyTorch's signal extraction).
pub const TEST_FAILURE_RULES: [&str; 2] = ["pytest failure", "Python unittest failure"];

/// GitHub refuses dispatch inputs over 65,535 characters in all; a test list longer than
/// this is dropped (the restart runs the jobs' whole test suites instead).
pub const MAX_TESTS_CHARS: usize = 60_000;

/// Which filters a restart was sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ScopeKind {
    /// The whole workflow.
    #[serde(rename = "full")]
    Full,
    #[serde(rename = "jobs")]
    Jobs,
    #[serde(rename = "tests")]
    Tests,
    #[serde(rename = "jobs+tests")]
    JobsTests,
}

impl ScopeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Full => "full",
            ScopeKind::Jobs => "jobs",
            ScopeKind::Tests => "tests",
            ScopeKind::JobsTests => "jobs+tests",
        }
    }

    pub fn parse(s: &str) -> Option<ScopeKind> {
        [
            ScopeKind::Full,
            ScopeKind::Jobs,
            ScopeKind::Tests,
            ScopeKind::JobsTests,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// What a restart asked for, why, and from what evidence; with the jobs it ran against the
/// jobs of the original run (the saving).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scope {
    pub kind: ScopeKind,
    /// Why this kind (why a filter was dropped, or why the restart is full).
    pub reason: String,
    /// `jobs-to-include`, sorted, without repeats.
    pub jobs: Vec<String>,
    /// `tests-to-include`, sorted, without repeats.
    pub tests: Vec<String>,
    /// Where the failing jobs, their tests and the declared inputs came from.
    pub source: String,
    /// Jobs of the original run that ran (skipped ones left out). Read at dispatch when a
    /// filter is sent, and again when the restart is judged (then final).
    pub jobs_original: u32,
    /// Of those, the jobs the filter selects (all of them for a full restart).
    pub jobs_asked: u32,
    /// Jobs of the restart that ran, once it is judged.
    pub jobs_restarted: Option<u32>,
}

impl Scope {
    /// A full restart, and why.
    pub fn full(reason: impl Into<String>) -> Scope {
        Scope {
            kind: ScopeKind::Full,
            reason: reason.into(),
            jobs: vec![],
            tests: vec![],
            source: String::new(),
            jobs_original: 0,
            jobs_asked: 0,
            jobs_restarted: None,
        }
    }

    /// The dispatch's `inputs` object, if any filter is sent.
    pub fn inputs(&self) -> Option<serde_json::Value> {
        let mut inputs = serde_json::Map::new();
        if !self.jobs.is_empty() {
            inputs.insert(JOBS_INPUT.into(), self.jobs.join(" ").into());
        }
        if !self.tests.is_empty() {
            inputs.insert(TESTS_INPUT.into(), self.tests.join(" ").into());
        }
        (!inputs.is_empty()).then_some(serde_json::Value::Object(inputs))
    }

    /// Whether the restart runs this job (by its name in a run): a job filter selects jobs
    /// by display name; a test filter alone narrows tests, not jobs.
    pub fn asks_for(&self, job_name: &str) -> bool {
        self.jobs.is_empty() || self.jobs.contains(&display_name(job_name))
    }

    /// One line for the event log.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("{} restart", self.kind.as_str())];
        if !self.jobs.is_empty() {
            parts.push(format!("{JOBS_INPUT}: {}", self.jobs.join(" ")));
        }
        if !self.tests.is_empty() {
            parts.push(format!("{TESTS_INPUT}: {}", self.tests.join(" ")));
        }
        parts.push(format!(
            "{} of {} job(s) asked for",
            self.jobs_asked, self.jobs_original
        ));
        parts.push(self.reason.clone());
        parts.join("; ")
    }
}

/// The display name `job-filter.yml` matches: the base name's part before `" / "`, or the
/// whole base name (test-infra `_derive_job_filter`).
pub fn display_name(job_name: &str) -> String {
    let base = base_name(job_name);
    match base.split_once(" / ") {
        Some((display, _)) => display.trim().to_string(),
        None => base.trim().to_string(),
    }
}

/// A test file's module as `run_test.py --include` takes it: the path without `.py`.
pub fn test_module(file: &str) -> Option<String> {
    let file = file.trim();
    let module = file.strip_suffix(".py").unwrap_or(file);
    (!module.is_empty()).then(|| module.to_string())
}

/// What the workflow file at the commit declares.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    /// `workflow_dispatch` input names; `None`: the file has no `workflow_dispatch`.
    pub inputs: Option<Vec<String>>,
    /// Which file version was read (`path@blob`), for the record.
    pub file: String,
}

impl Declared {
    /// Whether the workflow takes a filter at all (else the original run's jobs and tests
    /// need not be read: the restart is full).
    pub fn takes_a_filter(&self) -> bool {
        self.has(JOBS_INPUT) || self.has(TESTS_INPUT)
    }

    fn has(&self, input: &str) -> bool {
        self.inputs
            .as_ref()
            .is_some_and(|i| i.iter().any(|n| n == input))
    }
}

/// One failing test run of a job (`tests.all_test_runs`: failure_count or error_count > 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFailure {
    pub job_id: u64,
    pub file: String,
    pub classname: String,
    pub name: String,
}

/// The test evidence of the failing jobs: their classification rules and failing tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestEvidence {
    /// Job id -> classification rule (missing or empty: not classified yet).
    pub rules: HashMap<u64, String>,
    pub failures: Vec<TestFailure>,
    /// Where they were read (the tables).
    pub source: String,
}

/// The originally failing jobs that count (PyTorch's excluded jobs left out).
pub fn failing_jobs(jobs: &[JobState]) -> Vec<&JobState> {
    jobs.iter()
        .filter(|j| failed(j.conclusion.as_ref()) && !is_excluded(&j.name))
        .collect()
}

/// Whether a job ran (a filtered-out job is `skipped`).
fn ran(j: &JobState) -> bool {
    j.conclusion != Some(Conclusion::Skipped)
}

/// The failing jobs' ids when the tests are worth reading (a test filter can be sent).
pub fn test_lookup(declared: &Result<Declared, String>, jobs: &[JobState]) -> Option<Vec<u64>> {
    let declared = declared.as_ref().ok()?;
    let ids: Vec<u64> = failing_jobs(jobs).iter().map(|j| j.id).collect();
    (declared.has(TESTS_INPUT) && !ids.is_empty()).then_some(ids)
}

/// Decides what a restart asks for, from what the workflow file declares, the jobs of the
/// original run (`jobs_source`: where they were read) and, when a test filter can be sent,
/// the failing jobs' test evidence (`Err`: it could not be read).
pub fn plan(
    declared: &Result<Declared, String>,
    jobs: &[JobState],
    jobs_source: &str,
    tests: Option<&Result<TestEvidence, String>>,
) -> Scope {
    let ran_jobs: Vec<&JobState> = jobs.iter().filter(|j| ran(j)).collect();
    let mut scope = Scope {
        jobs_original: ran_jobs.len() as u32,
        jobs_asked: ran_jobs.len() as u32,
        ..Scope::full("")
    };
    let declared = match declared {
        Ok(d) => d,
        Err(why) => {
            scope.reason = format!("workflow file not read: {why}");
            scope.source = format!("jobs: {jobs_source}");
            return scope;
        }
    };
    scope.source = format!("jobs: {jobs_source}; inputs: {}", declared.file);
    let failing = failing_jobs(jobs);
    let (send_jobs, send_tests) = (declared.has(JOBS_INPUT), declared.has(TESTS_INPUT));
    if !send_jobs && !send_tests {
        scope.reason = format!("the workflow declares neither {JOBS_INPUT} nor {TESTS_INPUT}");
        return scope;
    }
    if failing.is_empty() {
        scope.reason = "no failing job is known for the original run".into();
        return scope;
    }
    let mut reasons = vec![];
    if send_jobs {
        let names: BTreeSet<String> = failing.iter().map(|j| display_name(&j.name)).collect();
        scope.jobs = names.into_iter().filter(|n| !n.is_empty()).collect();
        let asked = ran_jobs.iter().filter(|j| scope.asks_for(&j.name)).count();
        scope.jobs_asked = asked as u32;
    } else {
        reasons.push(format!("the workflow declares no {JOBS_INPUT}"));
    }
    if send_tests {
        match tests_to_include(&failing, tests) {
            Ok((modules, source)) => {
                scope.tests = modules;
                scope.source.push_str(&format!("; tests: {source}"));
            }
            Err(why) => reasons.push(format!("test filter dropped: {why}")),
        }
    } else {
        reasons.push(format!("the workflow declares no {TESTS_INPUT}"));
    }
    scope.kind = match (scope.jobs.is_empty(), scope.tests.is_empty()) {
        (false, false) => ScopeKind::JobsTests,
        (false, true) => ScopeKind::Jobs,
        (true, false) => ScopeKind::Tests,
        (true, true) => ScopeKind::Full,
    };
    if scope.kind == ScopeKind::JobsTests {
        reasons.push("every failing job failed on tests of a known module".into());
    }
    scope.reason = format!("{} failing job(s): {}", failing.len(), reasons.join("; "));
    scope
}

/// The test modules of the failing jobs, and where they were read; `Err`: why no test
/// filter is sent (one failing job that did not fail on tests of a known module is enough).
fn tests_to_include(
    failing: &[&JobState],
    tests: Option<&Result<TestEvidence, String>>,
) -> Result<(Vec<String>, String), String> {
    let evidence = match tests {
        Some(Ok(e)) => e,
        Some(Err(why)) => return Err(format!("failing tests not read: {why}")),
        None => return Err("failing tests not read".into()),
    };
    let mut modules = BTreeSet::new();
    for job in failing {
        let rule = evidence.rules.get(&job.id).map(String::as_str);
        match rule {
            Some(r) if TEST_FAILURE_RULES.contains(&r) => {}
            Some(r) if !r.is_empty() => {
                return Err(format!("{} failed on {r:?}, not on tests", job.name));
            }
            _ => return Err(format!("{} is not classified (yet)", job.name)),
        }
        let rows: Vec<&TestFailure> = evidence
            .failures
            .iter()
            .filter(|t| t.job_id == job.id)
            .collect();
        if rows.is_empty() {
            return Err(format!("no failing test is recorded for {}", job.name));
        }
        for t in rows {
            match test_module(&t.file) {
                Some(m) => modules.insert(m),
                None => {
                    return Err(format!(
                        "failing test {}.{} of {} has no file",
                        t.classname, t.name, job.name
                    ));
                }
            };
        }
    }
    let modules: Vec<String> = modules.into_iter().collect();
    let chars: usize = modules.iter().map(|m| m.len() + 1).sum();
    if chars > MAX_TESTS_CHARS {
        return Err(format!(
            "{} test modules, {chars} characters: over {MAX_TESTS_CHARS}",
            modules.len()
        ));
    }
    Ok((modules, evidence.source.clone()))
}

#[cfg(test)]
mod tests;

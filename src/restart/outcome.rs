//! Judging a restart, job by job (pure: no I/O).
//!
//! A trunk run has dozens of jobs; a restart that fails in a *different* job proves nothing
//! about the original failure. So the originally failing jobs are matched to the restart's
//! jobs by PyTorch's normalized job name (shards merged, config kept), and each gets its own
//! verdict.

use crate::intake::events::Job;
use crate::intake::states::{Conclusion, RunStatus, failed};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Jobs PyTorch's autorevert never counts as evidence (its datasource drops them).
const EXCLUDED_JOB_MARKERS: [&str; 3] = ["mem_leak_check", "rerun_disabled_tests", "unstable"];

/// PyTorch's job base name (`JobRow.base_name`, pytorch/test-infra#8151): every parenthetical
/// group is removed, whitespace collapsed, and the config (first token of a parenthetical
/// that has a comma) appended again. Shards of one config merge; configs stay apart.
///
/// `linux-jammy / test (default, 2, 5, linux.4xlarge)` -> `linux-jammy / test (default)`
pub fn base_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut config: Option<String> = None;
    let mut depth = 0usize;
    let mut group = String::new();
    for c in name.chars() {
        match c {
            '(' => {
                if depth == 0 {
                    group.clear();
                } else {
                    group.push(c);
                }
                depth += 1;
            }
            ')' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    if config.is_none() && group.contains(',') {
                        let first = group.split(',').next().unwrap_or("").trim();
                        if !first.is_empty() {
                            config = Some(first.to_string());
                        }
                    }
                } else {
                    group.push(c);
                }
            }
            _ if depth > 0 => group.push(c),
            _ => out.push(c),
        }
    }
    let mut base = out.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(cfg) = config {
        base.push_str(&format!(" ({cfg})"));
    }
    base
}

pub fn is_excluded(name: &str) -> bool {
    EXCLUDED_JOB_MARKERS.iter().any(|m| name.contains(m))
}

snake_case_enum! {
/// The verdict for one originally failing job, or for the whole restart.
pub enum Verdict {
    /// The originally failing job failed again on the same commit: the failure is real.
    Reproduced,
    /// Every originally failing job passed: the original failure was noise.
    NotReproduced,
    /// Cancelled, skipped, missing, still running, or only other jobs failed.
    Inconclusive,
}
}

/// One job's final state, as far as judging goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// GitHub's job id (0 when unknown).
    pub id: u64,
    pub name: String,
    pub status: RunStatus,
    pub conclusion: Option<Conclusion>,
}

impl JobState {
    pub fn of(j: &Job) -> JobState {
        JobState {
            id: j.id,
            name: j.name.clone(),
            status: j.status.clone(),
            conclusion: j.conclusion.clone(),
        }
    }

    /// A job the decision engine asked to run again, standing as a failed one of the
    /// original run (what a restart's scope is planned from).
    pub fn asked(name: &str) -> JobState {
        JobState {
            id: 0,
            name: name.to_string(),
            status: RunStatus::Completed,
            conclusion: Some(Conclusion::Failure),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Failed,
    Passed,
    Unsettled,
}

/// Groups jobs by base name: failed if any shard failed, passed if all completed with
/// success, otherwise unsettled (cancelled, skipped, still running).
fn group(jobs: &[JobState]) -> BTreeMap<String, Group> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for j in jobs.iter().filter(|j| !is_excluded(&j.name)) {
        let this = if failed(j.conclusion.as_ref()) {
            Group::Failed
        } else if j.status == RunStatus::Completed && j.conclusion == Some(Conclusion::Success) {
            Group::Passed
        } else {
            Group::Unsettled
        };
        let entry = groups.entry(base_name(&j.name)).or_insert(this);
        *entry = match (*entry, this) {
            (Group::Failed, _) | (_, Group::Failed) => Group::Failed,
            (Group::Passed, Group::Passed) => Group::Passed,
            _ => Group::Unsettled,
        };
    }
    groups
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobVerdict {
    pub job: String,
    pub verdict: Verdict,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    pub reason: String,
    pub jobs: Vec<JobVerdict>,
    /// Base names that failed in the restart but not in the original run.
    pub other_failures: Vec<String>,
    /// Originally failing base names the restart did not ask for (not judged).
    pub not_asked: Vec<String>,
    /// Jobs of the restart that ran (skipped ones left out: a job filter skips the rest).
    pub jobs_restarted: u32,
    /// Jobs of the original run that ran.
    pub jobs_original: u32,
}

/// The base names of the jobs that failed in a run.
pub fn failing_base_names(jobs: &[JobState]) -> Vec<String> {
    group(jobs)
        .into_iter()
        .filter(|(_, g)| *g == Group::Failed)
        .map(|(n, _)| n)
        .collect()
}

/// Judges a finished restart against the original run's failures. Only the failing jobs
/// the restart asked for (`asked`, by base name) are compared: a job a filter left out is
/// not "missing".
pub fn judge(
    original: &[JobState],
    restart: &[JobState],
    asked: impl Fn(&str) -> bool,
) -> Judgement {
    let all_failing = failing_base_names(original);
    let (failing, not_asked): (Vec<String>, Vec<String>) =
        all_failing.iter().cloned().partition(|n| asked(n.as_str()));
    let restart_groups = group(restart);
    let ran = |jobs: &[JobState]| {
        let ran = jobs
            .iter()
            .filter(|j| j.conclusion != Some(Conclusion::Skipped));
        ran.count() as u32
    };
    let (jobs_restarted, jobs_original) = (ran(restart), ran(original));
    if failing.is_empty() {
        let reason = if not_asked.is_empty() {
            "no failing job is known for the original run".to_string()
        } else {
            format!(
                "no originally failing job was asked for: {}",
                not_asked.join(", ")
            )
        };
        return Judgement {
            verdict: Verdict::Inconclusive,
            reason,
            jobs: vec![],
            other_failures: vec![],
            not_asked,
            jobs_restarted,
            jobs_original,
        };
    }
    let jobs: Vec<JobVerdict> = failing
        .iter()
        .map(|name| {
            let (verdict, detail) = match restart_groups.get(name) {
                Some(Group::Failed) => (Verdict::Reproduced, "failed again"),
                Some(Group::Passed) => (Verdict::NotReproduced, "passed"),
                Some(Group::Unsettled) => (
                    Verdict::Inconclusive,
                    "cancelled, skipped or not finished in the restart",
                ),
                None => (Verdict::Inconclusive, "missing from the restart"),
            };
            JobVerdict {
                job: name.clone(),
                verdict,
                detail: detail.into(),
            }
        })
        .collect();
    let other_failures: Vec<String> = restart_groups
        .iter()
        .filter(|(n, g)| **g == Group::Failed && !all_failing.contains(n))
        .map(|(n, _)| n.clone())
        .collect();
    let (verdict, reason) = overall(&jobs, &other_failures);
    Judgement {
        verdict,
        reason,
        jobs,
        other_failures,
        not_asked,
        jobs_restarted,
        jobs_original,
    }
}

/// The verdict on a restart from its judged jobs and the jobs that failed only in it.
fn overall(jobs: &[JobVerdict], other_failures: &[String]) -> (Verdict, String) {
    let reproduced: Vec<&str> = jobs
        .iter()
        .filter(|j| j.verdict == Verdict::Reproduced)
        .map(|j| j.job.as_str())
        .collect();
    if !reproduced.is_empty() {
        (
            Verdict::Reproduced,
            format!("failed again: {}", reproduced.join(", ")),
        )
    } else if jobs.iter().all(|j| j.verdict == Verdict::NotReproduced) {
        if other_failures.is_empty() {
            (
                Verdict::NotReproduced,
                format!("all {} originally failing job(s) passed", jobs.len()),
            )
        } else {
            (
                Verdict::Inconclusive,
                format!(
                    "the originally failing job(s) passed but other jobs failed: {}",
                    other_failures.join(", ")
                ),
            )
        }
    } else {
        let unsettled: Vec<String> = jobs
            .iter()
            .filter(|j| j.verdict == Verdict::Inconclusive)
            .map(|j| format!("{} ({})", j.job, j.detail))
            .collect();
        (
            Verdict::Inconclusive,
            format!("no evidence for: {}", unsettled.join(", ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, conclusion: &str) -> JobState {
        JobState {
            id: 0,
            name: name.into(),
            status: RunStatus::Completed,
            conclusion: Some(conclusion.into()),
        }
    }

    #[test]
    fn base_name_merges_shards_and_keeps_config() {
        assert_eq!(
            base_name(
                "linux-jammy-cuda13.0-py3.10-gcc11 / test (pr_time_benchmarks, 1, 1, runner)"
            ),
            "linux-jammy-cuda13.0-py3.10-gcc11 / test (pr_time_benchmarks)"
        );
        assert_eq!(
            base_name("linux / test (default, 2, 5, linux.4xlarge)"),
            base_name("linux / test (default, 5, 5, linux.4xlarge)")
        );
        assert_ne!(
            base_name("linux / test (default, 1, 5, x)"),
            base_name("linux / test (distributed, 1, 5, x)")
        );
        assert_eq!(base_name("linux-jammy / build"), "linux-jammy / build");
        assert_eq!(base_name("  a   (b)  c "), "a c");
        assert_eq!(base_name("unbalanced (x, y"), "unbalanced");
    }

    /// Judges a restart from (name, conclusion) pairs of the original run and the restart.
    fn judged(orig: &[(&str, &str)], restart: &[(&str, &str)]) -> Judgement {
        let jobs = |v: &[(&str, &str)]| v.iter().map(|(n, c)| job(n, c)).collect::<Vec<_>>();
        judge(&jobs(orig), &jobs(restart), |_| true)
    }

    #[test]
    fn same_job_failing_again_is_reproduced() {
        let orig = [
            ("l / test (default, 1, 2, r)", "failure"),
            ("l / build", "success"),
        ];
        let restart = [
            ("l / test (default, 1, 2, r)", "success"),
            ("l / test (default, 2, 2, r)", "failure"),
            ("l / build", "success"),
        ];
        let j = judged(&orig, &restart);
        assert_eq!(j.verdict, Verdict::Reproduced);
        assert_eq!(j.jobs[0].job, "l / test (default)");
    }

    #[test]
    fn all_passing_is_not_reproduced() {
        let j = judged(
            &[("a / test (default, 1, 1, r)", "failure")],
            &[("a / test (default, 1, 1, r)", "success")],
        );
        assert_eq!(j.verdict, Verdict::NotReproduced);
    }

    #[test]
    fn only_another_job_failing_is_inconclusive() {
        let orig = [("a / test (default, 1, 1, r)", "failure")];
        let restart = [
            ("a / test (default, 1, 1, r)", "success"),
            ("b / build", "failure"),
        ];
        let j = judged(&orig, &restart);
        assert_eq!(j.verdict, Verdict::Inconclusive);
        assert_eq!(j.other_failures, vec!["b / build".to_string()]);
    }

    #[test]
    fn cancelled_or_missing_is_inconclusive() {
        let orig = [("a", "failure"), ("b", "failure")];
        for (o, r) in [
            (&orig[..], ("a", "cancelled")),
            (&orig[..], ("a", "success")),
            (&[], ("a", "failure")),
        ] {
            assert_eq!(
                judged(o, &[r]).verdict,
                Verdict::Inconclusive,
                "{o:?} then {r:?}"
            );
        }
    }

    #[test]
    fn a_job_not_asked_for_is_not_missing() {
        let orig = [
            ("a / test (default, 1, 1, r)", "failure"),
            ("b / build", "failure"),
        ];
        // A job filter asked for `a` only: `b` was skipped, and is no evidence either way.
        let restart = [
            ("a / build", "success"),
            ("a / test (default, 1, 1, r)", "failure"),
            ("b / build", "skipped"),
        ];
        let jobs = |v: &[(&str, &str)]| v.iter().map(|(n, c)| job(n, c)).collect::<Vec<_>>();
        let j = judge(&jobs(&orig), &jobs(&restart), |n| n.starts_with("a "));
        assert_eq!(j.verdict, Verdict::Reproduced, "{}", j.reason);
        assert_eq!(j.jobs.len(), 1);
        assert_eq!(j.not_asked, vec!["b / build".to_string()]);
        assert_eq!((j.jobs_restarted, j.jobs_original), (2, 2));
        let none = judge(&jobs(&orig), &jobs(&restart), |_| false);
        assert_eq!(none.verdict, Verdict::Inconclusive);
        assert!(none.reason.contains("asked for"), "{}", none.reason);
    }

    #[test]
    fn excluded_jobs_are_no_evidence() {
        let leak = "a / test (mem_leak_check, 1, 1, r)";
        let j = judged(
            &[(leak, "failure"), ("b", "failure")],
            &[(leak, "failure"), ("b", "success")],
        );
        assert_eq!(j.verdict, Verdict::NotReproduced);
    }
}

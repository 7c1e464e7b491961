//! The check run that shows a restart's evidence on its commit, where maintainers look
//! (pure: no I/O). `desired` maps a restart's state to what GitHub should show; the
//! pipeline's check-run follow-up brings GitHub there and records it with a
//! `Transition::CheckRun`. One check run per restart, named `autorevert`, found again by
//! its `external_id` (the restart id). Its conclusion is always `neutral`: it reports
//! evidence and must never turn the commit red.

use super::model::{Restart, Status};
use super::outcome::{JobVerdict, Verdict};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// GitHub's limit on `output.summary` (characters); the table is cut short below it.
pub const MAX_SUMMARY: usize = 65_535;

/// What a restart knows of its check run: one field of `Restart`, one group of ledger
/// columns (`check_run_*`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CheckRun {
    /// Whether this restart shows a check run: not a dry run, nor a restart recorded before
    /// the App made check runs (its ledger row predates the columns).
    pub wanted: bool,
    /// GitHub's id of the check run, once created or found.
    pub id: Option<u64>,
    /// Its page on GitHub (`html_url`).
    pub url: String,
    /// What the check run says, as far as it is not in the restart itself.
    pub evidence: CheckEvidence,
    /// The digest of the view GitHub was last brought to (0: nothing yet).
    pub shown: u32,
    /// Why the last check-run call failed; empty after a success.
    pub error: String,
}

/// The jobs the check run lists (kept as JSON in the ledger's `check_run_jobs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckEvidence {
    /// The originally failing jobs (base names), once read.
    #[serde(default)]
    pub failing_jobs: Vec<String>,
    /// The per-job verdicts, once judged.
    #[serde(default)]
    pub verdicts: Vec<JobVerdict>,
}

impl CheckRun {
    /// A new restart's: wanted unless nothing is sent (a dry run).
    pub fn new(wanted: bool) -> CheckRun {
        CheckRun {
            wanted,
            ..CheckRun::default()
        }
    }

    /// Whether GitHub has (or may have) one for this restart already.
    pub fn exists(&self) -> bool {
        self.id.is_some() || self.shown != 0
    }
}

/// A check run as GitHub should show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckRunView {
    /// `completed` (with conclusion `neutral`), else `in_progress`.
    pub completed: bool,
    pub title: String,
    /// Markdown, at most `MAX_SUMMARY` characters.
    pub summary: String,
    /// The restarted run, once known.
    pub details_url: Option<String>,
}

impl CheckRunView {
    /// Stands for the whole view: equal digests, nothing to send.
    pub fn digest(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        for part in [
            if self.completed { "c" } else { "p" },
            self.title.as_str(),
            self.summary.as_str(),
            self.details_url.as_deref().unwrap_or(""),
        ] {
            h.update(part.as_bytes());
            h.update(&[0]);
        }
        // 0 means "nothing shown yet".
        h.finalize().max(1)
    }
}

/// What GitHub should show for this restart now; `None`: no check run (yet).
pub fn desired(r: &Restart) -> Option<CheckRunView> {
    if !r.check.wanted || r.dry_run {
        return None;
    }
    let (completed, title, lead) = match r.status {
        Status::Dispatched => (
            false,
            "Restarted: waiting for the jobs".to_string(),
            "The restarted run has been dispatched; its jobs are not visible yet.".to_string(),
        ),
        Status::Confirmed => (
            false,
            "Restarted: jobs running".to_string(),
            "The restarted jobs are running (visible in ClickHouse).".to_string(),
        ),
        Status::Completed => match r.outcome {
            Some(v) => (
                true,
                verdict_title(v).to_string(),
                format!("**{v}**: {}", r.reason),
            ),
            None => no_verdict(r),
        },
        Status::Unconfirmed => no_verdict(r),
        // A restart that ends before its run was dispatched only completes a check run
        // that already exists.
        Status::DispatchFailed | Status::DispatchUnknown if r.check.exists() => no_verdict(r),
        _ => return None,
    };
    let details_url = (!r.run_url.is_empty()).then(|| r.run_url.clone());
    Some(CheckRunView {
        completed,
        title,
        summary: summary(r, &lead),
        details_url,
    })
}

/// Whether GitHub is behind the restart: a check run is wanted and differs from the one
/// last shown.
pub fn needs_sync(r: &Restart) -> bool {
    desired(r).is_some_and(|v| v.digest() != r.check.shown)
}

fn no_verdict(r: &Restart) -> (bool, String, String) {
    (
        true,
        "No verdict".to_string(),
        format!("The restart ended without a verdict: {}", r.reason),
    )
}

fn verdict_title(v: Verdict) -> &'static str {
    match v {
        Verdict::Reproduced => "Reproduced: the failure happened again",
        Verdict::NotReproduced => "Not reproduced: the failing jobs passed",
        Verdict::Inconclusive => "Inconclusive",
    }
}

/// The run a link names: `[run N](url)`, the original run's URL derived from the restarted
/// run's (same repository and host), else the bare id.
fn run_link(r: &Restart, run_id: u64) -> String {
    let restarted = r.restart_run_id.map(|id| format!("/actions/runs/{id}"));
    let base = restarted.and_then(|tail| r.run_url.strip_suffix(tail.as_str()));
    match base {
        Some(base) => format!("[run {run_id}]({base}/actions/runs/{run_id})"),
        None => format!("run {run_id}"),
    }
}

/// A table cell or list item: a job name as inline code, safe in a GFM table.
fn code(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| match c {
            '`' => '\'',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect();
    format!("`{}`", clean.replace('|', "\\|"))
}

fn summary(r: &Restart, lead: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{lead}\n");
    let restarted = match (r.restart_run_id, r.run_url.is_empty()) {
        (Some(id), false) => format!("[run {id}]({})", r.run_url),
        (Some(id), true) => format!("run {id}"),
        (None, _) => "not known yet".to_string(),
    };
    let _ = writeln!(
        s,
        "autorevert ran `{}` again on `{}` to tell a real breakage from noise.\n\n\
         - original run: {}\n- restarted run: {restarted}\n",
        r.key.workflow,
        r.trunk_ref(),
        run_link(r, r.original_run_id),
    );
    let ev = &r.check.evidence;
    let footer = "\n_This check reports evidence only: its conclusion is always neutral._\n";
    if !ev.verdicts.is_empty() {
        let _ = writeln!(s, "| Job | Outcome | Detail |\n| --- | --- | --- |");
        let rows: Vec<String> = ev
            .verdicts
            .iter()
            .map(|j| {
                let outcome = j.verdict.as_str().replace('_', " ");
                format!("| {} | {outcome} | {} |\n", code(&j.job), j.detail)
            })
            .collect();
        push_bounded(&mut s, &rows, footer.len(), |n| {
            format!("| … | {n} more job(s) | see the App's status page |\n")
        });
    } else if !ev.failing_jobs.is_empty() {
        let _ = writeln!(s, "Failing jobs of the original run:\n");
        let rows: Vec<String> = ev
            .failing_jobs
            .iter()
            .map(|j| format!("- {}\n", code(j)))
            .collect();
        push_bounded(&mut s, &rows, footer.len(), |n| {
            format!("- … and {n} more job(s)\n")
        });
    } else {
        let _ = writeln!(s, "The failing jobs of the original run are not known yet.");
    }
    s.push_str(footer);
    s
}

/// Appends `rows` while the summary stays within GitHub's limit with `reserve` left, then
/// says how many were left out (the row `more` makes of their number).
fn push_bounded(s: &mut String, rows: &[String], reserve: usize, more: impl Fn(usize) -> String) {
    let room = MAX_SUMMARY - reserve - 100;
    let mut used = s.chars().count();
    for (i, row) in rows.iter().enumerate() {
        used += row.chars().count();
        if used > room {
            s.push_str(&more(rows.len() - i));
            return;
        }
        s.push_str(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restart::model::fixtures::dispatching;

    fn verdict(job: &str, verdict: Verdict, detail: &str) -> JobVerdict {
        JobVerdict {
            job: job.into(),
            verdict,
            detail: detail.into(),
        }
    }

    /// Dispatched as run 9 of o/r, the original run 7 failing in `linux / test (default)`.
    fn dispatched() -> Restart {
        let mut r = dispatching();
        r.check = CheckRun::new(true);
        r.status = Status::Dispatched;
        r.restart_run_id = Some(9);
        r.run_url = "https://github.com/o/r/actions/runs/9".into();
        r.check.evidence.failing_jobs = vec!["linux / test (default)".into()];
        r
    }

    fn judged(outcome: Verdict, reason: &str, verdicts: Vec<JobVerdict>) -> Restart {
        let mut r = dispatched();
        r.status = Status::Completed;
        r.outcome = Some(outcome);
        r.reason = reason.into();
        r.check.evidence.verdicts = verdicts;
        r
    }

    #[test]
    fn no_check_run_for_dry_runs_old_restarts_or_before_the_dispatch() {
        let mut r = dispatched();
        r.dry_run = true;
        assert_eq!(desired(&r), None);
        let mut old = dispatched();
        old.check.wanted = false;
        assert_eq!(desired(&old), None);
        let mut early = dispatched();
        early.status = Status::Dispatching;
        assert_eq!(desired(&early), None);
        early.status = Status::DispatchFailed;
        assert_eq!(
            desired(&early),
            None,
            "refused before any check run existed"
        );
        early.check.id = Some(5);
        assert!(
            desired(&early).unwrap().completed,
            "an existing one is completed"
        );
    }

    #[test]
    fn a_dispatched_restart_is_in_progress_with_its_failing_jobs_and_run() {
        let v = desired(&dispatched()).unwrap();
        assert!(!v.completed);
        assert_eq!(v.title, "Restarted: waiting for the jobs");
        assert_eq!(
            v.details_url.as_deref(),
            Some("https://github.com/o/r/actions/runs/9")
        );
        assert_eq!(
            v.summary,
            "The restarted run has been dispatched; its jobs are not visible yet.\n\n\
             autorevert ran `trunk` again on `trunk/abc` to tell a real breakage from noise.\n\n\
             - original run: [run 7](https://github.com/o/r/actions/runs/7)\n\
             - restarted run: [run 9](https://github.com/o/r/actions/runs/9)\n\n\
             Failing jobs of the original run:\n\n\
             - `linux / test (default)`\n\n\
             _This check reports evidence only: its conclusion is always neutral._\n"
        );
    }

    #[test]
    fn confirmation_changes_the_view_and_a_repeat_does_not() {
        let mut r = dispatched();
        let before = desired(&r).unwrap();
        r.check.shown = before.digest();
        assert!(!needs_sync(&r), "shown already");
        r.status = Status::Confirmed;
        let after = desired(&r).unwrap();
        assert_eq!(after.title, "Restarted: jobs running");
        assert_ne!(after.digest(), before.digest());
        assert!(needs_sync(&r));
        r.check.shown = after.digest();
        assert!(!needs_sync(&r));
    }

    #[test]
    fn reproduced_is_a_neutral_table_per_job() {
        let r = judged(
            Verdict::Reproduced,
            "run 9 concluded failure; failed again: linux / test (default)",
            vec![
                verdict(
                    "linux / test (default)",
                    Verdict::Reproduced,
                    "failed again",
                ),
                verdict("win / build", Verdict::NotReproduced, "passed"),
            ],
        );
        let v = desired(&r).unwrap();
        assert!(v.completed);
        assert_eq!(v.title, "Reproduced: the failure happened again");
        assert!(v.summary.starts_with(
            "**reproduced**: run 9 concluded failure; failed again: linux / test (default)\n"
        ));
        assert!(v.summary.contains(
            "| Job | Outcome | Detail |\n| --- | --- | --- |\n\
             | `linux / test (default)` | reproduced | failed again |\n\
             | `win / build` | not reproduced | passed |\n"
        ));
    }

    #[test]
    fn not_reproduced_and_inconclusive_have_their_own_titles_and_rows() {
        let r = judged(
            Verdict::NotReproduced,
            "all 1 originally failing job(s) passed",
            vec![verdict("a / test (x)", Verdict::NotReproduced, "passed")],
        );
        let v = desired(&r).unwrap();
        assert_eq!(v.title, "Not reproduced: the failing jobs passed");
        assert!(
            v.summary
                .contains("| `a / test (x)` | not reproduced | passed |")
        );
        let r = judged(
            Verdict::Inconclusive,
            "no evidence for: a",
            vec![verdict(
                "a",
                Verdict::Inconclusive,
                "missing from the restart",
            )],
        );
        let v = desired(&r).unwrap();
        assert_eq!(v.title, "Inconclusive");
        assert!(
            v.summary
                .starts_with("**inconclusive**: no evidence for: a\n")
        );
        assert!(
            v.summary
                .contains("| `a` | inconclusive | missing from the restart |")
        );
    }

    #[test]
    fn an_expired_window_completes_it_with_the_reason() {
        let mut r = dispatched();
        r.status = Status::Unconfirmed;
        r.reason = "restart jobs not visible in ClickHouse after 1800 s (12 queries)".into();
        let v = desired(&r).unwrap();
        assert!(v.completed);
        assert_eq!(v.title, "No verdict");
        assert!(v.summary.starts_with(
            "The restart ended without a verdict: restart jobs not visible in ClickHouse after 1800 s"
        ));
    }

    #[test]
    fn job_names_cannot_break_the_table() {
        assert_eq!(code("a | b `c`\nd"), "`a \\| b 'c' d`");
    }

    #[test]
    fn a_huge_table_stays_within_githubs_limit() {
        let jobs: Vec<JobVerdict> = (0..5000)
            .map(|i| {
                verdict(
                    &format!("job {i:04} {}", "x".repeat(40)),
                    Verdict::Reproduced,
                    "failed again",
                )
            })
            .collect();
        let r = judged(Verdict::Reproduced, "many", jobs);
        let v = desired(&r).unwrap();
        assert!(v.summary.chars().count() <= MAX_SUMMARY);
        assert!(v.summary.contains("more job(s)"));
        assert!(v.summary.ends_with("always neutral._\n"));
    }

    #[test]
    fn without_a_run_url_the_runs_are_named_not_linked() {
        let mut r = dispatched();
        r.run_url.clear();
        r.restart_run_id = None;
        r.check.evidence.failing_jobs.clear();
        let v = desired(&r).unwrap();
        assert!(
            v.summary
                .contains("- original run: run 7\n- restarted run: not known yet")
        );
        assert!(v.summary.contains("not known yet."));
        assert_eq!(v.details_url, None);
    }
}

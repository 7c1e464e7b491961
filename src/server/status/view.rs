//! What the pages and `/api/` show of a restart: only what pytorch/pytorch's public CI
//! shows anyway (repository, commit, run ids, job names, verdicts, reasons), with its links
//! to GitHub. No installation id, no delivery id, no delivery body.

use crate::restart::Restart;
use crate::store::rows::EventRow;
use crate::store::status::JobEvidence;
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct RestartView {
    pub restart_id: String,
    pub repo: String,
    pub workflow: String,
    pub head_sha: String,
    pub attempt: u32,
    pub workflow_file: String,
    pub status: &'static str,
    pub dry_run: bool,
    pub dispatch_attempts: u32,
    pub outcome: Option<&'static str>,
    pub reason: String,
    /// Asked for by the decision engine (a suspect, its parent or a commit in between), not
    /// by a failed run of the commit itself.
    pub asked_by_engine: bool,
    pub original_run_id: u64,
    pub restart_run_id: Option<u64>,
    /// Why the last call about its check run failed (empty: none did).
    pub check_run_error: String,
    pub times: Times,
    pub links: Links,
}

/// From the failure (when the App took it up) to the dispatch, the confirmation in
/// ClickHouse and the restarted run's completion.
#[derive(Debug, Clone, Serialize)]
pub struct Times {
    pub requested_at: DateTime<Utc>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub confirm_latency_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Links {
    /// This restart's page here.
    pub page: String,
    /// This restart as JSON here.
    pub api: String,
    pub commit: String,
    pub original_run: String,
    pub restart_run: Option<String>,
    /// The `autorevert` check run on the commit, once GitHub has it.
    pub check_run: Option<String>,
}

/// A run on GitHub.
pub fn run_url(repo: &str, run_id: u64) -> String {
    format!("https://github.com/{}/actions/runs/{run_id}", path(repo))
}

/// A commit on GitHub.
pub fn commit_url(repo: &str, sha: &str) -> String {
    format!("https://github.com/{}/commit/{}", path(repo), path(sha))
}

/// Percent-encodes what is not safe in a URL path; `/` stays (it separates the parts of a
/// repository name and of a restart id, and the routes take the id as a wildcard).
pub fn path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl RestartView {
    pub fn of(r: &Restart) -> RestartView {
        let repo = &r.key.repo;
        let id = path(&r.restart_id);
        RestartView {
            restart_id: r.restart_id.clone(),
            repo: repo.clone(),
            workflow: r.key.workflow.clone(),
            head_sha: r.key.head_sha.clone(),
            attempt: r.attempt,
            workflow_file: r.workflow_file.clone(),
            status: r.status.as_str(),
            dry_run: r.dry_run,
            dispatch_attempts: r.dispatch_attempts,
            outcome: r.outcome.map(|o| o.as_str()),
            reason: r.reason.clone(),
            asked_by_engine: asked_by_engine(r),
            original_run_id: r.original_run_id,
            restart_run_id: r.restart_run_id,
            check_run_error: r.check.error.clone(),
            times: Times {
                requested_at: r.times.requested_at,
                dispatched_at: r.times.dispatched_at,
                confirmed_at: r.times.confirmed_at,
                completed_at: r.times.completed_at,
                confirm_latency_ms: r.times.confirm_latency_ms(),
            },
            links: Links {
                page: format!("/restarts/{id}"),
                api: format!("/api/restarts/{id}"),
                commit: commit_url(repo, &r.key.head_sha),
                original_run: run_url(repo, r.original_run_id),
                restart_run: r.restart_run_id.map(|id| run_url(repo, id)),
                check_run: r
                    .check
                    .url
                    .starts_with("https://")
                    .then(|| r.check.url.clone()),
            },
        }
    }

    pub fn short_sha(&self) -> &str {
        self.head_sha.get(..10).unwrap_or(&self.head_sha)
    }

    pub fn requested_date(&self) -> String {
        self.times.requested_at.format("%Y-%m-%d").to_string()
    }

    pub fn requested_time(&self) -> String {
        self.times.requested_at.format("%H:%M:%S").to_string()
    }

    /// How long after the failure was taken up a step came, e.g. `+4m 10s`; `–` if not (yet).
    fn after_failure(&self, at: Option<DateTime<Utc>>) -> String {
        match at {
            Some(t) => format!("+{}", span(t - self.times.requested_at)),
            None => "–".into(),
        }
    }

    pub fn dispatch_after(&self) -> String {
        self.after_failure(self.times.dispatched_at)
    }

    pub fn confirmed_after(&self) -> String {
        self.after_failure(self.times.confirmed_at)
    }

    pub fn completed_after(&self) -> String {
        self.after_failure(self.times.completed_at)
    }

    /// (step, when, how long after the failure) for each step reached.
    pub fn timeline(&self) -> Vec<(&'static str, String, String)> {
        let t = &self.times;
        let mut steps = vec![("failure taken up", stamp(&t.requested_at), String::new())];
        for (step, at) in [
            ("dispatched", t.dispatched_at),
            ("confirmed in ClickHouse", t.confirmed_at),
            ("restarted run completed", t.completed_at),
        ] {
            if let Some(at) = at {
                steps.push((step, stamp(&at), self.after_failure(Some(at))));
            }
        }
        steps
    }

    /// The state as shown: `dispatch failed`.
    pub fn status_label(&self) -> String {
        label(self.status)
    }

    /// The outcome as shown: `not reproduced`, `–` while there is none.
    pub fn outcome_label(&self) -> String {
        self.outcome.map(label).unwrap_or_else(|| "–".into())
    }

    /// The CSS class of the outcome's badge.
    pub fn outcome_class(&self) -> &'static str {
        self.outcome.unwrap_or("none")
    }
}

/// The decision engine's restarts say so in their reason until the dispatch replaces it,
/// and in their scope's source (`jobs: asked by the decision engine; …`) once it is decided.
fn asked_by_engine(r: &Restart) -> bool {
    r.reason.starts_with(ENGINE_ASKS)
        || r.scope
            .as_ref()
            .is_some_and(|s| s.source.contains(ENGINE_ASKS))
}

/// How the decision engine's restarts begin their reason (`pipeline::decider`).
const ENGINE_ASKS: &str = "asked by the decision engine";

/// A snake_case name as the pages show it.
fn label(name: &str) -> String {
    name.replace('_', " ")
}

/// A time as the pages show it (UTC, to the second).
pub fn stamp(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A duration in its two largest units: `850ms`, `42s`, `4m 10s`, `2h 5m`, `3d 4h`.
pub fn span(d: chrono::Duration) -> String {
    let ms = d.num_milliseconds().max(0);
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// One originally failing job and how it did in the restart.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub job: String,
    pub verdict: String,
    pub detail: String,
    pub judged_at: DateTime<Utc>,
}

impl From<JobEvidence> for JobView {
    fn from(j: JobEvidence) -> JobView {
        JobView {
            job: j.job,
            verdict: j.verdict,
            detail: j.detail,
            judged_at: j.ts,
        }
    }
}

/// One line of a restart's event log.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub ts: DateTime<Utc>,
    pub kind: String,
    pub dry_run: bool,
    pub message: String,
}

impl From<EventRow> for EventView {
    fn from(e: EventRow) -> EventView {
        EventView {
            ts: e.ts,
            kind: e.kind,
            dry_run: e.dry_run != 0,
            message: e.message,
        }
    }
}

impl JobView {
    pub fn verdict_label(&self) -> String {
        label(&self.verdict)
    }
}

impl EventView {
    pub fn at(&self) -> String {
        stamp(&self.ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_in_two_units() {
        let d = chrono::Duration::milliseconds;
        assert_eq!(span(d(850)), "850ms");
        assert_eq!(span(d(42_000)), "42s");
        assert_eq!(span(d(250_000)), "4m 10s");
        assert_eq!(span(d(7_500_000)), "2h 5m");
        assert_eq!(span(d(100 * 3_600_000)), "4d 4h");
        assert_eq!(span(d(-5)), "0ms");
    }

    #[test]
    fn paths_keep_slashes_and_encode_the_rest() {
        assert_eq!(
            path("pytorch/pytorch/trunk/ab/1"),
            "pytorch/pytorch/trunk/ab/1"
        );
        assert_eq!(path("o/n/linux aarch64?#/x"), "o/n/linux%20aarch64%3F%23/x");
        assert_eq!(
            run_url("pytorch/pytorch", 7),
            "https://github.com/pytorch/pytorch/actions/runs/7"
        );
    }
}

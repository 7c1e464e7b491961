//! The decision engine's state in ClickHouse: main's commit order (from `push`), the runs
//! and jobs seen on those commits (jobs in `job_results`, with their times since migration
//! 8), and what was decided: one row per signal whose decision changed, and one per revert
//! action. At start-up the engine's history is rebuilt from these (`load`), so a restart of
//! the App forgets nothing within `DECIDE_LOOKBACK_HOURS`.

use super::rows::JobResultRow;
use super::{Store, Tables, Within};
use crate::intake::events::{Job, Run};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clickhouse::Row;
use serde::{Deserialize, Serialize};

pub(super) fn tables_v8(t: &Tables) -> Vec<String> {
    let db = &t.database;
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.main_commits (
                repo LowCardinality(String), sha String, pushed_at DateTime64(3, 'UTC'),
                seq UInt32, parent String, delivery_id String
            ) ENGINE = ReplacingMergeTree ORDER BY (repo, sha)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.run_results (
                repo LowCardinality(String), run_id UInt64, run_attempt UInt32, head_sha String,
                head_branch String, workflow_name LowCardinality(String), path String,
                event LowCardinality(String), status LowCardinality(String),
                conclusion LowCardinality(String), created_at DateTime64(3, 'UTC'), version UInt64
            ) ENGINE = ReplacingMergeTree(version) ORDER BY (repo, run_id, run_attempt)"
        ),
        format!(
            "ALTER TABLE {db}.job_results
                ADD COLUMN IF NOT EXISTS created_at Nullable(DateTime64(3, 'UTC')),
                ADD COLUMN IF NOT EXISTS started_at Nullable(DateTime64(3, 'UTC')),
                ADD COLUMN IF NOT EXISTS completed_at Nullable(DateTime64(3, 'UTC'))"
        ),
    ]
}

pub(super) fn tables_v9(t: &Tables) -> Vec<String> {
    let db = &t.database;
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.decisions (
                ts DateTime64(3, 'UTC'), repo LowCardinality(String),
                workflow LowCardinality(String), job String, label LowCardinality(String),
                reason LowCardinality(String), suspect String, baseline String,
                restarts Array(String), detail String
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (repo, workflow, job, ts)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.revert_actions (
                repo LowCardinality(String), sha String, action LowCardinality(String),
                target UInt64, reason LowCardinality(String), signals Array(String),
                state LowCardinality(String), comment_id Nullable(UInt64), comment_url String,
                detail String, decided_at DateTime64(3, 'UTC'), updated_at DateTime64(3, 'UTC'),
                version UInt64
            ) ENGINE = ReplacingMergeTree(version) ORDER BY (repo, sha)"
        ),
    ]
}

/// One commit of a push to main, in landing order (`seq` within its push).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct MainCommitRow {
    pub repo: String,
    pub sha: String,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    pub pushed_at: DateTime<Utc>,
    pub seq: u32,
    /// The commit before it on main (the push's `before`, or the previous commit of the
    /// same push): the order is rebuilt from these, times only break ties.
    pub parent: String,
    pub delivery_id: String,
}

/// The latest state of a run (attempt) on a commit of main or its `trunk/<sha>` tag.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct RunResultRow {
    repo: String,
    run_id: u64,
    run_attempt: u32,
    head_sha: String,
    head_branch: String,
    workflow_name: String,
    path: String,
    event: String,
    status: String,
    conclusion: String,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    created_at: DateTime<Utc>,
    version: u64,
}

impl RunResultRow {
    pub fn new(repo: &str, run: &Run) -> RunResultRow {
        let now = Utc::now();
        RunResultRow {
            repo: repo.to_string(),
            run_id: run.id,
            run_attempt: run.run_attempt,
            head_sha: run.head_sha.clone(),
            head_branch: run.head_branch.clone().unwrap_or_default(),
            workflow_name: run.name.clone(),
            path: run.path.clone(),
            event: run.event.to_string(),
            status: run.status.to_string(),
            conclusion: run
                .conclusion
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            created_at: run.created_at,
            // A later status wins over an earlier one whatever order they arrive in.
            version: run.status.rank() * 10u64.pow(16) + now.timestamp_micros().max(0) as u64,
        }
    }

    pub fn repo(&self) -> &str {
        &self.repo
    }

    pub fn run(&self) -> Run {
        Run {
            id: self.run_id,
            name: self.workflow_name.clone(),
            path: self.path.clone(),
            head_sha: self.head_sha.clone(),
            head_branch: Some(self.head_branch.clone()).filter(|b| !b.is_empty()),
            event: self.event.clone().into(),
            status: self.status.clone().into(),
            conclusion: (!self.conclusion.is_empty()).then(|| self.conclusion.clone().into()),
            run_attempt: self.run_attempt,
            workflow_id: 0,
            created_at: self.created_at,
            updated_at: None,
            html_url: String::new(),
            url: String::new(),
        }
    }
}

/// A signal's decision, written when it changes.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct DecisionRow {
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    pub ts: DateTime<Utc>,
    pub repo: String,
    pub workflow: String,
    pub job: String,
    /// `revert`, `restart` or `ineligible`.
    pub label: String,
    pub reason: String,
    pub suspect: String,
    pub baseline: String,
    /// `sha:reason,reason` per commit asked to run again.
    pub restarts: Vec<String>,
    /// The decision as JSON (its evidence).
    pub detail: String,
}

/// What the App did, or would do, about a culprit: one row per commit, its latest version.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct RevertActionRow {
    pub repo: String,
    pub sha: String,
    /// `revert`, `notify`, `skip` or `log`.
    pub action: String,
    /// The PR (revert) or issue (notify) commented on; 0 for none.
    pub target: u64,
    pub reason: String,
    pub signals: Vec<String>,
    /// `intended`, `posted`, `failed` or `unknown`.
    pub state: String,
    pub comment_id: Option<u64>,
    pub comment_url: String,
    pub detail: String,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    pub decided_at: DateTime<Utc>,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

/// What the engine's history is rebuilt from.
#[derive(Debug, Default)]
pub struct SignalState {
    /// Main's commits in landing order.
    pub commits: Vec<MainCommitRow>,
    pub runs: Vec<RunResultRow>,
    pub jobs: Vec<JobResultRow>,
}

impl SignalState {
    pub fn jobs(&self) -> impl Iterator<Item = (&str, Job)> {
        self.jobs.iter().map(|j| (j.repo(), j.job()))
    }

    pub fn runs(&self) -> impl Iterator<Item = (&str, Run)> {
        self.runs.iter().map(|r| (r.repo(), r.run()))
    }
}

impl Store {
    /// Main's commits pushed in `[since, until]`, with the runs and jobs seen on them. As of
    /// `until` (a replay of the past) every version written by then is read, and the
    /// history keeps the latest of each; otherwise the latest versions (`FINAL`).
    pub async fn signal_state(
        &self,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    ) -> Result<SignalState> {
        let until_ms = until.map(|t| t.timestamp_millis()).unwrap_or(i64::MAX / 2);
        let commits_sql = format!(
            "SELECT sha FROM {} WHERE pushed_at >= fromUnixTimestamp64Milli({{since:Int64}})
               AND pushed_at <= fromUnixTimestamp64Milli({{until:Int64}})",
            self.t("main_commits")
        );
        let commits: Vec<MainCommitRow> = self
            .client
            .query(&format!(
                "SELECT ?fields FROM {} FINAL
                 WHERE pushed_at >= fromUnixTimestamp64Milli({{since:Int64}})
                   AND pushed_at <= fromUnixTimestamp64Milli({{until:Int64}})
                 ORDER BY pushed_at, seq",
                self.t("main_commits")
            ))
            .param("since", since.timestamp_millis())
            .param("until", until_ms)
            .fetch_all()
            .within(self)
            .await
            .context("reading main's commits")?;
        let final_ = if until.is_some() { "" } else { "FINAL" };
        let on_commits = |table: &str, time: &str| {
            format!(
                "SELECT ?fields FROM {} {final_} WHERE head_sha IN ({commits_sql})
                   AND {time} <= fromUnixTimestamp64Milli({{until:Int64}}) ORDER BY version",
                self.t(table)
            )
        };
        let runs: Vec<RunResultRow> = self
            .client
            .query(&on_commits("run_results", "created_at"))
            .param("since", since.timestamp_millis())
            .param("until", until_ms)
            .fetch_all()
            .within(self)
            .await
            .context("reading the runs of main's commits")?;
        let jobs: Vec<JobResultRow> = self
            .client
            .query(&on_commits("job_results", "updated_at"))
            .param("since", since.timestamp_millis())
            .param("until", until_ms)
            .fetch_all()
            .within(self)
            .await
            .context("reading the jobs of main's commits")?;
        Ok(SignalState {
            commits,
            runs,
            jobs,
        })
    }

    /// The latest action about every culprit decided since `since` (the once-per-commit and
    /// per-day guards at start-up).
    pub async fn revert_actions(&self, since: DateTime<Utc>) -> Result<Vec<RevertActionRow>> {
        self.client
            .query(&format!(
                "SELECT ?fields FROM {} FINAL
                 WHERE decided_at >= fromUnixTimestamp64Milli({{since:Int64}})
                 ORDER BY decided_at",
                self.t("revert_actions")
            ))
            .param("since", since.timestamp_millis())
            .fetch_all()
            .within(self)
            .await
            .context("reading revert actions")
    }

    /// The latest decisions of a repository's signals (the status page, `autorevert check`).
    pub async fn latest_decisions(&self, repo: &str, limit: u64) -> Result<Vec<DecisionRow>> {
        self.client
            .query(&format!(
                "SELECT ?fields FROM {} WHERE repo = {{repo:String}}
                 ORDER BY ts DESC LIMIT 1 BY workflow, job LIMIT {{limit:UInt64}}",
                self.t("decisions")
            ))
            .param("repo", repo)
            .param("limit", limit)
            .fetch_all()
            .within(self)
            .await
            .context("reading decisions")
    }
}

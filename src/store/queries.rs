//! What the App reads back from ClickHouse: its ledger, event log and deliveries, job
//! states, other instances, and PyTorch's restart confirmation query.

use super::rows::{DeliveryRow, EventRow, InstanceRow, JobStateRow, RestartRow};
use super::{Store, Tables, Within};
use crate::restart::{JobState, Restart, RestartKey, trunk_ref};
use anyhow::{Context, Result};
use std::time::Duration;

/// The condition on a restart key's columns (bound by `query_key`).
const KEY_IS: &str =
    "repo = {repo:String} AND workflow = {workflow:String} AND head_sha = {sha:String}";

impl Store {
    /// Restarts requested within the last `days` days, newest version of each.
    pub async fn load_restarts(&self, days: u32) -> Result<Vec<Restart>> {
        let rows: Vec<RestartRow> = self
            .client
            .query(&format!(
                "SELECT ?fields FROM {} FINAL WHERE requested_at > now64(3) - toIntervalDay({{days:UInt32}})",
                self.t("restarts")
            ))
            .param("days", days)
            .fetch_all()
            .within(self)
            .await
            .context("loading the restart ledger")?;
        rows.into_iter().map(RestartRow::into_restart).collect()
    }

    /// The restarts of one commit's workflow, oldest attempt first.
    pub async fn restarts_for(&self, key: &RestartKey) -> Result<Vec<Restart>> {
        let sql = format!(
            "SELECT ?fields FROM {} FINAL WHERE {KEY_IS} ORDER BY attempt",
            self.t("restarts")
        );
        let query = self.query_key(&sql, key);
        let rows: Vec<RestartRow> = query
            .fetch_all()
            .within(self)
            .await
            .context("reading restarts")?;
        rows.into_iter().map(RestartRow::into_restart).collect()
    }

    /// A query whose `KEY_IS` condition names this restart key.
    fn query_key(&self, sql: &str, key: &RestartKey) -> clickhouse::query::Query {
        self.client
            .query(sql)
            .param("repo", &key.repo)
            .param("workflow", &key.workflow)
            .param("sha", &key.head_sha)
    }

    /// The event log of one commit's workflow, in order.
    pub async fn events_for(&self, key: &RestartKey) -> Result<Vec<EventRow>> {
        let sql = format!(
            "SELECT ?fields FROM {} WHERE {KEY_IS} ORDER BY ts, event_id",
            self.t("events")
        );
        self.query_key(&sql, key)
            .fetch_all()
            .within(self)
            .await
            .context("reading the event log")
    }

    pub async fn delivery(&self, delivery_id: &str) -> Result<Option<DeliveryRow>> {
        self.client
            .query(&format!(
                "SELECT ?fields FROM {} FINAL WHERE delivery_id = {{id:String}}",
                self.t("deliveries")
            ))
            .param("id", delivery_id)
            .fetch_optional()
            .within(self)
            .await
            .context("reading deliveries")
    }

    /// Records that this instance is alive.
    pub async fn heartbeat(&self, me: &InstanceRow) -> Result<()> {
        self.insert_rows::<InstanceRow>(&self.t("instances"), std::slice::from_ref(me))
            .await
    }

    /// Other instances that beat within `within` of now (the database's clock).
    pub async fn other_instances(&self, me: &str, within: Duration) -> Result<Vec<InstanceRow>> {
        self.client
            .query(&format!(
                "SELECT ?fields FROM {} FINAL
                 WHERE instance_id != {{me:String}} AND NOT stopped
                   AND seen_at > now64(3) - toIntervalMillisecond({{ms:UInt64}})
                 ORDER BY instance_id",
                self.t("instances")
            ))
            .param("me", me)
            .param("ms", within.as_millis() as u64)
            .fetch_all()
            .within(self)
            .await
            .context("reading instances")
    }

    /// The latest known state of every job of a run.
    pub async fn job_states(&self, repo: &str, run_id: u64) -> Result<Vec<JobState>> {
        let rows: Vec<JobStateRow> = self
            .client
            .query(&format!(
                "SELECT job_id, name, status, conclusion FROM {} FINAL
                 WHERE repo = {{repo:String}} AND run_id = {{run:UInt64}} ORDER BY name",
                self.t("job_results")
            ))
            .param("repo", repo)
            .param("run", run_id)
            .fetch_all()
            .within(self)
            .await
            .context("reading job results")?;
        Ok(rows.into_iter().map(JobState::from).collect())
    }

    /// PyTorch's restart confirmation (`workflow_checker.has_restarted_workflow`), unchanged
    /// in shape: an existence check over `workflow_job FINAL`, narrowed first through the
    /// `head_sha` index view to the (id, run_id) pairs of this commit, so ClickHouse reads a
    /// few granules instead of the whole table; no JOIN; server-side parameters.
    pub async fn restart_visible(&self, key: &RestartKey) -> Result<bool> {
        let sql = confirmation_sql(&self.tables);
        let found = self
            .client
            .query(&sql)
            .param("commit_sha", &key.head_sha)
            .param("head_branch", trunk_ref(&key.head_sha))
            .param("workflow_name", &key.workflow)
            .fetch_optional::<u8>()
            .within(self)
            .await
            .context("running the confirmation query")?;
        Ok(found.is_some())
    }
}

/// The confirmation query text (also printed by `docs/` and used by the benchmark).
pub fn confirmation_sql(t: &Tables) -> String {
    format!(
        "SELECT 1 AS count FROM {job} FINAL
WHERE (id, run_id) IN (
    SELECT DISTINCT id, run_id FROM {by_sha} WHERE head_sha = {{commit_sha:String}}
)
  AND workflow_event = 'workflow_dispatch'
  AND head_branch = {{head_branch:String}}
  AND workflow_name = {{workflow_name:String}}
LIMIT 1",
        job = t.job,
        by_sha = t.job_by_sha
    )
}

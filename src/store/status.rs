//! What the status page reads: the ledger a page at a time (newest request first), one
//! restart with its per-job verdicts and its event log, the workflows seen, and the last
//! restart the kill switch held. Everything is read from ClickHouse, never from the
//! in-memory ledger, and every list is bounded by LIMIT.

use super::rows::{EventRow, RestartRow};
use super::{Store, Within};
use crate::restart::{Restart, RestartKey, Verdict};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clickhouse::Row;
use serde::{Deserialize, Serialize};

/// Which restarts a page lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestartFilter {
    /// Only this workflow (display name).
    pub workflow: Option<String>,
    /// Only this outcome.
    pub outcome: Option<OutcomeFilter>,
}

/// An outcome to filter on: a verdict, or none yet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutcomeFilter {
    Verdict(Verdict),
    /// Not judged (yet): no outcome recorded.
    Pending,
}

impl OutcomeFilter {
    /// `reproduced`, `not_reproduced`, `inconclusive` or `pending`.
    pub fn parse(s: &str) -> Option<OutcomeFilter> {
        match s {
            "pending" => Some(OutcomeFilter::Pending),
            v => v.parse().ok().map(OutcomeFilter::Verdict),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeFilter::Verdict(v) => v.as_str(),
            OutcomeFilter::Pending => "pending",
        }
    }

    /// The value of the `outcome` column it matches.
    fn column_value(self) -> &'static str {
        match self {
            OutcomeFilter::Verdict(v) => v.as_str(),
            OutcomeFilter::Pending => "",
        }
    }
}

/// One page of restarts and how many match in all.
#[derive(Debug, Clone)]
pub struct RestartPage {
    pub restarts: Vec<Restart>,
    pub total: u64,
}

/// One originally failing job of a judged restart, as `restart_job_verdicts` has it.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct JobEvidence {
    pub job: String,
    pub verdict: String,
    pub detail: String,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    pub ts: DateTime<Utc>,
}

/// The condition of a filtered listing (bound by `filtered`).
const FILTER_IS: &str = "({workflow:String} = '' OR workflow = {workflow:String})
  AND ({any_outcome:Bool} OR outcome = {outcome:String})";

/// The condition on a restart's commit and workflow (bound by `about`).
const RESTART_IS: &str =
    "repo = {repo:String} AND head_sha = {sha:String} AND workflow = {workflow:String}";

/// Longest event log shown for one restart.
const MAX_EVENTS: u32 = 500;

/// The restart key a restart id names: `{owner}/{name}/{workflow}/{sha}/{attempt}` (the
/// workflow's display name may itself hold a slash).
pub fn key_of_restart_id(id: &str) -> Option<RestartKey> {
    let (rest, attempt) = id.rsplit_once('/')?;
    let (rest, sha) = rest.rsplit_once('/')?;
    let mut parts = rest.splitn(3, '/');
    let (owner, name, workflow) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = [owner, name, workflow, sha].iter().all(|p| !p.is_empty())
        && attempt.parse::<u32>().is_ok();
    valid.then(|| RestartKey {
        repo: format!("{owner}/{name}"),
        workflow: workflow.to_string(),
        head_sha: sha.to_string(),
    })
}

impl Store {
    /// A query whose `FILTER_IS` condition names this filter.
    fn filtered(&self, sql: &str, f: &RestartFilter) -> clickhouse::query::Query {
        self.client
            .query(sql)
            .param("workflow", f.workflow.as_deref().unwrap_or(""))
            .param("any_outcome", f.outcome.is_none())
            .param("outcome", f.outcome.map(|o| o.column_value()).unwrap_or(""))
    }

    /// Restarts matching `f`, newest request first, `limit` of them from `offset` on, and
    /// how many match in all (two queries at once).
    pub async fn restart_page(
        &self,
        f: &RestartFilter,
        limit: u32,
        offset: u64,
    ) -> Result<RestartPage> {
        let table = self.t("restarts");
        let rows = self
            .filtered(
                &format!(
                    "SELECT ?fields FROM {table} FINAL WHERE {FILTER_IS}
                     ORDER BY requested_at DESC, restart_id DESC
                     LIMIT {{limit:UInt32}} OFFSET {{offset:UInt64}}"
                ),
                f,
            )
            .param("limit", limit)
            .param("offset", offset)
            .fetch_all::<RestartRow>()
            .within(self);
        let total = self
            .filtered(
                &format!("SELECT count() FROM {table} FINAL WHERE {FILTER_IS}"),
                f,
            )
            .fetch_one::<u64>()
            .within(self);
        let (rows, total) = tokio::join!(rows, total);
        let restarts = rows
            .context("reading a page of restarts")?
            .into_iter()
            .map(RestartRow::into_restart)
            .collect::<Result<_>>()?;
        Ok(RestartPage {
            restarts,
            total: total.context("counting restarts")?,
        })
    }

    /// One restart by its id (through its key: the table's sort key), if recorded.
    pub async fn restart(&self, restart_id: &str) -> Result<Option<Restart>> {
        let Some(key) = key_of_restart_id(restart_id) else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT ?fields FROM {} FINAL
             WHERE repo = {{repo:String}} AND workflow = {{workflow:String}}
               AND head_sha = {{sha:String}} AND restart_id = {{id:String}}",
            self.t("restarts")
        );
        let row: Option<RestartRow> = self
            .client
            .query(&sql)
            .param("repo", &key.repo)
            .param("workflow", &key.workflow)
            .param("sha", &key.head_sha)
            .param("id", restart_id)
            .fetch_optional()
            .within(self)
            .await
            .context("reading a restart")?;
        row.map(RestartRow::into_restart).transpose()
    }

    /// Rows about one restart: `sql` names it with `RESTART_IS` and `{id:String}`.
    async fn about<T>(&self, sql: &str, r: &Restart, what: &str) -> Result<Vec<T>>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        self.client
            .query(sql)
            .param("repo", &r.key.repo)
            .param("workflow", &r.key.workflow)
            .param("sha", &r.key.head_sha)
            .param("id", &r.restart_id)
            .fetch_all()
            .within(self)
            .await
            .with_context(|| format!("reading {what}"))
    }

    /// The per-job evidence of a restart: each originally failing job and its verdict.
    pub async fn job_evidence(&self, r: &Restart) -> Result<Vec<JobEvidence>> {
        let sql = format!(
            "SELECT ?fields FROM {} FINAL WHERE {RESTART_IS} AND restart_id = {{id:String}}
             ORDER BY job",
            self.t("restart_job_verdicts")
        );
        self.about(&sql, r, "job verdicts").await
    }

    /// The event log of a restart, in order: its own events and those of its commit's
    /// workflow that name no restart (a restart held back by the policy).
    pub async fn restart_events(&self, r: &Restart) -> Result<Vec<EventRow>> {
        let sql = format!(
            "SELECT ?fields FROM {} WHERE {RESTART_IS} AND restart_id IN ({{id:String}}, '')
             ORDER BY ts, event_id LIMIT {MAX_EVENTS}",
            self.t("events")
        );
        self.about(&sql, r, "a restart's event log").await
    }

    /// The workflows that have restarts, by name.
    pub async fn restart_workflows(&self) -> Result<Vec<String>> {
        self.client
            .query(&format!(
                "SELECT DISTINCT workflow FROM {} ORDER BY workflow LIMIT 200",
                self.t("restarts")
            ))
            .fetch_all()
            .within(self)
            .await
            .context("reading the workflows restarted")
    }

    /// The latest restart the kill switch held within the last `hours`, if any.
    pub async fn last_kill_switch_hold(&self, hours: u32) -> Result<Option<EventRow>> {
        self.client
            .query(&format!(
                "SELECT ?fields FROM {} WHERE kind = 'skipped'
                   AND ts > now64(3) - toIntervalHour({{hours:UInt32}})
                   AND startsWith(message, 'kill switch on')
                 ORDER BY ts DESC LIMIT 1",
                self.t("events")
            ))
            .param("hours", hours)
            .fetch_optional()
            .within(self)
            .await
            .context("reading kill-switch holds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_id_names_its_key() {
        let k = key_of_restart_id("pytorch/pytorch/trunk/abc123/2").unwrap();
        assert_eq!(
            (k.repo.as_str(), k.workflow.as_str(), k.head_sha.as_str()),
            ("pytorch/pytorch", "trunk", "abc123")
        );
        let k = key_of_restart_id("o/n/linux / aarch64/abc/1").unwrap();
        assert_eq!(k.workflow, "linux / aarch64");
        for bad in ["", "o/n/abc/1", "o/n/w/abc/x", "o//w/abc/1", "o/n/w//1"] {
            assert!(key_of_restart_id(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn outcome_filters_parse() {
        assert_eq!(
            OutcomeFilter::parse("not_reproduced"),
            Some(OutcomeFilter::Verdict(Verdict::NotReproduced))
        );
        assert_eq!(
            OutcomeFilter::parse("pending"),
            Some(OutcomeFilter::Pending)
        );
        assert_eq!(OutcomeFilter::parse("<b>"), None);
        assert_eq!(OutcomeFilter::Pending.column_value(), "");
    }
}

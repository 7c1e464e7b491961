//! ClickHouse: the App's own tables (restart ledger, deliveries, event log, job states,
//! per-job verdicts), the local mirror of PyTorch's `workflow_run`/`workflow_job`, and the
//! confirmation query PyTorch's autorevert uses.
//!
//! Engines are chosen so no row collapses by accident (PyTorch's `autorevert_events_v2`
//! loses rows at merge time because `ts` is per tick and `workflows` is not in its key):
//! * `events` is a plain `MergeTree`: append-only, nothing ever merges away. A retried
//!   INSERT (written, but its answer lost) is the same block again, which ClickHouse drops
//!   (`non_replicated_deduplication_window`, migration 5).
//! * `restarts`, `job_results`, `deliveries`, `restart_job_verdicts` are
//!   `ReplacingMergeTree` whose sorting key *is* the identity of one thing (a restart id, a
//!   job id, a delivery id), so only versions of the same thing collapse, and every read
//!   uses `FINAL`, so reads are right before merges happen.

use crate::config::{ClickHouseConfig, Tables};
use crate::events::{Job, Run};
use crate::ledger::{Restart, RestartKey, Status, trunk_ref};
use crate::outcome::{JobState, JobVerdict, Verdict};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone)]
pub struct Store {
    client: clickhouse::Client,
    unvalidated: clickhouse::Client,
    tables: Tables,
    mirror: bool,
    /// Every call is bounded by this (`CLICKHOUSE_TIMEOUT_SECS`).
    timeout: Duration,
}

/// Bounds a ClickHouse call. The client has no timeout of its own, so a server that stops
/// answering without closing the connection would hold the caller (the recorder, and
/// behind it the whole pipeline) until TCP keepalive gives up, many minutes later.
trait Within<T> {
    async fn within(self, limit: Duration) -> Result<T>;
}

impl<T, F> Within<T> for F
where
    F: std::future::Future<Output = clickhouse::error::Result<T>>,
{
    async fn within(self, limit: Duration) -> Result<T> {
        match tokio::time::timeout(limit, self).await {
            Ok(r) => Ok(r?),
            Err(_) => anyhow::bail!(
                "ClickHouse did not answer within {} s (CLICKHOUSE_TIMEOUT_SECS)",
                limit.as_secs_f64()
            ),
        }
    }
}

/// One schema step. Steps are applied in order, once each, and recorded in
/// `{db}.schema_migrations`; every statement is idempotent so a half-applied step re-runs safely.
struct Migration {
    version: u32,
    name: &'static str,
    statements: fn(&Tables) -> Vec<String>,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "restart ledger, deliveries, events, job results, verdicts",
        statements: app_tables_v1,
    },
    Migration {
        version: 2,
        name: "restarts.dispatch_attempts",
        statements: |t| {
            vec![format!(
                "ALTER TABLE {}.restarts ADD COLUMN IF NOT EXISTS dispatch_attempts UInt32 DEFAULT 1",
                t.database
            )]
        },
    },
    Migration {
        version: 3,
        name: "instances (heartbeats of running Apps)",
        statements: |t| {
            vec![format!(
                "CREATE TABLE IF NOT EXISTS {}.instances (
                    instance_id String, host String, pid UInt32,
                    started_at DateTime64(3, 'UTC'), seen_at DateTime64(3, 'UTC')
                ) ENGINE = ReplacingMergeTree(seen_at) ORDER BY instance_id
                TTL toDateTime(seen_at) + INTERVAL 7 DAY",
                t.database
            )]
        },
    },
    Migration {
        version: 4,
        name: "instances.stopped (a clean stop is not a second instance)",
        statements: |t| {
            vec![format!(
                "ALTER TABLE {}.instances ADD COLUMN IF NOT EXISTS stopped Bool DEFAULT false",
                t.database
            )]
        },
    },
    Migration {
        version: 5,
        name: "events: a retried INSERT is not written twice",
        // An INSERT can be written by ClickHouse and still fail for us (the answer is lost,
        // the timeout strikes first). The recorder then sends the very same block again, and
        // with this window ClickHouse drops a block it has already written, as replicated
        // tables do by default. The other tables collapse repeats by key anyway.
        statements: |t| {
            vec![format!(
                "ALTER TABLE {}.events MODIFY SETTING non_replicated_deduplication_window = 1000",
                t.database
            )]
        },
    },
];

/// A running App, as its heartbeat records it (see `instances.rs`).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct InstanceRow {
    pub instance_id: String,
    pub host: String,
    pub pid: u32,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    pub seen_at: DateTime<Utc>,
    /// Its last row, written on a clean stop: no longer counted as running.
    pub stopped: bool,
}

fn app_tables_v1(t: &Tables) -> Vec<String> {
    let db = &t.database;
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.restarts (
                restart_id String, repo LowCardinality(String), workflow LowCardinality(String),
                head_sha String, attempt UInt32, workflow_file String, original_run_id UInt64,
                installation_id Nullable(UInt64), status LowCardinality(String),
                restart_run_id Nullable(UInt64), run_url String, dry_run UInt8,
                requested_at DateTime64(3, 'UTC'), dispatched_at Nullable(DateTime64(3, 'UTC')),
                confirmed_at Nullable(DateTime64(3, 'UTC')), confirm_latency_ms Nullable(UInt64),
                completed_at Nullable(DateTime64(3, 'UTC')), outcome LowCardinality(String),
                reason String, delivery_id String, version UInt64
            ) ENGINE = ReplacingMergeTree(version)
            ORDER BY (repo, workflow, head_sha, restart_id)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.events (
                ts DateTime64(3, 'UTC'), event_id String, repo LowCardinality(String),
                workflow LowCardinality(String), head_sha String, restart_id String,
                kind LowCardinality(String), dry_run UInt8, delivery_id String,
                message String, details String
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts)
            ORDER BY (repo, head_sha, ts, event_id)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.deliveries (
                delivery_id String, event LowCardinality(String), action LowCardinality(String),
                repo String, head_sha String, installation_id Nullable(UInt64),
                received_at DateTime64(3, 'UTC'), processed_at DateTime64(3, 'UTC'),
                decision String, body_bytes UInt32
            ) ENGINE = ReplacingMergeTree(processed_at) ORDER BY delivery_id"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.job_results (
                repo LowCardinality(String), run_id UInt64, job_id UInt64, run_attempt UInt32,
                head_sha String, head_branch String, workflow_name LowCardinality(String),
                name String, status LowCardinality(String), conclusion LowCardinality(String),
                updated_at DateTime64(3, 'UTC'), version UInt64
            ) ENGINE = ReplacingMergeTree(version) ORDER BY (repo, run_id, job_id)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.restart_job_verdicts (
                ts DateTime64(3, 'UTC'), restart_id String, repo LowCardinality(String),
                workflow LowCardinality(String), head_sha String, original_run_id UInt64,
                restart_run_id UInt64, job String, verdict LowCardinality(String), detail String
            ) ENGINE = ReplacingMergeTree(ts) ORDER BY (repo, head_sha, restart_id, job)"
        ),
    ]
}

/// Empties a table's rows from the batch once written; keeps them and the error otherwise.
fn written<T>(rows: &mut Vec<T>, r: Result<()>, failed: &mut Vec<anyhow::Error>) {
    match r {
        Ok(()) => rows.clear(),
        Err(e) => failed.push(e),
    }
}

fn db_of(table: &str) -> Option<&str> {
    table.split_once('.').map(|(db, _)| db)
}

/// The local mirror of PyTorch's CI tables (columns as in PyTorch's DDL; `workflow_event`
/// comes from the run through a dictionary, as PyTorch's alias does). Created only when
/// ingestion is on, so `migrate` never touches PyTorch's own tables.
///
/// Granules are smaller than ClickHouse's default 8192: the confirmation query reads whole
/// granules, at least one per run of the commit in `workflow_job` and one in the sha view,
/// so 1024/256-row granules make a lookup read a few thousand rows instead of tens of
/// thousands (bench/confirmation.sh), for a primary index of ~20k marks per 20M rows.
fn mirror_tables(t: &Tables) -> Vec<String> {
    let mut dbs: Vec<&str> = [&t.job, &t.run, &t.job_by_sha]
        .iter()
        .filter_map(|n| db_of(n))
        .collect();
    dbs.dedup();
    let run_dict = format!("{}_dict", t.run);
    let (run_db, run_table) = t.run.split_once('.').unwrap_or((&t.database, &t.run));
    let mut out: Vec<String> = dbs
        .into_iter()
        .map(|db| format!("CREATE DATABASE IF NOT EXISTS {db}"))
        .collect();
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS {run} (
            id Int64, name String, event String, head_sha String, head_branch String,
            status String, conclusion String, path String, run_attempt Int64, workflow_id Int64,
            created_at DateTime64(9), updated_at DateTime64(9), html_url String, url String,
            repository_full_name String, dynamoKey String, _inserted_at DateTime MATERIALIZED now()
        ) ENGINE = ReplacingMergeTree ORDER BY (id, dynamoKey)",
        run = t.run
    ));
    // Checked every second, reloaded only when runs were added (the invalidate query is a
    // metadata count): a new run reaches `workflow_event` within about a second, and an
    // idle mirror costs nothing.
    out.push(format!(
        "CREATE DICTIONARY IF NOT EXISTS {run_dict} (id UInt64, event String, created_at DateTime64(9))
         PRIMARY KEY id SOURCE(CLICKHOUSE(DB '{run_db}' TABLE '{run_table}'
             INVALIDATE_QUERY 'SELECT count() FROM {run_db}.{run_table}'))
         LIFETIME(MIN 1 MAX 1) LAYOUT(HASHED())"
    ));
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS {job} (
            check_run_url String, completed_at DateTime64(9), conclusion String,
            created_at DateTime64(9), dynamoKey String, head_branch String, head_sha String,
            html_url String, id Int64, labels Array(String), name String, node_id String,
            run_attempt Int64, run_id Int64, run_url String, runner_group_id Int64,
            runner_group_name String, runner_id Int64, runner_name String,
            started_at DateTime64(9), status String,
            steps Array(Tuple(completed_at DateTime64(9), conclusion String, name String, number Int64, started_at DateTime64(9), status String)),
            url String, workflow_name String, backfill Bool DEFAULT true,
            _inserted_at DateTime MATERIALIZED now(),
            repository_full_name String ALIAS extract(url, 'repos/([^/]+/[^/]+)/'),
            workflow_event String ALIAS dictGetString('{run_dict}', 'event', toUInt64(run_id)),
            workflow_created_at DateTime64(9) ALIAS dictGet('{run_dict}', 'created_at', toUInt64(run_id)),
            INDEX status_idx status TYPE bloom_filter GRANULARITY 1
        ) ENGINE = ReplacingMergeTree ORDER BY (id, run_id, dynamoKey)
        SETTINGS index_granularity = 1024",
        job = t.job
    ));
    out.push(format!(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS {by_sha}
         ENGINE = ReplacingMergeTree ORDER BY (head_sha, id, run_id)
         SETTINGS index_granularity = 256
         AS SELECT head_sha, id, run_id FROM {job}",
        by_sha = t.job_by_sha,
        job = t.job
    ));
    out
}

// ---- rows ----

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct RestartRow {
    restart_id: String,
    repo: String,
    workflow: String,
    head_sha: String,
    attempt: u32,
    workflow_file: String,
    original_run_id: u64,
    installation_id: Option<u64>,
    status: String,
    restart_run_id: Option<u64>,
    run_url: String,
    dry_run: u8,
    dispatch_attempts: u32,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    requested_at: DateTime<Utc>,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis::option")]
    dispatched_at: Option<DateTime<Utc>>,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis::option")]
    confirmed_at: Option<DateTime<Utc>>,
    confirm_latency_ms: Option<u64>,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis::option")]
    completed_at: Option<DateTime<Utc>>,
    outcome: String,
    reason: String,
    delivery_id: String,
    version: u64,
}

impl From<&Restart> for RestartRow {
    fn from(r: &Restart) -> Self {
        RestartRow {
            restart_id: r.restart_id.clone(),
            repo: r.key.repo.clone(),
            workflow: r.key.workflow.clone(),
            head_sha: r.key.head_sha.clone(),
            attempt: r.attempt,
            workflow_file: r.workflow_file.clone(),
            original_run_id: r.original_run_id,
            installation_id: r.installation_id,
            status: r.status.as_str().to_string(),
            restart_run_id: r.restart_run_id,
            run_url: r.run_url.clone(),
            dry_run: r.dry_run as u8,
            dispatch_attempts: r.dispatch_attempts,
            requested_at: r.requested_at,
            dispatched_at: r.dispatched_at,
            confirmed_at: r.confirmed_at,
            confirm_latency_ms: r.confirm_latency_ms,
            completed_at: r.completed_at,
            outcome: r
                .outcome
                .map(|o| o.as_str().to_string())
                .unwrap_or_default(),
            reason: r.reason.clone(),
            delivery_id: r.delivery_id.clone(),
            version: r.version,
        }
    }
}

impl RestartRow {
    fn into_restart(self) -> Result<Restart> {
        let status = Status::parse(&self.status).with_context(|| {
            format!(
                "restart {}: unknown status {:?}",
                self.restart_id, self.status
            )
        })?;
        let outcome = match self.outcome.as_str() {
            "" => None,
            "reproduced" => Some(Verdict::Reproduced),
            "not_reproduced" => Some(Verdict::NotReproduced),
            "inconclusive" => Some(Verdict::Inconclusive),
            other => anyhow::bail!("restart {}: unknown outcome {other:?}", self.restart_id),
        };
        Ok(Restart {
            restart_id: self.restart_id,
            key: RestartKey {
                repo: self.repo,
                workflow: self.workflow,
                head_sha: self.head_sha,
            },
            attempt: self.attempt,
            workflow_file: self.workflow_file,
            original_run_id: self.original_run_id,
            installation_id: self.installation_id,
            status,
            restart_run_id: self.restart_run_id,
            run_url: self.run_url,
            dry_run: self.dry_run != 0,
            dispatch_attempts: self.dispatch_attempts,
            requested_at: self.requested_at,
            dispatched_at: self.dispatched_at,
            confirmed_at: self.confirmed_at,
            confirm_latency_ms: self.confirm_latency_ms,
            completed_at: self.completed_at,
            outcome,
            reason: self.reason,
            delivery_id: self.delivery_id,
            version: self.version,
        })
    }
}

/// One line of the append-only event log.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct EventRow {
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    pub ts: DateTime<Utc>,
    pub event_id: String,
    pub repo: String,
    pub workflow: String,
    pub head_sha: String,
    pub restart_id: String,
    pub kind: String,
    pub dry_run: u8,
    pub delivery_id: String,
    pub message: String,
    pub details: String,
}

impl EventRow {
    pub fn for_restart(r: &Restart, kind: &str, message: impl Into<String>) -> EventRow {
        EventRow {
            ts: Utc::now(),
            event_id: uuid::Uuid::new_v4().to_string(),
            repo: r.key.repo.clone(),
            workflow: r.key.workflow.clone(),
            head_sha: r.key.head_sha.clone(),
            restart_id: r.restart_id.clone(),
            kind: kind.to_string(),
            dry_run: r.dry_run as u8,
            delivery_id: r.delivery_id.clone(),
            message: message.into(),
            details: String::new(),
        }
    }

    pub fn for_key(
        key: &RestartKey,
        kind: &str,
        delivery_id: &str,
        message: impl Into<String>,
    ) -> EventRow {
        EventRow {
            ts: Utc::now(),
            event_id: uuid::Uuid::new_v4().to_string(),
            repo: key.repo.clone(),
            workflow: key.workflow.clone(),
            head_sha: key.head_sha.clone(),
            restart_id: String::new(),
            kind: kind.to_string(),
            dry_run: 0,
            delivery_id: delivery_id.to_string(),
            message: message.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: &impl Serialize) -> EventRow {
        self.details = serde_json::to_string(details).unwrap_or_default();
        self
    }
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct DeliveryRow {
    pub delivery_id: String,
    pub event: String,
    pub action: String,
    pub repo: String,
    pub head_sha: String,
    pub installation_id: Option<u64>,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    pub received_at: DateTime<Utc>,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    pub processed_at: DateTime<Utc>,
    pub decision: String,
    pub body_bytes: u32,
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct JobResultRow {
    repo: String,
    run_id: u64,
    job_id: u64,
    run_attempt: u32,
    head_sha: String,
    head_branch: String,
    workflow_name: String,
    name: String,
    status: String,
    conclusion: String,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    updated_at: DateTime<Utc>,
    version: u64,
}

/// A later status must win over an earlier one even when deliveries arrive out of order.
fn status_rank(status: &str) -> u64 {
    match status {
        "queued" | "waiting" | "pending" | "requested" => 1,
        "in_progress" => 2,
        "completed" => 3,
        _ => 0,
    }
}

impl JobResultRow {
    pub fn new(repo: &str, job: &Job) -> Self {
        let now = Utc::now();
        JobResultRow {
            repo: repo.to_string(),
            run_id: job.run_id,
            job_id: job.id,
            run_attempt: job.run_attempt,
            head_sha: job.head_sha.clone(),
            head_branch: job.head_branch.clone().unwrap_or_default(),
            workflow_name: job.workflow_name.clone(),
            name: job.name.clone(),
            status: job.status.clone(),
            conclusion: job.conclusion.clone().unwrap_or_default(),
            updated_at: now,
            version: status_rank(&job.status) * 10u64.pow(16)
                + now.timestamp_micros().max(0) as u64,
        }
    }
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
struct VerdictRow {
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    ts: DateTime<Utc>,
    restart_id: String,
    repo: String,
    workflow: String,
    head_sha: String,
    original_run_id: u64,
    restart_run_id: u64,
    job: String,
    verdict: String,
    detail: String,
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct MirrorRunRow {
    id: i64,
    name: String,
    event: String,
    head_sha: String,
    head_branch: String,
    status: String,
    conclusion: String,
    path: String,
    run_attempt: i64,
    workflow_id: i64,
    created_at: i64,
    updated_at: i64,
    html_url: String,
    url: String,
    repository_full_name: String,
    #[serde(rename = "dynamoKey")]
    dynamo_key: String,
}

type StepTuple = (i64, String, String, i64, i64, String);

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct MirrorJobRow {
    check_run_url: String,
    completed_at: i64,
    conclusion: String,
    created_at: i64,
    #[serde(rename = "dynamoKey")]
    dynamo_key: String,
    head_branch: String,
    head_sha: String,
    html_url: String,
    id: i64,
    labels: Vec<String>,
    name: String,
    node_id: String,
    run_attempt: i64,
    run_id: i64,
    run_url: String,
    runner_group_id: i64,
    runner_group_name: String,
    runner_id: i64,
    runner_name: String,
    started_at: i64,
    status: String,
    steps: Vec<StepTuple>,
    url: String,
    workflow_name: String,
}

fn nanos(t: Option<DateTime<Utc>>) -> i64 {
    t.and_then(|t| t.timestamp_nanos_opt()).unwrap_or(0)
}

impl MirrorRunRow {
    pub fn new(repo: &str, r: &Run) -> Self {
        MirrorRunRow {
            id: r.id as i64,
            name: r.name.clone(),
            event: r.event.clone(),
            head_sha: r.head_sha.clone(),
            head_branch: r.head_branch.clone().unwrap_or_default(),
            status: r.status.clone(),
            conclusion: r.conclusion.clone().unwrap_or_default(),
            path: r.path.clone(),
            run_attempt: r.run_attempt as i64,
            workflow_id: r.workflow_id as i64,
            created_at: nanos(Some(r.created_at)),
            updated_at: nanos(r.updated_at),
            html_url: r.html_url.clone(),
            url: r.url.clone(),
            repository_full_name: repo.to_string(),
            dynamo_key: format!("{repo}/{}", r.id),
        }
    }
}

/// Rows written together, one INSERT per table (ClickHouse wants few, large inserts).
#[derive(Default)]
pub struct Batch {
    restarts: Vec<RestartRow>,
    deliveries: Vec<DeliveryRow>,
    events: Vec<EventRow>,
    jobs: Vec<JobResultRow>,
    mirror_runs: Vec<MirrorRunRow>,
    mirror_jobs: Vec<MirrorJobRow>,
}

impl Batch {
    pub fn restart(&mut self, row: RestartRow) {
        self.restarts.push(row);
    }
    pub fn delivery(&mut self, row: DeliveryRow) {
        self.deliveries.push(row);
    }
    pub fn event(&mut self, row: EventRow) {
        self.events.push(row);
    }
    pub fn job(&mut self, row: JobResultRow) {
        self.jobs.push(row);
    }
    pub fn mirror_run(&mut self, row: MirrorRunRow) {
        self.mirror_runs.push(row);
    }
    pub fn mirror_job(&mut self, row: MirrorJobRow) {
        self.mirror_jobs.push(row);
    }
    pub fn len(&self) -> usize {
        self.restarts.len()
            + self.deliveries.len()
            + self.events.len()
            + self.jobs.len()
            + self.mirror_runs.len()
            + self.mirror_jobs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Moves `other`'s rows behind these (batches that queued while an INSERT was in flight
    /// go out together as one larger INSERT).
    pub fn absorb(&mut self, mut other: Batch) {
        self.restarts.append(&mut other.restarts);
        self.deliveries.append(&mut other.deliveries);
        self.events.append(&mut other.events);
        self.jobs.append(&mut other.jobs);
        self.mirror_runs.append(&mut other.mirror_runs);
        self.mirror_jobs.append(&mut other.mirror_jobs);
    }
}

impl MirrorJobRow {
    pub fn new(repo: &str, j: &Job) -> Self {
        MirrorJobRow {
            check_run_url: j.check_run_url.clone(),
            completed_at: nanos(j.completed_at),
            conclusion: j.conclusion.clone().unwrap_or_default(),
            created_at: nanos(j.created_at),
            dynamo_key: format!("{repo}/{}", j.id),
            head_branch: j.head_branch.clone().unwrap_or_default(),
            head_sha: j.head_sha.clone(),
            html_url: j.html_url.clone(),
            id: j.id as i64,
            labels: j.labels.clone(),
            name: j.name.clone(),
            node_id: j.node_id.clone(),
            run_attempt: j.run_attempt as i64,
            run_id: j.run_id as i64,
            run_url: j.run_url.clone(),
            runner_group_id: j.runner_group_id.unwrap_or(0),
            runner_group_name: j.runner_group_name.clone().unwrap_or_default(),
            runner_id: j.runner_id.unwrap_or(0),
            runner_name: j.runner_name.clone().unwrap_or_default(),
            started_at: nanos(j.started_at),
            status: j.status.clone(),
            steps: j
                .steps
                .iter()
                .map(|s| {
                    (
                        nanos(s.completed_at),
                        s.conclusion.clone().unwrap_or_default(),
                        s.name.clone(),
                        s.number,
                        nanos(s.started_at),
                        s.status.clone(),
                    )
                })
                .collect(),
            url: j.url.clone(),
            workflow_name: j.workflow_name.clone(),
        }
    }
}

#[derive(Debug, Row, Deserialize)]
struct JobStateRow {
    name: String,
    status: String,
    conclusion: String,
}

impl Store {
    pub fn new(cfg: &ClickHouseConfig) -> Store {
        let mut client =
            clickhouse::Client::default().with_url(cfg.url.as_str().trim_end_matches('/'));
        if let Some(user) = &cfg.user {
            client = client.with_user(user);
        }
        if let Some(pw) = cfg.password() {
            client = client.with_password(pw);
        }
        Store {
            unvalidated: client.clone().with_validation(false),
            client,
            tables: cfg.tables.clone(),
            mirror: cfg.ingest,
            timeout: cfg.timeout,
        }
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    pub fn mirror_enabled(&self) -> bool {
        self.mirror
    }

    fn t(&self, name: &str) -> String {
        format!("{}.{name}", self.tables.database)
    }

    /// Liveness of the server (`SELECT 1`), with a message that says where it looked.
    pub async fn ping(&self) -> Result<()> {
        self.client
            .query("SELECT 1")
            .fetch_one::<u8>()
            .within(self.timeout)
            .await
            .map(|_| ())
            .context("ClickHouse does not answer `SELECT 1`")
    }

    /// Creates or updates the schema; returns the names of the steps applied now.
    pub async fn migrate(&self) -> Result<Vec<String>> {
        let db = &self.tables.database;
        self.exec(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
            .await?;
        self.exec(&format!(
            "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
                version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
            ) ENGINE = MergeTree ORDER BY version"
        ))
        .await?;
        let applied: Vec<u32> = self
            .client
            .query(&format!("SELECT version FROM {db}.schema_migrations"))
            .fetch_all()
            .within(self.timeout)
            .await
            .context("reading schema_migrations")?;
        let mut done = Vec::new();
        for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
            for sql in (m.statements)(&self.tables) {
                self.exec(&sql).await?;
            }
            self.exec(&format!(
                "INSERT INTO {db}.schema_migrations (version, name) VALUES ({}, '{}')",
                m.version, m.name
            ))
            .await?;
            done.push(format!("{:03} {}", m.version, m.name));
        }
        if self.mirror {
            for sql in mirror_tables(&self.tables) {
                self.exec(&sql).await?;
            }
        }
        Ok(done)
    }

    async fn exec(&self, sql: &str) -> Result<()> {
        self.client
            .query(sql)
            .execute()
            .within(self.timeout)
            .await
            .with_context(|| format!("ClickHouse refused: {}", first_line(sql)))
    }

    async fn insert_rows<T>(&self, table: &str, rows: &[T::Value<'_>]) -> Result<()>
    where
        T: Row + clickhouse::RowWrite,
    {
        self.insert_with::<T>(&self.client, table, rows).await
    }

    async fn insert_with<T>(
        &self,
        client: &clickhouse::Client,
        table: &str,
        rows: &[T::Value<'_>],
    ) -> Result<()>
    where
        T: Row + clickhouse::RowWrite,
    {
        if rows.is_empty() {
            return Ok(());
        }
        // Validation first reads the table's schema: a query, bounded too.
        let mut insert = client
            .insert_unescaped::<T>(table)
            .within(self.timeout)
            .await
            .with_context(|| format!("preparing insert into {table}"))?
            .with_timeouts(Some(self.timeout), Some(self.timeout));
        for row in rows {
            insert
                .write(row)
                .await
                .with_context(|| format!("writing a row to {table}"))?;
        }
        insert
            .end()
            .await
            .with_context(|| format!("inserting into {table}"))
    }

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
            .within(self.timeout)
            .await
            .context("loading the restart ledger")?;
        rows.into_iter().map(RestartRow::into_restart).collect()
    }

    pub async fn restarts_for(&self, key: &RestartKey) -> Result<Vec<Restart>> {
        let rows: Vec<RestartRow> = self
            .client
            .query(&format!(
                "SELECT ?fields FROM {} FINAL WHERE repo = {{repo:String}} AND workflow = {{workflow:String}}
                 AND head_sha = {{sha:String}} ORDER BY attempt",
                self.t("restarts")
            ))
            .param("repo", &key.repo)
            .param("workflow", &key.workflow)
            .param("sha", &key.head_sha)
            .fetch_all()
            .within(self.timeout)
            .await
            .context("reading restarts")?;
        rows.into_iter().map(RestartRow::into_restart).collect()
    }

    pub async fn events_for(&self, key: &RestartKey) -> Result<Vec<EventRow>> {
        self.client
            .query(&format!(
                "SELECT ?fields FROM {} WHERE repo = {{repo:String}} AND workflow = {{workflow:String}}
                 AND head_sha = {{sha:String}} ORDER BY ts, event_id",
                self.t("events")
            ))
            .param("repo", &key.repo)
            .param("workflow", &key.workflow)
            .param("sha", &key.head_sha)
            .fetch_all()
            .within(self.timeout)
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
            .within(self.timeout)
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
            .within(self.timeout)
            .await
            .context("reading instances")
    }

    /// The latest known state of every job of a run.
    pub async fn job_states(&self, repo: &str, run_id: u64) -> Result<Vec<JobState>> {
        let rows: Vec<JobStateRow> = self
            .client
            .query(&format!(
                "SELECT name, status, conclusion FROM {} FINAL
                 WHERE repo = {{repo:String}} AND run_id = {{run:UInt64}} ORDER BY name",
                self.t("job_results")
            ))
            .param("repo", repo)
            .param("run", run_id)
            .fetch_all()
            .within(self.timeout)
            .await
            .context("reading job results")?;
        Ok(rows
            .into_iter()
            .map(|r| JobState {
                name: r.name,
                status: r.status,
                conclusion: (!r.conclusion.is_empty()).then_some(r.conclusion),
            })
            .collect())
    }

    pub async fn record_verdicts(&self, r: &Restart, jobs: &[JobVerdict]) -> Result<()> {
        let now = Utc::now();
        let rows: Vec<VerdictRow> = jobs
            .iter()
            .map(|j| VerdictRow {
                ts: now,
                restart_id: r.restart_id.clone(),
                repo: r.key.repo.clone(),
                workflow: r.key.workflow.clone(),
                head_sha: r.key.head_sha.clone(),
                original_run_id: r.original_run_id,
                restart_run_id: r.restart_run_id.unwrap_or(0),
                job: j.job.clone(),
                verdict: j.verdict.as_str().to_string(),
                detail: j.detail.clone(),
            })
            .collect();
        self.insert_rows::<VerdictRow>(&self.t("restart_job_verdicts"), &rows)
            .await
    }

    /// Writes a batch: one INSERT per table that has rows. Every table is tried (one failing
    /// does not hold back the others); a table written successfully is emptied from the
    /// batch, and the rest stays, unchanged, for the next attempt.
    pub async fn write(&self, b: &mut Batch) -> Result<()> {
        let mut failed = Vec::new();
        let r = self
            .insert_rows::<RestartRow>(&self.t("restarts"), &b.restarts)
            .await;
        written(&mut b.restarts, r, &mut failed);
        let r = self
            .insert_rows::<DeliveryRow>(&self.t("deliveries"), &b.deliveries)
            .await;
        written(&mut b.deliveries, r, &mut failed);
        let r = self
            .insert_rows::<EventRow>(&self.t("events"), &b.events)
            .await;
        written(&mut b.events, r, &mut failed);
        let r = self
            .insert_rows::<JobResultRow>(&self.t("job_results"), &b.jobs)
            .await;
        written(&mut b.jobs, r, &mut failed);
        if self.mirror {
            let r = self
                .insert_rows::<MirrorRunRow>(&self.tables.run, &b.mirror_runs)
                .await;
            written(&mut b.mirror_runs, r, &mut failed);
            // Without schema validation: ClickHouse 26 prints the named `steps` Tuple over
            // several lines in DESCRIBE, which clickhouse-rs 0.15's type parser rejects. Plain
            // RowBinary with an explicit column list (the struct's fields, in order) needs none.
            let r = self
                .insert_with::<MirrorJobRow>(&self.unvalidated, &self.tables.job, &b.mirror_jobs)
                .await;
            written(&mut b.mirror_jobs, r, &mut failed);
        } else {
            b.mirror_runs.clear();
            b.mirror_jobs.clear();
        }
        let more = failed.len().saturating_sub(1);
        match failed.into_iter().next() {
            None => Ok(()),
            Some(e) if more == 0 => Err(e),
            Some(e) => Err(anyhow::anyhow!(
                "{e:#} (and {more} more table(s) not written)"
            )),
        }
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
            .within(self.timeout)
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

fn first_line(sql: &str) -> String {
    let line = sql.trim().lines().next().unwrap_or("");
    line.chars().take(120).collect()
}

//! The App's schema: its own tables (restart ledger, deliveries, event log, job states,
//! per-job verdicts, instances), their migrations, and the local mirror of PyTorch's
//! `workflow_run`/`workflow_job`.
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

use super::{Store, Tables, Within};
use anyhow::{Context, Result};

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
    Migration {
        version: 6,
        name: "restarts.check_run_* (the check run on the commit)",
        // Rows written before have `check_run_wanted = false`: no check run is made for
        // restarts recorded before the App made them.
        statements: |t| {
            vec![format!(
                "ALTER TABLE {}.restarts
                    ADD COLUMN IF NOT EXISTS check_run_wanted Bool DEFAULT false,
                    ADD COLUMN IF NOT EXISTS check_run_id Nullable(UInt64),
                    ADD COLUMN IF NOT EXISTS check_run_url String DEFAULT '',
                    ADD COLUMN IF NOT EXISTS check_run_shown UInt32 DEFAULT 0,
                    ADD COLUMN IF NOT EXISTS check_run_jobs String DEFAULT '',
                    ADD COLUMN IF NOT EXISTS check_run_error String DEFAULT ''",
                t.database
            )]
        },
    },
    Migration {
        version: 7,
        name: "restarts: the scope (full, jobs, tests, jobs+tests), its filters and job counts",
        statements: scope_columns,
    },
    Migration {
        version: 8,
        name: "decision engine state: commits on main, runs, job times",
        statements: super::signal_state::tables_v8,
    },
    Migration {
        version: 9,
        name: "decision engine: decisions and revert actions",
        statements: super::signal_state::tables_v9,
    },
];

/// What a restart asked for, why and from which evidence, and the jobs it ran against the
/// original run's. Rows from before read as full restarts, which they were.
fn scope_columns(t: &Tables) -> Vec<String> {
    vec![format!(
        "ALTER TABLE {}.restarts
            ADD COLUMN IF NOT EXISTS scope_kind LowCardinality(String) DEFAULT 'full',
            ADD COLUMN IF NOT EXISTS scope_reason String,
            ADD COLUMN IF NOT EXISTS scope_jobs Array(String),
            ADD COLUMN IF NOT EXISTS scope_tests Array(String),
            ADD COLUMN IF NOT EXISTS scope_source String,
            ADD COLUMN IF NOT EXISTS jobs_original UInt32,
            ADD COLUMN IF NOT EXISTS jobs_asked UInt32,
            ADD COLUMN IF NOT EXISTS jobs_restarted Nullable(UInt32)",
        t.database
    )]
}

impl Migration {
    fn label(&self) -> String {
        format!("{:03} {}", self.version, self.name)
    }
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
    let mut dbs: Vec<&str> = [&t.job, &t.run, &t.job_by_sha, &t.tests]
        .iter()
        .filter_map(|n| db_of(n))
        .collect();
    dbs.sort_unstable();
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
    out.extend(failure_evidence_tables(t));
    out
}

/// The log classifier's verdict on a job (PyTorch's `torchci_classification`, `_temp` while
/// the job runs, and the `_kg` alias that prefers the final one), and a small copy of
/// `tests.all_test_runs` (the columns PyTorch's autorevert reads): the evidence of a
/// restart's test filter. Nothing the App receives fills them; PyTorch's pipelines do (the
/// tests fill the mirror themselves). Added by ALTER too, for mirrors made before.
fn failure_evidence_tables(t: &Tables) -> Vec<String> {
    const CLASSIFICATION: &str = "Tuple(captures Array(String), context Array(String), \
        job_id Int64, line String, line_num Int64, rule String)";
    let job = &t.job;
    vec![
        format!(
            "ALTER TABLE {job} ADD COLUMN IF NOT EXISTS torchci_classification {CLASSIFICATION}"
        ),
        format!(
            "ALTER TABLE {job} ADD COLUMN IF NOT EXISTS torchci_classification_temp {CLASSIFICATION}"
        ),
        format!(
            "ALTER TABLE {job} ADD COLUMN IF NOT EXISTS torchci_classification_kg {CLASSIFICATION}
             ALIAS if(tupleElement(torchci_classification, 'line') = '',
                      torchci_classification_temp, torchci_classification)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {tests} (
                job_id Int64, workflow_id Int64, workflow_run_attempt Int32,
                file String, classname String, name String,
                failure_count UInt32, error_count UInt32, skipped_count UInt32, rerun_count UInt32,
                time_inserted DateTime DEFAULT now()
            ) ENGINE = MergeTree ORDER BY (job_id, file, classname, name)",
            tests = t.tests
        ),
    ]
}

impl Store {
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
        let applied = self.applied_versions().await?;
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
            done.push(m.label());
        }
        if self.mirror {
            for sql in mirror_tables(&self.tables) {
                self.exec(&sql).await?;
            }
        }
        Ok(done)
    }

    async fn applied_versions(&self) -> Result<Vec<u32>> {
        self.client
            .query(&format!(
                "SELECT version FROM {}.schema_migrations",
                self.tables.database
            ))
            .fetch_all()
            .within(self)
            .await
            .context("reading schema_migrations")
    }

    /// The schema steps this database lacks ("001 name", in order): all of them when the
    /// database or its `schema_migrations` table does not exist yet. Reads only; `migrate`
    /// applies them.
    pub async fn missing_migrations(&self) -> Result<Vec<String>> {
        let found: u64 = self
            .client
            .query("SELECT count() FROM system.tables WHERE database = ? AND name = 'schema_migrations'")
            .bind(&self.tables.database)
            .fetch_one()
            .within(self)
            .await
            .context("looking for schema_migrations")?;
        let applied = match found {
            0 => Vec::new(),
            _ => self.applied_versions().await?,
        };
        Ok(MIGRATIONS
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(Migration::label)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    /// A migration's name goes into `schema_migrations` as a SQL string literal.
    #[test]
    fn migrations_are_numbered_in_order_with_plain_names() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
            assert!(!m.name.contains(['\'', '\\']), "{}", m.name);
        }
    }
}

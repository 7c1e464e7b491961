//! ClickHouse: the App's store. `Store` is the client, every call bounded by a timeout;
//! `schema` its tables and migrations, `rows` and `mirror` what is written, `batch` how
//! (one INSERT per table), `recorder` when (batched, behind the delivery log's acks), and
//! `queries` what is read back (`status`: what the status pages read; `failures`: how the
//! failing jobs of a run failed, for a restart's test filter).

pub mod batch;
pub mod failures;
pub mod mirror;
pub mod pytorch_events;
pub mod queries;
pub mod recorder;
pub mod rows;
pub mod schema;
pub mod signal_state;
pub mod status;

pub use queries::confirmation_sql;

use anyhow::{Context, Result};
use clickhouse::Row;
use secrecy::{ExposeSecret, SecretString};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

/// ClickHouse table names; configurable so the App can read PyTorch's tables in production
/// and a per-test database in tests.
#[derive(Debug, Clone)]
pub struct Tables {
    pub database: String,
    pub job: String,
    pub run: String,
    pub job_by_sha: String,
    /// PyTorch's per-test results (`tests.all_test_runs`): a restart's test filter.
    pub tests: String,
}

#[derive(Clone)]
pub struct ClickHouseConfig {
    pub url: Url,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    pub tables: Tables,
    pub ingest: bool,
    /// Longest wait for any one ClickHouse call.
    pub timeout: Duration,
}

impl ClickHouseConfig {
    /// The URL without credentials, for logs.
    pub fn display_url(&self) -> String {
        let mut u = self.url.clone();
        let _ = u.set_password(None);
        let _ = u.set_username("");
        u.to_string()
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_ref().map(|p| p.expose_secret())
    }
}

#[derive(Clone)]
pub struct Store {
    client: clickhouse::Client,
    unvalidated: clickhouse::Client,
    tables: Tables,
    mirror: bool,
    /// Every call is bounded by this (`CLICKHOUSE_TIMEOUT_SECS`).
    timeout: Duration,
    /// How the last call went (shared by the clones), for `/healthz`.
    last_call: Arc<Mutex<Option<LastCall>>>,
}

/// How the last ClickHouse call went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastCall {
    pub ok: bool,
    pub at: chrono::DateTime<chrono::Utc>,
    pub error: Option<String>,
}

/// Bounds a ClickHouse call. The client has no timeout of its own, so a server that stops
/// answering without closing the connection would hold the caller (the recorder, and
/// behind it the whole pipeline) until TCP keepalive gives up, many minutes later.
/// The call's outcome is noted on the store (`/healthz`) and counted (`/metrics`).
trait Within<T> {
    async fn within(self, store: &Store) -> Result<T>;
}

impl<T, F> Within<T> for F
where
    F: std::future::Future<Output = clickhouse::error::Result<T>>,
{
    async fn within(self, store: &Store) -> Result<T> {
        let limit = store.timeout;
        let outcome = match tokio::time::timeout(limit, self).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(("error", anyhow::Error::from(e))),
            Err(_) => Err((
                "timeout",
                anyhow::anyhow!(
                    "ClickHouse did not answer within {} s (CLICKHOUSE_TIMEOUT_SECS)",
                    limit.as_secs_f64()
                ),
            )),
        };
        store.note(outcome.as_ref().err().map(|(_, e)| format!("{e:#}")));
        outcome.map_err(|(why, e)| {
            metrics::counter!("autorevert_clickhouse_errors_total", "why" => why).increment(1);
            e
        })
    }
}

impl Store {
    /// Notes how a call went: `None` for success, else the error.
    fn note(&self, error: Option<String>) {
        let call = LastCall {
            ok: error.is_none(),
            at: chrono::Utc::now(),
            error,
        };
        *self.last_call.lock().expect("last call lock") = Some(call);
    }

    /// How the last ClickHouse call went (None: no call yet).
    pub fn last_call(&self) -> Option<LastCall> {
        self.last_call.lock().expect("last call lock").clone()
    }

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
            last_call: Arc::default(),
        }
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    pub fn mirror_enabled(&self) -> bool {
        self.mirror
    }

    pub(crate) fn t(&self, name: &str) -> String {
        format!("{}.{name}", self.tables.database)
    }

    /// Liveness of the server (`SELECT 1`), with a message that says where it looked.
    pub async fn ping(&self) -> Result<()> {
        self.client
            .query("SELECT 1")
            .fetch_one::<u8>()
            .within(self)
            .await
            .map(|_| ())
            .context("ClickHouse does not answer `SELECT 1`")
    }

    pub(crate) async fn exec(&self, sql: &str) -> Result<()> {
        self.client
            .query(sql)
            .execute()
            .within(self)
            .await
            .with_context(|| format!("ClickHouse refused: {}", first_line(sql)))
    }

    pub(crate) async fn insert_rows<T>(&self, table: &str, rows: &[T::Value<'_>]) -> Result<()>
    where
        T: Row + clickhouse::RowWrite,
    {
        self.insert_with::<T>(&self.client, table, rows).await
    }

    pub(crate) async fn insert_with<T>(
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
            .within(self)
            .await
            .with_context(|| format!("preparing insert into {table}"))?
            .with_timeouts(Some(self.timeout), Some(self.timeout));
        for row in rows {
            insert
                .write(row)
                .await
                .with_context(|| format!("writing a row to {table}"))?;
        }
        let ended = insert
            .end()
            .await
            .with_context(|| format!("inserting into {table}"));
        self.note(ended.as_ref().err().map(|e| format!("{e:#}")));
        ended
    }
}

fn first_line(sql: &str) -> String {
    let line = sql.trim().lines().next().unwrap_or("");
    line.chars().take(120).collect()
}

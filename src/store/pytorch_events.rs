//! PyTorch's action log (`misc.autorevert_events_v2`, pytorch-autorevert.md §3.4), written
//! when `PYTORCH_EVENTS_TABLE` names it, so that PyTorch's Lambda, if it keeps running,
//! counts the App's restarts and reverts in its caps and its "one revert per commit, ever"
//! rule; and read, so that the App's own revert-once guard counts the Lambda's reverts.
//!
//! The table's sort key is `(repo, commit_sha, action, ts)` with `ts` in seconds, on a
//! `ReplacingMergeTree`: two rows with the same key collapse into one at merge time. So
//! each row written here gets a `ts` no row of its (repo, commit, action) has yet: the
//! newest one's plus a second when `now` is not later (our writes are serialized within
//! the process). What can still be lost: a row written in the same second, for the same
//! commit and action, by another process (the Lambda, a second App) whose row was not
//! visible yet. One restart row fewer loosens the Lambda's cap by one; a revert row never
//! collapses with a revert row that counts, since there is one per commit.
//!
//! The App never creates PyTorch's table in production: `create_pytorch_events_table`
//! serves tests and local runs with a mirror (`AUTOREVERT_INGEST`), as `schema.rs` makes
//! the mirror of PyTorch's CI tables.

use super::{Store, Within};
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Duration, DurationRound, Utc};
use clickhouse::Row;
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The actions of the `action` column (`Enum8('none'=0,'restart'=1,'revert'=2,'advisor'=3)`)
/// the App writes. `none` and `advisor` rows are the Lambda's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PytorchAction {
    Restart,
    Revert,
}

impl PytorchAction {
    /// The Enum8 value.
    pub fn code(self) -> i8 {
        match self {
            PytorchAction::Restart => 1,
            PytorchAction::Revert => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PytorchAction::Restart => "restart",
            PytorchAction::Revert => "revert",
        }
    }
}

/// A commit sha as `FixedString(40)`: 40 bytes, which RowBinary carries as a tuple.
#[derive(Clone, PartialEq, Eq)]
struct Sha40([u8; 40]);

impl Serialize for Sha40 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(40)?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Sha40 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Sha40;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("40 bytes (FixedString(40))")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Sha40, A::Error> {
                let mut out = [0u8; 40];
                for (i, b) in out.iter_mut().enumerate() {
                    *b = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                Ok(Sha40(out))
            }
        }
        d.deserialize_tuple(40, Bytes)
    }
}

impl fmt::Debug for Sha40 {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// One row of `misc.autorevert_events_v2`, its columns in the table's order and types.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct PytorchEventRow {
    /// `DateTime`, seconds. Set when written (see the module's note on the sort key).
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    ts: DateTime<Utc>,
    repo: String,
    /// The Enum8 value (`PytorchAction::code`).
    action: i8,
    commit_sha: Sha40,
    pub workflows: Vec<String>,
    pub source_signal_keys: Vec<String>,
    /// 1: the action had no side effect (`REVERT_ACTION=log`, `RESTART_ACTION=log`).
    pub dry_run: u8,
    /// 1: the side effect was attempted and failed (a dispatch GitHub refused).
    pub failed: u8,
    pub notes: String,
}

impl PytorchEventRow {
    fn new(
        action: PytorchAction,
        repo: &str,
        sha: &str,
        workflows: Vec<String>,
        signal_keys: Vec<String>,
        dry_run: bool,
        notes: impl Into<String>,
    ) -> Result<PytorchEventRow> {
        let valid_repo = repo
            .split_once('/')
            .is_some_and(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'));
        if !valid_repo {
            bail!("PyTorch's action log: repository {repo:?} is not owner/name");
        }
        let bytes: [u8; 40] = sha
            .as_bytes()
            .try_into()
            .ok()
            .filter(|b: &[u8; 40]| b.iter().all(u8::is_ascii_hexdigit))
            .with_context(|| {
                format!("PyTorch's action log: commit {sha:?} is not a 40-character hex sha")
            })?;
        Ok(PytorchEventRow {
            ts: Utc::now(),
            repo: repo.to_string(),
            action: action.code(),
            commit_sha: Sha40(bytes.map(|b| b.to_ascii_lowercase())),
            workflows,
            source_signal_keys: signal_keys,
            dry_run: u8::from(dry_run),
            failed: 0,
            notes: notes.into(),
        })
    }

    /// A restart of `workflows` on `sha` (PyTorch writes one row per workflow group).
    pub fn restart(
        repo: &str,
        sha: &str,
        workflows: Vec<String>,
        signal_keys: Vec<String>,
        dry_run: bool,
        notes: impl Into<String>,
    ) -> Result<PytorchEventRow> {
        Self::new(
            PytorchAction::Restart,
            repo,
            sha,
            workflows,
            signal_keys,
            dry_run,
            notes,
        )
    }

    /// A revert of `sha` (the comment was posted, or would be with `dry_run`), for the
    /// signals of `workflows` that blamed it.
    pub fn revert(
        repo: &str,
        sha: &str,
        workflows: Vec<String>,
        signal_keys: Vec<String>,
        dry_run: bool,
        notes: impl Into<String>,
    ) -> Result<PytorchEventRow> {
        Self::new(
            PytorchAction::Revert,
            repo,
            sha,
            workflows,
            signal_keys,
            dry_run,
            notes,
        )
    }

    /// Marks the action as attempted and failed.
    pub fn failed(mut self) -> PytorchEventRow {
        self.failed = 1;
        self
    }

    /// The time to write it at (by default: when it was built). Seconds are kept only.
    pub fn at(mut self, ts: DateTime<Utc>) -> PytorchEventRow {
        self.ts = ts;
        self
    }

    pub fn ts(&self) -> DateTime<Utc> {
        self.ts
    }

    pub fn repo(&self) -> &str {
        &self.repo
    }

    pub fn sha(&self) -> &str {
        // Built from ASCII hex digits, or read from a FixedString the App wrote.
        std::str::from_utf8(&self.commit_sha.0).unwrap_or_default()
    }

    /// The action (`None`: a row of the Lambda's own kinds, `none` or `advisor`).
    pub fn action(&self) -> Option<PytorchAction> {
        [PytorchAction::Restart, PytorchAction::Revert]
            .into_iter()
            .find(|a| a.code() == self.action)
    }
}

/// The table goes into SQL text: exactly `db.table`, each part letters, digits and `_`.
pub fn check_table(table: &str) -> Result<()> {
    let parts: Vec<&str> = table.split('.').collect();
    let plain = |p: &&str| {
        !p.is_empty()
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !p.starts_with(|c: char| c.is_ascii_digit())
    };
    if parts.len() != 2 || !parts.iter().all(plain) {
        bail!(
            "PyTorch's action log {table:?} is not a table name like misc.autorevert_events_v2 \
             (database.table; letters, digits and _)"
        );
    }
    Ok(())
}

/// Serializes this process's writes: each reads the newest `ts` of its key, then writes.
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Row, Deserialize)]
struct Newest {
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    ts: Option<DateTime<Utc>>,
}

impl Store {
    /// Writes one row into PyTorch's action log `table`; returns the `ts` it was written
    /// with: the row's own, or one second after the newest row of the same (repo, commit,
    /// action), so it cannot collapse with that one at merge time.
    pub async fn write_pytorch_event(
        &self,
        table: &str,
        mut row: PytorchEventRow,
    ) -> Result<DateTime<Utc>> {
        check_table(table)?;
        let _one_at_a_time = WRITES.lock().await;
        let newest: Newest = self
            .client
            .query(&format!(
                "SELECT if(count() = 0, NULL, max(ts)) AS ts FROM {table}
                 WHERE repo = {{repo:String}} AND commit_sha = {{sha:String}}
                   AND action = {{action:Int8}}"
            ))
            .param("repo", &row.repo)
            .param("sha", row.sha())
            .param("action", row.action)
            .fetch_one()
            .within(self)
            .await
            .with_context(|| format!("reading the newest row of {} in {table}", row.sha()))?;
        let mut ts = row
            .ts
            .duration_trunc(Duration::seconds(1))
            .unwrap_or(row.ts);
        if let Some(newest) = newest.ts.filter(|n| *n >= ts) {
            ts = newest + Duration::seconds(1);
        }
        row.ts = ts;
        self.insert_rows::<PytorchEventRow>(table, std::slice::from_ref(&row))
            .await?;
        Ok(ts)
    }

    /// Whether `sha` was reverted, by the Lambda or by the App: a `revert` row that is not
    /// a dry run and did not fail (PyTorch's `prior_revert_exists`, which the Lambda reads
    /// without `failed`: it always writes 0).
    pub async fn pytorch_reverts_of(&self, table: &str, repo: &str, sha: &str) -> Result<bool> {
        check_table(table)?;
        let found: u64 = self
            .client
            .query(&format!(
                "SELECT count() FROM {table} WHERE repo = {{repo:String}}
                   AND commit_sha = {{sha:String}} AND action = 'revert'
                   AND dry_run = 0 AND failed = 0"
            ))
            .param("repo", repo)
            .param("sha", sha.to_ascii_lowercase())
            .fetch_one()
            .within(self)
            .await
            .with_context(|| format!("looking for a revert of {sha} in {table}"))?;
        Ok(found > 0)
    }

    /// How many commits of `repo` were reverted (not dry runs, not failed) since `since`,
    /// by the Lambda or the App: for a daily cap that counts both.
    pub async fn pytorch_reverts_since(
        &self,
        table: &str,
        repo: &str,
        since: DateTime<Utc>,
    ) -> Result<u64> {
        check_table(table)?;
        self.client
            .query(&format!(
                "SELECT uniqExact(commit_sha) FROM {table} WHERE repo = {{repo:String}}
                   AND action = 'revert' AND dry_run = 0 AND failed = 0
                   AND ts >= toDateTime({{since:Int64}})"
            ))
            .param("repo", repo)
            .param("since", since.timestamp())
            .fetch_one()
            .within(self)
            .await
            .with_context(|| format!("counting reverts in {table}"))
    }

    /// Every row of `table` for `repo`, oldest first (for tests and `autorevert` tools).
    pub async fn pytorch_events(&self, table: &str, repo: &str) -> Result<Vec<PytorchEventRow>> {
        check_table(table)?;
        self.client
            .query(&format!(
                "SELECT ?fields FROM {table} WHERE repo = {{repo:String}} ORDER BY ts, action"
            ))
            .param("repo", repo)
            .fetch_all()
            .within(self)
            .await
            .with_context(|| format!("reading {table}"))
    }

    /// Creates PyTorch's action log as PyTorch's DDL has it (`ReplacingMergeTree` for its
    /// `SharedReplacingMergeTree`). Only for a local mirror (`AUTOREVERT_INGEST`), as the
    /// mirror of PyTorch's CI tables: in production the table is PyTorch's.
    pub async fn create_pytorch_events_table(&self, table: &str) -> Result<()> {
        check_table(table)?;
        if !self.mirror_enabled() {
            bail!(
                "not creating {table}: the App creates PyTorch's action log only for a local \
                 mirror (AUTOREVERT_INGEST); in production PyTorch owns it"
            );
        }
        let (db, _) = table.split_once('.').unwrap_or_default();
        self.exec(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
            .await?;
        self.exec(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                `ts` DateTime DEFAULT now(),
                `repo` LowCardinality(String) DEFAULT 'pytorch/pytorch',
                `action` Enum8('none' = 0, 'restart' = 1, 'revert' = 2, 'advisor' = 3),
                `commit_sha` FixedString(40),
                `workflows` Array(String),
                `source_signal_keys` Array(String),
                `dry_run` UInt8 DEFAULT 0,
                `failed` UInt8 DEFAULT 0,
                `notes` String DEFAULT ''
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(ts)
            ORDER BY (repo, commit_sha, action, ts)"
        ))
        .await
    }

    /// What keeps the App from using `table` as PyTorch's action log: it does not exist, or
    /// a column the App writes is missing or of another type (empty: usable). For start-up
    /// and `doctor`, so a wrong table is named before the first restart needs it. Columns
    /// of its own are fine: the App names the columns it writes.
    pub async fn pytorch_events_problems(&self, table: &str) -> Result<Vec<String>> {
        check_table(table)?;
        let (db, name) = table.split_once('.').unwrap_or_default();
        let found: Vec<(String, String)> = self
            .client
            .query("SELECT name, type FROM system.columns WHERE database = ? AND table = ?")
            .bind(db)
            .bind(name)
            .fetch_all()
            .within(self)
            .await
            .with_context(|| format!("reading the columns of {table}"))?;
        if found.is_empty() {
            return Ok(vec![format!(
                "{table} does not exist (or this user may not see it)"
            )]);
        }
        Ok(COLUMNS
            .iter()
            .filter_map(|(col, ty)| match found.iter().find(|(n, _)| n == col) {
                None => Some(format!("{table} has no column {col} ({ty})")),
                Some((_, t)) if t != ty => Some(format!("{table}.{col} is {t}, not {ty}")),
                Some(_) => None,
            })
            .collect())
    }
}

/// The columns the App writes, as PyTorch's DDL types them (ClickHouse's spelling).
const COLUMNS: [(&str, &str); 9] = [
    ("ts", "DateTime"),
    ("repo", "LowCardinality(String)"),
    (
        "action",
        "Enum8('none' = 0, 'restart' = 1, 'revert' = 2, 'advisor' = 3)",
    ),
    ("commit_sha", "FixedString(40)"),
    ("workflows", "Array(String)"),
    ("source_signal_keys", "Array(String)"),
    ("dry_run", "UInt8"),
    ("failed", "UInt8"),
    ("notes", "String"),
];

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "2d3615f577894c7a117a55e85bb8371bb598ec50";

    #[test]
    fn table_names_are_db_dot_table() {
        assert!(check_table("misc.autorevert_events_v2").is_ok());
        for bad in [
            "autorevert_events_v2",
            "a.b.c",
            "misc.t; DROP",
            "misc.",
            ".t",
            "1x.t",
        ] {
            let e = check_table(bad).unwrap_err().to_string();
            assert!(e.contains("database.table"), "{bad}: {e}");
        }
    }

    #[test]
    fn rows_check_their_commit_and_repo() {
        let row =
            PytorchEventRow::restart("pytorch/pytorch", SHA, vec![], vec![], false, "").unwrap();
        assert_eq!(row.sha(), SHA);
        assert_eq!(row.action(), Some(PytorchAction::Restart));
        let upper = SHA.to_ascii_uppercase();
        let row =
            PytorchEventRow::revert("pytorch/pytorch", &upper, vec![], vec![], true, "").unwrap();
        assert_eq!((row.sha(), row.dry_run), (SHA, 1));
        let e = PytorchEventRow::revert("pytorch/pytorch", "2d3615f", vec![], vec![], false, "");
        assert!(e.unwrap_err().to_string().contains("40-character hex sha"));
        let e = PytorchEventRow::revert("pytorch", SHA, vec![], vec![], false, "");
        assert!(e.unwrap_err().to_string().contains("owner/name"));
    }
}

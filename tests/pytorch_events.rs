//! PyTorch's action log (`misc.autorevert_events_v2`) against the real local ClickHouse:
//! rows as the Lambda's DDL types them, no two rows collapsing on the sort key, and the
//! revert-once and per-day reads counting the Lambda's rows too.

mod common;

use autorevert::store::pytorch_events::{PytorchAction, PytorchEventRow};
use autorevert::store::{ClickHouseConfig, Store};
use chrono::{Duration, TimeZone, Utc};
use common::*;

/// A fresh store with PyTorch's action log made in its database.
async fn store_with_log() -> (Store, String) {
    let store = fresh_store().await;
    let table = format!("{}.autorevert_events_v2", store.tables().database);
    store.create_pytorch_events_table(&table).await.unwrap();
    (store, table)
}

/// A store as production has it: no local mirror of PyTorch's tables.
fn store_without_mirror(store: &Store) -> Store {
    Store::new(&ClickHouseConfig {
        url: url::Url::parse(&clickhouse_url()).unwrap(),
        user: None,
        password: None,
        tables: store.tables().clone(),
        ingest: false,
        timeout: std::time::Duration::from_secs(30),
    })
}

/// Plain SQL over ClickHouse's HTTP interface, as another client (the Lambda) sends it.
async fn sql(q: &str) -> String {
    http_client()
        .post(clickhouse_url())
        .body(q.to_string())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The Lambda's own revert row, as its `insert_event` writes it (ts of its run).
async fn lambda_revert(table: &str, sha: &str, ts: &str, dry_run: u8) {
    sql(&format!(
            "INSERT INTO {table} (ts, repo, action, commit_sha, workflows, source_signal_keys, dry_run, failed, notes)
             VALUES ('{ts}', '{REPO}', 'revert', '{sha}', ['trunk'], ['trunk:test'], {dry_run}, 0, '')"
        ),
    )
    .await;
}

#[tokio::test]
async fn rows_match_pytorch_s_ddl_and_read_back() {
    let (store, table) = store_with_log().await;
    let types = sql(&format!(
            "SELECT name, type FROM system.columns WHERE database = '{}' AND table = 'autorevert_events_v2' ORDER BY position FORMAT TSV",
            store.tables().database
        ),
    )
    .await;
    assert_eq!(
        types,
        "ts\tDateTime\nrepo\tLowCardinality(String)\n\
         action\tEnum8(\\'none\\' = 0, \\'restart\\' = 1, \\'revert\\' = 2, \\'advisor\\' = 3)\n\
         commit_sha\tFixedString(40)\nworkflows\tArray(String)\nsource_signal_keys\tArray(String)\n\
         dry_run\tUInt8\nfailed\tUInt8\nnotes\tString\n"
    );
    assert_eq!(
        store.pytorch_events_problems(&table).await.unwrap(),
        Vec::<String>::new()
    );
    let at = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
    let row = PytorchEventRow::restart(
        REPO,
        &sha(1),
        vec!["trunk".into()],
        vec!["trunk:linux-jammy / test (default)".into()],
        false,
        "restart of the suspect",
    )
    .unwrap()
    .at(at);
    let written = store
        .write_pytorch_event(&table, row.clone())
        .await
        .unwrap();
    assert_eq!(written, at);
    let failed = PytorchEventRow::revert(REPO, &sha(2), vec![], vec![], true, "")
        .unwrap()
        .failed()
        .at(at);
    store.write_pytorch_event(&table, failed).await.unwrap();

    let rows = store.pytorch_events(&table, REPO).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], row);
    assert_eq!(rows[1].action(), Some(PytorchAction::Revert));
    assert_eq!((rows[1].dry_run, rows[1].failed), (1, 1));
    // As the Lambda's SQL reads it: the Enum by name, the sha as text.
    let lambda = sql(&format!(
        "SELECT action, commit_sha, workflows FROM {table} WHERE has(workflows, 'trunk') FORMAT TSV"
    ))
    .await;
    assert_eq!(lambda, format!("restart\t{}\t['trunk']\n", sha(1)));
}

#[tokio::test]
async fn rows_of_one_commit_and_action_never_share_a_second() {
    let (store, table) = store_with_log().await;
    let at = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
    // Two workflows restarted on one commit in the same second, and a third row, written
    // at once: PyTorch's sort key would fold rows of the same second into one.
    let rows: Vec<PytorchEventRow> = ["trunk", "pull", "inductor"]
        .into_iter()
        .map(|wf| {
            PytorchEventRow::restart(REPO, &sha(1), vec![wf.into()], vec![], false, "")
                .unwrap()
                .at(at)
        })
        .collect();
    let writes = rows
        .into_iter()
        .map(|r| store.write_pytorch_event(&table, r));
    let mut stamps = futures_util::future::join_all(writes)
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()
        .unwrap();
    stamps.sort();
    assert_eq!(
        stamps,
        vec![at, at + Duration::seconds(1), at + Duration::seconds(2)]
    );
    // The same second for another action, or another commit, is free.
    let other = PytorchEventRow::revert(REPO, &sha(1), vec![], vec![], false, "")
        .unwrap()
        .at(at);
    assert_eq!(store.write_pytorch_event(&table, other).await.unwrap(), at);

    // A row the Lambda wrote in that second for the same commit and action: ours goes after.
    lambda_revert(&table, &sha(5), "2026-11-30 12:00:00", 0).await;
    let ours = PytorchEventRow::revert(REPO, &sha(5), vec![], vec![], false, "")
        .unwrap()
        .at(at);
    let ts = store.write_pytorch_event(&table, ours).await.unwrap();
    assert_eq!(ts, at + Duration::seconds(1));

    sql(&format!("OPTIMIZE TABLE {table} FINAL")).await;
    let n = sql(&format!(
        "SELECT count() FROM {table} WHERE action = 'restart' AND commit_sha = '{}'",
        sha(1)
    ))
    .await;
    assert_eq!(n.trim(), "3", "rows lost at merge time");
    let n = sql(&format!(
        "SELECT count() FROM {table} WHERE commit_sha = '{}'",
        sha(5)
    ))
    .await;
    assert_eq!(n.trim(), "2", "the Lambda's row and ours both stay");
}

#[tokio::test]
async fn a_revert_by_the_lambda_counts_for_the_app_s_guards() {
    let (store, table) = store_with_log().await;
    let reverted = async |repo: &str, sha: &str| {
        let found = store.pytorch_reverts_of(&table, repo, sha).await;
        found.unwrap()
    };
    assert!(!reverted(REPO, &sha(1)).await);
    // The Lambda's dry run (REVERT_ACTION=log) is not a revert.
    lambda_revert(&table, &sha(1), "2026-11-30 10:00:00", 1).await;
    assert!(!reverted(REPO, &sha(1)).await);
    lambda_revert(&table, &sha(1), "2026-11-30 10:05:00", 0).await;
    assert!(reverted(REPO, &sha(1)).await);
    assert!(reverted(REPO, &sha(1).to_uppercase()).await);
    assert!(!reverted("pytorch/vision", &sha(1)).await);

    // The App's revert of another commit; a failed one does not count.
    let at = Utc.with_ymd_and_hms(2026, 11, 30, 11, 0, 0).unwrap();
    let ours = PytorchEventRow::revert(REPO, &sha(2), vec!["trunk".into()], vec![], false, "")
        .unwrap()
        .at(at);
    store.write_pytorch_event(&table, ours).await.unwrap();
    let failed = PytorchEventRow::revert(REPO, &sha(3), vec![], vec![], false, "comment refused")
        .unwrap()
        .failed()
        .at(at);
    store.write_pytorch_event(&table, failed).await.unwrap();
    assert!(reverted(REPO, &sha(2)).await);
    assert!(!reverted(REPO, &sha(3)).await);

    let since = async |h, m| {
        let at = Utc.with_ymd_and_hms(2026, 11, 30, h, m, 0).unwrap();
        store.pytorch_reverts_since(&table, REPO, at).await.unwrap()
    };
    assert_eq!(since(9, 0).await, 2);
    assert_eq!(since(10, 30).await, 1);
    assert_eq!(since(11, 1).await, 0);
}

#[tokio::test]
async fn bad_table_names_and_production_tables_are_refused() {
    let store = fresh_store().await;
    let row = PytorchEventRow::restart(REPO, &sha(1), vec![], vec![], false, "").unwrap();
    for bad in ["autorevert_events_v2", "misc.t; DROP TABLE x", "a.b.c"] {
        let e = store
            .write_pytorch_event(bad, row.clone())
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("database.table"), "{bad}: {e:#}");
        let e = store
            .pytorch_reverts_of(bad, REPO, &sha(1))
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("database.table"), "{bad}: {e:#}");
    }
    // A table that does not exist: a clear error naming it, nothing panics.
    let missing = format!("{}.no_such_log", store.tables().database);
    let e = store.write_pytorch_event(&missing, row).await.unwrap_err();
    assert!(format!("{e:#}").contains("no_such_log"), "{e:#}");

    let problems = store.pytorch_events_problems(&missing).await.unwrap();
    assert_eq!(
        problems,
        [format!(
            "{missing} does not exist (or this user may not see it)"
        )]
    );
    // A table of another shape: each column that does not fit is named.
    let other = format!("{}.other_log", store.tables().database);
    sql(&format!(
        "CREATE TABLE {other} (ts DateTime, repo String, action Enum8('restart' = 1, 'revert' = 2),
         commit_sha String, workflows Array(String), dry_run UInt8, failed UInt8, notes String,
         extra UInt8 DEFAULT 0) ENGINE = MergeTree ORDER BY ts"
    ))
    .await;
    let problems = store.pytorch_events_problems(&other).await.unwrap();
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(
        problems[0].contains("repo is String, not LowCardinality(String)"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("action is Enum8('restart' = 1, 'revert' = 2)"),
        "{problems:?}"
    );
    assert!(
        problems[2].contains("commit_sha is String, not FixedString(40)"),
        "{problems:?}"
    );
    assert!(
        problems[3].contains("has no column source_signal_keys"),
        "{problems:?}"
    );

    // Without a local mirror, the App does not create PyTorch's table.
    let production = store_without_mirror(&store);
    let e = production
        .create_pytorch_events_table("misc.autorevert_events_v2")
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("AUTOREVERT_INGEST"), "{e:#}");
}

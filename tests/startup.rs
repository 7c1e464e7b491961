//! Start-up binds first: the real `serve` binary answers while ClickHouse is unreachable,
//! takes deliveries into its log, and handles them once ClickHouse is back.

mod common;

use common::binary::Binary;
use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_deliveries_while_clickhouse_is_unreachable_and_handles_them_after() {
    let store = fresh_store().await;
    let github = fake_github::FakeGitHub::start(INSTALLATION, &[REPO]).await;
    // ClickHouse refuses every connection until the gate opens.
    let gate = Gate::closed(&clickhouse_url()).await;
    let mut bin = Binary::new(&store, &github);
    bin.env.push(("CLICKHOUSE_URL".into(), gate.url.clone()));
    let mut app = bin.start();
    let started = Instant::now();
    bin.wait_up().await;
    let up_after = started.elapsed();
    let h = bin.health().await;
    assert_eq!(h["startup"]["ready"], false, "{h}");
    assert!(
        h["startup"]["phase"]
            .as_str()
            .unwrap()
            .contains("ClickHouse"),
        "{h}"
    );
    assert_eq!(
        bin.deliver("while-down", failure(&sha(330), 330)).await,
        202
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        github.dispatches().is_empty(),
        "nothing is decided before the ledger is loaded"
    );
    gate.open().await;
    let mut ready = false;
    for _ in 0..400 {
        let h = bin.health().await;
        if !github.dispatches().is_empty()
            && h["startup"]["ready"] == true
            && h["clickhouse"]["ok"] == true
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut recorded = false;
    for _ in 0..100 {
        recorded = store.delivery("while-down").await.unwrap().is_some();
        if recorded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.kill().unwrap();
    app.wait().unwrap();
    assert!(
        up_after < Duration::from_secs(5),
        "the port opened after {up_after:?}"
    );
    assert!(ready, "not handled within 40 s of ClickHouse coming back");
    assert_eq!(github.dispatches().len(), 1, "dispatched once");
    assert!(recorded, "the delivery is recorded once ClickHouse answers");
}

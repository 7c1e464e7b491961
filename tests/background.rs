//! Background tasks through the real `serve` binary: a task that is configured must run
//! (the redelivery sweep was once configured, documented and tested, yet never started).

mod common;

use common::binary::Binary;
use common::*;
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_asks_github_to_redeliver_what_it_never_received() {
    let store = fresh_store().await;
    let github = fake_github::FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let now = chrono::Utc::now();
    {
        let mut s = github.state.lock().unwrap();
        // Two deliveries that failed while the App was down, one that succeeded.
        s.hook_deliveries.push((501, "missed-1".into(), now, 502));
        s.hook_deliveries.push((502, "missed-2".into(), now, 502));
        s.hook_deliveries.push((503, "fine".into(), now, 200));
    }
    let mut bin = Binary::new(&store, &github);
    bin.env.push(("REDELIVER_SECS".into(), "1".into()));
    let mut app = bin.start();
    bin.wait_up().await;
    let asked = eventually(20, async || {
        github.state.lock().unwrap().redeliveries.len() >= 2
    })
    .await;
    // A second pass must not ask again (the sweep's state is kept in the delivery log's dir).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.kill().unwrap();
    app.wait().unwrap();
    assert!(asked, "serve never swept");
    let posts = github.requests_matching("POST", "/app/hook/deliveries/");
    assert!(
        posts.iter().all(|(p, _)| p.ends_with("/attempts")),
        "{posts:?}"
    );
    let mut redelivered = github.state.lock().unwrap().redeliveries.clone();
    redelivered.sort();
    assert_eq!(
        redelivered,
        [501, 502],
        "each failed delivery once, the fine one never"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_every_configured_background_task_and_reports_it() {
    let store = fresh_store().await;
    let github = fake_github::FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let mut bin = Binary::new(&store, &github);
    bin.env.push(("REDELIVER_SECS".into(), "1".into()));
    bin.env.push(("RECONCILE_SECS".into(), "1".into()));
    let mut app = bin.start();
    bin.wait_up().await;
    let mut tasks = Value::Null;
    let all_ran = eventually(20, async || {
        tasks = bin.health().await["background_tasks"].clone();
        ["reconcile", "redelivery_sweep", "heartbeat"]
            .iter()
            .all(|t| tasks[t]["passes"].as_u64().unwrap_or(0) >= 1)
    })
    .await;
    app.kill().unwrap();
    app.wait().unwrap();
    assert!(all_ran, "not every configured task ran: {tasks}");
    assert_eq!(tasks["reconcile"]["every_secs"], 1);
    assert_eq!(tasks["redelivery_sweep"]["last_ok"], true, "{tasks}");
    assert!(
        !github
            .requests_matching("GET", "/app/hook/deliveries")
            .is_empty(),
        "the sweep asked GitHub"
    );
    assert!(
        !github
            .requests_matching("GET", "/actions/workflows")
            .is_empty(),
        "the reconciler asked GitHub"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_no_task_that_is_switched_off() {
    let store = fresh_store().await;
    let github = fake_github::FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let bin = Binary::new(&store, &github); // RECONCILE_SECS=0, REDELIVER_SECS=0
    let mut app = bin.start();
    bin.wait_up().await;
    let tasks = bin.health().await["background_tasks"].clone();
    app.kill().unwrap();
    app.wait().unwrap();
    let names: Vec<&String> = tasks.as_object().unwrap().keys().collect();
    assert_eq!(names, ["heartbeat"], "{tasks}");
    assert!(
        github
            .requests_matching("GET", "/app/hook/deliveries")
            .is_empty()
    );
}

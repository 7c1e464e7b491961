//! Bad days inside the process: a delivery whose handling panics, and two paths racing to
//! settle the same unknown dispatch. Nothing may be lost, nothing sent twice.

mod common;

use autorevert::background::reconcile::Reconciler;
use autorevert::intake::delivery_log::DeliveryLog;
use autorevert::restart::{Restart, RestartKey, Status, Timeline};
use autorevert::store::batch::{Batch, Entry};
use autorevert::store::rows::RestartRow;
use axum::http::StatusCode;
use common::*;
use std::time::Duration;

#[tokio::test]
async fn a_delivery_that_panics_takes_no_worker_down_and_stays_in_the_log() {
    // One worker: if the panic took it down, nothing after would be handled.
    let app = TestApp::with(Options {
        workers: 1,
        ..Options::default()
    })
    .await;
    autorevert::pipeline::fault::panic_on_delivery("boom-310");
    let (status, _) = app
        .deliver_as("workflow_run", "boom-310", &failure(&sha(310), 310))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.settle().await;
    let (status, _) = app
        .deliver_as("workflow_run", "after-311", &failure(&sha(311), 311))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.settle().await;
    let dispatched: Vec<String> = app
        .github
        .dispatches()
        .iter()
        .map(|d| d.body["ref"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        dispatched,
        [format!("trunk/{}", sha(311))],
        "the worker lived on"
    );
    assert_eq!(app.health().await["worker_panics"], 1);
    // Nothing lost: the delivery that panicked is still pending in the log; the other is done.
    // (Its acknowledgement reaches the log's writer thread just after the flush: a moment.)
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_log, recovered) = DeliveryLog::open(&app.spool_dir).unwrap();
    let pending: Vec<&str> = recovered.pending.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(pending, ["boom-310"]);
}

/// A restart whose dispatch outcome was unknown when the App stopped (a 502, no run id), as
/// the ledger in ClickHouse has it.
async fn unknown_at_stop(store: &autorevert::store::Store, sha: &str) -> Restart {
    let key = RestartKey {
        repo: REPO.into(),
        workflow: "trunk".into(),
        head_sha: sha.into(),
    };
    let r = Restart {
        restart_id: format!("{REPO}/trunk/{sha}/1"),
        key,
        attempt: 1,
        workflow_file: "trunk.yml".into(),
        original_run_id: 320,
        installation_id: Some(INSTALLATION),
        status: Status::DispatchUnknown,
        dispatch_attempts: 1,
        restart_run_id: None,
        run_url: String::new(),
        dry_run: false,
        times: Timeline::requested(chrono::Utc::now() - chrono::Duration::seconds(30)),
        outcome: None,
        reason: "run 320 concluded failure".into(),
        delivery_id: "died".into(),
        version: autorevert::restart::next_version(),
        check: autorevert::restart::CheckRun::new(true),
        scope: None,
        asked_jobs: Vec::new(),
    };
    let mut batch = Batch::default();
    batch.push(Entry::Restart(RestartRow::from(&r)));
    store.write(&mut batch).await.unwrap();
    r
}

#[tokio::test]
async fn resume_and_the_reconcilers_first_pass_racing_send_one_post() {
    let store = fresh_store().await;
    let github = fake_github::FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let r = unknown_at_stop(&store, &sha(320)).await;
    // GitHub is slow to create the run: every settle that looks meanwhile finds none.
    github.script([fake_github::DispatchAnswer::Slow(Duration::from_millis(
        500,
    ))]);
    // Start-up resumes the restart (runs listed after the lookup delay, then one resend)...
    let app = TestApp::assemble(Options::default(), store, github, temp_dir()).await;
    // ...while the reconciler's first pass finds it unsettled too: at once, through the
    // same entry its pass uses for an unknown restart, then through real passes.
    app.engine.settle(&r.restart_id);
    app.engine.settle(&r.restart_id);
    for _ in 0..3 {
        Reconciler {
            engine: &app.engine,
            pipeline: &app.pipeline,
            github: &app.client,
            lookback: Duration::from_secs(3600),
        }
        .pass()
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.settle().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.settle().await;
    assert_eq!(
        app.github.requests_matching("POST", "/dispatches").len(),
        1,
        "one POST whatever starts the settle"
    );
    let now = app.engine.restart(&r.restart_id).unwrap();
    assert_eq!(now.status, Status::Dispatched);
    assert_eq!(
        now.dispatch_attempts, 2,
        "the first POST (lost) and the one resend"
    );
    assert!(now.restart_run_id.is_some());
}

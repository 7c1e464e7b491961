//! The whole mission path through the real router, pipeline, ClickHouse and octocrab:
//! verified webhook -> one dispatch -> follow-ups -> ClickHouse confirmation -> outcome.

mod common;

use autorevert::restart::Status;
use autorevert::restart::Verdict;
use axum::http::StatusCode;
use common::*;
use serde_json::json;

/// Runs the original failure and the restart's follow-ups; returns the restart run id.
async fn restart_with(
    app: &TestApp,
    sha: &str,
    restart_jobs: &[(&str, &str)],
    conclusion: &str,
) -> u64 {
    app.original_failure(
        sha,
        1_000_001,
        &[(TEST_1, "failure"), (TEST_2, "success"), (BUILD, "success")],
    )
    .await;
    app.settle().await;
    let d = app.github.dispatches();
    assert_eq!(d.len(), 1, "exactly one dispatch");
    let run_id = app.stored_restarts(sha).await[0]
        .restart_run_id
        .expect("run id from return_run_details");
    app.restart_follow_ups(sha, run_id, restart_jobs, conclusion)
        .await;
    app.settle().await;
    run_id
}

#[tokio::test]
async fn failed_trunk_run_is_dispatched_confirmed_and_reproduced() {
    let app = TestApp::start().await;
    let sha = sha(1);
    let run_id = restart_with(
        &app,
        &sha,
        &[(TEST_1, "failure"), (TEST_2, "success"), (BUILD, "success")],
        "failure",
    )
    .await;

    // The dispatch: path, body and the installation's token.
    let d = &app.github.dispatches()[0];
    assert_eq!(d.repo, "pytorch/pytorch");
    assert_eq!(d.workflow, "trunk.yml");
    assert_eq!(
        d.body,
        json!({"ref": format!("trunk/{sha}"), "return_run_details": true})
    );
    let token_installation = app
        .github
        .state
        .lock()
        .unwrap()
        .tokens
        .get(&d.token)
        .map(|t| t.0);
    assert_eq!(token_installation, Some(INSTALLATION));

    // The ledger in ClickHouse: confirmed with a latency, completed, reproduced.
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!(r.restart_run_id, Some(run_id));
    assert_eq!(r.status, Status::Completed);
    assert_eq!(r.outcome, Some(Verdict::Reproduced), "{}", r.reason);
    assert!(r.times.confirmed_at.is_some(), "confirmed in ClickHouse");
    assert!(r.times.confirm_latency_ms().is_some());
    assert!(
        r.reason
            .contains("linux-jammy-py3.10-gcc11 / test (default)"),
        "{}",
        r.reason
    );
    assert!(!r.dry_run);

    // PyTorch's confirmation query sees the restart in the mirror.
    assert!(
        app.store
            .restart_visible(&TestApp::key(&sha))
            .await
            .unwrap()
    );
    let kinds = app.event_kinds(&sha).await;
    for k in ["dispatched", "confirmed", "outcome"] {
        assert!(
            kinds.iter().any(|x| x == k),
            "event {k} missing from {kinds:?}"
        );
    }
}

#[tokio::test]
async fn restart_that_passes_is_not_reproduced() {
    let app = TestApp::start().await;
    let sha = sha(2);
    restart_with(
        &app,
        &sha,
        &[(TEST_1, "success"), (TEST_2, "success"), (BUILD, "success")],
        "success",
    )
    .await;
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!(r.outcome, Some(Verdict::NotReproduced), "{}", r.reason);
}

#[tokio::test]
async fn restart_failing_only_in_another_job_is_inconclusive() {
    let app = TestApp::start().await;
    let sha = sha(3);
    restart_with(
        &app,
        &sha,
        &[(TEST_1, "success"), (TEST_2, "success"), (BUILD, "failure")],
        "failure",
    )
    .await;
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!(r.outcome, Some(Verdict::Inconclusive), "{}", r.reason);
    assert!(r.reason.contains("other jobs failed"), "{}", r.reason);
}

#[tokio::test]
async fn missed_job_webhooks_are_read_from_the_rest_api() {
    let app = TestApp::start().await;
    let sha = sha(4);
    // No workflow_job deliveries for the original run: only its completion arrives.
    let original = 1_000_004;
    app.github.set_jobs(
        original,
        vec![
            rest_job(11, original, &sha, TEST_1, "failure"),
            rest_job(12, original, &sha, BUILD, "success"),
        ],
    );
    let body = failure(&sha, original);
    assert_eq!(
        app.deliver("workflow_run", &body).await.0,
        StatusCode::ACCEPTED
    );
    app.settle().await;
    let run_id = app.stored_restarts(&sha).await[0].restart_run_id.unwrap();
    app.restart_follow_ups(
        &sha,
        run_id,
        &[(TEST_1, "success"), (BUILD, "success")],
        "success",
    )
    .await;
    app.settle().await;
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!(r.outcome, Some(Verdict::NotReproduced), "{}", r.reason);
    assert_eq!(
        app.github
            .requests_matching("GET", &format!("/actions/runs/{original}/jobs"))
            .len(),
        1
    );
}

#[tokio::test]
async fn unconfirmed_restart_is_recorded_with_its_reason() {
    let app = TestApp::with(Options {
        confirm_window: std::time::Duration::from_millis(400),
        ..Options::default()
    })
    .await;
    let sha = sha(5);
    app.original_failure(&sha, 1_000_005, &[(TEST_1, "failure")])
        .await;
    app.settle().await;
    // A restart job arrives whose run never reaches ClickHouse with event=workflow_dispatch:
    // the run row (source of workflow_event) is never ingested.
    let run_id = app.stored_restarts(&sha).await[0].restart_run_id.unwrap();
    let body = job_payload(
        "queued",
        77,
        run_id,
        &sha,
        &format!("trunk/{sha}"),
        TEST_1,
        None,
    );
    app.deliver("workflow_job", &body).await;
    app.settle().await;
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!(r.status, Status::Unconfirmed);
    assert!(
        app.event_kinds(&sha)
            .await
            .contains(&"unconfirmed".to_string())
    );
}

#[tokio::test]
async fn the_seed_case_from_fixtures() {
    // Commit 2d3615f, original run 15595052847 (push, main, failed), restart 15644112883
    // (workflow_dispatch on trunk/2d3615f...): GitHub hands out the seed's run id.
    let app = TestApp::start().await;
    app.github.state.lock().unwrap().next_run_id = 15644112883;
    let sha = "2d3615f577894c7a117a55e85bb8371bb598ec50";
    let mut files: Vec<_> = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/seed-2d3615f"
    ))
    .unwrap()
    .map(|e| e.unwrap().path())
    .filter(|p| p.extension().is_some_and(|e| e == "json"))
    .collect();
    files.sort();
    assert_eq!(files.len(), 13);
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        let event = if name.contains(".workflow_run.") {
            "workflow_run"
        } else {
            "workflow_job"
        };
        let (status, body) = app.deliver(event, &std::fs::read(f).unwrap()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {body}");
        // Deliveries arrive one by one, as GitHub sends them.
        app.settle().await;
    }
    let d = app.github.dispatches();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].body["ref"], json!(format!("trunk/{sha}")));
    let r = &app.stored_restarts(sha).await[0];
    assert_eq!(r.original_run_id, 15595052847);
    assert_eq!(r.restart_run_id, Some(15644112883));
    assert_eq!(r.installation_id, Some(48123456));
    assert_eq!(r.outcome, Some(Verdict::Reproduced), "{}", r.reason);
    assert!(r.times.confirmed_at.is_some());
}

#[tokio::test]
async fn restart_state_survives_a_process_restart() {
    let app = TestApp::start().await;
    let sha = sha(6);
    app.original_failure(&sha, 1_000_006, &[(TEST_1, "failure")])
        .await;
    app.settle().await;
    assert_eq!(app.github.dispatches().len(), 1);
    // A new process over the same ClickHouse and GitHub: the ledger is reloaded, so a
    // redelivery of the failure does not dispatch again, and the follow-ups still match.
    let again = TestApp::assemble(
        Options::default(),
        app.store.clone(),
        app.github.clone(),
        app.spool_dir.clone(),
    )
    .await;
    let body = failure(&sha, 1_000_006);
    assert_eq!(
        again.deliver("workflow_run", &body).await.0,
        StatusCode::ACCEPTED
    );
    again.settle().await;
    assert_eq!(
        again.github.dispatches().len(),
        1,
        "no second dispatch after a restart"
    );
    let run_id = again.stored_restarts(&sha).await[0].restart_run_id.unwrap();
    again
        .restart_follow_ups(&sha, run_id, &[(TEST_1, "failure")], "failure")
        .await;
    again.settle().await;
    assert_eq!(
        again.stored_restarts(&sha).await[0].outcome,
        Some(Verdict::Reproduced)
    );
}

//! The reconciler: what webhooks missed, the API still knows.

mod common;

use autorevert::background::reconcile::{Pass, Reconciler};
use autorevert::restart::Status;
use autorevert::restart::Verdict;
use common::fake_github::FakeRun;
use common::*;
use std::time::Duration;

fn main_run(id: u64, sha: &str, conclusion: &str) -> FakeRun {
    FakeRun {
        id,
        repo: REPO.into(),
        workflow_file: "trunk.yml".into(),
        head_sha: sha.into(),
        head_branch: "main".into(),
        event: "push".into(),
        status: "completed".into(),
        conclusion: Some(conclusion.into()),
        created_at: chrono::Utc::now() - chrono::Duration::minutes(30),
    }
}

async fn pass(app: &TestApp) -> Pass {
    let p = Reconciler {
        engine: &app.engine,
        pipeline: &app.pipeline,
        github: &app.client,
        lookback: Duration::from_secs(6 * 3600),
    }
    .pass()
    .await;
    app.settle().await;
    p
}

#[tokio::test]
async fn a_failure_whose_webhook_was_missed_is_restarted_once() {
    let app = TestApp::start().await;
    let missed = sha(140);
    app.github.add_run(main_run(2_000_140, &missed, "failure"));
    app.github
        .add_run(main_run(2_000_141, &sha(141), "success"));
    let p = pass(&app).await;
    assert_eq!(p.missed_failures, 1, "{p:?}");
    assert_eq!(app.github.dispatches().len(), 1);
    assert_eq!(
        app.github.dispatches()[0].body["ref"],
        format!("trunk/{missed}")
    );
    let r = &app.stored_restarts(&missed).await[0];
    assert_eq!(r.original_run_id, 2_000_140);
    // The next pass finds the restart and leaves it alone.
    let p = pass(&app).await;
    assert_eq!(p.missed_failures, 0);
    assert_eq!(app.github.dispatches().len(), 1);
}

#[tokio::test]
async fn a_restart_whose_follow_ups_were_missed_is_confirmed_and_judged() {
    // No webhooks means no mirror rows: confirmation gives up after a short window.
    let app = TestApp::with(Options {
        confirm_window: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let sha = sha(142);
    let original = 2_000_142;
    app.github.set_jobs(
        original,
        vec![rest_job(1, original, &sha, TEST_1, "failure")],
    );
    let body = failure(&sha, original);
    app.deliver("workflow_run", &body).await;
    app.settle().await;
    let run = app.stored_restarts(&sha).await[0].restart_run_id.unwrap();
    // GitHub ran the restart to the end, and no webhook about it ever arrived.
    app.github
        .set_jobs(run, vec![rest_job(2, run, &sha, TEST_1, "failure")]);
    app.github.complete_run(run, "failure");
    let p = pass(&app).await;
    assert_eq!(p.restarts_refreshed, 1, "{p:?}");
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!(r.status, Status::Completed, "{}", r.reason);
    assert_eq!(r.outcome, Some(Verdict::Reproduced), "{}", r.reason);
    assert!(
        app.event_kinds(&sha)
            .await
            .contains(&"unconfirmed".to_string()),
        "confirmation was attempted"
    );
    // Completed restarts are not read again.
    assert_eq!(pass(&app).await.restarts_refreshed, 0);
}

#[tokio::test]
async fn a_dispatch_answered_without_run_id_is_matched_by_the_reconciler() {
    let app = TestApp::with(Options {
        confirm_window: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let sha = sha(143);
    app.github
        .script([common::fake_github::DispatchAnswer::CreateNoDetails]);
    let body = failure(&sha, 2_000_143);
    app.deliver("workflow_run", &body).await;
    app.settle().await;
    assert_eq!(app.stored_restarts(&sha).await[0].restart_run_id, None);
    let p = pass(&app).await;
    assert_eq!(p.restarts_refreshed, 1);
    let created = app
        .github
        .state
        .lock()
        .unwrap()
        .runs
        .iter()
        .find(|r| r.head_sha == sha)
        .unwrap()
        .id;
    assert_eq!(
        app.stored_restarts(&sha).await[0].restart_run_id,
        Some(created)
    );
}

#[tokio::test]
async fn reads_wait_out_rate_limits_and_go_on() {
    let app = TestApp::start().await;
    let missed = sha(144);
    app.github.add_run(main_run(2_000_144, &missed, "failure"));
    let reset = (chrono::Utc::now().timestamp() + 1).to_string();
    {
        let mut s = app.github.state.lock().unwrap();
        // A secondary limit (retry-after), then a primary one (remaining 0 until reset).
        s.rate_limited
            .push_back((403, vec![("retry-after".into(), "1".into())]));
        s.rate_limited.push_back((
            429,
            vec![
                ("x-ratelimit-remaining".into(), "0".into()),
                ("x-ratelimit-reset".into(), reset),
            ],
        ));
    }
    let started = std::time::Instant::now();
    let p = pass(&app).await;
    assert_eq!(p.errors, 0, "{p:?}");
    assert_eq!(p.missed_failures, 1);
    assert_eq!(app.github.dispatches().len(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "the App waited as told"
    );
    // The waits happened on reads; the dispatch POST was sent once.
    assert_eq!(app.github.requests_matching("POST", "/dispatches").len(), 1);
}

#[tokio::test]
async fn a_dispatch_lost_while_github_was_down_is_sent_when_it_is_back() {
    use common::fake_github::DispatchAnswer;
    let app = TestApp::start().await;
    let sha = sha(145);
    // GitHub answers 503 to the dispatch and to its one resend: the outcome stays unknown.
    app.github.script([
        DispatchAnswer::FailBeforeCreate(503),
        DispatchAnswer::FailBeforeCreate(503),
    ]);
    let body = failure(&sha, 2_000_145);
    app.deliver("workflow_run", &body).await;
    app.settle().await;
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!(
        (r.status, r.dispatch_attempts),
        (Status::DispatchUnknown, 2)
    );
    // GitHub is back: the reconciler looks for the run, finds none, sends the last attempt.
    let p = pass(&app).await;
    assert_eq!(p.unknown_settled, 1, "{p:?}");
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!(
        (r.status, r.dispatch_attempts),
        (Status::Dispatched, 3),
        "{}",
        r.reason
    );
    assert_eq!(app.github.requests_matching("POST", "/dispatches").len(), 3);
    assert_eq!(app.github.state.lock().unwrap().runs.len(), 1);
    let lookups = app.github.requests_matching("GET", "&branch=trunk%2F");
    let posts = app.github.requests_matching("POST", "/dispatches");
    assert!(
        lookups.len() >= 2 && lookups.last().unwrap().1 < posts[2].1,
        "looked up before the last POST"
    );
    // Nothing more to do on the next pass.
    pass(&app).await;
    assert_eq!(app.github.requests_matching("POST", "/dispatches").len(), 3);
}

#[tokio::test]
async fn never_more_than_three_dispatch_posts_for_one_restart() {
    use common::fake_github::DispatchAnswer;
    let app = TestApp::start().await;
    let sha = sha(146);
    app.github
        .script((0..10).map(|_| DispatchAnswer::FailBeforeCreate(500)));
    let body = failure(&sha, 2_000_146);
    app.deliver("workflow_run", &body).await;
    app.settle().await;
    for _ in 0..3 {
        pass(&app).await;
    }
    assert_eq!(app.github.requests_matching("POST", "/dispatches").len(), 3);
    assert_eq!(
        app.stored_restarts(&sha).await[0].status,
        Status::DispatchUnknown
    );
}

/// GitHub unreachable (connection refused, not an error answer): deliveries are still
/// answered 202 and recorded. While the kill switch cannot be looked up, a failure is held
/// (the switch fails closed) and the reconciler hands it back once GitHub answers; a restart
/// decided while the switch was known off, whose POST was refused, waits as unknown and is
/// sent once, after a lookup, when GitHub is back. Nothing lost, nothing doubled.
#[tokio::test]
async fn github_unreachable_then_back_loses_and_doubles_nothing() {
    let fake = fake_github::FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let gate = Gate::closed(&fake.url).await;
    let mut via_gate = fake.clone();
    via_gate.url = gate.url.clone();
    let app = TestApp::assemble(
        Options {
            kill_switch_ttl: Duration::from_secs(3600), // once known, it stands
            ..Options::default()
        },
        fresh_store().await,
        via_gate,
        temp_dir(),
    )
    .await;

    // 1. Down from the start: the kill switch cannot be looked up, so the failure is held.
    let cold = sha(150);
    fake.add_run(main_run(2_000_150, &cold, "failure"));
    let (s, j) = app
        .deliver("workflow_run", &failure(&cold, 2_000_150))
        .await;
    assert_eq!(s.as_u16(), 202, "{j}");
    let (s, j) = app
        .deliver(
            "workflow_job",
            &job_payload(
                "completed",
                91_500,
                2_000_150,
                &cold,
                "main",
                BUILD,
                Some("failure"),
            ),
        )
        .await;
    assert_eq!(s.as_u16(), 202, "{j}");
    app.settle().await;
    assert!(app.stored_restarts(&cold).await.is_empty());
    let events = app.store.events_for(&TestApp::key(&cold)).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, "skipped");
    assert!(
        events[0].message.starts_with("kill switch state unknown"),
        "{}",
        events[0].message
    );
    assert_eq!(
        fake.requests_matching("POST", "").len(),
        0,
        "nothing reached GitHub"
    );
    let j = app
        .store
        .delivery(j["delivery"].as_str().unwrap())
        .await
        .unwrap();
    assert!(
        j.is_some(),
        "the job delivery was recorded while GitHub was down"
    );
    // A pass while still down changes nothing and sends nothing.
    let p = pass(&app).await;
    assert!(p.errors > 0, "{p:?}");
    assert!(app.stored_restarts(&cold).await.is_empty());

    // 2. Back: the pass hands the held failure back; the switch is off; sent once.
    gate.open().await;
    let p = pass(&app).await;
    assert_eq!(p.missed_failures, 1, "{p:?}");
    let r = &app.stored_restarts(&cold).await[0];
    assert_eq!(
        (r.status, r.dispatch_attempts),
        (Status::Dispatched, 1),
        "{}",
        r.reason
    );
    assert_eq!(fake.dispatches().len(), 1);

    // 3. Down again with the token cached: the POST itself is refused.
    gate.close().await;
    let warm = sha(151);
    let (s, _) = app
        .deliver("workflow_run", &failure(&warm, 2_000_151))
        .await;
    assert_eq!(s.as_u16(), 202);
    app.settle().await;
    let r = &app.stored_restarts(&warm).await[0];
    assert_eq!(r.status, Status::DispatchUnknown, "{}", r.reason);
    assert!(r.reason.contains("Connection refused"), "{}", r.reason);
    gate.open().await;
    let p = pass(&app).await;
    assert_eq!(p.unknown_settled, 1, "{p:?}");
    let r = &app.stored_restarts(&warm).await[0];
    assert_eq!(r.status, Status::Dispatched, "{}", r.reason);
    let lookups = fake.requests_matching("GET", &format!("&branch=trunk%2F{warm}"));
    let posts = fake.requests_matching("POST", "/dispatches");
    assert!(lookups[0].1 < posts[1].1, "looked up before the POST");
    // One restart run per commit, and later passes send nothing more.
    pass(&app).await;
    assert_eq!(fake.dispatched_runs(&cold).len(), 1);
    assert_eq!(fake.dispatched_runs(&warm).len(), 1);
    assert_eq!(fake.dispatches().len(), 2);
}

/// PyTorch's rule: a dispatch GitHub refused (here: the `trunk/<sha>` tag not pushed yet) is
/// tried again after the backoff; nothing ran, so it does not use up the restart cap. The
/// reconciler hands the failed run back once the backoff has passed.
#[tokio::test]
async fn a_refused_dispatch_is_tried_again_after_the_backoff() {
    use common::fake_github::DispatchAnswer;
    let app = TestApp::with(Options {
        backoff_base_mins: 0, // due at once, so that the test need not wait 20 minutes
        ..Options::default()
    })
    .await;
    let sha = sha(152);
    app.github.script([DispatchAnswer::Reject(
        422,
        format!("No ref found for: trunk/{sha}"),
    )]);
    app.github.add_run(main_run(2_000_152, &sha, "failure"));
    app.deliver("workflow_run", &failure(&sha, 2_000_152)).await;
    app.settle().await;
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!(r.status, Status::DispatchFailed, "{}", r.reason);
    let p = pass(&app).await;
    assert_eq!(p.retried_refused, 1, "{p:?}");
    let rs = app.stored_restarts(&sha).await;
    assert_eq!(rs.len(), 2, "{rs:?}");
    assert_eq!(
        (rs[1].attempt, rs[1].status),
        (2, Status::Dispatched),
        "{}",
        rs[1].reason
    );
    // Dispatched now: later passes leave it alone.
    let p = pass(&app).await;
    assert_eq!(p.retried_refused, 0, "{p:?}");
    assert_eq!(app.github.dispatches().len(), 2);
}

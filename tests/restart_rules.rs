//! Which deliveries restart, how often, and what a refused or lost dispatch does.

mod common;

use autorevert::restart::RestartAction;
use autorevert::restart::Status;
use axum::http::StatusCode;
use common::fake_github::DispatchAnswer;
use common::*;
use serde_json::json;

#[tokio::test]
async fn the_same_delivery_twice_dispatches_once() {
    let app = TestApp::start().await;
    let sha = sha(20);
    let body = failure(&sha, 20);
    let (s1, j1) = app.deliver_as("workflow_run", "same-id", &body).await;
    let (s2, j2) = app.deliver_as("workflow_run", "same-id", &body).await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(j1["status"], "accepted");
    assert_eq!(j2["status"], "duplicate");
    app.settle().await;
    assert_eq!(app.github.dispatches().len(), 1);
}

#[tokio::test]
async fn two_deliveries_of_one_failure_dispatch_once() {
    let app = TestApp::start().await;
    let sha = sha(21);
    // A redelivery with a new id, and a second failing run (re-run attempt) of the same commit.
    app.deliver("workflow_run", &failure(&sha, 21)).await;
    app.deliver("workflow_run", &failure(&sha, 21)).await;
    app.deliver(
        "workflow_run",
        &run_payload(
            "completed",
            22,
            &sha,
            "push",
            "main",
            Some("timed_out"),
            |p| p["workflow_run"]["run_attempt"] = json!(2),
        ),
    )
    .await;
    app.settle().await;
    assert_eq!(app.github.dispatches().len(), 1);
    let restarts = app.stored_restarts(&sha).await;
    assert_eq!(restarts.len(), 1);
    let kinds = app.event_kinds(&sha).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "skipped").count(),
        2,
        "{kinds:?}"
    );
}

#[tokio::test]
async fn concurrent_deliveries_of_one_failure_dispatch_once() {
    let app = TestApp::start().await;
    let sha = sha(22);
    let body = failure(&sha, 23);
    let sends = (0..16).map(|_| app.deliver("workflow_run", &body));
    let results = futures::future::join_all(sends).await;
    assert!(results.iter().all(|(s, _)| *s == StatusCode::ACCEPTED));
    app.settle().await;
    assert_eq!(app.github.dispatches().len(), 1);
}

#[tokio::test]
async fn cap_allows_more_restarts_when_configured() {
    let app = TestApp::with(Options {
        max_restarts: 2,
        ..Options::default()
    })
    .await;
    let sha = sha(23);
    for run in [30, 31, 32] {
        app.deliver("workflow_run", &failure(&sha, run)).await;
        app.settle().await;
    }
    assert_eq!(app.github.dispatches().len(), 2);
    let attempts: Vec<u32> = app
        .stored_restarts(&sha)
        .await
        .iter()
        .map(|r| r.attempt)
        .collect();
    assert_eq!(attempts, vec![1, 2]);
}

#[tokio::test]
async fn no_dispatch_for_runs_that_must_not_restart() {
    let app = TestApp::with(Options {
        workflows: vec!["trunk".into()],
        ..Options::default()
    })
    .await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "success",
            run_payload(
                "completed",
                40,
                &sha(40),
                "push",
                "main",
                Some("success"),
                |_| {},
            ),
        ),
        (
            "cancelled",
            run_payload(
                "completed",
                41,
                &sha(41),
                "push",
                "main",
                Some("cancelled"),
                |_| {},
            ),
        ),
        (
            "pull_request",
            run_payload(
                "completed",
                42,
                &sha(42),
                "pull_request",
                "main",
                Some("failure"),
                |_| {},
            ),
        ),
        (
            "other branch",
            run_payload(
                "completed",
                43,
                &sha(43),
                "push",
                "release/2.9",
                Some("failure"),
                |_| {},
            ),
        ),
        (
            "other repo",
            run_payload(
                "completed",
                44,
                &sha(44),
                "push",
                "main",
                Some("failure"),
                |p| p["repository"]["full_name"] = json!("pytorch/vision"),
            ),
        ),
        (
            "unwatched workflow",
            run_payload(
                "completed",
                45,
                &sha(45),
                "push",
                "main",
                Some("failure"),
                |p| {
                    p["workflow_run"]["name"] = json!("pull");
                    p["workflow_run"]["path"] = json!(".github/workflows/pull.yml");
                },
            ),
        ),
        (
            "in progress",
            run_payload("in_progress", 46, &sha(46), "push", "main", None, |_| {}),
        ),
        // The App's own restart failing: an outcome, never a trigger.
        (
            "own restart failing",
            run_payload(
                "completed",
                47,
                &sha(47),
                "workflow_dispatch",
                &format!("trunk/{}", sha(47)),
                Some("failure"),
                |_| {},
            ),
        ),
        // A push run on a trunk/ tag is not ours either.
        (
            "push on trunk tag",
            run_payload(
                "completed",
                48,
                &sha(48),
                "push",
                &format!("trunk/{}", sha(48)),
                Some("failure"),
                |_| {},
            ),
        ),
    ];
    for (what, body) in &cases {
        let (s, j) = app.deliver_as("workflow_run", what, body).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{what}: {j}");
    }
    app.settle().await;
    assert!(
        app.github.dispatches().is_empty(),
        "{:?}",
        app.github.dispatches()
    );
    for (what, _) in &cases {
        let row = app
            .store
            .delivery(what)
            .await
            .unwrap()
            .expect("each delivery is recorded");
        assert!(
            row.decision.starts_with("ignore"),
            "{what}: {}",
            row.decision
        );
    }
}

#[tokio::test]
async fn restart_action_log_records_a_dry_run_and_sends_nothing() {
    let app = TestApp::with(Options {
        action: RestartAction::Log,
        ..Options::default()
    })
    .await;
    let sha = sha(50);
    app.deliver("workflow_run", &failure(&sha, 50)).await;
    app.settle().await;
    assert!(app.github.dispatches().is_empty());
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!(r.status, Status::DryRun);
    assert!(r.dry_run);
    assert!(
        app.event_kinds(&sha)
            .await
            .contains(&"dispatch_dry_run".to_string())
    );
}

#[tokio::test]
async fn restart_action_skip_records_the_decision_only() {
    let app = TestApp::with(Options {
        action: RestartAction::Skip,
        ..Options::default()
    })
    .await;
    let sha = sha(51);
    app.deliver("workflow_run", &failure(&sha, 51)).await;
    app.settle().await;
    assert!(app.github.dispatches().is_empty());
    assert!(app.stored_restarts(&sha).await.is_empty());
    assert_eq!(app.event_kinds(&sha).await, vec!["skipped".to_string()]);
}

#[tokio::test]
async fn dispatch_422_is_recorded_with_githubs_message_and_not_retried_within_the_backoff() {
    let app = TestApp::start().await;
    let sha = sha(60);
    let msg = format!("No ref found for: trunk/{sha}");
    app.github
        .script([DispatchAnswer::Reject(422, msg.clone())]);
    app.deliver("workflow_run", &failure(&sha, 60)).await;
    app.settle().await;
    assert_eq!(app.github.dispatches().len(), 1, "a 4xx is never retried");
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!(r.status, Status::DispatchFailed);
    assert!(
        r.reason.contains("422") && r.reason.contains(&msg),
        "{}",
        r.reason
    );
    // A redelivery within the backoff (20 min) does not hammer GitHub.
    app.deliver("workflow_run", &failure(&sha, 60)).await;
    app.settle().await;
    assert_eq!(app.github.dispatches().len(), 1);
    assert!(
        app.event_kinds(&sha).await.contains(&"skipped".to_string()),
        "{:?}",
        app.event_kinds(&sha).await
    );
}

#[tokio::test]
async fn dispatch_500_after_the_run_was_created_finds_the_run_without_a_second_post() {
    let app = TestApp::start().await;
    let sha = sha(61);
    app.github.script([DispatchAnswer::FailAfterCreate(500)]);
    app.deliver("workflow_run", &failure(&sha, 61)).await;
    app.settle().await;
    assert_eq!(app.github.dispatches().len(), 1, "no second POST");
    let lookups = app.github.requests_matching(
        "GET",
        &format!("&branch=trunk%2F{sha}&event=workflow_dispatch"),
    );
    assert_eq!(lookups.len(), 1, "the runs on trunk/<sha> were listed");
    let created = app.github.state.lock().unwrap().runs[0].id;
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!(r.status, Status::Dispatched);
    assert_eq!(r.restart_run_id, Some(created));
    assert!(
        app.event_kinds(&sha)
            .await
            .contains(&"run_found".to_string())
    );
}

#[tokio::test]
async fn dispatch_500_without_a_run_is_resent_once_only_after_the_lookup() {
    let app = TestApp::start().await;
    let sha = sha(62);
    app.github.script([DispatchAnswer::FailBeforeCreate(502)]);
    app.deliver("workflow_run", &failure(&sha, 62)).await;
    app.settle().await;
    let posts = app.github.requests_matching("POST", "/dispatches");
    let lookups = app.github.requests_matching("GET", "&branch=trunk%2F");
    assert_eq!(posts.len(), 2);
    assert_eq!(lookups.len(), 1);
    assert!(
        lookups[0].1 > posts[0].1 && lookups[0].1 < posts[1].1,
        "lookup between the two POSTs"
    );
    assert_eq!(
        app.stored_restarts(&sha).await[0].status,
        Status::Dispatched
    );
}

#[tokio::test]
async fn dispatch_500_twice_stays_unknown_and_sends_no_third_post() {
    let app = TestApp::start().await;
    let sha = sha(63);
    app.github.script([
        DispatchAnswer::FailBeforeCreate(500),
        DispatchAnswer::FailBeforeCreate(503),
    ]);
    app.deliver("workflow_run", &failure(&sha, 63)).await;
    app.settle().await;
    assert_eq!(app.github.requests_matching("POST", "/dispatches").len(), 2);
    assert_eq!(
        app.github
            .requests_matching("GET", "&branch=trunk%2F")
            .len(),
        2
    );
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!(r.status, Status::DispatchUnknown, "{}", r.reason);
}

#[tokio::test]
async fn dispatch_204_without_run_id_is_matched_by_the_follow_up_webhook() {
    let app = TestApp::start().await;
    let sha = sha(64);
    app.github.script([DispatchAnswer::CreateNoDetails]);
    app.deliver("workflow_run", &failure(&sha, 64)).await;
    app.settle().await;
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!((r.status, r.restart_run_id), (Status::Dispatched, None));
    let run_id = app.github.state.lock().unwrap().runs[0].id;
    let body = run_payload(
        "requested",
        run_id,
        &sha,
        "workflow_dispatch",
        &format!("trunk/{sha}"),
        None,
        |_| {},
    );
    app.deliver("workflow_run", &body).await;
    app.settle().await;
    assert_eq!(
        app.stored_restarts(&sha).await[0].restart_run_id,
        Some(run_id)
    );
}

#[tokio::test]
async fn expired_token_gets_a_new_one() {
    let app = TestApp::start().await;
    // First restart fetches a token.
    app.deliver("workflow_run", &failure(&sha(65), 65)).await;
    app.settle().await;
    assert_eq!(app.github.tokens_issued(), 1);
    // The cached token has expired by the next dispatch: 401, a new token, one real dispatch.
    app.github.script([DispatchAnswer::ExpireToken]);
    let sha = sha(66);
    app.deliver("workflow_run", &failure(&sha, 66)).await;
    app.settle().await;
    assert_eq!(app.github.tokens_issued(), 2);
    assert_eq!(
        app.github.dispatches().len(),
        2,
        "one recorded dispatch per restart"
    );
    assert_eq!(
        app.stored_restarts(&sha).await[0].status,
        Status::Dispatched
    );
}

#[tokio::test]
async fn token_is_cached_across_restarts() {
    let app = TestApp::start().await;
    for n in 0..5 {
        app.deliver("workflow_run", &failure(&sha(70 + n), 70 + n as u64))
            .await;
    }
    app.settle().await;
    assert_eq!(app.github.dispatches().len(), 5);
    // Five concurrent first dispatches share one token.
    assert_eq!(app.github.tokens_issued(), 1);
}

#[tokio::test]
async fn a_slow_github_does_not_slow_the_webhook() {
    let app = TestApp::start().await;
    app.github
        .script([DispatchAnswer::Slow(std::time::Duration::from_secs(2))]);
    let (s, _) = app.deliver("workflow_run", &failure(&sha(80), 80)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    // Answered while GitHub is still holding the dispatch: intake never waits on GitHub.
    assert!(
        app.github.dispatches().is_empty(),
        "the answer waited for the dispatch"
    );
    app.settle().await;
    assert_eq!(app.github.dispatches().len(), 1);
}

#[tokio::test]
async fn kill_switch_by_a_writer_holds_restarts_until_closed() {
    let app = TestApp::start().await;
    app.github
        .open_kill_switch(500, "ci: disable-autorevert", "oncall", "write", "maintain");
    let held = sha(130);
    app.deliver("workflow_run", &failure(&held, 130)).await;
    app.settle().await;
    assert!(app.github.dispatches().is_empty());
    let events = app.store.events_for(&TestApp::key(&held)).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "skipped");
    assert!(
        events[0]
            .message
            .contains("kill switch on: issue #500 labelled by @oncall (maintain)"),
        "{}",
        events[0].message
    );
    // Closed: the next failure of another commit restarts again.
    app.github.close_issue(500);
    app.deliver("workflow_run", &failure(&sha(131), 131)).await;
    app.settle().await;
    assert_eq!(app.github.dispatches().len(), 1);
}

#[tokio::test]
async fn kill_switch_label_from_a_user_without_write_permission_is_ignored() {
    let app = TestApp::start().await;
    // Anyone can open an issue from a template that applies the label.
    app.github
        .open_kill_switch(501, "ci: disable-autorevert", "drive-by", "read", "triage");
    app.deliver("workflow_run", &failure(&sha(132), 132)).await;
    app.settle().await;
    assert_eq!(app.github.dispatches().len(), 1);
}

#[tokio::test]
async fn kill_switch_is_looked_up_only_for_possible_restarts() {
    let app = TestApp::start().await;
    let ok = run_payload(
        "completed",
        133,
        &sha(133),
        "push",
        "main",
        Some("success"),
        |_| {},
    );
    app.deliver("workflow_run", &ok).await;
    app.deliver(
        "workflow_job",
        &job_payload("queued", 1, 133, &sha(133), "main", BUILD, None),
    )
    .await;
    app.settle().await;
    assert!(
        app.github
            .requests_matching("GET", "/issues?labels=")
            .is_empty()
    );
}

//! `POST /webhook` as GitHub and attackers see it: signatures, headers, bad bodies, sizes.

mod common;

use autorevert::intake::signature::sign;
use axum::http::StatusCode;
use common::*;
use tower::ServiceExt;

#[tokio::test]
async fn wrong_or_missing_signature_is_401_and_nothing_is_recorded() {
    let app = TestApp::start().await;
    let sha = sha(10);
    let body = failure(&sha, 5);
    let (status, json) = app
        .post(
            Some("workflow_run"),
            Some("d-wrong"),
            Some(sign("not-the-secret", &body)),
            body.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        json["error"].as_str().unwrap().contains("does not match"),
        "{json}"
    );
    let (status, json) = app
        .post(Some("workflow_run"), Some("d-missing"), None, body.clone())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        json["error"].as_str().unwrap().contains("missing"),
        "{json}"
    );
    // A valid signature over another body does not verify this one either.
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let (status, _) = app
        .post(
            Some("workflow_run"),
            Some("d-tampered"),
            Some(sign(SECRET, &body)),
            tampered,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.settle().await;
    assert!(app.github.dispatches().is_empty());
    assert!(app.stored_restarts(&sha).await.is_empty());
    for id in ["d-wrong", "d-missing", "d-tampered"] {
        assert!(
            app.store.delivery(id).await.unwrap().is_none(),
            "{id} was recorded"
        );
    }
}

#[tokio::test]
async fn missing_github_headers_are_400() {
    let app = TestApp::start().await;
    let body = b"{}".to_vec();
    let (s, j) = app
        .post(None, Some("d1"), Some(sign(SECRET, &body)), body.clone())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(j["error"].as_str().unwrap().contains("X-GitHub-Event"));
    let (s, j) = app
        .post(Some("ping"), None, Some(sign(SECRET, &body)), body)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(j["error"].as_str().unwrap().contains("X-GitHub-Delivery"));
    // Absurdly long values are no GitHub delivery either, and nothing is recorded.
    let long = "d".repeat(201);
    let body = b"{}".to_vec();
    let (s, j) = app
        .post(Some("ping"), Some(&long), Some(sign(SECRET, &body)), body)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{j}");
    assert!(
        j["error"].as_str().unwrap().contains("longer than 200"),
        "{j}"
    );
    app.settle().await;
    assert!(app.store.delivery(&long).await.unwrap().is_none());
}

#[tokio::test]
async fn truncated_json_is_400_and_not_a_panic() {
    let app = TestApp::start().await;
    let body = failure(&sha(11), 5);
    for cut in [1, body.len() / 3, body.len() / 2, body.len() - 1] {
        let (s, j) = app.deliver("workflow_run", &body[..cut]).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "cut at {cut}: {j}");
        assert!(j["error"].as_str().unwrap().contains("workflow_run"), "{j}");
    }
    // JSON, but not what the event needs.
    let (s, _) = app
        .deliver(
            "workflow_job",
            br#"{"action":"completed","workflow_job":{"id":"x"}}"#,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = app.deliver("workflow_run", b"[]").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_event_and_ping_are_accepted_and_recorded() {
    let app = TestApp::start().await;
    let (s, j) = app
        .deliver_as("issues", "d-issues", br#"{"action":"opened"}"#)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(j["status"], "ignored");
    let ping = fixture_bytes("github/ping.with-app_id.json");
    let (s, j) = app.deliver_as("ping", "d-ping", &ping).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{j}");
    app.settle().await;
    let row = app
        .store
        .delivery("d-issues")
        .await
        .unwrap()
        .expect("recorded");
    assert!(row.decision.contains("not handled"), "{}", row.decision);
    assert!(app.store.delivery("d-ping").await.unwrap().is_some());
}

#[tokio::test]
async fn body_over_25_mib_is_413() {
    let app = TestApp::start().await;
    let body = vec![b' '; 25 * 1024 * 1024 + 1];
    let (s, j) = app
        .post(
            Some("workflow_run"),
            Some("big"),
            Some(sign(SECRET, &body)),
            body,
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(j["error"].as_str().unwrap().contains("larger"), "{j}");
}

#[tokio::test]
async fn real_fixtures_parse_and_are_accepted() {
    let app = TestApp::start().await;
    for (event, file) in [
        ("workflow_run", "github/workflow_run.completed.json"),
        (
            "workflow_run",
            "github/workflow_run.completed.with-pull-requests.json",
        ),
        ("workflow_run", "github/workflow_run.requested.json"),
        ("workflow_job", "github/workflow_job.completed.failure.json"),
        ("workflow_job", "github/workflow_job.completed.success.json"),
        ("workflow_job", "github/workflow_job.queued.json"),
        ("workflow_job", "github/workflow_job.in_progress.json"),
    ] {
        let (s, j) = app.deliver(event, &fixture_bytes(file)).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{file}: {j}");
    }
    app.settle().await;
    assert!(
        app.github.dispatches().is_empty(),
        "no fixture is a pytorch/pytorch trunk failure"
    );
}

#[tokio::test]
async fn health_endpoint_answers() {
    let app = TestApp::start().await;
    use tower::ServiceExt;
    let resp = app
        .router
        .clone()
        .oneshot(
            axum::http::Request::get("/healthz")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// One worker, a queue of one, and both taken: the worker waits `dispatch_takes` on GitHub
/// for a failure of commit `n`, and a job delivery (`d-queued-<n>`) fills the queue.
/// Returns the App and the payload of another job of that run.
async fn queue_full(
    queue_wait: std::time::Duration,
    dispatch_takes: std::time::Duration,
    n: u32,
) -> (TestApp, Vec<u8>) {
    let app = TestApp::with(Options {
        workers: 1,
        queue_capacity: 1,
        queue_wait,
        ..Options::default()
    })
    .await;
    app.github
        .script([fake_github::DispatchAnswer::Slow(dispatch_takes)]);
    let (status, _) = app
        .deliver("workflow_run", &failure(&sha(n), u64::from(n)))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let job = |id: u64| {
        job_payload(
            "queued",
            id,
            u64::from(n) + 1,
            &sha(n),
            "main",
            "build",
            None,
        )
    };
    let (status, _) = app
        .deliver_as("workflow_job", &format!("d-queued-{n}"), &job(1))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    (app, job(2))
}

/// A full work queue (one worker held up by a slow GitHub): a delivery waits for room and
/// is answered 202 once there is; only after `queue_wait` without room is it a 503 with
/// `Retry-After`, written nowhere, so that GitHub's redelivery of that id is taken later.
#[tokio::test]
async fn a_full_queue_waits_for_room_then_answers_503() {
    use std::time::{Duration, Instant};
    let (app, body) = queue_full(Duration::from_millis(300), Duration::from_secs(2), 41).await;
    // No room for 300 ms: 503, asked to come back.
    let started = Instant::now();
    let resp = app
        .router
        .clone()
        .oneshot(
            axum::http::Request::post("/webhook")
                .header("x-github-event", "workflow_job")
                .header("x-github-delivery", "d-no-room")
                .header("x-hub-signature-256", sign(SECRET, &body))
                .body(axum::body::Body::from(body.clone()))
                .unwrap(),
        )
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        waited >= Duration::from_millis(300),
        "answered after {waited:?}"
    );
    assert!(resp.headers().contains_key("retry-after"));
    assert!(
        !app.intake.has_seen("d-no-room"),
        "a 503 must not claim the id"
    );
    // Once the worker is free again, the same delivery is taken.
    app.settle().await;
    let (status, json) = app.deliver_as("workflow_job", "d-no-room", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    assert_eq!(json["status"], "accepted", "{json}");
    app.settle().await;
    for id in ["d-queued-41", "d-no-room"] {
        assert!(app.store.delivery(id).await.unwrap().is_some(), "{id}");
    }
}

/// With a longer `queue_wait`, the same burst is answered 202, just later: no 503.
#[tokio::test]
async fn a_delivery_waiting_for_room_is_accepted_when_room_comes() {
    use std::time::{Duration, Instant};
    let (app, body) = queue_full(Duration::from_secs(8), Duration::from_secs(1), 43).await;
    let started = Instant::now();
    let (status, json) = app.deliver_as("workflow_job", "d-waited", &body).await;
    let waited = started.elapsed();
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    assert!(
        waited >= Duration::from_millis(200),
        "expected to wait for the slow dispatch; answered after {waited:?}"
    );
    app.settle().await;
    assert_eq!(app.github.dispatches().len(), 1);
    assert!(app.store.delivery("d-waited").await.unwrap().is_some());
}

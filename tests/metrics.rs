//! `/metrics` in Prometheus' text format, read by a Prometheus text parser: the series move
//! with deliveries and restarts. (One test per process: the recorder is process-wide.)

mod common;

use axum::body::Body;
use axum::http::Request;
use common::*;
use http_body_util::BodyExt;
use prometheus_parse::Scrape;
use tower::ServiceExt;

async fn scrape(app: &TestApp) -> Scrape {
    let resp = app
        .router
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

#[tokio::test]
async fn the_series_move_with_deliveries_and_restarts() {
    let app = TestApp::start().await;
    let before = scrape(&app).await;
    let sha = sha(350);
    app.original_failure(&sha, 350, &[(TEST_1, "failure")])
        .await;
    app.settle().await;
    // A duplicate, a forged one and a bad one.
    let body = failure(&sha, 350);
    app.deliver_as("workflow_run", "m-dup", &body).await;
    app.deliver_as("workflow_run", "m-dup", &body).await;
    let forged = app
        .post(
            Some("workflow_run"),
            Some("m-forged"),
            Some("sha256=00".into()),
            body,
        )
        .await;
    assert_eq!(forged.0, 401);
    app.settle().await;
    let after = scrape(&app).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        metric(&after, name, labels) - metric(&before, name, labels)
    };
    let run = [("event", "workflow_run"), ("action", "completed")];
    assert_eq!(
        delta(
            "autorevert_deliveries_total",
            &[run[0], run[1], ("result", "accepted")]
        ),
        2.0
    );
    assert_eq!(
        delta(
            "autorevert_deliveries_total",
            &[run[0], ("result", "duplicate")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "autorevert_deliveries_total",
            &[("result", "bad_signature")]
        ),
        1.0
    );
    assert_eq!(delta("autorevert_signature_failures_total", &[]), 1.0);
    let jobs = [("event", "workflow_job"), ("result", "accepted")];
    assert_eq!(delta("autorevert_deliveries_total", &jobs), 1.0);
    assert_eq!(
        delta("autorevert_restart_events_total", &[("kind", "dispatched")]),
        1.0
    );
    assert_eq!(
        delta("autorevert_restart_events_total", &[("kind", "skipped")]),
        1.0,
        "the second delivery of the failure"
    );
    assert_eq!(delta("autorevert_dispatch_latency_seconds", &[]), 1.0);
    assert!(
        after
            .samples
            .iter()
            .any(|s| s.metric == "autorevert_queue_depth")
    );
    assert_eq!(metric(&after, "autorevert_worker_panics", &[]), 0.0);
    // GitHub's x-ratelimit-remaining, as the fake GitHub sends it on every answer.
    let left = metric(
        &after,
        "autorevert_github_rate_limit_remaining",
        &[("auth", "installation")],
    );
    assert!(left > 0.0 && left < 5000.0, "{left}");
    assert!(
        after.docs.contains_key("autorevert_deliveries_total"),
        "series are described"
    );
}

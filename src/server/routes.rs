//! The App's routes: `POST /webhook` (intake), `GET /healthz`, and `/`.

use super::startup::StartupStatus;
use crate::background::TaskView;
use crate::background::heartbeat::Heartbeat;
use crate::intake::webhook::{self, Intake, MAX_BODY_BYTES};
use crate::pipeline::Pipeline;
use crate::store::Store;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

/// What `/healthz` reads.
#[derive(Clone)]
pub struct Health {
    pub intake: Arc<Intake>,
    pub pipeline: Arc<Pipeline>,
    pub tasks: TaskView,
    pub heartbeat: Option<Arc<Heartbeat>>,
    pub startup: StartupStatus,
    /// To say whether ClickHouse answered lately.
    pub store: Option<Store>,
}

/// The App's router; tests call it in-process, `serve` puts it on a socket.
pub fn router(health: Health) -> Router {
    let intake = Router::new()
        .route("/webhook", post(webhook::receive))
        .with_state(health.intake.clone());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/",
            get(|| async { "autorevert: POST /webhook, GET /healthz\n" }),
        )
        .with_state(health)
        .merge(intake)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "error": "internal error" })),
    )
        .into_response()
}

async fn metrics(State(h): State<Health>) -> Response {
    match super::metrics::render(&h.pipeline) {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "another metrics recorder is installed in this process\n",
        )
            .into_response(),
    }
}

async fn healthz(State(h): State<Health>) -> Response {
    let others = h
        .heartbeat
        .as_ref()
        .map(|hb| hb.others())
        .unwrap_or_default();
    Json(json!({
        "status": "ok",
        // Until ready, deliveries are taken into the log but not yet handled.
        "startup": h.startup.snapshot(),
        "backlog": h.pipeline.engine().activity().backlog(),
        // How the last ClickHouse call went (null: none yet).
        "clickhouse": h.store.as_ref().and_then(Store::last_call),
        "queued": h.pipeline.queued(),
        // Deliveries whose handling panicked (each stays in the delivery log).
        "worker_panics": h.pipeline.engine().activity().panics(),
        "restarts_tracked": h.pipeline.engine().restarts().len(),
        // Non-empty: another instance writes to the same database (run one replica).
        "other_instances": others,
        "background_tasks": h.tasks.snapshot(),
    }))
    .into_response()
}

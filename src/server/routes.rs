//! The App's routes: `POST /webhook` (intake), `GET /healthz`, and the status pages
//! (`/`, `/restarts/…`, `/api/`: see `status`).

use super::startup::StartupStatus;
use crate::background::TaskView;
use crate::background::heartbeat::Heartbeat;
use crate::intake::webhook::{self, Intake, MAX_BODY_BYTES};
use crate::pipeline::Pipeline;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
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
    /// Where the status pages read the ledger (None: no ClickHouse).
    pub store: Option<crate::store::Store>,
}

/// The App's router; tests call it in-process, `serve` puts it on a socket.
pub fn router(health: Health) -> Router {
    let intake = Router::new()
        .route("/webhook", post(webhook::receive))
        .with_state(health.intake.clone());
    let status = super::status::routes(health.store.clone(), health.pipeline.clone());
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(health)
        .merge(intake)
        .merge(status)
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

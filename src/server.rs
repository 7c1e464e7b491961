//! The HTTP server: routes, layers, start-up wiring and graceful shutdown.

use crate::pipeline::Pipeline;
use crate::webhook::{self, Intake, MAX_BODY_BYTES};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// The App's router; tests call it in-process, `serve` puts it on a socket.
pub fn router(intake: Arc<Intake>) -> Router {
    Router::new()
        .route("/webhook", post(webhook::receive))
        .route("/healthz", get(healthz))
        .route(
            "/",
            get(|| async { "autorevert: POST /webhook, GET /healthz\n" }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(intake)
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "error": "internal error" })),
    )
        .into_response()
}

async fn healthz(State(intake): State<Arc<Intake>>) -> Response {
    let p = intake.pipeline();
    Json(json!({
        "status": "ok",
        "queued": p.queued(),
        "restarts_tracked": p.engine().all_restarts().len(),
    }))
    .into_response()
}

/// Serves until SIGTERM or Ctrl-C, then stops taking deliveries, finishes the queued ones
/// and waits for follow-ups up to `grace`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    intake: Arc<Intake>,
    pipeline: Arc<Pipeline>,
    grace: Duration,
) -> anyhow::Result<()> {
    let app = router(intake);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("stopped taking deliveries; finishing queued work");
    if !pipeline.shutdown(grace).await {
        tracing::warn!(
            "follow-ups still running at exit; they resume from the ledger at the next start"
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

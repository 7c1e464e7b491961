//! The App's routes: `POST /webhook` (intake), `GET /healthz`, and the status pages
//! (`/`, `/restarts/…`, `/api/`: see `status`).

use super::startup::StartupStatus;
use crate::background::TaskView;
use crate::background::heartbeat::Heartbeat;
use crate::github::GitHub;
use crate::intake::webhook::{self, Intake, MAX_BODY_BYTES};
use crate::pipeline::Pipeline;
use crate::store::Store;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tower_http::limit::RequestBodyLimitLayer;

/// What `/healthz` reads.
#[derive(Clone)]
pub struct Health {
    pub intake: Arc<Intake>,
    pub pipeline: Arc<Pipeline>,
    pub tasks: TaskView,
    pub heartbeat: Option<Arc<Heartbeat>>,
    pub startup: StartupStatus,
    /// Where `/healthz` says how ClickHouse answered lately, and the status pages read the
    /// ledger (None: no ClickHouse).
    pub store: Option<Store>,
    /// Where `/healthz` says how GitHub answered lately (None: no GitHub credentials).
    pub github: Option<GitHub>,
}

/// The App's router; tests call it in-process, `serve` puts it on a socket.
pub fn router(health: Health) -> Router {
    let intake = Router::new()
        .route("/webhook", post(webhook::receive))
        .with_state(health.intake.clone());
    let status = super::status::routes(health.store.clone(), health.pipeline.clone());
    Router::new()
        .route("/healthz", get(super::healthz::healthz))
        .route("/metrics", get(metrics))
        .with_state(health)
        .merge(intake)
        .merge(status)
        .layer(middleware::from_fn(read_body))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // A declared Content-Length over the cap is answered 413 before a byte of the body
        // is read; a body without one is cut off at the cap.
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(middleware::map_response(json_too_large))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
}

/// Put on every request by `serve`: the whole body must have arrived within this time of
/// the request's headers. (tower-http's body timeout restarts at every chunk, so a client
/// that sends a byte now and then would hold its connection for as long as it likes.)
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// Reads the whole body before any route sees it, within the request's `BodyTimeout` (none
/// in-process); 408 and the connection closed when it does not arrive in time.
async fn read_body(req: Request, next: Next) -> Response {
    let within = req.extensions().get::<BodyTimeout>().map(|t| t.0);
    let (parts, body) = req.into_parts();
    let read = Bytes::from_request(Request::from_parts(parts.clone(), body), &());
    let read = match within {
        Some(t) => match tokio::time::timeout(t, read).await {
            Ok(read) => read,
            Err(_) => {
                let error = format!("the body did not arrive within {} s", t.as_secs_f32());
                let mut resp = error_reply(StatusCode::REQUEST_TIMEOUT, &error);
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return resp;
            }
        },
        None => read.await,
    };
    match read {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        Err(rejection) => error_reply(
            rejection.status(),
            &format!("could not read the body: {}", rejection.body_text()),
        ),
    }
}

fn error_reply(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

fn too_large() -> Response {
    error_reply(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("body is larger than {MAX_BODY_BYTES} bytes (GitHub's cap)"),
    )
}

/// tower-http's 413 is plain text; every answer here says what happened in JSON.
async fn json_too_large(resp: Response) -> Response {
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && !json {
        too_large()
    } else {
        resp
    }
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

//! `/api/`: the status page's data as JSON.
//!
//! * `GET /api/restarts?workflow=&outcome=&page=`: a page of restarts, newest first, with
//!   `total`, `pages`, the workflows there are, and what is known of the kill switch;
//! * `GET /api/restarts/{restart_id}`: one restart, its per-job evidence and event log.

use super::{Pages, Params, Problem};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub async fn list(State(pages): State<Pages>, Query(params): Query<Params>) -> Response {
    let listing = match params.ask() {
        Ok(ask) => pages.listing(&ask).await,
        Err(p) => Err(p),
    };
    match listing {
        Ok(l) => Json(l).into_response(),
        Err(p) => problem(p),
    }
}

pub async fn detail(State(pages): State<Pages>, Path(id): Path<String>) -> Response {
    match pages.detail(&id).await {
        Ok(d) => Json(d).into_response(),
        Err(p) => problem(p),
    }
}

fn problem(p: Problem) -> Response {
    (p.status(), Json(json!({ "error": p.message() }))).into_response()
}

//! `POST /webhook`: verify the signature over the raw body, check the headers, parse into
//! our own event types, drop repeated delivery ids, log, queue, answer. Nothing here calls
//! GitHub or ClickHouse; the longest wait is for room in a full queue (`queue_wait`, at
//! most 8 s), so the answer comes within GitHub's 10 s deadline.
//!
//! Status codes (a short JSON body always says what happened):
//! 202 accepted (also: an event type we ignore, a delivery id already seen);
//! 401 missing or wrong `X-Hub-Signature-256`; 400 missing `X-GitHub-Event` or
//! `X-GitHub-Delivery`, or a body that is not the JSON the event needs; 413 above 25 MiB;
//! 503 with `Retry-After` when the work queue stayed full for the whole `queue_wait`, the
//! delivery could not be logged, or the App is stopping.

use super::delivery_log::DeliveryLog;
use super::recent_ids::RecentIds;
use super::signature::verify_signature;
use super::states::Action;
use super::{Delivery, DeliveryQueue, EnqueueError, Event, events};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// GitHub caps payloads at 25 MB; anything larger is not a GitHub delivery.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// Longest `X-GitHub-Event` / `X-GitHub-Delivery` accepted.
const MAX_HEADER_VALUE: usize = 200;

pub struct Intake {
    secrets: Vec<SecretString>,
    queue: Arc<dyn DeliveryQueue>,
    /// The delivery log: a delivery is on disk before it is answered 202.
    log: Option<DeliveryLog>,
    recent: Mutex<RecentIds>,
    /// How long a delivery waits for room in a full work queue before a 503.
    queue_wait: Duration,
}

impl Intake {
    pub fn new(
        secrets: Vec<SecretString>,
        queue: Arc<dyn DeliveryQueue>,
        log: Option<DeliveryLog>,
        queue_wait: Duration,
    ) -> Intake {
        Intake {
            secrets,
            queue,
            log,
            recent: Mutex::new(RecentIds::default()),
            queue_wait,
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, RecentIds> {
        self.recent.lock().expect("recent ids lock")
    }

    /// Whether this delivery id was accepted recently (or is in the delivery log).
    pub fn has_seen(&self, id: &str) -> bool {
        self.recent().contains(id)
    }

    /// Delivery ids already received (from the delivery log at start-up).
    pub fn remember(&self, ids: impl IntoIterator<Item = String>) {
        let mut recent = self.recent();
        for id in ids {
            recent.insert(&id);
        }
    }
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn bad_request(error: impl Into<String>) -> Response {
    reply(StatusCode::BAD_REQUEST, json!({ "error": error.into() }))
}

fn unavailable(retry: &'static str, error: &str) -> Response {
    let mut resp = reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": error }));
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(retry));
    resp
}

/// 202 for a delivery id already taken (GitHub's redeliveries keep the id).
fn duplicate(delivery_id: &str) -> Response {
    reply(
        StatusCode::ACCEPTED,
        json!({ "status": "duplicate", "delivery": delivery_id }),
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The event name and delivery id, checked; why not, when one is missing or too long.
fn event_headers(headers: &HeaderMap) -> Result<(&str, &str), String> {
    let event_name = header_str(headers, "x-github-event").ok_or("X-GitHub-Event is missing")?;
    let delivery_id =
        header_str(headers, "x-github-delivery").ok_or("X-GitHub-Delivery is missing")?;
    // GitHub's are a UUID and a short name; a longer one is no GitHub delivery (and would
    // not fit the delivery log's record header).
    for (name, value) in [
        ("X-GitHub-Event", event_name),
        ("X-GitHub-Delivery", delivery_id),
    ] {
        if value.len() > MAX_HEADER_VALUE {
            return Err(format!("{name} is longer than {MAX_HEADER_VALUE} bytes"));
        }
    }
    Ok((event_name, delivery_id))
}

/// `POST /webhook`: answers, and counts the answer (`autorevert_deliveries_total` by event,
/// action and result).
pub async fn receive(
    State(intake): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // Labels from a fixed set: the header is anyone's until the signature is checked.
    let event: &'static str = match header_str(&headers, "x-github-event") {
        Some("workflow_run") => "workflow_run",
        Some("workflow_job") => "workflow_job",
        Some("push") => "push",
        Some("ping") => "ping",
        Some(_) => "other",
        None => "none",
    };
    let (resp, result, action) = answer(&intake, &headers, body).await;
    let action = match action {
        Some(Action::Other(_)) => "other".to_string(),
        Some(a) => a.to_string(),
        None => String::new(),
    };
    metrics::counter!("autorevert_deliveries_total", "event" => event, "action" => action, "result" => result)
        .increment(1);
    if result == "bad_signature" {
        metrics::counter!("autorevert_signature_failures_total").increment(1);
    }
    resp
}

/// The answer to a delivery, what it came to (a metric label), and the delivery's action.
async fn answer(
    intake: &Intake,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> (Response, &'static str, Option<Action>) {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            let error = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("body is larger than {MAX_BODY_BYTES} bytes (GitHub's cap)")
            } else {
                format!("could not read the body: {}", rejection.body_text())
            };
            return (reply(status, json!({ "error": error })), "unreadable", None);
        }
    };
    let signature = header_str(headers, "x-hub-signature-256");
    if !verify_signature(&intake.secrets, signature, &body) {
        let error = if headers.contains_key("x-hub-signature-256") {
            "X-Hub-Signature-256 does not match the body"
        } else {
            "X-Hub-Signature-256 is missing"
        };
        tracing::warn!(error, "rejected delivery");
        let resp = reply(StatusCode::UNAUTHORIZED, json!({ "error": error }));
        return (resp, "bad_signature", None);
    }
    let (event_name, delivery_id) = match event_headers(headers) {
        Ok(h) => h,
        Err(why) => return (bad_request(why), "bad_request", None),
    };
    if intake.has_seen(delivery_id) {
        return (duplicate(delivery_id), "duplicate", None);
    }
    let event = match events::parse(event_name, &body) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(delivery = delivery_id, event = event_name, error = %e, "bad payload");
            return (bad_request(e.to_string()), "bad_payload", None);
        }
    };
    let action = event.action().cloned();
    let status = match &event {
        Event::Other { .. } => "ignored",
        _ => "accepted",
    };
    if let Err((resp, result)) = take(intake, delivery_id, event_name, event, body.len()).await {
        return (resp, result, action);
    }
    let body = json!({ "status": status, "delivery": delivery_id, "event": event_name });
    (reply(StatusCode::ACCEPTED, body), status, action)
}

/// Queues a verified delivery, durable before the answer. A place in the queue first
/// (this may wait), so that nothing is logged that cannot be queued, and no id is claimed
/// by a delivery that may still be refused; then the id, so two copies arriving together
/// are queued once; then the delivery log.
async fn take(
    intake: &Intake,
    delivery_id: &str,
    event_name: &str,
    event: Event,
    body_len: usize,
) -> Result<(), (Response, &'static str)> {
    let slot = match intake.queue.reserve(&event, intake.queue_wait).await {
        Ok(slot) => slot,
        Err(EnqueueError::Full) => {
            return Err((
                unavailable("5", "the work queue is full; retry later"),
                "queue_full",
            ));
        }
        Err(EnqueueError::Closed) => {
            let resp = unavailable("30", "the App is shutting down; retry later");
            return Err((resp, "shutting_down"));
        }
    };
    if !intake.recent().insert(delivery_id) {
        return Err((duplicate(delivery_id), "duplicate"));
    }
    let received_at = chrono::Utc::now();
    let body_bytes = body_len.min(u32::MAX as usize) as u32;
    // Durable before the answer: once 202 is sent, the delivery survives a crash.
    let seq = match &intake.log {
        Some(log) => {
            let at = received_at.timestamp_millis();
            match log
                .append(delivery_id, event_name, at, body_bytes, &event)
                .await
            {
                Ok(seq) => Some(seq),
                Err(e) => {
                    tracing::error!(delivery = delivery_id, error = %e, "writing the delivery log failed");
                    intake.recent().forget(delivery_id);
                    return Err((
                        unavailable("30", "the delivery could not be stored; retry later"),
                        "not_stored",
                    ));
                }
            }
        }
        None => None,
    };
    slot.send(Delivery {
        id: delivery_id.to_string(),
        event_name: event_name.to_string(),
        event,
        received_at,
        body_bytes,
        seq,
        replayed: false,
    });
    Ok(())
}

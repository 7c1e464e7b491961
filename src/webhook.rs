//! Webhook intake: verify the signature over the raw body, check the headers, parse into our
//! own event types, drop repeated delivery ids, queue, answer. Nothing here calls GitHub or
//! ClickHouse; the longest wait is for room in a full queue (`queue_wait`, at most 8 s), so
//! the answer comes within GitHub's 10 s deadline.
//!
//! Status codes (a short JSON body always says what happened):
//! 202 accepted (also: an event type we ignore, a delivery id already seen);
//! 401 missing or wrong `X-Hub-Signature-256`; 400 missing `X-GitHub-Event` or
//! `X-GitHub-Delivery`, or a body that is not the JSON the event needs; 413 above 25 MiB;
//! 503 with `Retry-After` when the work queue stayed full for the whole `queue_wait`, or the
//! App is stopping.

use crate::events::{self, Event};
use crate::pipeline::{Delivery, EnqueueError, Pipeline};
use crate::spool::Spool;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// GitHub caps payloads at 25 MB; anything larger is not a GitHub delivery.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// Longest `X-GitHub-Event` / `X-GitHub-Delivery` accepted.
const MAX_HEADER_VALUE: usize = 200;

/// How many recent delivery ids are remembered to answer repeats without work.
const RECENT_IDS: usize = 100_000;

type HmacSha256 = Hmac<Sha256>;

/// Checks `sha256=<hex>` against HMAC-SHA256 of `body` under any of `secrets`
/// (several during a rotation), in constant time.
pub fn verify_signature(secrets: &[SecretString], header: Option<&str>, body: &[u8]) -> bool {
    let Some(sig) = header
        .and_then(|h| h.trim().strip_prefix("sha256="))
        .and_then(|hex_sig| hex::decode(hex_sig).ok())
    else {
        return false;
    };
    secrets.iter().any(|s| {
        let mut mac = HmacSha256::new_from_slice(s.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    })
}

/// `sha256=<hex>` for `body` (replay, tests, benchmarks).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A delivery id as remembered, in 16 bytes (100,000 of them: ~4 MiB): GitHub's ids are
/// UUIDs, kept exactly; any other id is kept as the first 16 bytes of its SHA-256.
fn delivery_key(id: &str) -> u128 {
    let mut buf = uuid::Uuid::encode_buffer();
    match uuid::Uuid::try_parse(id) {
        // Only the canonical spelling, so that two spellings stay two ids.
        Ok(u) if *u.hyphenated().encode_lower(&mut buf) == *id => u.as_u128(),
        _ => {
            let digest = Sha256::digest(id.as_bytes());
            let mut first = [0u8; 16];
            first.copy_from_slice(&digest[..16]);
            u128::from_le_bytes(first)
        }
    }
}

/// Recently seen delivery ids, bounded (oldest forgotten first).
#[derive(Default)]
struct RecentIds {
    set: HashSet<u128>,
    order: VecDeque<u128>,
}

impl RecentIds {
    fn contains(&self, id: &str) -> bool {
        self.set.contains(&delivery_key(id))
    }
    /// False when the id was already there.
    fn insert(&mut self, id: &str) -> bool {
        let key = delivery_key(id);
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > RECENT_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
    fn forget(&mut self, id: &str) {
        let key = delivery_key(id);
        if self.set.remove(&key) {
            self.order.retain(|x| *x != key);
        }
    }
}

pub struct Intake {
    secrets: Vec<SecretString>,
    pipeline: Arc<Pipeline>,
    /// The delivery log: a delivery is on disk before it is answered 202.
    spool: Option<Spool>,
    recent: Mutex<RecentIds>,
    /// How long a delivery waits for room in a full work queue before a 503.
    queue_wait: Duration,
}

impl Intake {
    pub fn new(
        secrets: Vec<SecretString>,
        pipeline: Arc<Pipeline>,
        spool: Option<Spool>,
        queue_wait: Duration,
    ) -> Intake {
        Intake {
            secrets,
            pipeline,
            spool,
            recent: Mutex::new(RecentIds::default()),
            queue_wait,
        }
    }

    /// Whether this delivery id was accepted recently (or is in the delivery log).
    pub fn has_seen(&self, id: &str) -> bool {
        self.recent.lock().expect("recent ids lock").contains(id)
    }

    /// Delivery ids already received (from the delivery log at start-up).
    pub fn remember(&self, ids: impl IntoIterator<Item = String>) {
        let mut recent = self.recent.lock().expect("recent ids lock");
        for id in ids {
            recent.insert(&id);
        }
    }

    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
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

/// `POST /webhook`.
pub async fn receive(
    State(intake): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            let error = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("body is larger than {MAX_BODY_BYTES} bytes (GitHub's cap)")
            } else {
                format!("could not read the body: {}", rejection.body_text())
            };
            return reply(status, json!({ "error": error }));
        }
    };
    if !verify_signature(
        &intake.secrets,
        header_str(&headers, "x-hub-signature-256"),
        &body,
    ) {
        let error = if headers.contains_key("x-hub-signature-256") {
            "X-Hub-Signature-256 does not match the body"
        } else {
            "X-Hub-Signature-256 is missing"
        };
        tracing::warn!(
            delivery = header_str(&headers, "x-github-delivery"),
            error,
            "rejected delivery"
        );
        return reply(StatusCode::UNAUTHORIZED, json!({ "error": error }));
    }
    let Some(event_name) = header_str(&headers, "x-github-event") else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({ "error": "X-GitHub-Event is missing" }),
        );
    };
    let Some(delivery_id) = header_str(&headers, "x-github-delivery") else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({ "error": "X-GitHub-Delivery is missing" }),
        );
    };
    // GitHub's are a UUID and a short name; a longer one is no GitHub delivery (and would
    // not fit the delivery log's record header).
    for (name, value) in [
        ("X-GitHub-Event", event_name),
        ("X-GitHub-Delivery", delivery_id),
    ] {
        if value.len() > MAX_HEADER_VALUE {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({ "error": format!("{name} is longer than {MAX_HEADER_VALUE} bytes") }),
            );
        }
    }
    if intake
        .recent
        .lock()
        .expect("recent ids lock")
        .contains(delivery_id)
    {
        return duplicate(delivery_id);
    }
    let event = match events::parse(event_name, &body) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(delivery = delivery_id, event = event_name, error = %e, "bad payload");
            return reply(StatusCode::BAD_REQUEST, json!({ "error": e.to_string() }));
        }
    };
    let status = match &event {
        Event::Other { .. } => "ignored",
        _ => "accepted",
    };
    let unavailable = |retry: &'static str, error: &str| {
        let mut resp = reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": error }));
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(retry));
        resp
    };
    // A place in the queue first (this may wait), so that nothing is logged that cannot be
    // queued, and no id is claimed by a delivery that may still be refused.
    let slot = match intake.pipeline.reserve(&event, intake.queue_wait).await {
        Ok(slot) => slot,
        Err(EnqueueError::Full) => return unavailable("5", "the work queue is full; retry later"),
        Err(EnqueueError::Closed) => {
            return unavailable("30", "the App is shutting down; retry later");
        }
    };
    // Then claim the id, so two copies arriving together are queued once.
    if !intake
        .recent
        .lock()
        .expect("recent ids lock")
        .insert(delivery_id)
    {
        return duplicate(delivery_id);
    }
    let received_at = chrono::Utc::now();
    let body_bytes = body.len().min(u32::MAX as usize) as u32;
    // Durable before the answer: once 202 is sent, the delivery survives a crash.
    let seq = match &intake.spool {
        Some(spool) => match spool
            .append(
                delivery_id,
                event_name,
                received_at.timestamp_millis(),
                body_bytes,
                &event,
            )
            .await
        {
            Ok(seq) => Some(seq),
            Err(e) => {
                tracing::error!(delivery = delivery_id, error = %e, "writing the delivery log failed");
                intake
                    .recent
                    .lock()
                    .expect("recent ids lock")
                    .forget(delivery_id);
                return unavailable("30", "the delivery could not be stored; retry later");
            }
        },
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
    reply(
        StatusCode::ACCEPTED,
        json!({ "status": status, "delivery": delivery_id, "event": event_name }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's published test vector (docs: "Validating webhook deliveries").
    #[test]
    fn github_signature_test_vector() {
        let secret = "It's a Secret to Everybody";
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(secret, b"Hello, World!"), expected);
        let secrets = [SecretString::from(secret.to_string())];
        assert!(verify_signature(&secrets, Some(expected), b"Hello, World!"));
        assert!(!verify_signature(
            &secrets,
            Some(expected),
            b"Hello, World?"
        ));
        assert!(!verify_signature(&secrets, None, b"Hello, World!"));
        assert!(!verify_signature(
            &secrets,
            Some("sha256=zz"),
            b"Hello, World!"
        ));
        assert!(!verify_signature(
            &secrets,
            Some(&expected[7..]),
            b"Hello, World!"
        ));
    }

    #[test]
    fn any_secret_of_a_rotation_verifies() {
        let secrets = [
            SecretString::from("old".to_string()),
            SecretString::from("new".to_string()),
        ];
        assert!(verify_signature(&secrets, Some(&sign("new", b"x")), b"x"));
        assert!(verify_signature(&secrets, Some(&sign("old", b"x")), b"x"));
        assert!(!verify_signature(
            &secrets,
            Some(&sign("other", b"x")),
            b"x"
        ));
    }

    #[test]
    fn recent_ids_are_bounded() {
        let mut r = RecentIds::default();
        for i in 0..(RECENT_IDS + 10) {
            r.insert(&i.to_string());
        }
        assert!(!r.contains("0"));
        assert!(r.contains(&(RECENT_IDS + 9).to_string()));
        assert_eq!(r.set.len(), RECENT_IDS);
    }

    #[test]
    fn delivery_ids_are_kept_in_16_bytes_and_exact() {
        let mut r = RecentIds::default();
        let id = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
        assert!(r.insert(id));
        assert_eq!(r.order[0], uuid::Uuid::parse_str(id).unwrap().as_u128());
        assert!(r.contains(id));
        assert!(!r.insert(id), "the same id twice");
        // Other spellings of the same UUID are other ids, as GitHub compares them.
        assert!(!r.contains(&id.to_uppercase()));
        assert!(!r.contains("72d3162ecc7811e381ab4c9367dc0958"));
        r.forget(id);
        assert!(!r.contains(id));
        assert!(r.insert("not-a-uuid"));
        assert!(r.contains("not-a-uuid"));
    }
}

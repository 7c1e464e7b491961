//! A record's payload: how a delivery is encoded into the log and read back (both formats).

use super::super::events::{self, Event};
use super::LoggedDelivery;
use std::io;

/// The payload after the sequence number, built by the caller (off the writer thread).
pub(super) fn encode(
    id: &str,
    event_name: &str,
    received_at_ms: i64,
    body_bytes: u32,
    event: &Event,
) -> io::Result<Vec<u8>> {
    let short = |s: &str| {
        u16::try_from(s.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "header value too long"))
    };
    let (id_len, name_len) = (short(id)?, short(event_name)?);
    let mut p = Vec::with_capacity(1024);
    p.extend_from_slice(&received_at_ms.to_le_bytes());
    p.extend_from_slice(&body_bytes.to_le_bytes());
    p.extend_from_slice(&id_len.to_le_bytes());
    p.extend_from_slice(id.as_bytes());
    p.extend_from_slice(&name_len.to_le_bytes());
    p.extend_from_slice(event_name.as_bytes());
    serde_json::to_writer(&mut p, event).map_err(io::Error::other)?;
    Ok(p)
}

/// Appends one framed record to `buf`: `[len u32][crc32 u32][payload]`, the payload being
/// the sequence number, then `rest` (see `encode`).
pub(super) fn frame(buf: &mut Vec<u8>, seq: u64, rest: &[u8]) {
    let seq_le = seq.to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq_le);
    crc.update(rest);
    let len = (seq_le.len() + rest.len()) as u32;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    buf.extend_from_slice(&seq_le);
    buf.extend_from_slice(rest);
}

/// The shortest payload `split` accepts: the fixed fields and two empty strings.
pub(super) fn min_payload(first_format: bool) -> usize {
    if first_format { 20 } else { 24 }
}

/// Whether `payload`, framed with `crc`, is an intact record.
pub(super) fn intact(crc: u32, payload: &[u8], first_format: bool) -> bool {
    crc32fast::hash(payload) == crc && split(payload, first_format).is_some()
}

/// The payload split into its fields; the rest is the event JSON (or, in the first
/// format, GitHub's raw body).
pub(super) struct Fields<'a> {
    pub(super) seq: u64,
    pub(super) received_at_ms: i64,
    pub(super) body_bytes: Option<u32>,
    pub(super) id: &'a str,
    pub(super) event_name: &'a str,
    pub(super) rest: &'a [u8],
}

pub(super) fn split(p: &[u8], first_format: bool) -> Option<Fields<'_>> {
    let mut at = 0usize;
    let mut take = |n: usize| {
        let s = p.get(at..at + n)?;
        at += n;
        Some(s)
    };
    let seq = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let received_at_ms = i64::from_le_bytes(take(8)?.try_into().ok()?);
    let body_bytes = if first_format {
        None
    } else {
        Some(u32::from_le_bytes(take(4)?.try_into().ok()?))
    };
    let id_len = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
    let id = std::str::from_utf8(take(id_len)?).ok()?;
    let name_len = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
    let event_name = std::str::from_utf8(take(name_len)?).ok()?;
    Some(Fields {
        seq,
        received_at_ms,
        body_bytes,
        id,
        event_name,
        rest: p.get(at..)?,
    })
}

pub(super) fn decode(f: &Fields<'_>) -> Result<LoggedDelivery, String> {
    let (event, body_bytes) = match f.body_bytes {
        Some(n) => (
            serde_json::from_slice::<Event>(f.rest).map_err(|e| e.to_string())?,
            n,
        ),
        None => (
            events::parse(f.event_name, f.rest).map_err(|e| e.to_string())?,
            f.rest.len().min(u32::MAX as usize) as u32,
        ),
    };
    Ok(LoggedDelivery {
        seq: f.seq,
        id: f.id.to_string(),
        event_name: f.event_name.to_string(),
        received_at_ms: f.received_at_ms,
        body_bytes,
        event,
    })
}

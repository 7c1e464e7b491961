//! The delivery log: durable intake.
//!
//! GitHub does not redeliver a failed webhook by itself, so an answered delivery must
//! survive anything: `kill -9` right after the answer, ClickHouse down, GitHub down. Intake
//! appends each delivery here and answers 202 only once the record is on disk (`fsync`).
//! Appends that arrive together share one `fsync` (group commit), so durability costs one
//! disk flush per batch, not per request.
//!
//! A delivery is acknowledged here once all its effects are recorded (see `recorder`).
//! At start-up the unacknowledged ones are handed back and processed again; restarts are
//! claimed in the ledger, so a replayed delivery cannot dispatch twice.
//!
//! What is logged is the delivery as the App understood it (our narrow `Event`, as JSON,
//! about 1 KiB), not GitHub's raw body (18 KiB for a `workflow_run`): the log is a
//! write-ahead log of work, not an archive, and writing a twentieth of the bytes is most
//! of what makes a durable answer cheap (see bench/README.md).
//!
//! Files: `seg-<first seq>.log` segments, each starting with the magic `ARSPOOL2`, then
//! records `[len u32][crc32 u32][payload]`, payload
//! `seq u64 | received_at_ms i64 | body_bytes u32 | id_len u16 | id | name_len u16 | name |
//! event JSON`; `acks.log`, the acknowledged sequence numbers (u64 each). A segment whose
//! records are all acknowledged is deleted. A torn record at the end of a segment (a crash
//! mid-write, never answered 202) is cut off at start-up.
//!
//! Once a segment is half full, the next is prepared off the append path: `spare-*.tmp`, a
//! file of synced zeros. Appends into it overwrite blocks that already exist, so their
//! `fdatasync` commits no file-system metadata (on ext4 here: 0.10 instead of 0.18 ms and
//! about half the CPU per sync). The unused zeros at the end of a segment read as its end.
//!
//! Segments without the magic are the first format (the raw body in place of the event
//! JSON); they are still read.
//! A record that passes its checksum but cannot be decoded (a format this build does not
//! know) is copied to `unreadable/` for an operator and not processed: never dropped.

mod files;
mod format;
#[cfg(test)]
mod tests;
mod writer;

use super::events::Event;
use files::{list_segments, read_acks, read_segment, remove_spares, rewrite_acks, set_aside};
use format::Logged;
use format::encode;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use tokio::sync::oneshot;
use writer::Writer;

/// Segments are closed past this size (records are never split across segments).
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Zeros are synced to a spare segment this much at a time, so that preparing one never
/// floods the disk queue ahead of the appends' `fsync`s.
const ZERO_SYNC_BYTES: u64 = 1024 * 1024;
/// Written from here (static and never written: it costs no memory).
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
/// Largest batch one fsync covers.
const MAX_BATCH: usize = 1024;
/// First bytes of every segment of the current format.
const MAGIC: &[u8; 8] = b"ARSPOOL2";

/// A logged delivery, handed back at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedDelivery {
    pub seq: u64,
    pub id: String,
    pub event_name: String,
    pub received_at_ms: i64,
    /// Size of GitHub's body, for the deliveries table.
    pub body_bytes: u32,
    pub event: Event,
}

enum Op {
    /// An encoded record without its sequence number (the writer assigns it).
    Append(Vec<u8>, oneshot::Sender<io::Result<u64>>),
    Ack(u64),
}

/// What was in the log at start-up.
pub struct Recovered {
    /// Answered but not (fully) processed: to be processed now, in order.
    pub pending: Vec<LoggedDelivery>,
    /// Every delivery id still in the log, to recognise redeliveries.
    pub ids: Vec<String>,
}

#[derive(Clone)]
pub struct DeliveryLog {
    tx: mpsc::Sender<Op>,
    /// The sequence number the next appended delivery gets.
    next_seq: Arc<AtomicU64>,
}

impl DeliveryLog {
    /// Opens (or creates) the log in `dir`, recovers what it holds, and starts the writer.
    pub fn open(dir: &Path) -> io::Result<(DeliveryLog, Recovered)> {
        DeliveryLog::open_with(dir, SEGMENT_BYTES)
    }

    /// `open`, with segments of `segment_bytes` (tests cross segments with a few records).
    pub fn open_with(dir: &Path, segment_bytes: u64) -> io::Result<(DeliveryLog, Recovered)> {
        fs::create_dir_all(dir)?;
        let acked = read_acks(&dir.join("acks.log"))?;
        let mut segments: BTreeMap<u64, usize> = BTreeMap::new();
        let mut pending = Vec::new();
        let mut ids = Vec::new();
        let mut next_seq = acked.iter().next_back().map_or(1, |s| s + 1);
        let mut unreadable = Vec::new();
        let mut finished = Vec::new();
        for (start, path) in list_segments(dir)? {
            let mut open = 0;
            for r in read_segment(&path)? {
                next_seq = next_seq.max(r.seq() + 1);
                match r {
                    Logged::Readable(d) if acked.contains(&d.seq) => ids.push(d.id),
                    Logged::Readable(d) => {
                        ids.push(d.id.clone());
                        pending.push(*d);
                        open += 1;
                    }
                    Logged::Unreadable { seq, .. } if acked.contains(&seq) => {}
                    Logged::Unreadable { seq, payload, why } => {
                        unreadable.push((seq, payload, why))
                    }
                }
            }
            if open == 0 {
                finished.push(path);
            } else {
                segments.insert(start, open);
            }
        }
        pending.sort_by_key(|r| r.seq);
        // Unreadable records are copied aside (synced) before they count as handled, and
        // their segments go only after that.
        let set_aside = set_aside(dir, &unreadable)?;
        // Keep only the acks that still refer to a segment on disk.
        let oldest = segments.keys().next().copied().unwrap_or(next_seq);
        let mut kept: Vec<u64> = acked.into_iter().filter(|s| *s >= oldest).collect();
        kept.extend(set_aside.into_iter().filter(|s| *s >= oldest));
        rewrite_acks(&dir.join("acks.log"), &kept)?;
        for path in finished {
            fs::remove_file(path)?;
        }
        let shared_next = Arc::new(AtomicU64::new(next_seq));
        remove_spares(dir)?;
        let mut writer = Writer::new(dir.to_path_buf(), next_seq, segments, shared_next.clone())?;
        writer.segment_bytes = segment_bytes.max(1);
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok((
            DeliveryLog {
                tx,
                next_seq: shared_next,
            },
            Recovered { pending, ids },
        ))
    }

    /// Appends a delivery and returns its sequence number once it is on disk.
    pub async fn append(
        &self,
        id: &str,
        event_name: &str,
        received_at_ms: i64,
        body_bytes: u32,
        event: &Event,
    ) -> io::Result<u64> {
        let rec = encode(id, event_name, received_at_ms, body_bytes, event)?;
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Op::Append(rec, ack))
            .map_err(|_| io::Error::other("the delivery log has stopped"))?;
        done.await
            .map_err(|_| io::Error::other("the delivery log has stopped"))?
    }

    /// Marks a delivery as fully processed.
    pub fn ack(&self, seq: u64) {
        let _ = self.tx.send(Op::Ack(seq));
    }

    /// Every delivery logged so far has a sequence number below this.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::SeqCst)
    }
}

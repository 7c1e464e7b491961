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
//! records are all acknowledged is deleted.
//!
//! A batch of appends is written whole or not at all: a write or `fdatasync` that fails
//! refuses the batch (intake answers 503) and is undone, and a failed sync closes the
//! segment for good (see writer.rs). At start-up the segments are read streaming, record by
//! record, keeping only what is pending and the ids (see reader.rs). A region that frames
//! no record (a torn write at a crash, a damaged block) is copied to `unreadable/`, never
//! just cut off, and the records after it are read.
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
mod reader;
#[cfg(test)]
mod tests;
mod writer;

use super::events::Event;
use super::recent_ids::RECENT_IDS;
use files::{list_segments, read_acks, remove_spares, rewrite_acks, set_aside};
use format::{decode, encode};
use reader::read_segment;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
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
    /// The delivery ids still in the log, to recognise redeliveries: the newest
    /// `RECENT_IDS`, as many as intake remembers.
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
        let (writer, recovered) = recover(dir, segment_bytes)?;
        let next_seq = writer.shared_next();
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok((DeliveryLog { tx, next_seq }, recovered))
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

/// Reads what the log in `dir` holds and tidies it up: bad regions and undecodable records
/// copied aside, finished segments, old acks and spares removed. Returns the writer that
/// carries the log on, and what is to be processed again.
fn recover(dir: &Path, segment_bytes: u64) -> io::Result<(Writer, Recovered)> {
    fs::create_dir_all(dir)?;
    // The deliveries are GitHub's payloads as the App read them: the operator's only, like a
    // database's data directory (files inside stay out of reach whatever their own mode).
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    let read = read_all(dir)?;
    let mut pending = read.pending;
    pending.sort_by_key(|r| r.seq);
    // Unreadable records are copied aside (synced) before they count as handled, and
    // their segments go only after that.
    let set_aside = set_aside(dir, &read.unreadable)?;
    // Keep only the acks that still refer to a segment on disk.
    let oldest = read
        .segments
        .keys()
        .next()
        .copied()
        .unwrap_or(read.next_seq);
    let mut kept: Vec<u64> = read.acked.into_iter().filter(|s| *s >= oldest).collect();
    kept.extend(set_aside.into_iter().filter(|s| *s >= oldest));
    rewrite_acks(&dir.join("acks.log"), &kept)?;
    for path in read.finished {
        fs::remove_file(path)?;
    }
    remove_spares(dir)?;
    let writer = Writer::new(
        dir.to_path_buf(),
        read.next_seq,
        read.segments,
        segment_bytes,
    )?;
    let recovered = Recovered {
        pending,
        ids: read.ids.into(),
    };
    Ok((writer, recovered))
}

/// The log as read at start-up.
struct Read {
    acked: BTreeSet<u64>,
    /// Segments with unacknowledged records: first sequence number -> how many.
    segments: BTreeMap<u64, usize>,
    /// Segments whose records are all acknowledged.
    finished: Vec<PathBuf>,
    pending: Vec<LoggedDelivery>,
    ids: VecDeque<String>,
    unreadable: Vec<(u64, Vec<u8>, String)>,
    next_seq: u64,
}

/// Reads every segment, one record at a time: only the unacknowledged deliveries are
/// decoded and kept, and of the others only their ids (to recognise redeliveries), the
/// newest ones, as many as intake remembers.
fn read_all(dir: &Path) -> io::Result<Read> {
    let on_disk = list_segments(dir)?;
    let oldest = on_disk.first().map_or(u64::MAX, |(start, _)| *start);
    let (acked, highest) = read_acks(&dir.join("acks.log"), oldest)?;
    let mut read = Read {
        acked,
        segments: BTreeMap::new(),
        finished: Vec::new(),
        pending: Vec::new(),
        ids: VecDeque::new(),
        unreadable: Vec::new(),
        next_seq: highest.map_or(1, |s| s + 1),
    };
    for (start, path) in on_disk {
        let mut open = 0;
        read_segment(dir, start, &path, |payload, fields| {
            read.next_seq = read.next_seq.max(fields.seq + 1);
            read.ids.push_back(fields.id.to_string());
            if read.ids.len() > RECENT_IDS {
                read.ids.pop_front();
            }
            if read.acked.contains(&fields.seq) {
                return;
            }
            match decode(&fields) {
                Ok(d) => {
                    read.pending.push(d);
                    open += 1;
                }
                Err(why) => read.unreadable.push((fields.seq, payload.to_vec(), why)),
            }
        })?;
        if open == 0 {
            read.finished.push(path);
        } else {
            read.segments.insert(start, open);
        }
    }
    Ok(read)
}

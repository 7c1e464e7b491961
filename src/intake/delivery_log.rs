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

use super::events::{self, Event};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use tokio::sync::oneshot;

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

struct Writer {
    dir: PathBuf,
    next_seq: u64,
    /// `next_seq`, for `DeliveryLog::next_seq`.
    shared_next: Arc<AtomicU64>,
    /// open segment: (first seq, file, bytes written)
    current: Option<(u64, BufWriter<File>, u64)>,
    /// segment first seq -> records not yet acknowledged
    segments: BTreeMap<u64, usize>,
    acks: BufWriter<File>,
    /// A segment was created since the last sync: its directory entry must be synced too.
    new_segment: bool,
    /// Records written since the last sync (a batch of acks alone needs no `fsync`).
    unsynced: bool,
    segment_bytes: u64,
    /// The next segment, being zero-filled off the append path (see `prepare_spare`).
    spare: Option<std::thread::JoinHandle<io::Result<PathBuf>>>,
}

impl Writer {
    fn new(
        dir: PathBuf,
        next_seq: u64,
        segments: BTreeMap<u64, usize>,
        shared_next: Arc<AtomicU64>,
    ) -> io::Result<Writer> {
        let acks = BufWriter::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("acks.log"))?,
        );
        Ok(Writer {
            dir,
            next_seq,
            shared_next,
            current: None,
            segments,
            acks,
            new_segment: false,
            unsynced: false,
            segment_bytes: SEGMENT_BYTES,
            spare: None,
        })
    }

    fn run(mut self, rx: mpsc::Receiver<Op>) {
        while let Ok(first) = rx.recv() {
            // The first append woke this thread, and on a busy core the wake-up preempts
            // the request handlers that are about to append too. Yielding once lets them
            // run first, so that one fsync covers them all; with nothing else runnable
            // (one request at a time) it returns at once and costs nothing.
            std::thread::yield_now();
            let mut ops = vec![first];
            while ops.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            let mut waiting = Vec::new();
            let mut failed: Option<io::Error> = None;
            for op in ops {
                match op {
                    Op::Append(rec, ack) => {
                        if failed.is_none() {
                            let seq = self.next_seq;
                            match self.write_record(seq, &rec) {
                                Ok(()) => {
                                    self.unsynced = true;
                                    self.next_seq += 1;
                                    self.shared_next.store(self.next_seq, Ordering::SeqCst);
                                    waiting.push((seq, ack));
                                    continue;
                                }
                                Err(e) => failed = Some(e),
                            }
                        }
                        let e = failed.as_ref().expect("set above");
                        let _ = ack.send(Err(io::Error::new(e.kind(), e.to_string())));
                    }
                    Op::Ack(seq) => self.ack(seq),
                }
            }
            // One flush and fsync for the whole batch, then everyone hears back.
            let synced = self.sync();
            for (seq, ack) in waiting {
                let _ = ack.send(match &synced {
                    Ok(()) => Ok(seq),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                });
            }
            let _ = self.acks.flush();
            if let Err(e) = self.rotate_and_clean() {
                tracing::error!(error = %e, "delivery log maintenance failed");
            }
        }
        let _ = self.sync();
        let _ = self.acks.flush();
    }

    /// `rest` is the payload after the sequence number (see `encode`).
    fn write_record(&mut self, seq: u64, rest: &[u8]) -> io::Result<()> {
        if self.current.is_none() {
            let path = self.dir.join(format!("seg-{seq:020}.log"));
            let file = self.new_segment_file(&path)?;
            let mut w = BufWriter::with_capacity(256 * 1024, file);
            w.write_all(MAGIC)?;
            self.current = Some((seq, w, MAGIC.len() as u64));
            self.segments.insert(seq, 0);
            self.new_segment = true;
        }
        let seq_le = seq.to_le_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&seq_le);
        crc.update(rest);
        let len = (seq_le.len() + rest.len()) as u32;
        let (start, w, size) = self.current.as_mut().expect("opened above");
        w.write_all(&len.to_le_bytes())?;
        w.write_all(&crc.finalize().to_le_bytes())?;
        w.write_all(&seq_le)?;
        w.write_all(rest)?;
        *size += 8 + u64::from(len);
        *self.segments.entry(*start).or_default() += 1;
        // Half full: start zero-filling the next one.
        if *size >= self.segment_bytes / 2 && self.spare.is_none() {
            let (dir, bytes) = (self.dir.clone(), self.segment_bytes);
            let spare = std::thread::Builder::new()
                .name("spool-spare".into())
                .spawn(move || prepare_spare(&dir, seq, bytes));
            match spare {
                Ok(handle) => self.spare = Some(handle),
                Err(e) => tracing::warn!(error = %e, "cannot start preparing a spare segment"),
            }
        }
        Ok(())
    }

    /// A new segment's file: the spare if it is ready (see the module's comment), else an
    /// empty file that grows as it is written.
    fn new_segment_file(&mut self, path: &Path) -> io::Result<File> {
        if self.spare.as_ref().is_some_and(|h| h.is_finished()) {
            let handle = self.spare.take().expect("checked above");
            match handle.join() {
                Ok(Ok(spare)) => {
                    // Made durable with the batch's directory sync (`new_segment`).
                    fs::rename(&spare, path)?;
                    return OpenOptions::new().write(true).open(path);
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "preparing a spare segment failed"),
                Err(_) => tracing::warn!("preparing a spare segment panicked"),
            }
        }
        OpenOptions::new().write(true).create_new(true).open(path)
    }

    fn sync(&mut self) -> io::Result<()> {
        if let Some((_, w, _)) = self.current.as_mut()
            && self.unsynced
        {
            w.flush()?;
            w.get_ref().sync_data()?;
            self.unsynced = false;
        }
        // A new file is durable only once its name is (once per segment, not per batch).
        if self.new_segment {
            File::open(&self.dir)?.sync_all()?;
            self.new_segment = false;
        }
        Ok(())
    }

    fn ack(&mut self, seq: u64) {
        if let Err(e) = self.acks.write_all(&seq.to_le_bytes()) {
            tracing::error!(error = %e, seq, "recording an ack failed; the delivery may be processed again");
        }
        if let Some((_, open)) = self.segments.range_mut(..=seq).next_back() {
            *open = open.saturating_sub(1);
        }
    }

    fn rotate_and_clean(&mut self) -> io::Result<()> {
        if let Some((_, _, size)) = &self.current
            && *size >= self.segment_bytes
        {
            self.current = None; // the next append opens a new segment
        }
        let current_start = self.current.as_ref().map(|(s, _, _)| *s);
        let done: Vec<u64> = self
            .segments
            .iter()
            .filter(|(start, open)| **open == 0 && Some(**start) != current_start)
            .map(|(s, _)| *s)
            .collect();
        for start in done {
            self.segments.remove(&start);
            fs::remove_file(self.dir.join(format!("seg-{start:020}.log")))?;
        }
        Ok(())
    }
}

/// The payload after the sequence number, built by the caller (off the writer thread).
fn encode(
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

/// The payload split into its fields; the rest is the event JSON (or, in the first
/// format, GitHub's raw body).
struct Fields<'a> {
    seq: u64,
    received_at_ms: i64,
    body_bytes: Option<u32>,
    id: &'a str,
    event_name: &'a str,
    rest: &'a [u8],
}

fn split(p: &[u8], first_format: bool) -> Option<Fields<'_>> {
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

/// One intact record read back.
enum Logged {
    Readable(Box<LoggedDelivery>),
    /// Checksum fine, contents not understood by this build (kept aside, never dropped).
    Unreadable {
        seq: u64,
        payload: Vec<u8>,
        why: String,
    },
}

impl Logged {
    fn seq(&self) -> u64 {
        match self {
            Logged::Readable(d) => d.seq,
            Logged::Unreadable { seq, .. } => *seq,
        }
    }
}

fn decode(f: &Fields<'_>) -> Result<LoggedDelivery, String> {
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

/// Copies records this build cannot decode to `unreadable/<seq>.bin` (synced), so an
/// operator can look at them; returns their sequence numbers.
fn set_aside(dir: &Path, records: &[(u64, Vec<u8>, String)]) -> io::Result<Vec<u64>> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let to = dir.join("unreadable");
    fs::create_dir_all(&to)?;
    let mut seqs = Vec::new();
    for (seq, payload, why) in records {
        let path = to.join(format!("{seq:020}.bin"));
        let mut f = File::create(&path)?;
        f.write_all(payload)?;
        f.sync_all()?;
        tracing::error!(seq, path = %path.display(), error = %why, "a logged delivery cannot be decoded by this build; kept aside, not processed");
        seqs.push(*seq);
    }
    File::open(&to)?.sync_all()?;
    Ok(seqs)
}

/// A spare segment of `bytes` zeros, on disk and synced: allocated, written blocks, so that
/// later writes into it change no file system metadata. Named after the sequence number
/// that asked for it; renamed to a segment when taken.
fn prepare_spare(dir: &Path, asked_at: u64, bytes: u64) -> io::Result<PathBuf> {
    let path = dir.join(format!("spare-{asked_at:020}.tmp"));
    let file = File::create(&path)?;
    let mut done = 0u64;
    while done < bytes {
        let n = (bytes - done).min(ZEROS.len() as u64);
        std::os::unix::fs::FileExt::write_all_at(&file, &ZEROS[..n as usize], done)?;
        done += n;
        if done.is_multiple_of(ZERO_SYNC_BYTES) || done == bytes {
            file.sync_data()?;
        }
    }
    Ok(path)
}

/// Spares left by an earlier run (never part of the log).
fn remove_spares(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let path = e?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("spare-") && name.ends_with(".tmp") {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let path = e?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(start) = name
            .strip_prefix("seg-")
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((start, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every whole, intact record; cuts a torn tail off the file.
fn read_segment(path: &Path) -> io::Result<Vec<Logged>> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut out = Vec::new();
    // A crash while the magic itself was being written leaves a prefix of it.
    let first_format = !data.starts_with(MAGIC) && !MAGIC.starts_with(&data);
    let mut at = if first_format {
        0
    } else {
        MAGIC.len().min(data.len())
    };
    while at + 8 <= data.len() {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().expect("4 bytes"));
        let Some(payload) = data.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(fields) = split(payload, first_format) else {
            break;
        };
        out.push(match decode(&fields) {
            Ok(d) => Logged::Readable(Box::new(d)),
            Err(why) => Logged::Unreadable {
                seq: fields.seq,
                payload: payload.to_vec(),
                why,
            },
        });
        at += 8 + len;
    }
    if at < data.len() {
        // Zeros only (a zero length never frames a record): the unused end of a spare
        // segment, trimmed to give the space back (no segment is written again after a
        // start). Anything else is a torn record.
        if data[at..].iter().any(|b| *b != 0) {
            tracing::warn!(path = %path.display(), kept = at, dropped = data.len() - at, "cutting a torn record off the delivery log");
        }
        OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(at as u64)?;
    }
    Ok(out)
}

fn read_acks(path: &Path) -> io::Result<BTreeSet<u64>> {
    let mut data = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut data)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(data
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

fn rewrite_acks(path: &Path, acks: &[u64]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = BufWriter::new(File::create(&tmp)?);
        for s in acks {
            f.write_all(&s.to_le_bytes())?;
        }
        f.flush()?;
        f.get_ref().sync_all()?;
    }
    fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> io::Result<PathBuf> {
        let d = std::env::temp_dir().join(format!("spool-test-{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir_all(&d)?;
        Ok(d)
    }

    fn ping(zen: &str) -> Event {
        Event::Ping {
            zen: zen.to_string(),
        }
    }

    /// Appends one framed record (`[len][crc32][payload]`), as the writer does.
    fn frame(f: &mut File, payload: &[u8]) -> io::Result<()> {
        f.write_all(&(payload.len() as u32).to_le_bytes())?;
        f.write_all(&crc32fast::hash(payload).to_le_bytes())?;
        f.write_all(payload)
    }

    /// Waits until the writer thread of a dropped spool has let go of its files.
    fn stopped() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    /// A log holding one delivery (seq 1), closed: its directory and its one segment.
    async fn closed_log_of_one(id: &str) -> io::Result<(PathBuf, PathBuf)> {
        let d = dir()?;
        let (spool, _) = DeliveryLog::open(&d)?;
        spool.append(id, "ping", 1, 2, &ping(id)).await?;
        drop(spool);
        stopped();
        let (_, path) = list_segments(&d)?.pop().expect("one segment on disk");
        Ok((d, path))
    }

    #[tokio::test]
    async fn unacknowledged_deliveries_come_back_after_a_crash() -> io::Result<()> {
        let d = dir()?;
        let (spool, rec) = DeliveryLog::open(&d)?;
        assert!(rec.pending.is_empty());
        let a = spool.append("id-a", "ping", 1, 10, &ping("a")).await?;
        let b = spool.append("id-b", "ping", 2, 18_660, &ping("b")).await?;
        assert!(b > a);
        spool.ack(a);
        drop(spool); // the process dies: nothing else is written
        stopped();
        let (_spool, rec) = DeliveryLog::open(&d)?;
        assert_eq!(rec.pending.len(), 1);
        let back = &rec.pending[0];
        assert_eq!(
            (
                back.id.as_str(),
                back.event_name.as_str(),
                back.received_at_ms,
                back.body_bytes
            ),
            ("id-b", "ping", 2, 18_660)
        );
        assert_eq!(back.event, ping("b"));
        assert_eq!(rec.ids.len(), 2, "both ids known, to drop redeliveries");
        Ok(())
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_the_rest_kept() -> io::Result<()> {
        let (d, path) = closed_log_of_one("whole").await?;
        let mut f = OpenOptions::new().append(true).open(&path)?;
        f.write_all(&[200, 0, 0, 0, 1, 2, 3])?; // half a record
        drop(f);
        let (spool, rec) = DeliveryLog::open(&d)?;
        assert_eq!(rec.pending.len(), 1);
        assert_eq!(rec.pending[0].id, "whole");
        let next = spool.append("after", "ping", 2, 2, &ping("x")).await?;
        assert!(next > rec.pending[0].seq);
        Ok(())
    }

    #[tokio::test]
    async fn fully_acknowledged_segments_are_removed() -> io::Result<()> {
        let d = dir()?;
        let (spool, _) = DeliveryLog::open(&d)?;
        let s = spool.append("x", "ping", 1, 2, &ping("x")).await?;
        spool.ack(s);
        drop(spool);
        stopped();
        let (_spool, rec) = DeliveryLog::open(&d)?;
        assert!(rec.pending.is_empty());
        assert!(list_segments(&d)?.is_empty());
        Ok(())
    }

    /// Once a segment is half full, the next one is prepared as a file of zeros; appends
    /// go into it, and at the next start the records come back whole, the unused zeros are
    /// trimmed, and leftover spares are removed.
    #[tokio::test]
    async fn spare_segments_are_used_and_read_back() -> io::Result<()> {
        let d = dir()?;
        let segment = 4096;
        let (spool, _) = DeliveryLog::open_with(&d, segment)?;
        let mut seqs = Vec::new();
        for i in 0..60 {
            seqs.push(
                spool
                    .append(&format!("id-{i}"), "ping", i, 2, &ping(&"z".repeat(200)))
                    .await?,
            );
            // Give the spare time to be written, so the next segment is the spare.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let sizes: Vec<u64> = list_segments(&d)?
            .iter()
            .map(|(_, p)| fs::metadata(p).map(|m| m.len()))
            .collect::<io::Result<_>>()?;
        assert!(sizes.len() >= 3, "{sizes:?}");
        // A spare is exactly `segment` long until its records pass that size.
        assert!(
            sizes.contains(&segment),
            "no segment was a spare: {sizes:?}"
        );
        spool.ack(seqs[0]);
        drop(spool);
        stopped();
        fs::write(d.join("spare-00000000000000000099.tmp"), [0u8; 16])?; // a crash mid-spare
        let (_spool, rec) = DeliveryLog::open_with(&d, segment)?;
        let back: Vec<u64> = rec.pending.iter().map(|r| r.seq).collect();
        assert_eq!(
            back,
            seqs[1..],
            "every record after the acked one, in order"
        );
        assert!(
            rec.pending
                .iter()
                .all(|r| r.event == ping(&"z".repeat(200)))
        );
        for (_, path) in list_segments(&d)? {
            let data = fs::read(&path)?;
            assert!(
                data.last() != Some(&0),
                "{}: zeros left at the end",
                path.display()
            );
        }
        let spares = fs::read_dir(&d)?
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("spare-"))
            })
            .count();
        assert_eq!(spares, 0, "spares are removed at start");
        Ok(())
    }

    /// In a spare segment a torn record is followed by zeros: it is still cut off, and the
    /// records before it are kept.
    #[tokio::test]
    async fn a_torn_record_before_zeros_is_cut() -> io::Result<()> {
        let (d, path) = closed_log_of_one("whole").await?;
        let good = fs::metadata(&path)?.len();
        let mut f = OpenOptions::new().append(true).open(&path)?;
        f.write_all(&[200, 0, 0, 0, 1, 2, 3])?; // half a record
        f.write_all(&[0u8; 4096])?; // then the spare's zeros
        drop(f);
        let (_spool, rec) = DeliveryLog::open(&d)?;
        assert_eq!(rec.pending.len(), 1);
        assert_eq!(rec.pending[0].id, "whole");
        assert_eq!(
            fs::metadata(&path)?.len(),
            good,
            "cut back to the last whole record"
        );
        Ok(())
    }

    /// A segment of the first format (GitHub's raw body in each record) is still read.
    #[tokio::test]
    async fn first_format_segments_are_still_read() -> io::Result<()> {
        let d = dir()?;
        let body = br#"{"zen":"old"}"#;
        let mut payload = Vec::new();
        payload.extend_from_slice(&7u64.to_le_bytes());
        payload.extend_from_slice(&5i64.to_le_bytes());
        payload.extend_from_slice(&3u16.to_le_bytes());
        payload.extend_from_slice(b"old");
        payload.extend_from_slice(&4u16.to_le_bytes());
        payload.extend_from_slice(b"ping");
        payload.extend_from_slice(body);
        frame(
            &mut File::create(d.join(format!("seg-{:020}.log", 7)))?,
            &payload,
        )?;
        let (spool, rec) = DeliveryLog::open(&d)?;
        assert_eq!(rec.pending.len(), 1);
        assert_eq!(rec.pending[0].event, ping("old"));
        assert_eq!(rec.pending[0].body_bytes, body.len() as u32);
        let next = spool.append("new", "ping", 6, 2, &ping("n")).await?;
        assert_eq!(next, 8, "numbering goes on after the old records");
        Ok(())
    }

    /// A record that passes its checksum but that this build cannot decode is kept under
    /// `unreadable/`, counted as handled, and the rest of the log goes on.
    #[tokio::test]
    async fn undecodable_records_are_kept_aside_not_dropped() -> io::Result<()> {
        let (d, path) = closed_log_of_one("good").await?;
        // A record from some future build: same framing, an event this one does not know.
        let mut rest = Vec::new();
        rest.extend_from_slice(&3i64.to_le_bytes());
        rest.extend_from_slice(&2u32.to_le_bytes());
        rest.extend_from_slice(&6u16.to_le_bytes());
        rest.extend_from_slice(b"future");
        rest.extend_from_slice(&4u16.to_le_bytes());
        rest.extend_from_slice(b"ping");
        rest.extend_from_slice(br#"{"SomethingNew":{}}"#);
        let mut payload = 2u64.to_le_bytes().to_vec();
        payload.extend_from_slice(&rest);
        frame(&mut OpenOptions::new().append(true).open(&path)?, &payload)?;
        let (spool, rec) = DeliveryLog::open(&d)?;
        assert_eq!(rec.pending.len(), 1, "the readable record is handed back");
        assert_eq!(rec.pending[0].id, "good");
        let kept = fs::read(d.join("unreadable").join(format!("{:020}.bin", 2)))?;
        assert_eq!(kept, payload, "kept byte for byte");
        spool.ack(rec.pending[0].seq);
        drop(spool);
        stopped();
        let (_spool, rec) = DeliveryLog::open(&d)?;
        assert!(
            rec.pending.is_empty(),
            "the unreadable record is not handed back again"
        );
        assert!(list_segments(&d)?.is_empty());
        Ok(())
    }
}

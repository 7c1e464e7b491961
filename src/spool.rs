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
//! Files: `seg-<first seq>.log` segments of records `[len u32][crc32 u32][payload]`,
//! payload `seq u64 | received_at_ms i64 | id_len u16 | id | event_len u16 | event | body`;
//! `acks.log`, the acknowledged sequence numbers (u64 each). A segment whose records are all
//! acknowledged is deleted. A torn record at the end of a segment (a crash mid-write, never
//! answered 202) is cut off at start-up.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Segments are closed past this size (records are never split across segments).
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Largest batch one fsync covers.
const MAX_BATCH: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct SpooledDelivery {
    pub seq: u64,
    pub id: String,
    pub event_name: String,
    pub received_at_ms: i64,
    pub body: Vec<u8>,
}

enum Op {
    Append(SpooledDelivery, oneshot::Sender<io::Result<u64>>),
    Ack(u64),
}

/// What was in the log at start-up.
pub struct Recovered {
    /// Answered but not (fully) processed: to be processed now, in order.
    pub pending: Vec<SpooledDelivery>,
    /// Every delivery id still in the log, to recognise redeliveries.
    pub ids: Vec<String>,
}

#[derive(Clone)]
pub struct Spool {
    tx: mpsc::Sender<Op>,
}

impl Spool {
    /// Opens (or creates) the log in `dir`, recovers what it holds, and starts the writer.
    pub fn open(dir: &Path) -> io::Result<(Spool, Recovered)> {
        fs::create_dir_all(dir)?;
        let acked = read_acks(&dir.join("acks.log"))?;
        let mut segments: BTreeMap<u64, usize> = BTreeMap::new();
        let mut pending = Vec::new();
        let mut ids = Vec::new();
        let mut next_seq = acked.iter().next_back().map_or(1, |s| s + 1);
        for (start, path) in list_segments(dir)? {
            let records = read_segment(&path)?;
            let open = records.iter().filter(|r| !acked.contains(&r.seq)).count();
            for r in records {
                next_seq = next_seq.max(r.seq + 1);
                ids.push(r.id.clone());
                if !acked.contains(&r.seq) {
                    pending.push(r);
                }
            }
            if open == 0 {
                fs::remove_file(&path)?;
            } else {
                segments.insert(start, open);
            }
        }
        pending.sort_by_key(|r| r.seq);
        // Keep only the acks that still refer to a segment on disk.
        let oldest = segments.keys().next().copied().unwrap_or(next_seq);
        let kept: Vec<u64> = acked.into_iter().filter(|s| *s >= oldest).collect();
        rewrite_acks(&dir.join("acks.log"), &kept)?;
        let writer = Writer::new(dir.to_path_buf(), next_seq, segments)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok((Spool { tx }, Recovered { pending, ids }))
    }

    /// Appends a delivery and returns its sequence number once it is on disk.
    pub async fn append(
        &self,
        id: &str,
        event_name: &str,
        received_at_ms: i64,
        body: &[u8],
    ) -> io::Result<u64> {
        let (ack, done) = oneshot::channel();
        let rec = SpooledDelivery {
            seq: 0,
            id: id.to_string(),
            event_name: event_name.to_string(),
            received_at_ms,
            body: body.to_vec(),
        };
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
}

struct Writer {
    dir: PathBuf,
    next_seq: u64,
    /// open segment: (first seq, file, bytes written)
    current: Option<(u64, BufWriter<File>, u64)>,
    /// segment first seq -> records not yet acknowledged
    segments: BTreeMap<u64, usize>,
    acks: BufWriter<File>,
}

impl Writer {
    fn new(dir: PathBuf, next_seq: u64, segments: BTreeMap<u64, usize>) -> io::Result<Writer> {
        let acks = BufWriter::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("acks.log"))?,
        );
        Ok(Writer {
            dir,
            next_seq,
            current: None,
            segments,
            acks,
        })
    }

    fn run(mut self, rx: mpsc::Receiver<Op>) {
        while let Ok(first) = rx.recv() {
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
                    Op::Append(mut rec, ack) => {
                        if failed.is_none() {
                            rec.seq = self.next_seq;
                            match self.write_record(&rec) {
                                Ok(()) => {
                                    self.next_seq += 1;
                                    waiting.push((rec.seq, ack));
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

    fn write_record(&mut self, rec: &SpooledDelivery) -> io::Result<()> {
        if self.current.is_none() {
            let path = self.dir.join(format!("seg-{:020}.log", self.next_seq));
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            self.current = Some((self.next_seq, BufWriter::new(file), 0));
            self.segments.insert(self.next_seq, 0);
        }
        let payload = encode(rec);
        let (start, w, size) = self.current.as_mut().expect("opened above");
        w.write_all(&(payload.len() as u32).to_le_bytes())?;
        w.write_all(&crc32fast::hash(&payload).to_le_bytes())?;
        w.write_all(&payload)?;
        *size += 8 + payload.len() as u64;
        *self.segments.entry(*start).or_default() += 1;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        if let Some((_, w, _)) = self.current.as_mut() {
            w.flush()?;
            w.get_ref().sync_data()?;
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
            && *size >= SEGMENT_BYTES
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

fn encode(r: &SpooledDelivery) -> Vec<u8> {
    let mut p = Vec::with_capacity(24 + r.id.len() + r.event_name.len() + r.body.len());
    p.extend_from_slice(&r.seq.to_le_bytes());
    p.extend_from_slice(&r.received_at_ms.to_le_bytes());
    p.extend_from_slice(&(r.id.len() as u16).to_le_bytes());
    p.extend_from_slice(r.id.as_bytes());
    p.extend_from_slice(&(r.event_name.len() as u16).to_le_bytes());
    p.extend_from_slice(r.event_name.as_bytes());
    p.extend_from_slice(&r.body);
    p
}

fn decode(p: &[u8]) -> Option<SpooledDelivery> {
    let mut at = 0usize;
    let mut take = |n: usize| {
        let s = p.get(at..at + n)?;
        at += n;
        Some(s)
    };
    let seq = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let received_at_ms = i64::from_le_bytes(take(8)?.try_into().ok()?);
    let id_len = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
    let id = String::from_utf8(take(id_len)?.to_vec()).ok()?;
    let ev_len = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
    let event_name = String::from_utf8(take(ev_len)?.to_vec()).ok()?;
    let body = p.get(at..)?.to_vec();
    Some(SpooledDelivery {
        seq,
        id,
        event_name,
        received_at_ms,
        body,
    })
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
fn read_segment(path: &Path) -> io::Result<Vec<SpooledDelivery>> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().expect("4 bytes"));
        let Some(payload) = data.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(rec) = decode(payload) else { break };
        out.push(rec);
        at += 8 + len;
    }
    if at < data.len() {
        tracing::warn!(path = %path.display(), kept = at, dropped = data.len() - at, "cutting a torn record off the delivery log");
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

    #[tokio::test]
    async fn unacknowledged_deliveries_come_back_after_a_crash() -> io::Result<()> {
        let d = dir()?;
        let (spool, rec) = Spool::open(&d)?;
        assert!(rec.pending.is_empty());
        let a = spool
            .append("id-a", "workflow_run", 1, b"{\"a\":1}")
            .await?;
        let b = spool.append("id-b", "workflow_job", 2, b"{}").await?;
        assert!(b > a);
        spool.ack(a);
        drop(spool); // the process dies: nothing else is written
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (_spool, rec) = Spool::open(&d)?;
        assert_eq!(rec.pending.len(), 1);
        assert_eq!(rec.pending[0].id, "id-b");
        assert_eq!(rec.pending[0].event_name, "workflow_job");
        assert_eq!(rec.pending[0].body, b"{}");
        assert_eq!(rec.ids.len(), 2, "both ids known, to drop redeliveries");
        Ok(())
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_the_rest_kept() -> io::Result<()> {
        let d = dir()?;
        let (spool, _) = Spool::open(&d)?;
        spool.append("whole", "ping", 1, b"{}").await?;
        drop(spool);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (_, path) = list_segments(&d)?.pop().expect("one segment on disk");
        let mut f = OpenOptions::new().append(true).open(&path)?;
        f.write_all(&[200, 0, 0, 0, 1, 2, 3])?; // half a record
        drop(f);
        let (spool, rec) = Spool::open(&d)?;
        assert_eq!(rec.pending.len(), 1);
        assert_eq!(rec.pending[0].id, "whole");
        let next = spool.append("after", "ping", 2, b"{}").await?;
        assert!(next > rec.pending[0].seq);
        Ok(())
    }

    #[tokio::test]
    async fn fully_acknowledged_segments_are_removed() -> io::Result<()> {
        let d = dir()?;
        let (spool, _) = Spool::open(&d)?;
        let s = spool.append("x", "ping", 1, b"{}").await?;
        spool.ack(s);
        drop(spool);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (_spool, rec) = Spool::open(&d)?;
        assert!(rec.pending.is_empty());
        assert!(list_segments(&d)?.is_empty());
        Ok(())
    }
}

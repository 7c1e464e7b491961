//! The writer thread: appends records, group-commits them with one `fdatasync` per batch,
//! rotates segments (into spares prepared off the append path) and removes segments whose
//! records are all acknowledged.

use super::files::prepare_spare;
use super::{MAGIC, MAX_BATCH, Op, SEGMENT_BYTES};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

pub(super) struct Writer {
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
    pub(super) segment_bytes: u64,
    /// The next segment, being zero-filled off the append path (see `prepare_spare`).
    spare: Option<std::thread::JoinHandle<io::Result<PathBuf>>>,
}

impl Writer {
    pub(super) fn new(
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

    pub(super) fn run(mut self, rx: mpsc::Receiver<Op>) {
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

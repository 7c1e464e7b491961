//! The writer thread: appends records, group-commits them with one `fdatasync` per batch,
//! rotates segments (into spares prepared off the append path) and removes segments whose
//! records are all acknowledged.
//!
//! A batch is framed in memory and written with one positioned write where the segment's
//! whole records end, then synced; only then are its appends answered. Between batches a
//! segment holds nothing but whole, synced records, so a failure is undone by cutting the
//! segment back to that length:
//!
//! - **A failed write** (a full disk, EIO): every append of the batch fails (intake answers
//!   503) and the segment is cut back to its last whole record, so the next batch is
//!   written where this one began, never behind a half-written frame. If even the cut
//!   fails, the segment is closed (the next append opens a new one) and its torn end is set
//!   aside at the next start. Once the disk has room again, appends succeed again.
//! - **A failed `fdatasync`** (or directory sync): PostgreSQL's "fsyncgate" lesson. Linux
//!   reports a writeback error once and may have dropped the dirty pages it could not
//!   write (marked clean: the page cache no longer matches the disk), so a second `fsync`
//!   can succeed without writing them. The sync is therefore never retried, nor the
//!   segment trusted again: every append of the batch fails, the segment is closed for
//!   good (its earlier records were synced by earlier batches and stay valid), cut back to
//!   its synced length so that the refused records do not come back, and the next append
//!   starts a new segment, whose file, data and directory entry are synced afresh. Were a
//!   refused record to survive anyway (the cut is not synced), it would be processed once
//!   more at the next start: harmless, restarts are claimed in the ledger. No append is
//!   ever answered on top of pages that may be lost.
//!
//! Sequence numbers of refused appends are not used again: a refused record that reached
//! the disk anyway can never be taken for a later one.

use super::files::{AckFile, prepare_spare};
use super::format::frame;
use super::{MAGIC, MAX_BATCH, Op};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

/// The segment appends go to.
pub(super) struct Open {
    /// Its first sequence number (its name).
    pub(super) start: u64,
    file: File,
    /// Where its whole records end: everything before is synced (but a new file's magic,
    /// synced with its first batch).
    pub(super) len: u64,
    /// Records in it that were answered.
    records: usize,
    /// Created since the last sync: its directory entry must be synced too.
    new: bool,
}

pub(super) struct Writer {
    dir: PathBuf,
    next_seq: u64,
    /// `next_seq`, for `DeliveryLog::next_seq`.
    shared_next: Arc<AtomicU64>,
    pub(super) current: Option<Open>,
    /// segment first seq -> records not yet acknowledged
    segments: BTreeMap<u64, usize>,
    acks: AckFile,
    segment_bytes: u64,
    /// The next segment, being zero-filled off the append path (see `prepare_spare`).
    spare: Option<std::thread::JoinHandle<io::Result<PathBuf>>>,
    /// The batch being written, framed (its allocation is kept from batch to batch).
    batch: Vec<u8>,
    pub(super) disk: Disk,
}

impl Writer {
    pub(super) fn new(
        dir: PathBuf,
        next_seq: u64,
        segments: BTreeMap<u64, usize>,
        segment_bytes: u64,
    ) -> io::Result<Writer> {
        let acks = AckFile::open(&dir.join("acks.log"))?;
        Ok(Writer {
            dir,
            next_seq,
            shared_next: Arc::new(AtomicU64::new(next_seq)),
            current: None,
            segments,
            acks,
            segment_bytes: segment_bytes.max(1),
            spare: None,
            batch: Vec::new(),
            disk: Disk::default(),
        })
    }

    pub(super) fn shared_next(&self) -> Arc<AtomicU64> {
        self.shared_next.clone()
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
            self.commit(ops);
        }
    }

    /// One batch: its appends written and synced together (one flush and `fdatasync`),
    /// then every one of them hears back; its acks recorded; then upkeep.
    pub(super) fn commit(&mut self, ops: Vec<Op>) {
        self.batch.clear();
        let first = self.next_seq;
        let mut waiting = Vec::new();
        for op in ops {
            match op {
                Op::Append(rest, ack) => {
                    frame(&mut self.batch, self.next_seq, &rest);
                    waiting.push((self.next_seq, ack));
                    self.next_seq += 1;
                }
                Op::Ack(seq) => self.ack(seq),
            }
        }
        self.shared_next.store(self.next_seq, Ordering::SeqCst);
        if !waiting.is_empty() {
            let written = self.append(first, waiting.len());
            for (seq, ack) in waiting {
                let _ = ack.send(match &written {
                    Ok(()) => Ok(seq),
                    Err(e) => Err(match e.raw_os_error() {
                        Some(code) => io::Error::from_raw_os_error(code),
                        None => io::Error::new(e.kind(), e.to_string()),
                    }),
                });
            }
        }
        self.acks.write();
        if let Err(e) = self.rotate_and_clean() {
            tracing::error!(error = %e, "delivery log maintenance failed");
        }
    }

    /// Writes and syncs the framed batch (`records` records from `first` on), or fails
    /// and undoes it (see the module's comment).
    fn append(&mut self, first: u64, records: usize) -> io::Result<()> {
        if self.current.is_none() {
            self.current = Some(self.new_segment(first)?);
        }
        let seg = self.current.as_mut().expect("opened above");
        if let Err(e) = self.disk.write_at(&seg.file, &self.batch, seg.len) {
            self.roll_back(&e);
            return Err(e);
        }
        let mut synced = self.disk.sync_data(&seg.file);
        if synced.is_ok() && seg.new {
            // A new file is durable only once its name is (once per segment, not per batch).
            synced = self.disk.sync_dir(&self.dir);
        }
        if let Err(e) = synced {
            self.distrust(&e);
            return Err(e);
        }
        seg.new = false;
        seg.len += self.batch.len() as u64;
        seg.records += records;
        *self.segments.entry(seg.start).or_default() += records;
        // Half full: start zero-filling the next one.
        if seg.len >= self.segment_bytes / 2 && self.spare.is_none() {
            let (dir, bytes) = (self.dir.clone(), self.segment_bytes);
            let spare = std::thread::Builder::new()
                .name("spool-spare".into())
                .spawn(move || prepare_spare(&dir, first, bytes));
            match spare {
                Ok(handle) => self.spare = Some(handle),
                Err(e) => tracing::warn!(error = %e, "cannot start preparing a spare segment"),
            }
        }
        Ok(())
    }

    /// A new segment for records from `first` on, its magic written (synced with the batch).
    fn new_segment(&mut self, first: u64) -> io::Result<Open> {
        let path = self.segment_path(first);
        let file = self.new_segment_file(&path)?;
        if let Err(e) = self.disk.write_at(&file, MAGIC, 0) {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        self.segments.insert(first, 0);
        Ok(Open {
            start: first,
            file,
            len: MAGIC.len() as u64,
            records: 0,
            new: true,
        })
    }

    fn segment_path(&self, start: u64) -> PathBuf {
        self.dir.join(format!("seg-{start:020}.log"))
    }

    /// A new segment's file: the spare if it is ready (see the module's comment), else an
    /// empty file that grows as it is written.
    fn new_segment_file(&mut self, path: &Path) -> io::Result<File> {
        if self.spare.as_ref().is_some_and(|h| h.is_finished()) {
            let handle = self.spare.take().expect("checked above");
            match handle.join() {
                Ok(Ok(spare)) => {
                    // Made durable with the batch's directory sync (`new`).
                    fs::rename(&spare, path)?;
                    return OpenOptions::new().write(true).open(path);
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "preparing a spare segment failed"),
                Err(_) => tracing::warn!("preparing a spare segment panicked"),
            }
        }
        OpenOptions::new().write(true).create_new(true).open(path)
    }

    /// After a failed write: the batch's bytes are cut off again.
    fn roll_back(&mut self, e: &io::Error) {
        let seg = self.current.as_ref().expect("written to");
        if seg.records == 0 {
            tracing::error!(error = %e, "writing the delivery log failed; the batch's deliveries are refused");
            self.close(true);
            return;
        }
        match seg.file.set_len(seg.len) {
            Ok(()) => {
                tracing::error!(error = %e, "writing the delivery log failed; the batch's deliveries are refused and the segment cut back to its last whole record")
            }
            Err(cut) => {
                tracing::error!(error = %e, cut = %cut, "writing the delivery log failed, and cutting the segment back too; the batch's deliveries are refused and the segment closed (its torn end is set aside at the next start)");
                self.close(false);
            }
        }
    }

    /// After a failed sync: the segment is closed for good (see the module's comment).
    fn distrust(&mut self, e: &io::Error) {
        tracing::error!(error = %e, "syncing the delivery log failed; the batch's deliveries are refused, and the segment is closed: the next append starts a new one");
        self.close(true);
    }

    /// Closes the current segment, cut back to its whole records (best effort, if `cut`);
    /// a segment with no answered record goes altogether.
    fn close(&mut self, cut: bool) {
        let seg = self.current.take().expect("a segment is open");
        if seg.records == 0 {
            self.segments.remove(&seg.start);
            let _ = fs::remove_file(self.segment_path(seg.start));
        } else if cut {
            let _ = seg.file.set_len(seg.len);
        }
    }

    fn ack(&mut self, seq: u64) {
        self.acks.push(seq);
        if let Some((_, open)) = self.segments.range_mut(..=seq).next_back() {
            *open = open.saturating_sub(1);
        }
    }

    fn rotate_and_clean(&mut self) -> io::Result<()> {
        if self
            .current
            .as_ref()
            .is_some_and(|seg| seg.len >= self.segment_bytes)
        {
            self.current = None; // the next append opens a new segment
        }
        let current_start = self.current.as_ref().map(|seg| seg.start);
        let done: Vec<u64> = self
            .segments
            .iter()
            .filter(|(start, open)| **open == 0 && Some(**start) != current_start)
            .map(|(s, _)| *s)
            .collect();
        for start in done {
            self.segments.remove(&start);
            fs::remove_file(self.segment_path(start))?;
        }
        Ok(())
    }
}

/// The writer's disk operations. Tests make them fail (`Faults`).
#[derive(Default)]
pub(super) struct Disk {
    #[cfg(test)]
    pub(super) faults: Faults,
}

impl Disk {
    fn write_at(&self, file: &File, buf: &[u8], at: u64) -> io::Result<()> {
        #[cfg(test)]
        if let Some(keep) = self.faults.short_write.lock().expect("faults").take() {
            file.write_all_at(&buf[..keep.min(buf.len())], at)?;
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        file.write_all_at(buf, at)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        #[cfg(test)]
        if self.faults.failing_syncs.load(Ordering::SeqCst) > 0 {
            self.faults.failing_syncs.fetch_sub(1, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        file.sync_data()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// Faults the tests inject into the writer's disk operations.
#[cfg(test)]
#[derive(Default)]
pub(super) struct Faults {
    /// The next this many `fdatasync`s fail with EIO.
    pub(super) failing_syncs: std::sync::atomic::AtomicUsize,
    /// The next write stops after this many bytes, with ENOSPC.
    pub(super) short_write: std::sync::Mutex<Option<usize>>,
}

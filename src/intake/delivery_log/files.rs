//! The log's files: segments and reading them back, spare segments, the acks file, and
//! records set aside.

use super::{ZERO_SYNC_BYTES, ZEROS};
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Copies records this build cannot decode to `unreadable/<seq>.bin` (synced), so an
/// operator can look at them; returns their sequence numbers.
pub(super) fn set_aside(dir: &Path, records: &[(u64, Vec<u8>, String)]) -> io::Result<Vec<u64>> {
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
pub(super) fn prepare_spare(dir: &Path, asked_at: u64, bytes: u64) -> io::Result<PathBuf> {
    let path = dir.join(format!("spare-{asked_at:020}.tmp"));
    let filled = zero_fill(&path, bytes);
    if filled.is_err() {
        // A half-made spare would hold disk space (a full disk's) for nothing.
        let _ = fs::remove_file(&path);
    }
    filled.map(|()| path)
}

fn zero_fill(path: &Path, bytes: u64) -> io::Result<()> {
    let file = File::create(path)?;
    let mut done = 0u64;
    while done < bytes {
        let n = (bytes - done).min(ZEROS.len() as u64);
        file.write_all_at(&ZEROS[..n as usize], done)?;
        done += n;
        if done.is_multiple_of(ZERO_SYNC_BYTES) || done == bytes {
            file.sync_data()?;
        }
    }
    Ok(())
}

/// Spares left by an earlier run (never part of the log).
pub(super) fn remove_spares(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let path = e?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("spare-") && name.ends_with(".tmp") {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

pub(super) fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
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

/// The acknowledged sequence numbers from `from` on (older ones refer to segments long
/// gone), read streaming; and the highest one of all, if any.
pub(super) fn read_acks(path: &Path, from: u64) -> io::Result<(BTreeSet<u64>, Option<u64>)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((BTreeSet::new(), None)),
        Err(e) => return Err(e),
    };
    let mut r = BufReader::new(file);
    let (mut acked, mut highest) = (BTreeSet::new(), None);
    let mut n = [0u8; 8];
    loop {
        match r.read_exact(&mut n) {
            Ok(()) => {}
            // The end, or a torn last number (a crash mid-write): not an ack.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok((acked, highest)),
            Err(e) => return Err(e),
        }
        let seq = u64::from_le_bytes(n);
        highest = highest.max(Some(seq));
        if seq >= from {
            acked.insert(seq);
        }
    }
}

pub(super) fn rewrite_acks(path: &Path, acks: &[u64]) -> io::Result<()> {
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

/// `acks.log`, as the writer appends to it: each batch's acks in one write at the file's
/// known length, so that a write that fails half-way (a full disk) is written again at the
/// same place, never leaving a torn number that would shift every one after it. Not
/// synced: a lost ack only means the delivery is processed again.
pub(super) struct AckFile {
    file: File,
    len: u64,
    /// Acks not written yet.
    pending: Vec<u8>,
}

impl AckFile {
    pub(super) fn open(path: &Path) -> io::Result<AckFile> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len() / 8 * 8;
        Ok(AckFile {
            file,
            len,
            pending: Vec::new(),
        })
    }

    pub(super) fn push(&mut self, seq: u64) {
        self.pending.extend_from_slice(&seq.to_le_bytes());
    }

    /// Writes the pending acks; on failure they are kept for the next batch.
    pub(super) fn write(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        match self.file.write_all_at(&self.pending, self.len) {
            Ok(()) => {
                self.len += self.pending.len() as u64;
                self.pending.clear();
            }
            Err(e) => tracing::error!(
                error = %e,
                acks = self.pending.len() / 8,
                "recording acks in the delivery log failed; kept, to be written with the next batch"
            ),
        }
    }
}

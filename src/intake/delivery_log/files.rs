//! The log's files: segments and reading them back, spare segments, the acks file, and
//! records set aside.

use super::format::{Logged, decode, split};
use super::{MAGIC, ZERO_SYNC_BYTES, ZEROS};
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
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

/// Reads every whole, intact record; cuts a torn tail off the file.
pub(super) fn read_segment(path: &Path) -> io::Result<Vec<Logged>> {
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

pub(super) fn read_acks(path: &Path) -> io::Result<BTreeSet<u64>> {
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

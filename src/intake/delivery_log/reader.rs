//! Reading a segment back at start-up, streaming: one record at a time through a
//! `BufReader`, so that recovery holds one record in memory, not the segment (16 MiB) nor
//! every record decoded.
//!
//! A stretch that does not frame records (a write that failed half-way, a write torn by a
//! crash or a power cut, a damaged block) is a bad region. It is copied to `unreadable/`
//! (synced) for an operator, never just dropped, and the reader looks for the next record
//! behind it: what was written after a bad region is still read. The next record is the
//! first offset that frames an intact record (length, checksum, fields) whose sequence
//! number follows the last one read: a random stretch passes the sequence test with odds
//! of 2^-32, before the checksum is even read. The region at the end of a segment (a torn
//! last record, a spare's unused zeros) is cut off once copied: no segment is written again
//! after a start. Zeros alone are not copied (nothing was written there).

use super::MAGIC;
use super::format::{Fields, intact, min_payload, split};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// How far past the last sequence number read the next record's may be (refused appends
/// leave gaps). Wide enough for any real gap, narrow enough to tell records from noise.
const SEQ_WINDOW: u64 = 1 << 32;
/// Bytes looked at, or copied, at a time in a bad region.
const CHUNK: usize = 64 * 1024;

/// Reads the segment at `path` (`start`: its first sequence number) and hands every intact
/// record to `each`, in order, as its payload and fields. Bad regions go to `dir/unreadable/`.
pub(super) fn read_segment(
    dir: &Path,
    start: u64,
    path: &Path,
    mut each: impl FnMut(&[u8], Fields<'_>),
) -> io::Result<()> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut head = Vec::with_capacity(MAGIC.len());
    (&file).take(MAGIC.len() as u64).read_to_end(&mut head)?;
    // A crash while the magic itself was being written leaves a prefix of it.
    let first_format = !head.starts_with(MAGIC) && !MAGIC.starts_with(&head);
    let mut seg = Segment {
        at: if first_format { 0 } else { head.len() as u64 },
        file: BufReader::with_capacity(CHUNK, file),
        len,
        first_format,
        payload: Vec::new(),
    };
    seg.file.seek(SeekFrom::Start(seg.at))?;
    let mut last_seq = start.saturating_sub(1);
    loop {
        if seg.record()? {
            let fields = split(&seg.payload, first_format).expect("checked by `record`");
            last_seq = last_seq.max(fields.seq);
            seg.at += 8 + seg.payload.len() as u64;
            each(&seg.payload, fields);
            continue;
        }
        if seg.at >= len {
            return Ok(());
        }
        let gap = seg.gap(last_seq)?;
        if let Some(last) = gap.last_nonzero {
            set_aside_region(dir, seg.file.get_ref(), start, seg.at, last + 1)?;
        }
        match gap.next {
            Some(next) => {
                seg.at = next;
                seg.file.seek(SeekFrom::Start(next))?;
            }
            None => {
                OpenOptions::new().write(true).open(path)?.set_len(seg.at)?;
                return Ok(());
            }
        }
    }
}

struct Segment {
    file: BufReader<File>,
    len: u64,
    first_format: bool,
    /// Where the reader is: the end of the last record read.
    at: u64,
    /// The last record read (reused).
    payload: Vec<u8>,
}

/// What follows the start of a bad region.
struct Gap {
    /// Where the next record starts, if any does.
    next: Option<u64>,
    /// The region's last byte that is not zero.
    last_nonzero: Option<u64>,
}

impl Segment {
    /// Whether an intact record starts at `at` (the reader's position); if so, its payload
    /// is in `payload`. Otherwise the reader's position is left anywhere.
    fn record(&mut self) -> io::Result<bool> {
        if self.len - self.at < 8 {
            return Ok(false);
        }
        let mut head = [0u8; 8];
        self.file.read_exact(&mut head)?;
        let (n, crc) = header(&head);
        if n < min_payload(self.first_format) as u64 || self.at + 8 + n > self.len {
            return Ok(false);
        }
        self.payload.resize(n as usize, 0);
        self.file.read_exact(&mut self.payload)?;
        Ok(intact(crc, &self.payload, self.first_format))
    }

    /// Looks through the bad region that starts at `at` for the next record after
    /// `last_seq`.
    fn gap(&self, last_seq: u64) -> io::Result<Gap> {
        let file = self.file.get_ref();
        let mut gap = Gap {
            next: None,
            last_nonzero: None,
        };
        // A chunk and the 16 bytes after it: a candidate's length, checksum and sequence.
        let mut buf = vec![0u8; CHUNK + 16];
        let mut payload = Vec::new();
        let mut pos = self.at;
        while pos < self.len {
            let n = ((self.len - pos) as usize).min(buf.len());
            file.read_exact_at(&mut buf[..n], pos)?;
            let step = n.min(CHUNK);
            if buf[..n].iter().all(|b| *b == 0) {
                pos += step as u64; // zeros: no record starts here, nothing to keep
                continue;
            }
            for i in 0..step {
                let c = pos + i as u64;
                if c > self.at
                    && i + 16 <= n
                    && self.plausible(&buf[i..i + 16], c, last_seq)
                    && self.intact_at(c, &mut payload)?
                {
                    gap.next = Some(c);
                    return Ok(gap);
                }
                if buf[i] != 0 {
                    gap.last_nonzero = Some(c);
                }
            }
            pos += step as u64;
        }
        Ok(gap)
    }

    /// Whether `h` (16 bytes at offset `at`) looks like the start of the record after
    /// `last_seq`: a length that fits, and a sequence number just after.
    fn plausible(&self, h: &[u8], at: u64, last_seq: u64) -> bool {
        let (n, _) = header(h);
        let seq = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        n >= min_payload(self.first_format) as u64
            && at + 8 + n <= self.len
            && seq > last_seq
            && seq - last_seq <= SEQ_WINDOW
    }

    fn intact_at(&self, at: u64, payload: &mut Vec<u8>) -> io::Result<bool> {
        let file = self.file.get_ref();
        let mut head = [0u8; 8];
        file.read_exact_at(&mut head, at)?;
        let (n, crc) = header(&head);
        payload.resize(n as usize, 0);
        file.read_exact_at(payload, at + 8)?;
        Ok(intact(crc, payload, self.first_format))
    }
}

/// A frame's length and checksum.
fn header(h: &[u8]) -> (u64, u32) {
    let n = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
    (u64::from(n), crc)
}

/// Copies bytes `from..to` of the segment starting at `start` to
/// `unreadable/seg-<start>-at-<from>.bin`, synced (the same name each time: a region left in
/// the middle of a segment is copied over itself at the next start).
fn set_aside_region(dir: &Path, file: &File, start: u64, from: u64, to: u64) -> io::Result<()> {
    let aside = dir.join("unreadable");
    fs::create_dir_all(&aside)?;
    let path = aside.join(format!("seg-{start:020}-at-{from}.bin"));
    let out = File::create(&path)?;
    let mut buf = vec![0u8; CHUNK];
    let mut pos = from;
    while pos < to {
        let n = ((to - pos) as usize).min(CHUNK);
        file.read_exact_at(&mut buf[..n], pos)?;
        out.write_all_at(&buf[..n], pos - from)?;
        pos += n as u64;
    }
    out.sync_all()?;
    File::open(&aside)?.sync_all()?;
    tracing::warn!(
        segment = start,
        offset = from,
        bytes = to - from,
        path = %path.display(),
        "a region of the delivery log holds no record (a failed or torn write); copied aside, read on after it"
    );
    Ok(())
}

//! The delivery log's own tests: crashes, torn records, bad regions, failed writes and
//! syncs, spares, old formats.

use super::*;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use writer::Writer;

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

/// The copy of the bad region at `offset` of the segment starting at `start`.
fn set_aside_region(d: &Path, start: u64, offset: u64) -> io::Result<Vec<u8>> {
    fs::read(
        d.join("unreadable")
            .join(format!("seg-{start:020}-at-{offset}.bin")),
    )
}

/// A closed log of one record, then half a record and `after`: (dir, segment, the length
/// of its whole records).
async fn torn_after_one(id: &str, after: &[u8]) -> io::Result<(PathBuf, PathBuf, u64)> {
    let (d, path) = closed_log_of_one(id).await?;
    let good = fs::metadata(&path)?.len();
    let mut f = OpenOptions::new().append(true).open(&path)?;
    f.write_all(&[200, 0, 0, 0, 1, 2, 3])?; // half a record
    f.write_all(after)?;
    Ok((d, path, good))
}

#[tokio::test]
async fn a_torn_tail_is_copied_aside_then_cut_and_the_rest_kept() -> io::Result<()> {
    let (d, path, good) = torn_after_one("whole", &[]).await?;
    let (spool, rec) = DeliveryLog::open(&d)?;
    assert_eq!(rec.pending.len(), 1);
    assert_eq!(rec.pending[0].id, "whole");
    assert_eq!(set_aside_region(&d, 1, good)?, [200, 0, 0, 0, 1, 2, 3]);
    assert_eq!(fs::metadata(&path)?.len(), good);
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
    let (spool, rec) = DeliveryLog::open(&d)?;
    assert!(rec.pending.is_empty());
    assert!(list_segments(&d)?.is_empty());
    let next = spool.append("y", "ping", 1, 2, &ping("y")).await?;
    assert_eq!(next, s + 1, "numbering goes on after the last ack");
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
    let (d, path, good) = torn_after_one("whole", &[0u8; 4096]).await?; // then the spare's zeros
    let (_spool, rec) = DeliveryLog::open(&d)?;
    assert_eq!(rec.pending.len(), 1);
    assert_eq!(rec.pending[0].id, "whole");
    assert_eq!(
        fs::metadata(&path)?.len(),
        good,
        "cut back to the last whole record"
    );
    assert_eq!(
        set_aside_region(&d, 1, good)?,
        [200, 0, 0, 0, 1, 2, 3],
        "the torn record copied aside, without the zeros"
    );
    Ok(())
}

/// A record's payload, field by field (`body_bytes` is absent in the first format).
fn payload(
    seq: u64,
    at: i64,
    body_bytes: Option<u32>,
    id: &str,
    name: &str,
    rest: &[u8],
) -> Vec<u8> {
    let mut p = seq.to_le_bytes().to_vec();
    p.extend_from_slice(&at.to_le_bytes());
    if let Some(n) = body_bytes {
        p.extend_from_slice(&n.to_le_bytes());
    }
    for field in [id, name] {
        p.extend_from_slice(&(field.len() as u16).to_le_bytes());
        p.extend_from_slice(field.as_bytes());
    }
    p.extend_from_slice(rest);
    p
}

/// A segment of the first format (GitHub's raw body in each record) is still read.
#[tokio::test]
async fn first_format_segments_are_still_read() -> io::Result<()> {
    let d = dir()?;
    let body = br#"{"zen":"old"}"#;
    // First format: no body size, the raw body in place of the event.
    let payload = payload(7, 5, None, "old", "ping", body);
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
    let payload = payload(2, 3, Some(2), "future", "ping", br#"{"SomethingNew":{}}"#);
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

/// A segment written on after a write failed half-way (as builds before the rollback did):
/// the half-written frame is copied aside, and the records behind it are read.
#[tokio::test]
async fn a_bad_region_in_the_middle_is_copied_aside_and_the_records_after_it_read() -> io::Result<()>
{
    let (d, path) = closed_log_of_one("before").await?;
    let at = fs::metadata(&path)?.len();
    let mut behind = Vec::new();
    for (seq, id) in [(2, "after-1"), (3, "after-2")] {
        format::frame(&mut behind, seq, &encode(id, "ping", 3, 2, &ping(id))?);
    }
    // A frame cut short: its length promises more than was written before the next one.
    let torn = behind[..40].to_vec();
    let mut f = OpenOptions::new().append(true).open(&path)?;
    f.write_all(&torn)?;
    f.write_all(&behind)?;
    drop(f);
    let (spool, rec) = DeliveryLog::open(&d)?;
    let ids: Vec<&str> = rec.pending.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["before", "after-1", "after-2"]);
    assert_eq!(
        set_aside_region(&d, 1, at)?,
        torn,
        "copied aside byte for byte"
    );
    assert_eq!(
        spool.append("next", "ping", 4, 2, &ping("n")).await?,
        4,
        "numbering goes on after the records behind the region"
    );
    for r in &rec.pending {
        spool.ack(r.seq);
    }
    drop(spool);
    stopped();
    let (_spool, rec) = DeliveryLog::open(&d)?;
    assert_eq!(rec.pending.len(), 1, "only the new one is left");
    assert!(
        list_segments(&d)?.iter().all(|(_, p)| *p != path),
        "a segment done with is removed, bad region and all"
    );
    Ok(())
}

/// One batch straight on a writer (no thread): the answers its appends get.
fn batch(w: &mut Writer, ids: &[&str]) -> io::Result<Vec<io::Result<u64>>> {
    let mut ops = Vec::new();
    let mut answers = Vec::new();
    for id in ids {
        let (tx, rx) = oneshot::channel();
        ops.push(Op::Append(encode(id, "ping", 1, 2, &ping(id))?, tx));
        answers.push(rx);
    }
    w.commit(ops);
    Ok(answers
        .into_iter()
        .map(|mut rx| rx.try_recv().expect("every append is answered"))
        .collect())
}

fn all_fail_with(answers: &[io::Result<u64>], errno: i32) -> bool {
    answers
        .iter()
        .all(|a| a.as_ref().is_err_and(|e| e.raw_os_error() == Some(errno)))
}

fn pending_ids(rec: &Recovered) -> Vec<&str> {
    rec.pending.iter().map(|r| r.id.as_str()).collect()
}

/// A write that fails half-way (a full disk) is undone: no half frame stays in the log, the
/// batch is refused, and the next batch is written where the failed one began.
#[test]
fn a_half_written_frame_is_cut_back_and_its_batch_refused() -> io::Result<()> {
    const ENOSPC: i32 = 28;
    let d = dir()?;
    let (mut w, _) = recover(&d, SEGMENT_BYTES)?;
    // In a new segment: the file goes.
    *w.disk.faults.short_write.lock().unwrap() = Some(5);
    assert!(all_fail_with(&batch(&mut w, &["refused-0"])?, ENOSPC));
    assert!(list_segments(&d)?.is_empty());
    batch(&mut w, &["a"])?.remove(0)?;
    let (_, path) = list_segments(&d)?.pop().expect("a segment");
    let good = fs::metadata(&path)?.len();
    // Half of the batch's first frame reaches the file.
    *w.disk.faults.short_write.lock().unwrap() = Some(30);
    assert!(all_fail_with(
        &batch(&mut w, &["refused-1", "refused-2"])?,
        ENOSPC
    ));
    assert_eq!(
        fs::metadata(&path)?.len(),
        good,
        "cut back to the last whole record"
    );
    // Room again: the same segment, written on.
    batch(&mut w, &["b"])?.remove(0)?;
    assert_eq!(list_segments(&d)?.len(), 1);
    drop(w);
    let (_, rec) = recover(&d, SEGMENT_BYTES)?;
    assert_eq!(pending_ids(&rec), ["a", "b"]);
    assert!(!d.join("unreadable").exists(), "nothing torn to set aside");
    Ok(())
}

/// EIO on `fdatasync`: every append of the batch fails; the segment is never written or
/// synced again (its dirty pages may be lost, see writer.rs), so nothing later is answered
/// on top of it; later appends go to a new segment and succeed.
#[test]
fn a_failed_fdatasync_refuses_its_whole_batch_and_closes_the_segment() -> io::Result<()> {
    const EIO: i32 = 5;
    let d = dir()?;
    let (mut w, _) = recover(&d, SEGMENT_BYTES)?;
    let a = batch(&mut w, &["a"])?.remove(0)?;
    let (start, good) = w.current.as_ref().map(|s| (s.start, s.len)).expect("open");
    w.disk.faults.failing_syncs.store(1, Ordering::SeqCst);
    let refused = batch(&mut w, &["refused-1", "refused-2", "refused-3"])?;
    assert!(all_fail_with(&refused, EIO), "{refused:?}");
    assert!(w.current.is_none(), "the segment is closed");
    let later = batch(&mut w, &["b", "c"])?;
    let later: Vec<u64> = later.into_iter().collect::<io::Result<_>>()?;
    assert!(
        later[0] > a + 3,
        "refused sequence numbers are not used again"
    );
    let now = w.current.as_ref().expect("open").start;
    assert_ne!(now, start, "later appends go to a new segment");
    let bad = d.join(format!("seg-{start:020}.log"));
    assert_eq!(
        fs::metadata(&bad)?.len(),
        good,
        "nothing behind the failed batch"
    );
    drop(w);
    let (_, rec) = recover(&d, SEGMENT_BYTES)?;
    assert_eq!(pending_ids(&rec), ["a", "b", "c"]);
    Ok(())
}

#[tokio::test]
async fn the_log_directory_is_the_operators_only() -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let d = dir()?;
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755))?;
    let (_log, _) = DeliveryLog::open(&d)?;
    assert_eq!(fs::metadata(&d)?.permissions().mode() & 0o777, 0o700);
    Ok(())
}

//! The delivery log's own tests: crashes, torn records, spares, old formats.

use super::*;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

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

//! The delivery log on a disk that fills up, through the real `serve` binary: what is
//! answered 202 survives `kill -9` and is dispatched once; what could not be written is
//! answered 503 (and is GitHub's to redeliver); once the disk has room again, deliveries are
//! taken again. Needs root (it mounts a small tmpfs).

mod common;

use common::binary::Binary;
use common::*;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

/// A small tmpfs, unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = temp_dir();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(mounted.success(), "mounting a tmpfs (this test needs root)");
        SmallDisk { dir }
    }

    /// Fills the disk with a file, all but about `free` bytes; returns the file.
    fn fill_all_but(&self, free: u64) -> PathBuf {
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![1u8; 4096];
        loop {
            match f.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let full = f.metadata().unwrap().len();
        f.set_len(full.saturating_sub(free)).unwrap();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A running `serve` process, killed (SIGKILL) when dropped, should the test fail.
struct Running(Child);

impl Running {
    fn kill_9(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Delivers failing trunk runs `from..to` at once (each its own commit); their statuses.
async fn burst(bin: &Binary, from: u32, to: u32) -> Vec<(u32, u16)> {
    let sends = (from..to).map(|n| async move {
        let status = bin
            .deliver(&format!("disk-{n}"), failure(&sha(n), u64::from(n)))
            .await;
        (n, status)
    });
    futures::future::join_all(sends).await
}

fn dispatched(github: &fake_github::FakeGitHub, n: u32) -> usize {
    let tag = format!("trunk/{}", sha(n));
    github
        .dispatches()
        .iter()
        .filter(|d| d.body["ref"] == tag.as_str())
        .count()
}

/// The first run can reach neither GitHub nor (after starting) ClickHouse: nothing it
/// answers is dispatched, recorded or acknowledged, so after `kill -9` everything answered
/// 202 is in the delivery log alone, and the second run must find every one of them there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_refuses_deliveries_and_loses_none_it_answered() {
    let disk = SmallDisk::mount("4m");
    let store = fresh_store().await;
    let github = fake_github::FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let clickhouse = Outage::start(&clickhouse_url()).await;
    let mut bin = Binary::with_spool(&store, &github, disk.dir.join("spool"));
    let budget = (
        "AUTOREVERT_MAX_RESTARTS_PER_HOUR".to_string(),
        "1000".to_string(),
    );
    bin.env = vec![
        budget.clone(),
        ("GITHUB_API_URL".into(), "http://127.0.0.1:9".into()),
        ("CLICKHOUSE_URL".into(), clickhouse.url.clone()),
    ];
    let app = Running(bin.start());
    bin.wait_up().await;
    clickhouse.down();

    // A burst meets a disk with room for a few dozen records.
    let filler = disk.fill_all_but(48 * 1024);
    let mut answers = burst(&bin, 1000, 1150).await;
    let refused: Vec<u32> = answers
        .iter()
        .filter(|(_, s)| *s != 202)
        .map(|(n, _)| *n)
        .collect();
    assert!(
        answers.iter().all(|(_, s)| [202, 503].contains(s)),
        "202 or 503 only: {answers:?}"
    );
    assert!(
        !refused.is_empty() && refused.len() < 150,
        "the disk filled during the burst: {} of 150 refused",
        refused.len()
    );
    // Room again: deliveries are taken again.
    std::fs::remove_file(filler).unwrap();
    let after = burst(&bin, 1150, 1170).await;
    assert!(after.iter().all(|(_, s)| *s == 202), "{after:?}");
    answers.extend(after);
    app.kill_9();
    assert!(github.dispatches().is_empty());

    bin.env = vec![budget];
    let again = Running(bin.start());
    bin.wait_up().await;
    let accepted: Vec<u32> = answers
        .iter()
        .filter(|(_, s)| *s == 202)
        .map(|(n, _)| *n)
        .collect();
    for _ in 0..600 {
        if accepted.iter().all(|n| dispatched(&github, *n) > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // time for a second dispatch
    for n in &accepted {
        assert_eq!(
            dispatched(&github, *n),
            1,
            "delivery disk-{n}, answered 202"
        );
    }
    for n in &refused {
        assert_eq!(
            dispatched(&github, *n),
            0,
            "delivery disk-{n}, answered 503"
        );
    }
    assert_eq!(
        github.requests_matching("POST", "/dispatches").len(),
        accepted.len()
    );
    for n in &accepted {
        let id = format!("disk-{n}");
        let mut recorded = false;
        for _ in 0..300 {
            recorded = store.delivery(&id).await.unwrap().is_some();
            if recorded {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(recorded, "{id}, answered 202, is recorded");
    }
    drop(again);
    assert!(
        !disk.dir.join("spool/unreadable").exists(),
        "every failed write was undone: nothing torn to set aside"
    );
}

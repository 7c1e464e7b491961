use super::*;
use crate::intake::events::{Job, Run};
use crate::intake::states::{Conclusion, RunStatus};
use chrono::{DateTime, Duration, TimeZone, Utc};

fn t(min: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap() + Duration::minutes(min)
}

fn job(id: u64, run: u64, attempt: u32, name: &str, sha: &str, conclusion: Option<&str>) -> Job {
    Job {
        id,
        run_id: run,
        run_attempt: attempt,
        name: name.into(),
        workflow_name: "trunk".into(),
        head_sha: sha.into(),
        head_branch: Some("main".into()),
        status: if conclusion.is_some() {
            RunStatus::Completed
        } else {
            RunStatus::InProgress
        },
        conclusion: conclusion.map(Conclusion::from),
        created_at: Some(t(id as i64)),
        started_at: Some(t(id as i64 + 1)),
        completed_at: conclusion.map(|_| t(id as i64 + 30)),
        ..Default::default()
    }
}

fn history(commits: &[&str]) -> History {
    let mut h = History::new();
    h.push(commits, t(0));
    h
}

const SHARD1: &str = "linux-jammy / test (default, 1, 2, linux.2xlarge)";
const SHARD2: &str = "linux-jammy / test (default, 2, 2, linux.2xlarge)";
const DISTRIBUTED: &str = "linux-jammy / test (distributed, 1, 1, linux.2xlarge)";

fn key() -> SignalKey {
    SignalKey::new("trunk", "linux-jammy / test (default)")
}

#[test]
fn shards_merge_into_one_event_and_a_failed_shard_wins() {
    let mut h = history(&["a"]);
    h.record_job(&job(1, 10, 1, SHARD1, "a", Some("success")));
    let k = h.record_job(&job(2, 10, 1, SHARD2, "a", Some("failure")));
    assert_eq!(k, Some(key()));
    let s = h.signal(&key());
    assert_eq!(s.commits.len(), 1);
    let events = &s.commits[0].events;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].status, Outcome::Failure);
    assert_eq!(events[0].job_id, 2, "the failing job is the one named");
    assert_eq!(events[0].started_at, t(2), "the earliest effective start");
    assert_eq!(events[0].ended_at, Some(t(32)));
}

#[test]
fn configs_stay_apart() {
    let mut h = history(&["a"]);
    h.record_job(&job(1, 10, 1, SHARD1, "a", Some("success")));
    h.record_job(&job(2, 10, 1, DISTRIBUTED, "a", Some("failure")));
    assert_eq!(
        h.signal(&key()).commits[0].events[0].status,
        Outcome::Success
    );
    let dist = SignalKey::new("trunk", "linux-jammy / test (distributed)");
    assert_eq!(
        h.signal(&dist).commits[0].events[0].status,
        Outcome::Failure
    );
    let failing: Vec<_> = h.failing_keys().cloned().collect();
    assert_eq!(failing, vec![dist]);
}

#[test]
fn one_event_per_attempt_and_pending_until_all_shards_pass() {
    let mut h = history(&["a"]);
    h.record_job(&job(1, 10, 1, SHARD1, "a", Some("failure")));
    h.record_job(&job(3, 10, 2, SHARD1, "a", Some("success")));
    h.record_job(&job(4, 10, 2, SHARD2, "a", None));
    let events = &h.signal(&key()).commits[0].events;
    let got: Vec<_> = events.iter().map(|e| (e.attempt, e.status)).collect();
    assert_eq!(got, vec![(1, Outcome::Failure), (2, Outcome::Pending)]);
}

#[test]
fn cancelled_or_all_skipped_is_missing() {
    let mut h = history(&["a", "b"]);
    h.record_job(&job(1, 10, 1, SHARD1, "a", Some("failure")));
    h.record_job(&job(2, 10, 1, SHARD2, "a", Some("cancelled")));
    h.record_job(&job(3, 11, 1, SHARD1, "b", Some("skipped")));
    h.record_job(&job(4, 11, 1, SHARD2, "b", Some("skipped")));
    let s = h.signal(&key());
    assert!(s.commits.iter().all(|c| c.events.is_empty()), "{s:?}");
}

#[test]
fn excluded_jobs_are_dropped() {
    let mut h = history(&["a"]);
    for (i, name) in [
        "linux / test (default, 1, 1, linux.2xlarge, mem_leak_check)",
        "linux / test (rerun_disabled_tests, 1, 1)",
        "linux / test (default, 1, 1, unstable)",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(
            h.record_job(&job(i as u64, 10, 1, name, "a", Some("failure"))),
            None
        );
    }
    assert_eq!(h.failing_keys().count(), 0);
}

#[test]
fn a_late_in_progress_never_overwrites_completed() {
    let mut h = history(&["a"]);
    h.record_job(&job(1, 10, 1, SHARD1, "a", Some("failure")));
    assert_eq!(h.record_job(&job(1, 10, 1, SHARD1, "a", None)), None);
    assert_eq!(
        h.signal(&key()).commits[0].events[0].status,
        Outcome::Failure
    );
}

#[test]
fn commits_come_newest_first_in_push_order_and_keep_their_place() {
    let mut h = History::new();
    h.push(&["a"], t(0));
    h.push(&["b", "c", "d"], t(5)); // a ghstack push
    h.push(&["c"], t(9)); // seen again: keeps its place
    h.push(&["late"], t(2)); // pushed before b, c, d, delivered after them
    let s = h.signal(&key());
    let shas: Vec<_> = s.commits.iter().map(|c| c.sha.as_str()).collect();
    assert_eq!(shas, ["d", "c", "b", "late", "a"]);
    assert_eq!(h.commits().parent("c"), Some("b"));
    assert_eq!(h.commits().parent("a"), None);
}

fn run(id: u64, sha: &str, status: &str) -> Run {
    Run {
        id,
        name: "trunk".into(),
        path: ".github/workflows/trunk.yml".into(),
        head_sha: sha.into(),
        head_branch: Some(format!("trunk/{sha}")),
        event: "workflow_dispatch".into(),
        status: RunStatus::from(status),
        conclusion: None,
        run_attempt: 1,
        workflow_id: 1,
        created_at: t(50),
        updated_at: None,
        html_url: String::new(),
        url: String::new(),
    }
}

#[test]
fn a_run_without_jobs_of_the_signal_yet_is_a_synthetic_pending_event() {
    let mut h = history(&["a"]);
    h.record_job(&job(1, 10, 1, SHARD1, "a", Some("failure")));
    assert!(h.record_run(&run(20, "a", "queued")));
    let events = &h.signal(&key()).commits[0].events;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].status, Outcome::Pending);
    assert_eq!((events[1].run_id, events[1].job_id), (20, 0));
    // Its first job replaces the synthetic event; its completion removes it.
    h.record_job(&job(21, 20, 1, SHARD1, "a", None));
    assert_eq!(h.signal(&key()).commits[0].events.len(), 2);
    assert!(!h.record_run(&run(20, "a", "queued")), "nothing new");
    assert!(h.record_run(&run(20, "a", "completed")));
    h.record_job(&job(21, 20, 1, SHARD1, "a", Some("failure")));
    let events = &h.signal(&key()).commits[0].events;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.status == Outcome::Failure));
}

#[test]
fn the_window_forgets_old_commits_and_their_failures() {
    let mut h = History::new();
    h.push(&["a"], t(0));
    h.push(&["b"], t(60));
    h.record_job(&job(1, 10, 1, SHARD1, "a", Some("failure")));
    h.record_job(&job(2, 11, 1, SHARD1, "b", Some("success")));
    h.forget_before(t(30));
    assert_eq!(h.commits().len(), 1);
    assert_eq!(h.failing_keys().count(), 0);
    assert_eq!(h.signal(&key()).commits.len(), 1);
}

#[test]
fn an_event_lists_its_failed_shards_and_knows_a_restart_and_when_it_was_created() {
    let mut h = history(&["a"]);
    // A push run (never recorded as a run): shards 1 and 2 fail.
    h.record_job(&job(1, 10, 1, SHARD1, "a", Some("failure")));
    h.record_job(&job(2, 10, 1, SHARD2, "a", Some("failure")));
    // A restart (workflow_dispatch, created at minute 50): shard 2 fails again.
    h.record_run(&run(20, "a", "in_progress"));
    h.record_job(&job(3, 20, 1, SHARD2, "a", Some("failure")));
    // A re-run attempt of the push run: a restart even without its run seen.
    h.record_job(&job(4, 10, 2, SHARD1, "a", Some("success")));
    let events = h.signal(&key()).commits[0].events.clone();
    let push = events.iter().find(|e| e.run_id == 10 && e.attempt == 1);
    let push = push.expect("the push run's event");
    assert_eq!(push.failed_jobs, [SHARD1, SHARD2]);
    assert_eq!(push.failing_jobs(), [SHARD1, SHARD2]);
    assert!(!push.rerun);
    assert_eq!(push.run_created_at, None);
    assert_eq!(push.run_start(), push.started_at);
    let restart = events.iter().find(|e| e.run_id == 20).expect("the restart");
    assert_eq!(restart.failed_jobs, [SHARD2]);
    assert!(restart.rerun);
    assert_eq!(restart.run_created_at, Some(t(50)));
    assert_eq!(restart.run_start(), t(50));
    let rerun = events.iter().find(|e| e.attempt == 2).expect("the re-run");
    assert!(rerun.rerun);
    assert!(rerun.failed_jobs.is_empty() && rerun.failing_jobs().is_empty());
}

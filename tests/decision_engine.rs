//! The decision engine inside the App, end to end: pushes and the runs of main's commits go
//! in as webhooks, the App keeps the signals, asks for restarts through GitHub (the fake,
//! whose dispatches become runs this test drives), decides, and records every decision in
//! the real ClickHouse.

mod common;

use common::payloads::push_body;
use common::{Options, REPO, TEST_1, TestApp, eventually, sha};
use std::collections::BTreeSet;

/// How each commit's `TEST_1` ends, on every run: commit 3 broke it.
fn truth(n: u32) -> &'static str {
    if n >= 3 { "failure" } else { "success" }
}

/// Commit `n` lands on main (after `n - 1`) and its trunk run ends as `truth(n)` says.
async fn land(app: &TestApp, n: u32) {
    let (parent, this) = (sha(n - 1), sha(n));
    let (status, _) = app.deliver("push", &push_body(&parent, &[&this])).await;
    assert_eq!(status.as_u16(), 202);
    let run = app.github.push_run(&this);
    finish_run(app, run, truth(n)).await;
}

/// GitHub runs `TEST_1` in `run` to `conclusion`, and says so in webhooks.
async fn finish_run(app: &TestApp, run: u64, conclusion: &str) {
    let gh = &app.github;
    gh.start_run(run);
    app.deliver("workflow_run", &gh.run_event(run, "in_progress"))
        .await;
    gh.queue_jobs(run, &[TEST_1]);
    for body in gh.job_events(run, "queued") {
        app.deliver("workflow_job", &body).await;
    }
    gh.complete_jobs(run, &[(TEST_1, conclusion)]);
    for body in gh.job_events(run, "completed") {
        app.deliver("workflow_job", &body).await;
    }
    gh.complete_run(run, conclusion);
    app.deliver("workflow_run", &gh.run_event(run, "completed"))
        .await;
}

/// Runs every restart the App dispatched and that has not run yet, as the truth says.
async fn run_restarts(app: &TestApp, done: &mut BTreeSet<u64>, commits: u32) -> usize {
    let mut ran = 0;
    for n in 1..=commits {
        for r in app.github.dispatched_runs(&sha(n)) {
            if done.insert(r.id) {
                // Restarts of different commits start at different seconds, as on GitHub.
                tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
                finish_run(app, r.id, truth(n)).await;
                ran += 1;
            }
        }
    }
    ran
}

fn revert_of(app: &TestApp) -> Option<String> {
    app.engine
        .decider()
        .decisions(REPO)
        .into_iter()
        .find_map(|(_, d)| match d {
            autorevert::decisions::Decision::Revert(r) => Some(r.suspect),
            _ => None,
        })
}

#[tokio::test]
async fn a_breaking_commit_is_found_from_restarts_the_app_asked_for() {
    let app = TestApp::with(Options::default()).await;
    for n in 1..=4 {
        land(&app, n).await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    let mut done = BTreeSet::new();
    let found = eventually(60, async || {
        app.settle().await;
        run_restarts(&app, &mut done, 4).await;
        app.settle().await;
        revert_of(&app).is_some()
    })
    .await;
    let decisions = app.engine.decider().decisions(REPO);
    assert!(found, "no revert decided: {decisions:#?}");
    assert_eq!(revert_of(&app), Some(sha(3)), "the first failing commit");
    let restarted: BTreeSet<String> = (1..=4)
        .filter(|n| !app.github.dispatched_runs(&sha(*n)).is_empty())
        .map(sha)
        .collect();
    assert!(
        restarted.contains(&sha(3)),
        "the suspect ran again: {restarted:?}"
    );
    assert!(
        !restarted.contains(&sha(1)),
        "nothing older than the parent: {restarted:?}"
    );
    // Recorded: the revert decision of the signal, in ClickHouse.
    app.settle().await;
    let rows = app
        .store
        .latest_decisions(REPO, 100)
        .await
        .expect("decisions");
    let row = rows
        .iter()
        .find(|r| r.label == "revert")
        .unwrap_or_else(|| panic!("no revert row: {rows:#?}"));
    assert_eq!(row.suspect, sha(3));
    assert_eq!(row.baseline, sha(2));
    assert_eq!(row.job, "linux-jammy-py3.10-gcc11 / test (default)");
}

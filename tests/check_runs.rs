//! The `autorevert` check run on the original commit: created when the restart is
//! dispatched, updated on confirmation, completed (neutral) with the per-job outcome table;
//! one per restart through redeliveries, an unknown create, GitHub failing the calls and a
//! `kill -9` of the real binary.

mod common;

use autorevert::restart::{Status, Verdict};
use common::binary::Binary;
use common::fake_github::{CheckRunAnswer, FakeCheckRun, FakeGitHub};
use common::*;
use std::time::Duration;

const JOB: &str = "linux-jammy-py3.10-gcc11 / test (default)";

/// The original failure (run `original`, TEST_1 failed), its restart and the restart's
/// jobs and completion; returns the restarted run's id.
async fn restart_judged(app: &TestApp, sha: &str, original: u64, test_1: &str) -> u64 {
    app.original_failure(
        sha,
        original,
        &[(TEST_1, "failure"), (TEST_2, "success"), (BUILD, "success")],
    )
    .await;
    app.settle().await;
    let run_id = app.stored_restarts(sha).await[0]
        .restart_run_id
        .expect("run id from return_run_details");
    let jobs = [(TEST_1, test_1), (TEST_2, "success"), (BUILD, "success")];
    app.restart_follow_ups(sha, run_id, &jobs, "failure").await;
    app.settle().await;
    run_id
}

fn only_check_run(github: &FakeGitHub, sha: &str) -> FakeCheckRun {
    let runs = github.check_runs(sha);
    assert_eq!(runs.len(), 1, "exactly one check run: {runs:#?}");
    runs[0].clone()
}

fn posts(github: &FakeGitHub) -> usize {
    github.requests_matching("POST", "/check-runs").len()
}

#[tokio::test]
async fn one_check_run_goes_from_dispatch_to_a_neutral_verdict_through_redeliveries() {
    let app = TestApp::start().await;
    let sha = sha(1);
    app.original_failure(
        &sha,
        1_000_001,
        &[(TEST_1, "failure"), (TEST_2, "success"), (BUILD, "success")],
    )
    .await;
    app.settle().await;
    let r = &app.stored_restarts(&sha).await[0];
    let run_id = r.restart_run_id.unwrap();

    // Dispatched: in progress, listing the failing job and linking the restarted run.
    let c = only_check_run(&app.github, &sha);
    assert_eq!(
        (c.name.as_str(), c.status.as_str()),
        ("autorevert", "in_progress")
    );
    assert_eq!(c.external_id, r.restart_id, "found again by the restart id");
    assert_eq!(c.conclusion, None);
    assert!(c.summary.contains(&format!("- `{JOB}`")), "{}", c.summary);
    let run_url = format!("https://github.com/{REPO}/actions/runs/{run_id}");
    assert!(
        c.summary.contains(&format!("[run {run_id}]({run_url})")),
        "{}",
        c.summary
    );
    assert_eq!(c.details_url.as_deref(), Some(run_url.as_str()));
    assert_eq!(r.check.id, Some(c.id), "its id is in the ledger");
    assert_eq!(
        r.check.url,
        format!("https://github.com/{REPO}/runs/{}", c.id)
    );

    // The same failure again (GitHub's redelivery keeps the id; a new id as the sweep or
    // the reconciler would bring it): nothing new is sent.
    let again = failure_delivery(&sha);
    app.deliver_as("workflow_run", "redelivered", &again).await;
    app.deliver_as("workflow_run", "redelivered", &again).await;
    app.deliver("workflow_run", &again).await;
    app.settle().await;
    assert_eq!(only_check_run(&app.github, &sha).updates, 0);

    // The restart runs and fails again in TEST_1: confirmed, then completed as evidence.
    let jobs = [(TEST_1, "failure"), (TEST_2, "success"), (BUILD, "success")];
    app.restart_follow_ups(&sha, run_id, &jobs, "failure").await;
    app.settle().await;
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!(r.outcome, Some(Verdict::Reproduced), "{}", r.reason);
    let c = only_check_run(&app.github, &sha);
    assert_eq!(c.status, "completed");
    assert_eq!(c.conclusion.as_deref(), Some("neutral"), "never red");
    assert_eq!(c.title, "Reproduced: the failure happened again");
    assert!(
        c.summary.contains(&format!(
            "| Job | Outcome | Detail |\n| --- | --- | --- |\n| `{JOB}` | reproduced | failed again |\n"
        )),
        "{}",
        c.summary
    );
    assert!(
        (1..=2).contains(&c.updates),
        "confirmed and judged: {}",
        c.updates
    );
    let kinds = app.event_kinds(&sha).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "check_run_shown").count(),
        1 + c.updates as usize
    );
    assert!(r.check.error.is_empty());

    // Every follow-up delivered once more: the check run stays as it is.
    app.restart_follow_ups(&sha, run_id, &jobs, "failure").await;
    app.settle().await;
    assert_eq!(only_check_run(&app.github, &sha), c);
    assert_eq!(posts(&app.github), 1, "one create in all");
    let lookups = app.github.requests_matching("GET", "/check-runs?");
    assert_eq!(lookups.len(), 1, "looked up once, then its id is known");
    let patches = app.github.requests_matching("PATCH", "/check-runs/");
    assert_eq!(patches.len(), c.updates as usize, "every update was needed");
}

/// The failed push run of `original_failure`, as GitHub would deliver it again.
fn failure_delivery(sha: &str) -> Vec<u8> {
    run_payload(
        "completed",
        1_000_001,
        sha,
        "push",
        "main",
        Some("failure"),
        |_| {},
    )
}

#[tokio::test]
async fn each_outcome_is_rendered_in_the_summary() {
    let app = TestApp::start().await;
    let (passed, missing) = (sha(2), sha(3));
    restart_judged(&app, &passed, 1_000_002, "success").await;
    let c = only_check_run(&app.github, &passed);
    assert_eq!(c.title, "Not reproduced: the failing jobs passed");
    assert!(
        c.summary
            .contains(&format!("| `{JOB}` | not reproduced | passed |"))
    );
    assert_eq!(c.conclusion.as_deref(), Some("neutral"));
    restart_judged(&app, &missing, 1_000_003, "cancelled").await;
    let c = only_check_run(&app.github, &missing);
    assert_eq!(c.title, "Inconclusive");
    assert!(
        c.summary.contains(&format!(
            "| `{JOB}` | inconclusive | cancelled, skipped or not finished in the restart |"
        )),
        "{}",
        c.summary
    );
    assert_eq!(c.conclusion.as_deref(), Some("neutral"));
}

#[tokio::test]
async fn an_expired_confirmation_window_completes_it_with_the_reason() {
    let app = TestApp::with(Options {
        confirm_window: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let sha = sha(4);
    app.original_failure(&sha, 1_000_004, &[(TEST_1, "failure")])
        .await;
    app.settle().await;
    let run_id = app.stored_restarts(&sha).await[0].restart_run_id.unwrap();
    // A restart job whose run never reaches ClickHouse: the confirmation gives up.
    let tag = format!("trunk/{sha}");
    let body = job_payload("queued", 77, run_id, &sha, &tag, TEST_1, None);
    app.deliver("workflow_job", &body).await;
    app.settle().await;
    assert_eq!(
        app.stored_restarts(&sha).await[0].status,
        Status::Unconfirmed
    );
    let c = only_check_run(&app.github, &sha);
    assert_eq!(c.conclusion.as_deref(), Some("neutral"));
    assert_eq!(c.title, "No verdict");
    assert!(
        c.summary.starts_with(
            "The restart ended without a verdict: restart jobs not visible in ClickHouse"
        ),
        "{}",
        c.summary
    );
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_looked_up_not_sent_again() {
    let app = TestApp::start().await;
    // The lookup answers; the create is made, then answered 502.
    app.github
        .script_check_runs([CheckRunAnswer::Normal, CheckRunAnswer::ActThenFail(502)]);
    let sha = sha(5);
    app.original_failure(&sha, 1_000_005, &[(TEST_1, "failure")])
        .await;
    app.settle().await;
    let c = only_check_run(&app.github, &sha);
    assert_eq!(posts(&app.github), 1, "never created twice");
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!(r.check.id, Some(c.id), "adopted by its external id");
    assert!(r.check.error.is_empty(), "{}", r.check.error);
}

#[tokio::test]
async fn github_failing_the_check_run_calls_does_not_stop_the_verdict() {
    let app = TestApp::start().await;
    app.github.check_runs_down(Some(502));
    let sha = sha(6);
    restart_judged(&app, &sha, 1_000_006, "failure").await;
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!(r.status, Status::Completed);
    assert_eq!(r.outcome, Some(Verdict::Reproduced), "{}", r.reason);
    assert!(app.github.check_runs(&sha).is_empty());
    assert!(r.check.error.contains("502"), "recorded: {}", r.check.error);
    assert!(
        app.event_kinds(&sha)
            .await
            .contains(&"check_run_failed".to_string())
    );
    let reads = app
        .github
        .requests_matching("GET", "/check-runs?check_name=autorevert");
    assert!(
        reads.len() >= 4,
        "the lookup went through the retry layer: {reads:?}"
    );
    assert_eq!(posts(&app.github), 0, "no create without a lookup");

    // GitHub answers again: the reconciler brings the check run to the verdict, once.
    app.github.check_runs_down(None);
    let pass = autorevert::background::reconcile::Reconciler {
        engine: &app.engine,
        pipeline: &app.pipeline,
        github: &app.client,
        lookback: Duration::from_secs(3600),
    }
    .pass()
    .await;
    assert_eq!(pass.check_runs_resynced, 1, "{pass:?}");
    app.settle().await;
    let c = only_check_run(&app.github, &sha);
    assert_eq!(
        (c.status.as_str(), c.conclusion.as_deref()),
        ("completed", Some("neutral"))
    );
    assert!(
        c.summary.contains("| reproduced | failed again |"),
        "{}",
        c.summary
    );
    assert!(app.stored_restarts(&sha).await[0].check.error.is_empty());
    assert_eq!(app.engine.resync_check_runs(), 0, "nothing left behind");
}

/// Polls `f` every 50 ms for up to 30 s.
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..600 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 30 s: {what}");
}

/// The real binary, killed (SIGKILL) while GitHub holds the check-run call `held` (0: the
/// lookup, before anything was created; 1: the create, made but not answered), then started
/// again: one check run, created at most once, known to the ledger.
async fn killed_during_check_run_call(held: usize, sha: &str) -> (FakeGitHub, FakeCheckRun) {
    let store = fresh_store().await;
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let mut script = vec![CheckRunAnswer::Normal; held];
    script.push(CheckRunAnswer::ActThenHold(Duration::from_secs(30)));
    github.script_check_runs(script);
    let bin = Binary::new(&store, &github);
    let mut first = bin.start();
    bin.wait_up().await;
    assert_eq!(bin.deliver("kill-9", failure(sha, 700)).await, 202);
    eventually("the held check-run call", async || {
        let s = github.state.lock().unwrap();
        s.requests
            .iter()
            .filter(|(_, p, _)| p.contains("/check-runs"))
            .count()
            > held
    })
    .await;
    first.kill().unwrap(); // SIGKILL, the dispatch done, the check run not known
    first.wait().unwrap();
    assert_eq!(github.dispatched_runs(sha).len(), 1);
    assert_eq!(
        github.check_runs(sha).len(),
        held,
        "created only if the create was held"
    );

    let mut second = bin.start();
    bin.wait_up().await;
    let key = TestApp::key(sha);
    eventually("the ledger knows the check run", async || {
        let stored = store.restarts_for(&key).await.unwrap_or_default();
        stored.first().is_some_and(|r| r.check.id.is_some())
    })
    .await;
    second.kill().unwrap();
    second.wait().unwrap();
    let c = only_check_run(&github, sha);
    assert_eq!(github.dispatched_runs(sha).len(), 1, "one restart");
    assert_eq!(posts(&github), 1, "created once in all");
    let stored = store.restarts_for(&key).await.unwrap();
    assert_eq!(stored[0].check.id, Some(c.id));
    assert_eq!(c.status, "in_progress");
    assert_eq!(c.external_id, stored[0].restart_id);
    (github, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_check_run_was_created_it_is_created_once_after_the_restart() {
    let (_, c) = killed_during_check_run_call(0, &sha(7)).await;
    assert_eq!(c.updates, 0, "created as the restart stands");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_creating_the_check_run_it_is_found_not_created_again() {
    let (github, c) = killed_during_check_run_call(1, &sha(8)).await;
    assert!(c.updates >= 1, "the found check run was brought up to date");
    assert!(
        github
            .requests_matching("GET", "/check-runs?check_name=autorevert&filter=all")
            .len()
            >= 2,
        "looked up before creating, in each process"
    );
}

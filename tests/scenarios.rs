//! The mission, told as scenarios: GitHub's side happens on the fake GitHub (its state
//! first, the webhooks generated from it), the App answers, and every scenario ends with
//! `finish`, which fails on any dispatch the scenario did not claim and on any error the
//! App logged. Every test in this file goes through `Scenario` (see tests/common/scenario.rs
//! for why they run one at a time).

mod common;

use autorevert::restart::{Status, Verdict};
use common::*;
use serde_json::json;

const DISTRIBUTED: &str = "linux-jammy-py3.10-gcc11 / test (distributed, 1, 1, linux.4xlarge)";

/// Commit 2d3615f of pytorch/pytorch: trunk run 15595052847 failed on main in shard 1 of
/// `test (default)`; the restart, run 15644112883 on `trunk/2d3615f...`, failed there again.
#[tokio::test]
async fn the_seed_case_is_restarted_once_on_its_trunk_tag_and_reproduced() {
    let mut s = Scenario::start().await;
    let sha = "2d3615f577894c7a117a55e85bb8371bb598ec50";
    let jobs = [(BUILD, "success"), (TEST_1, "failure"), (TEST_2, "success")];

    // The push's trunk run fails on main.
    s.github
        .add_run(fake_github::FakeRun::push(15595052847, sha));
    s.github.set_next_run_id(15644112883);
    s.github_runs(15595052847, &jobs, "failure").await;

    // One dispatch of trunk.yml on trunk/<sha>, asking for the new run's id.
    let d = s.expect_dispatches(1).await;
    assert_eq!(
        (d[0].repo.as_str(), d[0].workflow.as_str()),
        (REPO, "trunk.yml")
    );
    assert_eq!(
        d[0].body,
        json!({"ref": format!("trunk/{sha}"), "return_run_details": true})
    );
    // GitHub created the run, and the ledger holds it before any webhook of it arrived.
    let restart = s.restart_run(sha);
    assert_eq!(restart, 15644112883);
    let r = s.restart(sha).await;
    assert_eq!(r.status, Status::Dispatched);
    assert_eq!(r.original_run_id, 15595052847);
    assert_eq!(r.restart_run_id, Some(restart));
    assert_eq!(r.installation_id, Some(INSTALLATION));

    // GitHub runs the restart; the same shard fails again.
    s.github_runs(restart, &jobs, "failure").await;

    let r = s.restart(sha).await;
    assert_eq!(r.status, Status::Completed);
    assert_eq!(r.outcome, Some(Verdict::Reproduced), "{}", r.reason);
    assert!(
        r.reason
            .contains("failed again: linux-jammy-py3.10-gcc11 / test (default)"),
        "{}",
        r.reason
    );
    assert!(r.times.confirmed_at.is_some(), "confirmed in ClickHouse");
    assert!(s.store.restart_visible(&TestApp::key(sha)).await.unwrap());
    let kinds = s.event_kinds(sha).await;
    for k in ["dispatched", "confirmed", "outcome"] {
        assert!(kinds.iter().any(|x| x == k), "no {k} event in {kinds:?}");
    }
    // The restart's own failed run on trunk/<sha> must not be restarted: `finish` fails on
    // any dispatch not claimed above.
    s.finish().await;
}

#[tokio::test]
async fn a_restart_whose_failing_job_passes_is_not_reproduced() {
    let mut s = Scenario::start().await;
    let sha = sha(501);
    s.push_fails(
        &sha,
        &[(TEST_1, "failure"), (TEST_2, "success"), (BUILD, "success")],
    )
    .await;
    s.expect_dispatches(1).await;

    let restart = s.restart_run(&sha);
    s.github_runs(
        restart,
        &[(TEST_1, "success"), (TEST_2, "success"), (BUILD, "success")],
        "success",
    )
    .await;

    let r = s.restart(&sha).await;
    assert_eq!(r.status, Status::Completed);
    assert_eq!(r.outcome, Some(Verdict::NotReproduced), "{}", r.reason);
    assert!(
        r.reason.contains("all 1 originally failing job(s) passed"),
        "{}",
        r.reason
    );
    s.finish().await;
}

/// Two configs failed on main; in the restart one fails again and the other passes: the
/// verdict names the job that reproduced, and only that one.
#[tokio::test]
async fn each_failing_job_is_judged_on_its_own() {
    let mut s = Scenario::start().await;
    let sha = sha(502);
    s.push_fails(
        &sha,
        &[
            (TEST_1, "failure"),
            (DISTRIBUTED, "failure"),
            (BUILD, "success"),
        ],
    )
    .await;
    s.expect_dispatches(1).await;

    let restart = s.restart_run(&sha);
    s.github_runs(
        restart,
        &[
            (TEST_1, "failure"),
            (DISTRIBUTED, "success"),
            (BUILD, "success"),
        ],
        "failure",
    )
    .await;

    let r = s.restart(&sha).await;
    assert_eq!(r.outcome, Some(Verdict::Reproduced), "{}", r.reason);
    assert!(
        r.reason
            .ends_with("failed again: linux-jammy-py3.10-gcc11 / test (default)"),
        "{}",
        r.reason
    );
    assert!(!r.reason.contains("distributed"), "{}", r.reason);
    s.finish().await;
}

/// The failure arrives again under a new delivery id, GitHub redelivers that delivery (same
/// id: answered `duplicate`), another copy comes under a fresh id, and the run is re-run on
/// main and fails again: still one restart, and its follow-ups judge it once.
#[tokio::test]
async fn duplicate_deliveries_dispatch_nothing_more() {
    let mut s = Scenario::start().await;
    let sha = sha(503);
    let original = s.push_fails(&sha, &[(TEST_1, "failure")]).await;
    s.expect_dispatches(1).await;

    let failed = s.github.run_event(original, "completed");
    let (_, first) = s.deliver_as("workflow_run", "redelivered-1", &failed).await;
    let (_, again) = s.deliver_as("workflow_run", "redelivered-1", &failed).await;
    assert_eq!(
        (first["status"].clone(), again["status"].clone()),
        (json!("accepted"), json!("duplicate"))
    );
    s.deliver_ok("workflow_run", &failed).await;
    let rerun = RunEvent::failure(&sha).run(original).attempt(2).body();
    s.deliver_ok("workflow_run", &rerun).await;
    s.expect_dispatches(0).await;

    // The restart's follow-ups, delivered twice over, judge it once.
    let restart = s.restart_run(&sha);
    s.github_runs(restart, &[(TEST_1, "failure")], "failure")
        .await;
    for body in s.github.job_events(restart, "completed") {
        s.deliver_ok("workflow_job", &body).await;
    }
    s.deliver_ok("workflow_run", &s.github.run_event(restart, "completed"))
        .await;

    let r = s.restart(&sha).await;
    assert_eq!(r.outcome, Some(Verdict::Reproduced), "{}", r.reason);
    assert_eq!(r.dispatch_attempts, 1);
    let kinds = s.event_kinds(&sha).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "skipped").count(),
        3,
        "the three later deliveries of the failure are skips: {kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "outcome").count(),
        1,
        "one verdict: {kinds:?}"
    );
    s.finish().await;
}

/// A writer labels an issue `ci: disable-autorevert`: the failure is recorded as held, not
/// dispatched. Once the issue is closed, the next failure (the run re-run on main) restarts.
#[tokio::test]
async fn the_kill_switch_holds_a_restart_until_it_is_closed() {
    let mut s = Scenario::start().await;
    s.github
        .open_kill_switch(500, "ci: disable-autorevert", "oncall", "write", "maintain");
    let sha = sha(504);
    let original = s.push_fails(&sha, &[(TEST_1, "failure")]).await;
    s.expect_dispatches(0).await;
    assert!(s.stored_restarts(&sha).await.is_empty());
    let events = s.store.events_for(&TestApp::key(&sha)).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, "skipped");
    assert!(
        events[0]
            .message
            .contains("kill switch on: issue #500 labelled by @oncall (maintain)"),
        "{}",
        events[0].message
    );

    s.github.close_issue(500);
    let rerun = RunEvent::failure(&sha).run(original).attempt(2).body();
    s.deliver_ok("workflow_run", &rerun).await;
    let d = s.expect_dispatches(1).await;
    assert_eq!(d[0].body["ref"], json!(format!("trunk/{sha}")));
    assert_eq!(s.restart(&sha).await.status, Status::Dispatched);
    s.finish().await;
}

// ---- the strict end is strict ----

#[tokio::test]
#[should_panic(expected = "1 unclaimed dispatch(es)")]
async fn finish_fails_on_a_dispatch_the_scenario_did_not_claim() {
    let s = Scenario::start().await;
    s.push_fails(&sha(505), &[(TEST_1, "failure")]).await;
    s.finish().await;
}

#[tokio::test]
#[should_panic(expected = "the App logged 1 error(s)")]
async fn finish_fails_on_an_error_the_app_logged() {
    let s = Scenario::start().await;
    // As the App's own modules log a swallowed failure.
    tracing::error!(target: "autorevert::store::recorder", "a row was not recorded");
    s.finish().await;
}

#[tokio::test]
#[should_panic(expected = "must end with `finish().await`")]
async fn a_scenario_without_finish_fails() {
    let _s = Scenario::start().await;
}

#[tokio::test]
async fn an_error_the_scenario_provokes_on_purpose_is_allowed() {
    let mut s = Scenario::start().await;
    s.allow_errors();
    tracing::error!(target: "autorevert::store::recorder", "a row was not recorded");
    assert_eq!(s.errors().len(), 1, "{:?}", s.errors());
    assert!(s.errors()[0].contains("a row was not recorded"));
    s.finish().await;
}

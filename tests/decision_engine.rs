//! The decision engine inside the App, end to end: pushes and the runs of main's commits go
//! in as webhooks, the App keeps the signals, asks for restarts through GitHub (the fake,
//! whose dispatches become runs this test drives), decides, and records every decision in
//! the real ClickHouse.

mod common;

use autorevert::pipeline::decider::Settings;
use autorevert::pipeline::follow_ups::revert::Acting;
use autorevert::reverts::RevertMode;
use autorevert::store::signal_state::RevertActionRow;
use common::fake_github::{CommentAnswer, FakeGitHub, FakePull};
use common::payloads::push_body;
use common::{INSTALLATION, Options, REPO, TEST_1, TestApp, eventually, sha};
use std::collections::BTreeSet;
use std::time::Duration;

const PR: u64 = 123_456;
const NOTIFY_ISSUE: u64 = 163_650;

/// How each commit's `TEST_1` ends, on every run: commit 3 broke it.
fn truth(n: u32) -> &'static str {
    if n >= 3 { "failure" } else { "success" }
}

/// Commit `n` lands on main (after `n - 1`) and its trunk run ends as `truth(n)` says.
async fn land(app: &TestApp, n: u32) {
    land_at(app, n, chrono::Utc::now()).await
}

async fn land_at(app: &TestApp, n: u32, pushed_at: chrono::DateTime<chrono::Utc>) {
    let (parent, this) = (sha(n - 1), sha(n));
    let mut body: serde_json::Value =
        serde_json::from_slice(&push_body(&parent, &[&this])).unwrap();
    body["repository"]["pushed_at"] = serde_json::json!(pushed_at.timestamp());
    let body = serde_json::to_vec(&body).unwrap();
    let (status, _) = app.deliver("push", &body).await;
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

/// Commits 1-4 land, a second apart (job times are in seconds).
async fn land_all(app: &TestApp) {
    for n in 1..=4 {
        land(app, n).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
}

/// Runs the App's restarts as GitHub would, until it decides a revert (or a minute passes).
async fn drive_to_revert(app: &TestApp) -> bool {
    let mut done = BTreeSet::new();
    eventually(60, async || {
        app.settle().await;
        run_restarts(app, &mut done, 4).await;
        app.settle().await;
        revert_of(app).is_some()
    })
    .await
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

const TRUNK_YML: &str = "name: trunk\non:\n  push:\n    branches: [main]\n  workflow_dispatch:\n    inputs:\n      jobs-to-include:\n        type: string\n      tests-to-include:\n        type: string\n";

#[tokio::test]
async fn a_breaking_commit_is_found_from_restarts_the_app_asked_for() {
    let app = TestApp::with(Options::default()).await;
    app.github
        .add_file(".github/workflows/trunk.yml", TRUNK_YML);
    land_all(&app).await;
    let found = drive_to_revert(&app).await;
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
    // Every restart names the failing job's display name: the shard alone runs again.
    for d in app.github.dispatches() {
        assert_eq!(
            d.body["inputs"]["jobs-to-include"], "linux-jammy-py3.10-gcc11",
            "{:#}",
            d.body
        );
    }
    assert!(
        restarted.contains(&sha(2)),
        "the parent, the baseline: {restarted:?}"
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

/// The App in `mode`, GitHub knowing commit 3 as the merge of PR `PR`, landed.
async fn app_in(mode: RevertMode, edit: impl FnOnce(&mut Acting, &FakeGitHub)) -> TestApp {
    let store = common::fresh_store().await;
    app_over(store, mode, edit).await
}

async fn app_over(
    store: autorevert::store::Store,
    mode: RevertMode,
    edit: impl FnOnce(&mut Acting, &FakeGitHub),
) -> TestApp {
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    github.allow_comments(INSTALLATION);
    github.add_issue(NOTIFY_ISSUE);
    let message = format!(
        "[inductor] Fix a stride bug (#{PR})\n\nPull Request resolved: https://github.com/{REPO}/pull/{PR}\n"
    );
    github.add_commit(REPO, &sha(3), &message, &[PR]);
    github.add_pull(REPO, FakePull::landed(PR));
    let mut acting = Acting {
        mode,
        notify_issue: Some(NOTIFY_ISSUE),
        backoff: Duration::from_millis(50),
        ..Acting::default()
    };
    edit(&mut acting, &github);
    let o = Options {
        decide: Settings {
            acting,
            ..Settings::default()
        },
        ..Options::default()
    };
    TestApp::assemble(o, store, github, common::temp_dir()).await
}

/// Commits 1-4 land (3 breaks `TEST_1`), the App's restarts run, until it blames commit 3.
async fn breakage(app: &TestApp) {
    breakage_at(app, None).await
}

async fn breakage_at(app: &TestApp, pushed: Option<chrono::DateTime<chrono::Utc>>) {
    for n in 1..=4 {
        match pushed {
            Some(t) => land_at(app, n, t + chrono::Duration::minutes(i64::from(n))).await,
            None => land(app, n).await,
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let found = drive_to_revert(app).await;
    assert!(
        found,
        "no revert decided: {:#?}",
        app.engine.decider().decisions(REPO)
    );
}

/// What the App did about commit 3, once it is settled (not waiting for a retry).
async fn action_on_3(app: &TestApp) -> RevertActionRow {
    let mut last = None;
    let settled = eventually(20, async || {
        app.settle().await;
        last = app
            .engine
            .reverts()
            .actions()
            .into_iter()
            .find(|r| r.sha == sha(3));
        last.as_ref().is_some_and(|r| r.state != "intended")
    })
    .await;
    assert!(settled, "no settled action on commit 3: {last:#?}");
    last.unwrap()
}

#[tokio::test]
async fn the_revert_comment_goes_on_the_pr_once_even_when_the_events_come_again() {
    let app = app_in(RevertMode::Revert, |_, _| {}).await;
    breakage(&app).await;
    let row = action_on_3(&app).await;
    assert_eq!(
        (row.action.as_str(), row.state.as_str()),
        ("revert", "posted"),
        "{row:#?}"
    );
    assert_eq!(row.target, PR);
    let comments = app.github.comments(REPO, PR);
    assert_eq!(comments.len(), 1, "{comments:#?}");
    let body = &comments[0].body;
    assert!(body.starts_with("@pytorchbot revert -m \""), "{body}");
    assert!(body.contains(" -c autorevert"), "{body}");
    assert!(
        body.contains("/actions/runs/"),
        "links the failing job: {body}"
    );
    // Every event of the breakage again, newest first, as duplicates of new deliveries.
    for n in (1..=4).rev() {
        for r in app.github.dispatched_runs(&sha(n)) {
            for body in app.github.job_events(r.id, "completed").into_iter().rev() {
                app.deliver("workflow_job", &body).await;
            }
            app.deliver("workflow_run", &app.github.run_event(r.id, "completed"))
                .await;
        }
    }
    app.settle().await;
    assert_eq!(app.github.comments(REPO, PR).len(), 1, "posted once");
    assert!(app.github.comments(REPO, NOTIFY_ISSUE).is_empty());
    // Recorded in ClickHouse, and a restarted App does not post again.
    let rows = app
        .store
        .revert_actions(chrono::Utc::now() - chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(
        rows.iter().any(|r| r.sha == sha(3) && r.state == "posted"),
        "{rows:#?}"
    );
}

#[tokio::test]
async fn log_mode_posts_nothing_and_records_what_it_would_do() {
    let app = app_in(RevertMode::Log, |_, _| {}).await;
    breakage(&app).await;
    let row = action_on_3(&app).await;
    assert_eq!(row.action, "log");
    assert!(
        row.detail.contains(&format!("would revert PR #{PR}")),
        "{row:#?}"
    );
    assert!(app.github.comments(REPO, PR).is_empty());
    assert!(app.github.comments(REPO, NOTIFY_ISSUE).is_empty());
    assert!(app.github.requests_matching("POST", "/comments").is_empty());
}

#[tokio::test]
async fn a_comment_that_fails_is_tried_again_and_posted_once() {
    let app = app_in(RevertMode::Revert, |_, gh| {
        // A 502 (nothing stored), then a comment stored whose answer is lost.
        gh.script_comments([CommentAnswer::Fail(502), CommentAnswer::StoreThenFail(500)]);
    })
    .await;
    breakage(&app).await;
    let row = action_on_3(&app).await;
    assert_eq!(row.state, "posted", "{row:#?}");
    assert_eq!(app.github.comments(REPO, PR).len(), 1);
    assert_eq!(app.github.requests_matching("POST", "/comments").len(), 2);
}

/// The guard that turns the revert into a notify comment on the tracking issue.
async fn notified(app: &TestApp, reason: &str) {
    let row = action_on_3(app).await;
    assert_eq!(
        (row.action.as_str(), row.reason.as_str()),
        ("notify", reason),
        "{row:#?}"
    );
    assert_eq!(row.state, "posted");
    assert!(
        app.github.comments(REPO, PR).is_empty(),
        "no revert comment"
    );
    let notes = app.github.comments(REPO, NOTIFY_ISSUE);
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert!(
        !notes[0].body.contains("@pytorchbot revert"),
        "{}",
        notes[0].body
    );
}

#[tokio::test]
async fn a_pr_labelled_autorevert_disable_gets_a_notify_comment() {
    let app = app_in(RevertMode::Revert, |_, gh| {
        let mut pr = FakePull::landed(PR);
        pr.labels.push("autorevert: disable".into());
        gh.add_pull(REPO, pr);
    })
    .await;
    breakage(&app).await;
    notified(&app, "pr_disabled_label").await;
}

#[tokio::test]
async fn an_open_pr_and_a_revert_commit_get_notify_comments() {
    let app = app_in(RevertMode::Revert, |_, gh| {
        let mut pr = FakePull::landed(PR);
        pr.open = true;
        gh.add_pull(REPO, pr);
    })
    .await;
    breakage(&app).await;
    notified(&app, "pr_open").await;
    let app = app_in(RevertMode::Revert, |_, gh| {
        let message = format!("Revert \"[inductor] Fix a stride bug\"\n\nReverted https://github.com/{REPO}/pull/{PR} on behalf of someone");
        gh.add_commit(REPO, &sha(3), &message, &[]);
    })
    .await;
    breakage(&app).await;
    notified(&app, "commit_is_revert").await;
}

/// The guard that stops any comment.
async fn skipped(app: &TestApp, reason: &str) {
    let row = action_on_3(app).await;
    assert_eq!(
        (row.action.as_str(), row.reason.as_str()),
        ("skip", reason),
        "{row:#?}"
    );
    assert!(app.github.requests_matching("POST", "/comments").is_empty());
}

#[tokio::test]
async fn a_culprit_older_than_the_age_limit_is_left_alone() {
    let app = app_in(RevertMode::Revert, |_, _| {}).await;
    breakage_at(&app, Some(chrono::Utc::now() - chrono::Duration::hours(7))).await;
    skipped(&app, "too_old").await;
}

#[tokio::test]
async fn the_daily_cap_counts_the_reverts_posted_before_a_restart() {
    let store = common::fresh_store().await;
    let now = chrono::Utc::now();
    let earlier = RevertActionRow {
        repo: REPO.into(),
        sha: sha(90),
        action: "revert".into(),
        target: 7,
        reason: String::new(),
        signals: vec![],
        state: "posted".into(),
        comment_id: Some(1),
        comment_url: String::new(),
        detail: "revert PR #7".into(),
        decided_at: now - chrono::Duration::hours(2),
        updated_at: now - chrono::Duration::hours(2),
        version: 1,
    };
    let mut batch = autorevert::store::batch::Batch::default();
    batch.push(autorevert::store::batch::Entry::RevertAction(earlier));
    store
        .write(&mut batch)
        .await
        .expect("seeding revert_actions");
    let app = app_over(store, RevertMode::Revert, |a, _| a.max_per_day = 1).await;
    breakage(&app).await;
    skipped(&app, "daily_cap").await;
}

#[tokio::test]
async fn the_kill_switch_stops_a_revert_decided_while_it_is_on() {
    let app = app_in(RevertMode::Revert, |_, _| {}).await;
    land_all(&app).await;
    // The restarts are asked for; then someone turns the kill switch on.
    let asked = eventually(30, async || {
        app.settle().await;
        !app.github.dispatched_runs(&sha(3)).is_empty()
    })
    .await;
    assert!(asked);
    app.github.open_kill_switch(
        9001,
        "ci: disable-autorevert",
        "maintainer",
        "admin",
        "admin",
    );
    let on = eventually(20, async || {
        let s = app
            .engine
            .kill_switches()
            .state(REPO, Some(INSTALLATION))
            .await;
        s.hold_reason().is_some()
    })
    .await;
    assert!(on, "the kill switch is seen");
    let found = drive_to_revert(&app).await;
    assert!(found, "decided from the restarts already running");
    skipped(&app, "kill_switch").await;
}

/// The App with PyTorch's action log (`PYTORCH_EVENTS_TABLE`) made in its test database.
async fn app_with_pytorch_log(edit: impl FnOnce(&str)) -> (TestApp, String) {
    let store = common::fresh_store().await;
    let table = format!("{}.autorevert_events_v2", store.tables().database);
    store.create_pytorch_events_table(&table).await.unwrap();
    edit(&table);
    let t = table.clone();
    let app = app_over(store, RevertMode::Revert, move |a, _| {
        a.pytorch_events = Some(t);
    })
    .await;
    (app, table)
}

#[tokio::test]
async fn restarts_and_the_revert_go_into_pytorch_s_action_log() {
    let (app, table) = app_with_pytorch_log(|_| {}).await;
    breakage(&app).await;
    assert_eq!(action_on_3(&app).await.state, "posted");
    let rows = app.store.pytorch_events(&table, REPO).await.unwrap();
    let of = |action: &str, sha: &str| {
        rows.iter()
            .filter(|r| r.action().map(|a| a.as_str()) == Some(action) && r.sha() == sha)
            .count()
    };
    assert_eq!(of("revert", &sha(3)), 1, "{rows:#?}");
    assert!(
        of("restart", &sha(3)) >= 1,
        "the suspect's restart: {rows:#?}"
    );
    assert!(
        app.store
            .pytorch_reverts_of(&table, REPO, &sha(3))
            .await
            .unwrap(),
        "the Lambda's revert-once rule now sees it"
    );
}

#[tokio::test]
async fn a_commit_the_lambda_reverted_is_not_reverted_again() {
    let (app, _) = app_with_pytorch_log(|_| {}).await;
    let table = format!("{}.autorevert_events_v2", app.store.tables().database);
    let row = autorevert::store::pytorch_events::PytorchEventRow::revert(
        REPO,
        &sha(3),
        vec!["trunk".into()],
        vec!["trunk:test".into()],
        false,
        "the Lambda",
    )
    .unwrap();
    app.store.write_pytorch_event(&table, row).await.unwrap();
    breakage(&app).await;
    skipped(&app, "already_reverted").await;
}

#[tokio::test]
async fn a_restarted_app_keeps_the_window_and_never_posts_twice() {
    let app = app_in(RevertMode::Revert, |_, _| {}).await;
    breakage(&app).await;
    assert_eq!(action_on_3(&app).await.state, "posted");
    app.settle().await;
    let (store, github) = (app.store.clone(), app.github.clone());
    drop(app);
    // A new process over the same ClickHouse: the history is rebuilt from it.
    let o = Options {
        decide: Settings {
            acting: Acting {
                mode: RevertMode::Revert,
                ..Acting::default()
            },
            ..Settings::default()
        },
        ..Options::default()
    };
    let again = TestApp::assemble(o, store, github, common::temp_dir()).await;
    let history = again.engine.decider().history(REPO).expect("rebuilt");
    assert_eq!(history.commits().len(), 4);
    // The next event decides the same culprit again: nothing more is posted.
    let run = again.github.dispatched_runs(&sha(3))[0].id;
    for body in again.github.job_events(run, "completed") {
        again.deliver("workflow_job", &body).await;
    }
    again.settle().await;
    assert_eq!(
        revert_of(&again),
        Some(sha(3)),
        "decided again after the restart"
    );
    assert_eq!(again.github.comments(REPO, PR).len(), 1);
    assert_eq!(again.github.requests_matching("POST", "/comments").len(), 1);
}

/// The shipped binary: pushes to main are kept in ClickHouse by `serve` itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_main_s_commits_from_push_events() {
    let store = common::fresh_store().await;
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let mut bin = common::binary::Binary::new(&store, &github);
    bin.env.push(("REVERT_ACTION".into(), "log".into()));
    bin.env.push(("DECIDE_LOOKBACK_HOURS".into(), "16".into()));
    let mut child = bin.start();
    bin.wait_up().await;
    for n in 1..=3 {
        let body = push_body(&sha(n - 1), &[&sha(n)]);
        let status = bin.deliver_event("push", &format!("push-{n}"), body).await;
        assert_eq!(status, 202);
    }
    let kept = eventually(30, async || {
        let state = store
            .signal_state(chrono::Utc::now() - chrono::Duration::hours(1), None)
            .await
            .unwrap();
        state.commits.len() == 3
    })
    .await;
    child.kill().unwrap();
    let _ = child.wait();
    assert!(kept, "main_commits rows written by serve");
    let state = store
        .signal_state(chrono::Utc::now() - chrono::Duration::hours(1), None)
        .await
        .unwrap();
    // Rebuilt as the next start would: in landing order, whatever the seconds say.
    let rebuilt = autorevert::pipeline::decider::Decider::new(Settings::default());
    rebuilt.rebuild(&state, chrono::Utc::now());
    let history = rebuilt.history(REPO).expect("a history");
    let order: Vec<&str> = history.commits().newest_first().collect();
    assert_eq!(order, vec![sha(3), sha(2), sha(1)]);
}

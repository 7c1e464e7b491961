//! The kill switch under attack and faults: every page of labelled issues is read, and a
//! lookup that fails holds restarts (fails closed) with the reason recorded.

mod common;

use common::*;
use std::time::Duration;

const LABEL: &str = "ci: disable-autorevert";

/// The one `skipped` event of a held restart: its reason.
async fn held_because(app: &TestApp, sha: &str) -> String {
    assert!(app.github.dispatches().is_empty(), "a restart went out");
    let events = app.store.events_for(&TestApp::key(sha)).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, "skipped");
    events[0].message.clone()
}

#[tokio::test]
async fn a_writers_switch_pushed_off_the_first_page_still_holds_restarts() {
    let app = TestApp::start().await;
    // The oldest open labelled issue is the admin's; 100 newer ones come from users who may
    // not switch restarts off (anyone can open an issue from a template that labels it).
    app.github
        .open_kill_switch(1, LABEL, "oncall", "admin", "admin");
    for n in 2..=101 {
        let by = format!("drive-by-{n}");
        app.github.open_kill_switch(n, LABEL, &by, "read", "triage");
    }
    let sha = sha(1);
    app.deliver("workflow_run", &failure(&sha, 1)).await;
    app.settle().await;
    let reason = held_because(&app, &sha).await;
    assert!(
        reason.contains("kill switch on: issue #1 labelled by @oncall (admin)"),
        "{reason}"
    );
    let pages = app.github.requests_matching("GET", "/issues?labels=");
    assert!(
        pages.iter().any(|(p, _)| p.contains("page=2")),
        "the second page was read: {pages:?}"
    );
}

#[tokio::test]
async fn more_labelled_issues_than_are_read_hold_restarts() {
    let app = TestApp::start().await;
    // A flood past the pages read: a writer's switch could hide behind it.
    for n in 1..=1001 {
        app.github
            .open_kill_switch(n, LABEL, "drive-by", "read", "triage");
    }
    let sha = sha(2);
    app.deliver("workflow_run", &failure(&sha, 2)).await;
    app.settle().await;
    let reason = held_because(&app, &sha).await;
    assert!(
        reason.starts_with("kill switch state unknown: the lookup failed: listing the open issues"),
        "{reason}"
    );
    assert!(reason.contains("more than 10 pages"), "{reason}");
}

#[tokio::test]
async fn a_permission_lookup_that_fails_holds_restarts_until_it_succeeds() {
    let app = TestApp::start().await;
    // One labeller's permission cannot be read (GitHub answers 500, retried, then given
    // up); another issue's labeller is read fine and may not switch restarts off.
    app.github
        .open_kill_switch(1, LABEL, "oncall", "write", "maintain");
    app.github.fail_permission("oncall", 500);
    app.github
        .open_kill_switch(2, LABEL, "drive-by", "read", "triage");
    let sha1 = sha(3);
    app.deliver("workflow_run", &failure(&sha1, 3)).await;
    app.settle().await;
    let reason = held_because(&app, &sha1).await;
    assert!(
        reason.starts_with("kill switch state unknown: the lookup failed:"),
        "{reason}"
    );
    assert!(
        reason.contains("the permission of @oncall, who labelled issue #1"),
        "{reason}"
    );
    // GitHub answers again: the state is known (off, the writer closed the issue), and
    // restarts resume.
    app.github.state.lock().unwrap().failing_permissions.clear();
    app.github.close_issue(1);
    let sha2 = sha(4);
    app.deliver("workflow_run", &failure(&sha2, 4)).await;
    app.settle().await;
    assert_eq!(app.github.dispatches().len(), 1);
}

#[tokio::test]
async fn a_failed_lookup_still_reports_a_writers_switch_found_elsewhere() {
    let app = TestApp::start().await;
    app.github
        .open_kill_switch(1, LABEL, "oncall", "write", "maintain");
    app.github
        .open_kill_switch(2, LABEL, "renamed-user", "read", "read");
    app.github.fail_permission("renamed-user", 404);
    let sha = sha(5);
    app.deliver("workflow_run", &failure(&sha, 5)).await;
    app.settle().await;
    let reason = held_because(&app, &sha).await;
    assert!(
        reason.contains("kill switch on: issue #1 labelled by @oncall (maintain)"),
        "{reason}"
    );
}

#[tokio::test]
async fn decisions_read_the_last_state_the_refresher_found() {
    let app = TestApp::with(Options {
        kill_switch_ttl: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    let lookups = || app.github.requests_matching("GET", "/issues?labels=").len();
    // The first possible restart starts the refresher and waits for its first lookup; the
    // others read what it found. It looks again every second, not once per decision.
    let start = tokio::time::Instant::now();
    for n in 6..12u32 {
        app.deliver("workflow_run", &failure(&sha(n), n.into()))
            .await;
    }
    app.settle().await;
    assert_eq!(app.github.dispatches().len(), 6);
    let looked = lookups();
    let elapsed = start.elapsed();
    assert!(
        looked <= 1 + elapsed.as_secs() as usize,
        "{looked} lookups for 6 decisions in {elapsed:?}"
    );
    // A writer switches restarts off; the refresher sees it within its interval, with no
    // decision asking. (Two lookups later, one that started after the issue was opened has
    // finished.)
    app.github
        .open_kill_switch(1, LABEL, "oncall", "write", "maintain");
    let seen = lookups() + 2;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while lookups() < seen {
        assert!(tokio::time::Instant::now() < deadline, "no refresh");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sha = sha(12);
    app.deliver("workflow_run", &failure(&sha, 12)).await;
    app.settle().await;
    assert_eq!(app.github.dispatches().len(), 6, "held");
    let events = app.store.events_for(&TestApp::key(&sha)).await.unwrap();
    assert_eq!(events[0].kind, "skipped");
    assert!(
        events[0].message.contains("kill switch on: issue #1"),
        "{}",
        events[0].message
    );
}

//! GitHub's clock and ours: the App reads GitHub's `Date` headers, and compares its own
//! times with GitHub's on GitHub's clock.

mod common;

use autorevert::restart::Status;
use common::fake_github::DispatchAnswer;
use common::*;

#[tokio::test]
async fn a_clock_three_minutes_fast_still_adopts_the_run_github_created() {
    let app = TestApp::start().await;
    // GitHub's clock is 3 minutes behind the App's: the App's runs 3 minutes fast. The run
    // GitHub creates is then stamped 3 minutes before the App's `requested_at`, beyond the
    // 120 s slack of the adopt rule unless the offset is taken into account.
    app.github.set_clock_skew(chrono::Duration::minutes(-3));
    let sha = sha(1);
    app.github.script([DispatchAnswer::FailAfterCreate(502)]);
    app.deliver("workflow_run", &failure(&sha, 1)).await;
    app.settle().await;
    let posts = app.github.requests_matching("POST", "/dispatches");
    assert_eq!(posts.len(), 1, "no second POST");
    let created = app.github.dispatched_runs(&sha);
    assert_eq!(created.len(), 1);
    let r = &app.stored_restarts(&sha).await[0];
    assert_eq!(r.status, Status::Dispatched);
    assert_eq!(r.restart_run_id, Some(created[0].id));
    assert!(r.times.requested_at - created[0].created_at > chrono::Duration::seconds(170));
    assert!(
        app.event_kinds(&sha)
            .await
            .contains(&"run_found".to_string())
    );
    let offset = app.client.clock_offset().num_seconds();
    assert!((-182..=-178).contains(&offset), "offset {offset} s");
}

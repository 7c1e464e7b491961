//! Nothing lost, nothing doubled: the delivery log, crashes, ClickHouse outages.

mod common;

use autorevert::intake::delivery_log::DeliveryLog as Spool;
use axum::http::StatusCode;
use common::binary::Binary;
use common::*;
use std::time::Duration;

#[tokio::test]
async fn a_delivery_answered_before_a_crash_is_handled_once_after_the_restart() {
    // The process wrote the delivery to its log, answered 202, and died before handling it.
    let dir = temp_dir();
    let sha = sha(100);
    {
        let (spool, _) = Spool::open(&dir).unwrap();
        let body = failure(&sha, 100);
        let event = autorevert::intake::events::parse("workflow_run", &body).unwrap();
        spool
            .append(
                "answered-then-crashed",
                "workflow_run",
                1_700_000_000_000,
                body.len() as u32,
                &event,
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let store = fresh_store().await;
    let github = fake_github::FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let app = TestApp::assemble(Options::default(), store, github, dir.clone()).await;
    assert_eq!(app.recovered, 1);
    app.settle().await;
    assert_eq!(app.github.dispatches().len(), 1);
    assert!(
        app.store
            .delivery("answered-then-crashed")
            .await
            .unwrap()
            .is_some()
    );
    // GitHub redelivering it now is recognised.
    let (s, j) = app
        .deliver_as("workflow_run", "answered-then-crashed", &failure(&sha, 100))
        .await;
    assert_eq!(
        (s, j["status"].as_str()),
        (StatusCode::ACCEPTED, Some("duplicate"))
    );
    // And once handled, the next start has nothing left to do.
    let again = TestApp::assemble(
        Options::default(),
        app.store.clone(),
        app.github.clone(),
        dir,
    )
    .await;
    assert_eq!(again.recovered, 0);
    again.settle().await;
    assert_eq!(again.github.dispatches().len(), 1);
}

/// An App whose ClickHouse is reached through an `Outage` proxy, every call bounded by
/// `timeout`; returns it with the direct store (to look at what was written) and the proxy.
async fn behind_outage(
    o: Options,
    timeout: Duration,
) -> (TestApp, autorevert::store::Store, Outage) {
    let store = fresh_store().await;
    let outage = Outage::start(&clickhouse_url()).await;
    let github = fake_github::FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let via = store_via_within(&store, &outage.url, timeout);
    let app = TestApp::assemble(o, via, github, temp_dir()).await;
    (app, store, outage)
}

/// Leaves the fault in place for 2.5 s more (another write attempt meets it), then brings
/// ClickHouse back and waits for everything held to be written.
async fn up_again_then_settle(app: &TestApp, outage: &Outage) {
    tokio::time::sleep(Duration::from_millis(2500)).await;
    outage.up();
    tokio::time::timeout(Duration::from_secs(45), app.settle())
        .await
        .expect("rows held during the fault are written once ClickHouse answers");
}

#[tokio::test]
async fn clickhouse_down_then_back_every_delivery_is_handled_once() {
    let (app, store, outage) = behind_outage(Options::default(), Duration::from_secs(30)).await;
    outage.down();
    let shas: Vec<String> = (0..3).map(|i| sha(110 + i)).collect();
    for (i, s) in shas.iter().enumerate() {
        let (status, _) = app
            .deliver_as(
                "workflow_run",
                &format!("down-{i}"),
                &failure(s, 110 + i as u64),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "intake does not need ClickHouse"
        );
    }
    // The same failure delivered again while down (a new delivery id): still one restart.
    app.deliver_as("workflow_run", "down-again", &failure(&shas[0], 110))
        .await;
    // Restarts do not wait for ClickHouse: their intent is in the delivery log.
    for _ in 0..100 {
        if app.github.dispatches().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.github.dispatches().len(),
        3,
        "one dispatch per commit while ClickHouse is down"
    );
    outage.up();
    app.settle().await;
    assert_eq!(
        app.github.dispatches().len(),
        3,
        "{:?}",
        app.github.dispatches()
    );
    for s in &shas {
        assert_eq!(store.restarts_for(&TestApp::key(s)).await.unwrap().len(), 1);
    }
    for id in ["down-0", "down-1", "down-2", "down-again"] {
        assert!(store.delivery(id).await.unwrap().is_some(), "{id} lost");
    }
}

/// ClickHouse stops answering without closing its connections (a partition, a stuck
/// server): every call gives up after the timeout with a clear error, restarts still go out,
/// and once ClickHouse answers again the held rows are written. Without the timeout the
/// recorder would wait on the dead connection until TCP keepalive gives up (minutes).
#[tokio::test]
async fn a_clickhouse_that_stops_answering_does_not_hold_up_the_pipeline() {
    let (app, store, outage) = behind_outage(Options::default(), Duration::from_secs(1)).await;
    outage.hang();
    let started = std::time::Instant::now();
    let err = app.store.delivery("any").await.unwrap_err();
    assert!(
        format!("{err:#}").contains("did not answer within 1 s"),
        "{err:#}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let sha = sha(120);
    for i in 0..5 {
        let body = job_payload("queued", 1200 + i, 120, &sha, "main", "build", None);
        let (status, _) = app
            .deliver_as("workflow_job", &format!("hung-{i}"), &body)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (status, _) = app
        .deliver_as("workflow_run", "hung-failure", &failure(&sha, 120))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    for _ in 0..100 {
        if !app.github.dispatches().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.github.dispatches().len(),
        1,
        "the restart waits on nothing"
    );
    // The recorder is inside an INSERT on a dead connection meanwhile.
    up_again_then_settle(&app, &outage).await;
    for i in 0..5 {
        let id = format!("hung-{i}");
        assert!(store.delivery(&id).await.unwrap().is_some(), "{id} lost");
    }
    assert_eq!(
        store.restarts_for(&TestApp::key(&sha)).await.unwrap().len(),
        1
    );
    assert_eq!(app.github.dispatches().len(), 1);
}

/// An INSERT that ClickHouse wrote but whose answer never came back is sent again as the
/// same block, and written once: no event row twice (`events` is append-only, nothing
/// collapses repeats there later).
#[tokio::test]
async fn an_insert_written_but_unanswered_is_not_written_twice() {
    let options = Options {
        confirm_window: Duration::from_secs(2),
        ..Options::default()
    };
    let (app, store, outage) = behind_outage(options, Duration::from_secs(1)).await;
    // Every table written once while all is well (the client reads each schema once).
    app.deliver("workflow_run", &failure(&sha(131), 131)).await;
    app.settle().await;
    outage.lose_answers();
    let sha = sha(130);
    let key = TestApp::key(&sha);
    let (status, _) = app
        .deliver_as("workflow_run", "answer-lost", &failure(&sha, 130))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // ClickHouse has the rows although the App never heard so.
    let mut written = 0;
    for _ in 0..200 {
        written = store.events_for(&key).await.unwrap().len();
        if written > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        written > 0,
        "no INSERT reached ClickHouse while answers were lost"
    );
    // At least one more try meets lost answers meanwhile.
    up_again_then_settle(&app, &outage).await;
    let events = store.events_for(&key).await.unwrap();
    let mut ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    ids.sort();
    let all = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), all, "event rows written twice: {events:?}");
    assert!(all >= written);
    assert!(store.delivery("answer-lost").await.unwrap().is_some());
}

/// The real binary, serving on a free port against the test ClickHouse and a fake GitHub.
async fn wait_for_post(github: &fake_github::FakeGitHub) {
    for _ in 0..200 {
        if !github.requests_matching("POST", "/dispatches").is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no dispatch POST reached GitHub");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_dispatching_then_restarted_makes_one_run() {
    let store = fresh_store().await;
    let github = fake_github::FakeGitHub::start(INSTALLATION, &[REPO]).await;
    // GitHub holds the dispatch open: the process is killed with the POST in flight.
    github.script([fake_github::DispatchAnswer::Slow(Duration::from_secs(30))]);
    let bin = Binary::new(&store, &github);
    let mut first = bin.start();
    bin.wait_up().await;
    assert_eq!(bin.deliver("kill-9", failure(&sha(120), 120)).await, 202);
    wait_for_post(&github).await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        github.state.lock().unwrap().runs.is_empty(),
        "the held POST created nothing"
    );

    let mut second = bin.start();
    bin.wait_up().await;
    for _ in 0..200 {
        if !github.state.lock().unwrap().runs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(
        github.state.lock().unwrap().runs.len(),
        1,
        "exactly one run"
    );
    let lookups = github.requests_matching("GET", "&branch=trunk%2F");
    assert!(
        !lookups.is_empty(),
        "the restarted App listed runs before sending again"
    );
}

#[tokio::test]
async fn the_sweep_redelivers_failed_deliveries_the_app_never_got_once_each() {
    use autorevert::background::redeliver::sweep_once;
    let app = TestApp::start().await;
    // Something the App did receive (GitHub may still list an earlier attempt as failed).
    app.deliver_as("workflow_run", "got-it", &failure(&sha(150), 150))
        .await;
    app.settle().await;
    let now = chrono::Utc::now();
    {
        let mut s = app.github.state.lock().unwrap();
        for i in 0..130u64 {
            // 130 failures the App never received: more than a page, more than a pass.
            s.hook_deliveries.push((
                1000 + i,
                format!("lost-{i}"),
                now - chrono::Duration::minutes(i as i64),
                502,
            ));
        }
        s.hook_deliveries.push((2000, "got-it".into(), now, 502));
        s.hook_deliveries.push((2001, "fine".into(), now, 200));
        s.hook_deliveries
            .push((2002, "too-old".into(), now - chrono::Duration::days(4), 502));
    }
    let gh = app.client.clone();
    let state = temp_dir().join("redelivery-state.json");
    let first = sweep_once(&gh, &app.intake, Some(&app.store), &state, 100, now)
        .await
        .unwrap();
    assert_eq!(first.failed_seen, 131, "{first:?}"); // 130 lost + got-it, within 3 days
    assert_eq!(first.redelivered, 100, "bounded per pass");
    let second = sweep_once(&gh, &app.intake, Some(&app.store), &state, 100, now)
        .await
        .unwrap();
    assert_eq!(second.redelivered, 30, "the rest, none twice: {second:?}");
    assert_eq!(
        second.already_received, 1,
        "got-it reached us: not redelivered"
    );
    let third = sweep_once(&gh, &app.intake, Some(&app.store), &state, 100, now)
        .await
        .unwrap();
    assert_eq!(third.redelivered, 0);
    let asked = app.github.state.lock().unwrap().redeliveries.clone();
    assert_eq!(asked.len(), 130);
    let unique: std::collections::HashSet<_> = asked.iter().collect();
    assert_eq!(unique.len(), 130);
    assert!(!asked.contains(&2000) && !asked.contains(&2001) && !asked.contains(&2002));
    // The oldest first: they leave GitHub's window first.
    assert_eq!(asked[0], 1129);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_work_in_hand_then_exits() {
    let store = fresh_store().await;
    let github = fake_github::FakeGitHub::start(INSTALLATION, &[REPO]).await;
    github.script([fake_github::DispatchAnswer::Slow(Duration::from_secs(2))]);
    let bin = Binary::new(&store, &github);
    let mut app = bin.start();
    bin.wait_up().await;
    assert_eq!(bin.deliver("term", failure(&sha(121), 121)).await, 202);
    wait_for_post(&github).await;
    let term = std::process::Command::new("kill")
        .args(["-TERM", &app.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = app.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        github.dispatches().len(),
        1,
        "the dispatch in hand was finished"
    );
    assert_eq!(github.state.lock().unwrap().runs.len(), 1);
    // Its delivery was acknowledged: the next start has nothing to redo.
    let mut again = bin.start();
    bin.wait_up().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    again.kill().unwrap();
    again.wait().unwrap();
    assert_eq!(github.requests_matching("POST", "/dispatches").len(), 1);
}

#[tokio::test]
async fn crash_while_clickhouse_is_down_after_the_dispatch_does_not_dispatch_again() {
    let store = fresh_store().await;
    let github = fake_github::FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let dir = temp_dir();
    let sha = sha(115);
    {
        // The first process never reaches ClickHouse: it dispatches, then "dies" with the
        // restart's rows unwritten and its delivery unacknowledged.
        let dead_end = Outage::start(&clickhouse_url()).await;
        let first = TestApp::assemble(
            Options::default(),
            store_via(&store, &dead_end.url),
            github.clone(),
            dir.clone(),
        )
        .await;
        dead_end.down();
        first
            .deliver_as("workflow_run", "before-crash", &failure(&sha, 115))
            .await;
        for _ in 0..100 {
            if !github.dispatches().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(github.dispatches().len(), 1);
        first.pipeline.shutdown(Duration::from_millis(200)).await;
    }
    let run = github.state.lock().unwrap().runs[0].id;
    // The next process replays the delivery: it finds the run instead of sending again.
    let second = TestApp::assemble(Options::default(), store.clone(), github.clone(), dir).await;
    assert_eq!(second.recovered, 1);
    second.settle().await;
    assert_eq!(
        github.requests_matching("POST", "/dispatches").len(),
        1,
        "no second POST"
    );
    let restarts = store.restarts_for(&TestApp::key(&sha)).await.unwrap();
    assert_eq!(restarts.len(), 1);
    assert_eq!(restarts[0].restart_run_id, Some(run));
    assert!(
        second
            .event_kinds(&sha)
            .await
            .contains(&"dispatch_replayed".to_string())
    );
}

/// In an outage longer than the recorder's buffer, rows are given up, and with them the
/// acknowledgement of every delivery logged until then (any of them may have had rows
/// among those given up): they stay in the delivery log for the next start, even though a
/// later write (ClickHouse back) succeeds.
#[tokio::test]
async fn rows_given_up_in_a_long_outage_leave_their_deliveries_in_the_log() {
    use autorevert::store::recorder::{Entry, Recorder};
    use autorevert::store::rows::DeliveryRow;
    let store = fresh_store().await;
    let outage = Outage::start(&clickhouse_url()).await;
    let dir = temp_dir();
    let (spool, _) = Spool::open(&dir).unwrap();
    let recorder = Recorder::start(
        store_via(&store, &outage.url),
        Some(spool.clone()),
        Duration::from_secs(3600), // only explicit flushes write
        5000,
        2, // a buffer of two rows: the third is one too many
    );
    let ping = autorevert::intake::events::Event::Ping { zen: "z".into() };
    let row = |id: &str| DeliveryRow {
        delivery_id: id.into(),
        event: "ping".into(),
        action: String::new(),
        repo: String::new(),
        head_sha: String::new(),
        installation_id: None,
        received_at: chrono::Utc::now(),
        processed_at: chrono::Utc::now(),
        decision: "ignored: ping".into(),
        body_bytes: 2,
    };
    outage.down();
    for id in ["lost-a", "lost-b", "lost-c"] {
        let seq = spool.append(id, "ping", 1, 2, &ping).await.unwrap();
        recorder.add(Entry::Delivery(row(id))).await;
        recorder.add(Entry::Ack(seq)).await;
    }
    assert!(!recorder.flush().await, "ClickHouse is down");
    outage.up();
    let seq = spool.append("kept", "ping", 1, 2, &ping).await.unwrap();
    recorder.add(Entry::Delivery(row("kept"))).await;
    recorder.add(Entry::Ack(seq)).await;
    assert!(recorder.flush().await, "ClickHouse is back");
    assert!(store.delivery("kept").await.unwrap().is_some());
    drop(recorder);
    drop(spool);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, recovered) = Spool::open(&dir).unwrap();
    let pending: Vec<&str> = recovered.pending.iter().map(|d| d.id.as_str()).collect();
    // Three rows do not fit a buffer of two: some were given up, and after that no delivery
    // logged before it is marked done (its rows may have been among them): all three are
    // handled again at the next start, while one logged afterwards is done as usual.
    assert!(!pending.contains(&"kept"));
    assert_eq!(pending, ["lost-a", "lost-b", "lost-c"]);
    assert!(store.delivery("lost-a").await.unwrap().is_none());
}

/// One replica is the rule (the ledger lives in the process). A second instance on the same
/// database is noticed within a few heartbeats and shown on `/healthz`; one that stopped
/// beating is forgotten.
#[tokio::test]
async fn a_second_instance_on_the_same_database_is_noticed() {
    use autorevert::background::heartbeat::{beat_once, me};
    let store = fresh_store().await;
    let (mut a, mut b) = (me(), me());
    let window = Duration::from_secs(60);
    assert!(
        beat_once(&store, &mut a, window).await.unwrap().is_empty(),
        "alone at first"
    );
    let seen = beat_once(&store, &mut b, window).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].instance_id.as_str(), seen[0].pid),
        (a.instance_id.as_str(), a.pid)
    );
    let seen = beat_once(&store, &mut a, window).await.unwrap();
    assert_eq!(seen[0].instance_id, b.instance_id);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        beat_once(&store, &mut a, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty(),
        "b stopped beating"
    );

    // An instance that stops cleanly (as `serve` does at SIGTERM) is not taken for a second
    // instance by the one that starts next. (A short window: `a` and `b` are out of it.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let window = Duration::from_millis(250);
    let running = autorevert::background::heartbeat::Heartbeat::new(
        store.clone(),
        me(),
        Duration::from_millis(100),
    );
    let mut tasks = autorevert::background::Tasks::default();
    running.start(&mut tasks);
    let mut next = me();
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = beat_once(&store, &mut next, window).await.unwrap();
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.len(), 1, "the running one is seen");
    tasks.stop(Duration::from_secs(1)).await;
    running.record_stop().await;
    assert!(
        beat_once(&store, &mut next, window)
            .await
            .unwrap()
            .is_empty(),
        "stopped cleanly"
    );

    // Two Apps over one database, beating as `serve` does: each lists the other (and,
    // once their window has passed, not the two beaten by hand above).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let github = fake_github::FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let options = || Options {
        heartbeat: Some(Duration::from_millis(100)),
        ..Options::default()
    };
    let first = TestApp::assemble(options(), store.clone(), github.clone(), temp_dir()).await;
    let second = TestApp::assemble(options(), store.clone(), github, temp_dir()).await;
    let mut others = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        others = first.health().await["other_instances"]
            .as_array()
            .unwrap()
            .clone();
        if !others.is_empty() {
            break;
        }
    }
    assert_eq!(others.len(), 1, "{others:?}");
    assert!(
        !second.health().await["other_instances"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

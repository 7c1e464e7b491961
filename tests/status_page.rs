//! The status page (`/`, `/restarts/{id}`) and `/api/` against a ledger written straight into
//! a fresh ClickHouse database: restarts in every state and with every verdict, their
//! per-job evidence and event log, a hostile reason, and pages of them. The rows are written
//! after the App started, so only ClickHouse has them (not the in-memory ledger): what the
//! pages show was read from ClickHouse. One test renders the page in headless Chromium.

mod common;

use autorevert::restart::outcome::JobVerdict;
use autorevert::restart::{CheckRun, Restart, RestartKey, Status, Timeline, Verdict};
use autorevert::store::Store;
use autorevert::store::batch::{Batch, Entry};
use autorevert::store::rows::{EventRow, RestartRow, VerdictRow};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Duration, Utc};
use common::fake_github::FakeGitHub;
use common::trunk_history::{SIGNAL, broken_trunk, landed, posted_revert, revert_comment_url};
use common::*;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const HOSTILE: &str = "dispatch refused: <script>alert('x')</script> & \"more\"";
const SECRET_DELIVERY: &str = "delivery-5f1c0a2e-never-shown";
const SECRET_INSTALLATION: u64 = 987_654_321;

/// (status, outcome, workflow) of the restarts in every state, newest first.
const STATES: [(Status, Option<Verdict>, &str); 10] = [
    (Status::Dispatching, None, "trunk"),
    (Status::DryRun, None, "trunk"),
    (Status::Dispatched, None, "inductor"),
    (Status::DispatchFailed, None, "trunk"),
    (Status::DispatchUnknown, None, "trunk"),
    (Status::Confirmed, None, "inductor"),
    (Status::Unconfirmed, None, "trunk"),
    (Status::Completed, Some(Verdict::Reproduced), "trunk"),
    (Status::Completed, Some(Verdict::NotReproduced), "inductor"),
    (Status::Completed, Some(Verdict::Inconclusive), "trunk"),
];

/// A commit sha whose first ten characters differ from commit to commit.
fn commit(n: u32) -> String {
    format!(
        "{:010x}{:030x}",
        u64::from(n).wrapping_mul(0x9e37_79b9) % (1 << 40),
        n
    )
}

fn restart(n: u32, status: Status, outcome: Option<Verdict>, workflow: &str) -> Restart {
    let sha = commit(n);
    let failed: DateTime<Utc> = Utc::now() - Duration::minutes(i64::from(n) * 10);
    use Status::*;
    let dispatched = matches!(status, Dispatched | Confirmed | Unconfirmed | Completed);
    let confirmed = matches!(status, Confirmed | Completed);
    let reached = |yes: bool, after: i64| yes.then(|| failed + Duration::seconds(after));
    let run = dispatched.then_some(9_000_000 + u64::from(n));
    Restart {
        restart_id: format!("{REPO}/{workflow}/{sha}/1"),
        key: RestartKey {
            repo: REPO.into(),
            workflow: workflow.into(),
            head_sha: sha,
        },
        attempt: 1,
        workflow_file: format!("{workflow}.yml"),
        original_run_id: 1_000_000 + u64::from(n),
        installation_id: Some(SECRET_INSTALLATION),
        status,
        dispatch_attempts: 1,
        restart_run_id: run,
        run_url: String::new(),
        dry_run: status == Status::DryRun,
        times: Timeline {
            requested_at: failed,
            dispatched_at: reached(dispatched, 2),
            confirmed_at: reached(confirmed, 250),
            completed_at: reached(status == Completed, 7_500),
        },
        outcome,
        reason: match status {
            DispatchFailed => HOSTILE.into(),
            _ => format!("run {} concluded failure", 1_000_000 + n),
        },
        delivery_id: SECRET_DELIVERY.into(),
        version: autorevert::restart::next_version(),
        check: CheckRun {
            wanted: true,
            id: run.map(|_| check_run_id(n)),
            url: run.map(|_| check_run_url(n)).unwrap_or_default(),
            ..CheckRun::default()
        },
        scope: None,
        asked_jobs: Vec::new(),
    }
}

fn check_run_id(n: u32) -> u64 {
    40_000_000 + u64::from(n)
}

/// The `autorevert` check run of restart `n` on GitHub (dispatched ones have one).
fn check_run_url(n: u32) -> String {
    format!("https://github.com/{REPO}/runs/{}", check_run_id(n))
}

/// The restarts in every state (numbers 1 to 10, 1 the newest), with the per-job evidence
/// of the completed ones, an event log, an older version of the reproduced restart (the
/// ledger's FINAL must show the newer), and `filler` more older completed restarts.
async fn ledger(store: &Store, filler: u32) -> Vec<Restart> {
    let mut b = Batch::default();
    let mut all = Vec::new();
    for (i, (status, outcome, workflow)) in STATES.iter().enumerate() {
        let r = restart(i as u32 + 1, *status, *outcome, workflow);
        if let Some(v) = outcome {
            for (job, verdict, detail) in [
                ("linux-jammy / test (default)", *v, "failed again"),
                ("linux-jammy / build", Verdict::NotReproduced, "passed"),
            ] {
                let jv = JobVerdict {
                    job: job.into(),
                    verdict,
                    detail: detail.into(),
                };
                b.push(Entry::Verdict(VerdictRow::new(&r, &jv)));
            }
        }
        if *status == Status::Completed {
            let mut old = restart(i as u32 + 1, Status::Dispatched, None, workflow);
            old.version = 1;
            b.push(Entry::Restart(RestartRow::from(&old)));
        }
        b.push(Entry::Event(event(
            &r,
            "dispatched",
            "dispatched trunk.yml",
            3,
        )));
        b.push(Entry::Event(event(&r, "confirmed", "jobs visible", 250)));
        b.push(Entry::Restart(RestartRow::from(&r)));
        all.push(r);
    }
    for n in 0..filler {
        let r = restart(
            100 + n,
            Status::Completed,
            Some(Verdict::NotReproduced),
            "trunk",
        );
        b.push(Entry::Restart(RestartRow::from(&r)));
        all.push(r);
    }
    store.write(&mut b).await.expect("writing the ledger");
    all
}

fn event(r: &Restart, kind: &str, message: &str, after_s: i64) -> EventRow {
    let mut e = EventRow::skipped(&r.key, SECRET_DELIVERY, message.into());
    e.ts = r.times.requested_at + Duration::seconds(after_s);
    e.kind = kind.into();
    e.restart_id = r.restart_id.clone();
    e
}

/// GET `uri` from the router: status, content type, body.
async fn get(app: &TestApp, uri: &str) -> (StatusCode, String, String) {
    let resp = app
        .router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ctype, String::from_utf8(body.to_vec()).unwrap())
}

async fn page(app: &TestApp, uri: &str) -> String {
    let (status, ctype, body) = get(app, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    assert!(ctype.starts_with("text/html"), "{uri}: {ctype}");
    body
}

async fn api(app: &TestApp, uri: &str) -> Value {
    let (status, ctype, body) = get(app, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    assert_eq!(ctype, "application/json", "{uri}");
    serde_json::from_str(&body).unwrap()
}

/// The restart rows of a listing page.
fn rows(html: &str) -> usize {
    html.matches("<tr class=\"restart\">").count()
}

/// Statuses of the restarts a JSON listing holds, in order.
fn statuses(v: &Value) -> Vec<String> {
    v["restarts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_status_page_lists_restarts_in_every_state_linked_to_github() {
    let app = TestApp::start().await;
    let all = ledger(&app.store, 0).await;
    let html = page(&app, "/").await;
    assert_eq!(rows(&html), 10);
    assert!(html.contains("10 restarts"), "{html}");
    for (status, outcome, _) in STATES {
        let shown = status.to_string().replace('_', " ");
        assert!(
            html.contains(&format!("badge s-{status}\">{shown}<")),
            "{status}"
        );
        if let Some(v) = outcome {
            let shown = v.to_string().replace('_', " ");
            assert!(html.contains(&format!("badge o-{v}\">{shown}<")), "{v}");
        }
    }
    let done = &all[7]; // completed, reproduced
    for link in [
        format!("https://github.com/{REPO}/commit/{}", done.key.head_sha),
        format!(
            "https://github.com/{REPO}/actions/runs/{}",
            done.original_run_id
        ),
        format!(
            "https://github.com/{REPO}/actions/runs/{}",
            done.restart_run_id.unwrap()
        ),
        format!("/restarts/{}", done.restart_id),
    ] {
        assert!(html.contains(&format!("href=\"{link}\"")), "{link}");
    }
    // Times from the failure: dispatch +2s, confirmation +4m 10s, completion +2h 5m.
    for t in ["+2s", "+4m 10s", "+2h 5m"] {
        assert!(html.contains(t), "{t}");
    }
    // Newest first: restart 1 (dispatching) before restart 10.
    let first = html.find(&all[0].key.head_sha[..10]).unwrap();
    let last = html.find(&all[9].key.head_sha[..10]).unwrap();
    assert!(first < last);
    // The FINAL version of the reproduced restart, not its older `dispatched` one.
    let v = api(&app, "/api/restarts").await;
    assert_eq!(v["total"], 10);
    let states: Vec<String> = STATES.iter().map(|s| s.0.to_string()).collect();
    assert_eq!(statuses(&v), states);
    assert!(html.contains("Kill switch:"));
    assert!(html.contains("No restart held in the last 24 h"), "{html}");
    // No failure reached a decision in this App: the switch was not looked up yet.
    assert!(
        html.contains("pytorch/pytorch: not looked up yet"),
        "{html}"
    );
    assert_eq!(
        v["kill_switch"]["repos"][0]["state"], "not_looked_up",
        "{v}"
    );
}

#[tokio::test]
async fn filters_by_workflow_and_outcome() {
    let app = TestApp::start().await;
    ledger(&app.store, 0).await;
    let html = page(&app, "/?workflow=inductor&outcome=").await;
    assert_eq!(rows(&html), 3);
    assert!(
        html.contains("<option value=\"inductor\" selected>"),
        "{html}"
    );
    assert!(html.contains("<option value=\"trunk\">trunk</option>"));
    let html = page(&app, "/?outcome=reproduced").await;
    assert_eq!(rows(&html), 1);
    let v = api(&app, "/api/restarts?workflow=trunk&outcome=pending").await;
    assert_eq!(
        statuses(&v),
        [
            "dispatching",
            "dry_run",
            "dispatch_failed",
            "dispatch_unknown",
            "unconfirmed"
        ]
    );
    assert_eq!(v["filter"]["workflow"], "trunk");
    assert_eq!(v["filter"]["outcome"], "pending");
    let v = api(
        &app,
        "/api/restarts?workflow=inductor&outcome=not_reproduced",
    )
    .await;
    assert_eq!(v["total"], 1);
    assert_eq!(v["restarts"][0]["outcome"], "not_reproduced");
    let v = api(&app, "/api/restarts?workflow=nightly").await;
    assert_eq!(v["total"], 0);
    assert!(
        page(&app, "/?workflow=nightly")
            .await
            .contains("No restarts match")
    );
    for bad in ["/?outcome=maybe", "/?page=0", "/api/restarts?page=x"] {
        let (status, _, _) = get(&app, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn pages_hold_fifty_restarts_newest_first() {
    let app = TestApp::start().await;
    let all = ledger(&app.store, 110).await; // 120 restarts: pages of 50, 50, 20
    let first = page(&app, "/").await;
    assert_eq!(rows(&first), 50);
    assert!(first.contains("page 1 of 3"));
    assert!(first.contains("href=\"/?page=2\" rel=\"next\""), "{first}");
    let third = page(&app, "/?page=3").await;
    assert_eq!(rows(&third), 20);
    assert!(third.contains("href=\"/?page=2\" rel=\"prev\""));
    assert!(
        third.contains(&all[119].key.head_sha[..10]),
        "the oldest is last"
    );
    let beyond = page(&app, "/?page=9").await;
    assert_eq!(rows(&beyond), 0);
    assert!(
        beyond.contains("href=\"/?page=3\" rel=\"prev\""),
        "{beyond}"
    );
    // Filters stay in the page links.
    let filtered = page(&app, "/?workflow=trunk&outcome=not_reproduced").await;
    assert!(filtered.contains("href=\"/?workflow=trunk&#38;outcome=not_reproduced&#38;page=2\""));
    // Pages of the API do not overlap and cover every restart once.
    let mut seen = std::collections::HashSet::new();
    for p in 1..=3 {
        let v = api(&app, &format!("/api/restarts?page={p}")).await;
        assert_eq!(
            (v["page"].as_u64(), v["pages"].as_u64()),
            (Some(p), Some(3))
        );
        for r in v["restarts"].as_array().unwrap() {
            assert!(seen.insert(r["restart_id"].as_str().unwrap().to_string()));
        }
    }
    assert_eq!(seen.len(), 120);
}

#[tokio::test]
async fn a_hostile_reason_is_escaped_and_nothing_secret_is_shown() {
    let app = TestApp::start().await;
    let all = ledger(&app.store, 0).await;
    let failed = &all[3];
    assert_eq!(failed.reason, HOSTILE);
    let list = page(&app, "/").await;
    let detail = page(&app, &format!("/restarts/{}", failed.restart_id)).await;
    for html in [&list, &detail] {
        assert!(
            !html.contains("<script"),
            "a reason reached the page unescaped"
        );
        assert!(
            html.contains(
                "&#60;script&#62;alert(&#39;x&#39;)&#60;/script&#62; &#38; &#34;more&#34;"
            )
        );
    }
    let json = get(&app, &format!("/api/restarts/{}", failed.restart_id))
        .await
        .2;
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["restart"]["reason"], HOSTILE,
        "JSON carries the text as it is"
    );
    let listing = get(&app, "/api/restarts").await.2;
    for body in [&list, &detail, &json, &listing] {
        assert!(!body.contains(SECRET_DELIVERY), "a delivery id is shown");
        assert!(
            !body.contains(&SECRET_INSTALLATION.to_string()),
            "an installation id is shown"
        );
    }
}

#[tokio::test]
async fn a_restart_shows_its_job_evidence_and_event_log() {
    let app = TestApp::start().await;
    let all = ledger(&app.store, 0).await;
    let r = &all[7]; // completed, reproduced
    let html = page(&app, &format!("/restarts/{}", r.restart_id)).await;
    assert_eq!(html.matches("<tr class=\"job\">").count(), 2);
    assert!(html.contains("linux-jammy / test (default)"));
    assert!(html.contains("badge o-reproduced\">reproduced<"));
    assert!(html.contains("failed again"));
    assert_eq!(html.matches("<tr class=\"event\">").count(), 2);
    assert!(html.contains("jobs visible"));
    assert!(html.contains("restarted run completed"));
    assert!(
        html.contains(&format!(
            "<a class=\"check-run\" href=\"{}\">",
            check_run_url(8)
        )),
        "the check run on the commit is linked"
    );

    let v = api(&app, &format!("/api/restarts/{}", r.restart_id)).await;
    let restart = &v["restart"];
    assert_eq!(restart["restart_id"], r.restart_id.as_str());
    assert_eq!(restart["status"], "completed");
    assert_eq!(restart["outcome"], "reproduced");
    assert_eq!(restart["original_run_id"], r.original_run_id);
    assert_eq!(restart["restart_run_id"], r.restart_run_id.unwrap());
    assert_eq!(restart["times"]["confirm_latency_ms"], 248_000);
    assert!(restart["times"]["requested_at"].is_string());
    assert_eq!(
        restart["links"]["restart_run"],
        format!(
            "https://github.com/{REPO}/actions/runs/{}",
            r.restart_run_id.unwrap()
        )
    );
    let jobs: Vec<(&str, &str)> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["job"].as_str().unwrap(), j["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        jobs,
        [
            ("linux-jammy / build", "not_reproduced"),
            ("linux-jammy / test (default)", "reproduced")
        ]
    );
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["dispatched", "confirmed"]);

    assert_eq!(restart["links"]["check_run"], check_run_url(8));

    // Not yet judged: no evidence, said so. Unknown ids: 404, as a page and as JSON.
    let pending = page(&app, &format!("/restarts/{}", all[5].restart_id)).await;
    assert!(pending.contains("No per-job verdicts yet"));
    let undispatched = page(&app, &format!("/restarts/{}", all[0].restart_id)).await;
    assert!(
        !undispatched.contains("class=\"check-run\""),
        "no check run before a dispatch"
    );
    for uri in [
        format!("/restarts/{REPO}/trunk/{}/1", commit(999)),
        format!("/api/restarts/{REPO}/trunk/{}/1", commit(999)),
        "/api/restarts/not-an-id".to_string(),
    ] {
        assert_eq!(get(&app, &uri).await.0, StatusCode::NOT_FOUND, "{uri}");
    }
}

#[tokio::test]
async fn the_api_lists_with_the_pages_shape() {
    let app = TestApp::start().await;
    let all = ledger(&app.store, 0).await;
    let hold = EventRow::skipped(&all[0].key, "d", "kill switch on: #77 by alice".into());
    let mut b = Batch::default();
    b.push(Entry::Event(hold));
    app.store.write(&mut b).await.unwrap();
    let v = api(&app, "/api/restarts").await;
    for field in ["page", "per_page", "total", "pages", "workflows", "mode"] {
        assert!(!v[field].is_null(), "{field} missing: {v}");
    }
    assert_eq!(v["per_page"], 50);
    assert_eq!(v["mode"], "run");
    assert_eq!(v["workflows"], serde_json::json!(["inductor", "trunk"]));
    assert_eq!(v["kill_switch"]["label"], "ci: disable-autorevert");
    assert_eq!(
        v["kill_switch"]["last_hold"]["message"],
        "kill switch on: #77 by alice"
    );
    let r = &v["restarts"][0];
    for field in [
        "restart_id",
        "repo",
        "workflow",
        "head_sha",
        "status",
        "original_run_id",
        "times",
        "links",
    ] {
        assert!(!r[field].is_null(), "{field} missing: {r}");
    }
    assert!(r.get("installation_id").is_none() && r.get("delivery_id").is_none());
    let html = page(&app, "/").await;
    assert!(html.contains("held a restart at"), "{html}");
    assert!(html.contains("kill switch on: #77 by alice"));
}

/// The decision engine's section. The store holds what the engine recorded (a commit broke
/// a test job; the suspect and its parent ran again side by side) and a revert already
/// posted on the culprit's PR; the App started over it rebuilds the engine and loads the
/// action, deciding at once; the next push changes nothing of it.
#[tokio::test]
async fn decisions_show_the_signals_that_act_and_the_culprits_acted_on() {
    let store = fresh_store().await;
    let shas = broken_trunk(&store, Utc::now() - Duration::hours(6)).await;
    let (baseline, suspect) = (&shas[1], &shas[2]);
    let now = Utc::now();
    let comment = revert_comment_url();
    let mut asked = restart(1, Status::DryRun, None, "trunk");
    asked.reason = format!("asked by the decision engine for {SIGNAL}");
    let plain = restart(2, Status::DryRun, None, "trunk");
    let mut b = Batch::default();
    b.push(Entry::RevertAction(posted_revert(suspect, now)));
    b.push(Entry::Restart(RestartRow::from(&asked)));
    b.push(Entry::Restart(RestartRow::from(&plain)));
    store.write(&mut b).await.unwrap();
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let app = TestApp::assemble(Options::default(), store, github, temp_dir()).await;
    let v = api(&app, "/api/restarts").await;
    // Decided from the rebuilt history at start-up, before any new event.
    assert_eq!(
        v["decisions"]["signals"][0]["kind"], "revert",
        "decided at start-up: {v:#}"
    );
    assert_eq!(
        v["decisions"]["actions"][0]["state"], "posted",
        "loaded at start-up"
    );

    let push = common::payloads::push_body(&shas[4], &[&landed(206)]);
    assert_eq!(app.deliver("push", &push).await.0, StatusCode::ACCEPTED);
    app.settle().await;
    let v = api(&app, "/api/restarts").await;
    let d = &v["decisions"];
    assert_eq!(
        (&d["engine"], &d["revert_action"]),
        (&Value::from(true), &Value::from("log"))
    );
    let signal = &d["signals"][0];
    assert_eq!(signal["kind"], "revert", "{d:#}");
    assert_eq!(signal["workflow"], "trunk");
    assert_eq!(signal["job"], SIGNAL);
    assert_eq!(signal["suspect"]["sha"], suspect.as_str());
    assert_eq!(signal["baseline"]["sha"], baseline.as_str());
    assert_eq!(
        signal["suspect"]["url"],
        format!("https://github.com/{REPO}/commit/{suspect}")
    );
    let actions = d["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "acted on once, not again: {d:#}");
    let a = &actions[0];
    assert_eq!(
        (&a["action"], &a["state"]),
        (&Value::from("revert"), &Value::from("posted"))
    );
    assert_eq!(a["commit"]["sha"], suspect.as_str());
    assert_eq!(
        a["target"]["url"],
        format!("https://github.com/{REPO}/pull/4242")
    );
    assert_eq!(a["comment_url"], comment.as_str());
    assert!(
        app.github.state.lock().unwrap().reverts.comments.is_empty(),
        "REVERT_ACTION=log posts nothing"
    );

    let html = page(&app, "/").await;
    assert_eq!(
        html.matches("<tr class=\"signal-decision decision-revert\">")
            .count(),
        1,
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "suspect <a class=\"mono suspect\" href=\"https://github.com/{REPO}/commit/{suspect}\""
        )),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "<a class=\"target\" href=\"https://github.com/{REPO}/pull/4242\">PR #4242</a>"
        )),
        "{html}"
    );
    assert!(
        html.contains(&format!("<a class=\"comment\" href=\"{comment}\">")),
        "{html}"
    );
    assert_eq!(rows(&html), 2, "the restarts are still listed");
    let asked_page = page(&app, &format!("/restarts/{}", asked.restart_id)).await;
    assert!(
        asked_page.contains("<dt>Asked by</dt><dd class=\"asked-by\">the decision engine"),
        "{asked_page}"
    );
    let detail = api(&app, &format!("/api/restarts/{}", asked.restart_id)).await;
    assert_eq!(detail["restart"]["asked_by_engine"], true);
    let plain_page = page(&app, &format!("/restarts/{}", plain.restart_id)).await;
    assert!(!plain_page.contains("Asked by"), "{plain_page}");

    // As a browser shows it (`status-decisions.png` among the test artifacts).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, app.router.clone()).into_future());
    let dom = chromium(&["--dump-dom", &format!("{base}/")]).await;
    assert!(dom.contains("<tr class=\"culprit\">"), "{dom}");
    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("status-decisions.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1280,700",
        &format!("{base}/"),
    ])
    .await;
    assert!(std::fs::read(&shot).is_ok_and(|png| png.starts_with(b"\x89PNG")));
}

/// The page as a browser renders it: headless Chromium against the router on a real port.
/// Fails (never skips) when Chromium is missing: `scripts/test` installs it.
#[tokio::test]
async fn chromium_renders_the_status_page() {
    let app = TestApp::start().await;
    let all = ledger(&app.store, 0).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, app.router.clone()).into_future());

    let dom = chromium(&["--dump-dom", &format!("{base}/")]).await;
    assert_eq!(rows(&dom), 10, "rendered DOM:\n{dom}");
    assert!(dom.contains(&all[0].key.head_sha[..10]));
    assert!(
        !dom.contains("<script>alert"),
        "the hostile reason stayed text"
    );
    let dom = chromium(&[
        "--dump-dom",
        &format!("{base}/restarts/{}", all[7].restart_id),
    ])
    .await;
    assert_eq!(dom.matches("<tr class=\"job\">").count(), 2, "{dom}");

    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, path) in [
        ("status-page.png", "/".to_string()),
        (
            "restart-page.png",
            format!("/restarts/{}", all[7].restart_id),
        ),
    ] {
        let shot = dir.join(name);
        let _ = std::fs::remove_file(&shot);
        chromium(&[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,900",
            &format!("{base}{path}"),
        ])
        .await;
        let png = std::fs::read(&shot).expect("chromium wrote no screenshot");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{}",
            shot.display()
        );
    }
}

/// Where test artifacts (the screenshots) are kept: `<target dir>/test-artifacts`.
fn artifacts_dir() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("test-artifacts")
}

/// Runs headless Chromium with `args`; its standard output. Panics if it cannot run.
async fn chromium(args: &[&str]) -> String {
    let dir = temp_dir();
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut cmd = std::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", dir.join("profile").display()))
    .args(args)
    .stdin(std::process::Stdio::null())
    .stdout(std::fs::File::create(&out).unwrap())
    .stderr(std::fs::File::create(&err).unwrap());
    let status = tokio::task::spawn_blocking(move || {
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("chromium does not run ({e}): install it with `apt-get install -y chromium`")
        });
        wait_with_timeout(child, std::time::Duration::from_secs(120))
    })
    .await
    .unwrap();
    let (out, err) = (
        std::fs::read_to_string(out).unwrap_or_default(),
        std::fs::read_to_string(err).unwrap_or_default(),
    );
    let _ = std::fs::remove_dir_all(dir);
    assert!(status.success(), "chromium {args:?} failed: {err}");
    out
}

fn wait_with_timeout(
    mut child: std::process::Child,
    limit: std::time::Duration,
) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

//! Operating the App, through the real binaries against the fake GitHub and the test
//! ClickHouse: GitHub's reachability and rate limit on `/healthz` and `/metrics`, the kill
//! switch's live state on `/healthz`, the status page and `/api/`, and `autorevert
//! redeliver` (the one documented way to replay a missed delivery).

mod common;

use common::binary::Binary;
use common::fake_github::{FakeGitHub, RATE_LIMIT};
use common::*;
use prometheus_parse::Scrape;
use serde_json::Value;
use std::process::Command;

const LABEL: &str = "ci: disable-autorevert";

async fn get_text(url: &str) -> (u16, String) {
    let resp = http_client().get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

async fn scrape(bin: &Binary) -> Scrape {
    let (status, text) = get_text(&format!("{}/metrics", bin.url())).await;
    assert_eq!(status, 200);
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// The kill switch of pytorch/pytorch as `/healthz` shows it.
async fn switch(bin: &Binary) -> Value {
    bin.health().await["kill_switch"]["repos"][0].clone()
}

/// `autorevert healthcheck` against the running App: its exit code.
fn healthcheck(bin: &Binary) -> Option<i32> {
    let addr = bin.url().trim_start_matches("http://").to_string();
    Command::new(env!("CARGO_BIN_EXE_autorevert"))
        .args(["healthcheck", "--listen", &addr])
        .env_clear()
        .status()
        .unwrap()
        .code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_s_rate_limit_and_reachability_show_on_healthz_and_metrics() {
    let store = fresh_store().await;
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    // The installation has already spent most of its hour.
    github.spend_rate_limit(RATE_LIMIT - 100);
    let mut bin = Binary::new(&store, &github);
    bin.env.push(("KILL_SWITCH_TTL_SECS".into(), "1".into()));
    let mut app = bin.start();
    bin.wait_up().await;
    assert!(eventually(20, async || bin.health().await["startup"]["ready"] == true).await);
    let before = bin.health().await;
    assert!(before["github"]["last_call"].is_null(), "{before}");
    assert_eq!(before["attention"], serde_json::json!([]), "{before}");

    assert_eq!(bin.deliver("ops-1", failure(&sha(701), 701)).await, 202);
    let dispatched = eventually(20, async || !github.dispatches().is_empty()).await;
    let health = bin.health().await;
    let gh = &health["github"];
    assert!(dispatched, "no dispatch: {health}");
    assert_eq!(gh["reachable"], true, "{gh}");
    assert!(!gh["last_ok_at"].is_null(), "{gh}");
    let left = gh["rate_limit"]["installation"]["remaining"]
        .as_u64()
        .unwrap();
    assert!(
        left <= 100 && left > 50,
        "GitHub's x-ratelimit-remaining: {gh}"
    );
    assert_eq!(gh["rate_limit"]["installation"]["limit"], RATE_LIMIT);
    assert!(
        health["attention"]
            .to_string()
            .contains("GitHub rate limit (installation) low"),
        "{health}"
    );
    let m = scrape(&bin).await;
    let gauge = metric(
        &m,
        "autorevert_github_rate_limit_remaining",
        &[("auth", "installation")],
    );
    assert!(gauge <= 100.0 && gauge > 50.0, "{gauge}");

    // GitHub goes down: liveness holds, readiness says so, errors are counted by endpoint.
    github.set_down(Some(503));
    let noticed = eventually(30, async || {
        bin.health().await["github"]["reachable"] == false
    })
    .await;
    let health = bin.health().await;
    assert!(noticed, "{health}");
    let last = &health["github"]["last_error"];
    assert_eq!(last["status"], 503, "{health}");
    assert!(last["error"].as_str().unwrap().contains("503"), "{last}");
    assert!(
        health["attention"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().starts_with("GitHub unreachable")),
        "{health}"
    );
    assert_eq!(
        healthcheck(&bin),
        Some(0),
        "liveness does not depend on GitHub"
    );
    // Other calls (a check run's) may fail first; the kill-switch lookup gives up after
    // its retries.
    let issues = [("endpoint", "issues"), ("status", "503")];
    let counted = eventually(30, async || {
        let m = scrape(&bin).await;
        metric(&m, "autorevert_github_errors_total", &issues) >= 1.0
    })
    .await;
    assert!(counted, "no issues/503 error counted");

    // Back: the next call succeeds and says so.
    github.set_down(None);
    let back = eventually(30, async || {
        let g = bin.health().await["github"].clone();
        g["reachable"] == true && g["last_call"]["ok"] == true
    })
    .await;
    let health = bin.health().await;
    app.kill().unwrap();
    app.wait().unwrap();
    assert!(back, "{health}");
    let text = health.to_string();
    assert!(
        !text.contains("ghs_") && !text.contains("eyJ"),
        "a token on /healthz: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_s_live_state_shows_on_healthz_the_status_page_and_the_api() {
    let store = fresh_store().await;
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let mut bin = Binary::new(&store, &github);
    bin.env.push(("KILL_SWITCH_TTL_SECS".into(), "1".into()));
    let mut app = bin.start();
    bin.wait_up().await;
    let k = switch(&bin).await;
    assert_eq!(k["repo"], REPO);
    assert_eq!(k["state"], "not_looked_up", "{k}");

    // The first failed run starts the lookups: off.
    assert_eq!(bin.deliver("ks-1", failure(&sha(711), 711)).await, 202);
    assert!(eventually(20, async || switch(&bin).await["state"] == "off").await);
    let off_since = switch(&bin).await["since"].clone();

    // An on-call opens the issue: on, with the issue and who labelled it.
    github.open_kill_switch(77, LABEL, "oncall", "write", "maintain");
    let on = eventually(20, async || switch(&bin).await["state"] == "on").await;
    let k = switch(&bin).await;
    assert!(on, "{k}");
    assert_eq!(k["switch"]["issue"], 77);
    assert_eq!(k["switch"]["labelled_by"], "oncall");
    assert_eq!(k["holds_restarts"], true);
    assert_ne!(k["since"], off_since, "since when it is on");
    let health = bin.health().await;
    assert!(
        health["attention"]
            .to_string()
            .contains("kill switch ON for pytorch/pytorch"),
        "{health}"
    );
    let (status, html) = get_text(&format!("{}/", bin.url())).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<span class=\"alert\">ON</span>"), "{html}");
    assert!(html.contains("https://github.com/pytorch/pytorch/issues/77"));
    assert!(html.contains("labelled by @oncall (maintain)"));
    let (_, api) = get_text(&format!("{}/api/restarts", bin.url())).await;
    let api: Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["kill_switch"]["repos"][0]["state"], "on", "{api}");
    assert_eq!(api["kill_switch"]["every_secs"], 1);

    // Lookups fail: unknown, held, shown as failing closed.
    github.set_down(Some(502));
    let unknown = eventually(30, async || switch(&bin).await["state"] == "unknown").await;
    let k = switch(&bin).await;
    assert!(unknown, "{k}");
    assert_eq!(k["failing"], true);
    assert_eq!(k["holds_restarts"], true);
    assert!(!k["last_success"].is_null(), "{k}");
    assert!(k["reason"].as_str().unwrap().contains("502"), "{k}");
    let (_, html) = get_text(&format!("{}/", bin.url())).await;
    assert!(
        html.contains("unknown, restarts are held (it fails closed)"),
        "{html}"
    );
    assert!(html.contains("failed (last success"), "{html}");

    // GitHub back, the issue closed: off again.
    github.set_down(None);
    github.close_issue(77);
    let off = eventually(30, async || switch(&bin).await["state"] == "off").await;
    let k = switch(&bin).await;
    app.kill().unwrap();
    app.wait().unwrap();
    assert!(off, "{k}");
    assert_eq!(k["failing"], false);
}

/// `autorevert redeliver …` with the App's environment: (exit code, stdout).
async fn redeliver(
    github: &FakeGitHub,
    store: Option<&autorevert::store::Store>,
    args: &[&str],
) -> (Option<i32>, String) {
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/test-app.private-key.pem"
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_autorevert"));
    cmd.arg("redeliver")
        .args(args)
        .env_clear()
        .env("GITHUB_APP_ID", fake_github::APP_ID.to_string())
        .env("GITHUB_APP_PRIVATE_KEY_PATH", key)
        .env("GITHUB_API_URL", &github.url);
    if let Some(store) = store {
        cmd.env("CLICKHOUSE_URL", clickhouse_url())
            .env("CLICKHOUSE_DATABASE", &store.tables().database);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (
        out.status.code(),
        stdout + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliver_asks_github_for_one_delivery_by_id_or_guid() {
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let now = chrono::Utc::now();
    {
        let mut s = github.state.lock().unwrap();
        s.hook_deliveries
            .push((601, "a1b2c3d4-0000-11f0-8000-000000000601".into(), now, 502));
        // A GUID far down the list: past the first page of 100.
        for n in 0..150u64 {
            let at = now - chrono::Duration::minutes(n as i64 + 1);
            s.hook_deliveries.push((
                1000 + n,
                format!("0000{n:04}-0000-11f0-8000-000000000000"),
                at,
                202,
            ));
        }
    }
    let (code, out) = redeliver(&github, None, &["601"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("OK    asked GitHub to redeliver delivery 601"),
        "{out}"
    );
    let (code, out) = redeliver(&github, None, &["00000140-0000-11f0-8000-000000000000"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("delivery 1140 (GUID 00000140"), "{out}");
    assert_eq!(github.state.lock().unwrap().redeliveries, [601, 1140]);

    // Unknown id, unknown GUID, not an id at all: each a clear failure, nothing asked.
    let (code, out) = redeliver(&github, None, &["999", "deadbeef-0000", "../x"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL  999: POST /app/hook/deliveries/999/attempts: GitHub answered 404"),
        "{out}"
    );
    assert!(out.contains("no such delivery of this App"), "{out}");
    assert!(
        out.contains("FAIL  deadbeef-0000: no delivery with this GUID"),
        "{out}"
    );
    assert!(out.contains("FAIL  ../x: not a delivery id"), "{out}");
    assert_eq!(github.state.lock().unwrap().redeliveries.len(), 2);

    // Without App credentials it says what is needed.
    let out = Command::new(env!("CARGO_BIN_EXE_autorevert"))
        .args(["redeliver", "601"])
        .env_clear()
        .env("GITHUB_TOKEN", "ghp_notanapptoken0123456789")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("GITHUB_TOKEN cannot ask for redeliveries"),
        "{err}"
    );
    assert!(!err.contains("ghp_notanapptoken"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliver_since_asks_for_the_failed_deliveries_the_app_never_recorded() {
    let store = fresh_store().await;
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let now = chrono::Utc::now();
    let hours = |h: i64| now - chrono::Duration::hours(h);
    {
        let mut s = github.state.lock().unwrap();
        s.hook_deliveries
            .push((701, "missed-recent".into(), hours(1), 502));
        s.hook_deliveries
            .push((702, "recorded-one".into(), hours(2), 502));
        s.hook_deliveries
            .push((703, "missed-older".into(), hours(5), 504));
        s.hook_deliveries.push((704, "fine".into(), hours(1), 202));
        s.hook_deliveries
            .push((705, "too-old".into(), hours(30), 502));
    }
    // The App received and recorded one of them (answered after GitHub's 10 s).
    let mut b = autorevert::store::batch::Batch::default();
    let row = autorevert::store::rows::DeliveryRow {
        delivery_id: "recorded-one".into(),
        event: "workflow_run".into(),
        action: "completed".into(),
        repo: REPO.into(),
        head_sha: sha(702),
        installation_id: None,
        received_at: hours(2),
        processed_at: hours(2),
        decision: "ignore".into(),
        body_bytes: 10,
    };
    b.push(autorevert::store::batch::Entry::Delivery(row));
    store.write(&mut b).await.unwrap();

    let (code, out) = redeliver(&github, Some(&store), &["--since", "24h", "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("WOULD delivery 703"), "{out}");
    assert!(
        github.state.lock().unwrap().redeliveries.is_empty(),
        "a dry run asks nothing"
    );

    let (code, out) = redeliver(&github, Some(&store), &["--since", "24h"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("SKIP  recorded-one: the App recorded it"),
        "{out}"
    );
    assert!(out.contains("3 failed since"), "{out}");
    assert!(
        out.contains("2 asked for, 1 already recorded, 0 failed"),
        "{out}"
    );
    // Oldest first: they expire first.
    assert_eq!(github.state.lock().unwrap().redeliveries, [703, 701]);

    let (code, out) = redeliver(&github, None, &["--since", "4d"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("more than 3 days ago"), "{out}");
}

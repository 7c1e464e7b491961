//! The command line as a maintainer uses it: the real binary, the fake GitHub, the test
//! ClickHouse.

mod common;

use common::*;
use std::process::{Command, Output};

fn autorevert(args: &[&str], env: &[(String, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_autorevert"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

const TRUNK_YML: &str = "name: trunk\non:\n  push:\n    branches: [main]\n  workflow_dispatch:\n    inputs:\n      jobs-to-include:\n        type: string\n      tests-to-include:\n        type: string\n";

// Multi-threaded: the fake GitHub must keep serving while this thread waits for the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_prints_the_request_and_inputs_then_dispatches() {
    let app = TestApp::start().await;
    app.github.add_token("ghp_maintainer", INSTALLATION);
    app.github
        .add_file(".github/workflows/trunk.yml", TRUNK_YML);
    let sha = sha(90);
    let env = vec![
        ("GITHUB_TOKEN".to_string(), "ghp_maintainer".to_string()),
        ("GITHUB_API_URL".to_string(), app.github.url.clone()),
    ];
    let dry = autorevert(
        &["restart", "trunk", &sha, "--repo", REPO, "--dry-run"],
        &env,
    );
    let (out, err) = text(&dry);
    assert!(dry.status.success(), "{out}{err}");
    assert!(
        out.contains("POST /repos/pytorch/pytorch/actions/workflows/trunk.yml/dispatches"),
        "{out}"
    );
    assert!(out.contains(&format!("\"ref\": \"trunk/{sha}\"")), "{out}");
    assert!(out.contains("jobs-to-include, tests-to-include"), "{out}");
    assert!(
        app.github.dispatches().is_empty(),
        "a dry run sends nothing"
    );

    let real = autorevert(&["restart", "trunk.yml", &sha, "--repo", REPO], &env);
    let (out, err) = text(&real);
    assert!(real.status.success(), "{out}{err}");
    let run = app.github.state.lock().unwrap().runs[0].id;
    assert!(
        out.contains(&format!(
            "https://github.com/pytorch/pytorch/actions/runs/{run}"
        )),
        "{out}"
    );
    assert_eq!(app.github.dispatches().len(), 1);
    assert_eq!(app.github.dispatches()[0].token, "ghp_maintainer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reports_githubs_refusal_and_bad_input() {
    let app = TestApp::start().await;
    app.github.add_token("ghp_maintainer", INSTALLATION);
    app.github
        .script([common::fake_github::DispatchAnswer::Reject(
            422,
            "Workflow does not have 'workflow_dispatch' trigger".into(),
        )]);
    let env = vec![
        ("GITHUB_TOKEN".to_string(), "ghp_maintainer".to_string()),
        ("GITHUB_API_URL".to_string(), app.github.url.clone()),
    ];
    let o = autorevert(&["restart", "trunk.yml", &sha(91), "--repo", REPO], &env);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("422") && err.contains("workflow_dispatch' trigger"),
        "{err}"
    );
    let o = autorevert(&["restart", "trunk.yml", "not-a-sha", "--dry-run"], &env);
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("not a full commit SHA"),
        "{:?}",
        text(&o)
    );
}

#[tokio::test]
async fn check_tells_restarted_confirmed_and_outcome_by_exit_code() {
    let app = TestApp::start().await;
    let env = app.clickhouse_env();
    let sha = sha(92);
    let o = autorevert(&["check", "trunk", &sha, "--repo", REPO], &env);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).0.contains("no restart recorded"));

    app.original_failure(&sha, 1_000_092, &[(TEST_1, "failure")])
        .await;
    app.settle().await;
    let o = autorevert(&["check", "trunk", &sha, "--repo", REPO], &env);
    assert_eq!(
        o.status.code(),
        Some(3),
        "dispatched, not confirmed: {:?}",
        text(&o)
    );

    let run_id = app.stored_restarts(&sha).await[0].restart_run_id.unwrap();
    app.restart_follow_ups(&sha, run_id, &[(TEST_1, "failure")], "failure")
        .await;
    app.settle().await;
    let o = autorevert(&["check", "trunk", &sha, "--repo", REPO], &env);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("outcome: reproduced"), "{out}");
    assert!(out.contains(&format!("run {run_id}")), "{out}");
    let check = &app.github.check_runs(&sha)[0];
    let url = format!("check run: https://github.com/{REPO}/runs/{}", check.id);
    assert!(out.contains(&url), "the check run on the commit: {out}");
}

#[test]
fn replay_in_process_follows_the_seed_case_to_its_verdict() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/seed-2d3615f");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".json"))
        .collect();
    files.sort();
    let mut args = vec!["replay"];
    args.extend(files.iter().map(String::as_str));
    let o = autorevert(&args, &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("would dispatch trunk.yml on trunk/2d3615f577894c7a117a55e85bb8371bb598ec50"),
        "{out}"
    );
    assert!(out.contains("=> reproduced"), "{out}");
}

#[test]
fn replay_rejects_a_broken_payload_with_a_message() {
    let dir = std::env::temp_dir().join(format!("ar-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("workflow_run.broken.json");
    std::fs::write(&f, br#"{"action":"completed","workflow_run":{"id":1}}"#).unwrap();
    let o = autorevert(&["replay", f.to_str().unwrap()], &[]);
    assert!(!o.status.success());
    assert!(text(&o).0.contains("rejected (400)"), "{:?}", text(&o));
}

#[test]
fn serve_refuses_bad_configuration_with_one_clear_line() {
    let base = vec![
        ("WEBHOOK_SECRET".to_string(), "s".to_string()),
        (
            "CLICKHOUSE_URL".to_string(),
            "http://127.0.0.1:9".to_string(),
        ),
    ];
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("RESTART_ACTION", "sometimes")],
            "unknown restart action",
        ),
        (
            vec![
                ("GITHUB_APP_ID", "1"),
                ("GITHUB_APP_PRIVATE_KEY", "not a pem"),
            ],
            "GITHUB_APP_PRIVATE_KEY is not an RSA private key",
        ),
        (vec![("GITHUB_APP_ID", "1")], "no private key"),
        (vec![("CLICKHOUSE_URL", "ftp://x")], "CLICKHOUSE_URL"),
        (
            vec![("GITHUB_API_URL", "not a url"), ("GITHUB_TOKEN", "t")],
            "GITHUB_API_URL",
        ),
        (
            vec![("WEBHOOK_SECRET", "a,,b")],
            "WEBHOOK_SECRET entry 2 is empty",
        ),
        (vec![("LISTEN_ADDR", "everywhere")], "LISTEN_ADDR"),
        (
            vec![("QUEUE_WAIT_MS", "9000")],
            "QUEUE_WAIT_MS=9000 is too long",
        ),
        (
            vec![("CLICKHOUSE_TIMEOUT_SECS", "0")],
            "CLICKHOUSE_TIMEOUT_SECS must be at least 1",
        ),
        (vec![("AUTOREVERT_REPOS", "pytorch")], "not owner/name"),
        (
            vec![("REVERT_ACTION", "always"), ("RESTART_ACTION", "log")],
            "unknown revert action",
        ),
        (
            vec![("REVERT_ACTION", "notify"), ("RESTART_ACTION", "log")],
            "REVERT_ACTION=notify needs NOTIFY_ISSUE",
        ),
        (
            vec![("DECIDE_LOOKBACK_HOURS", "0"), ("RESTART_ACTION", "log")],
            "DECIDE_LOOKBACK_HOURS=0 is out of range",
        ),
        (
            vec![("DECIDE_SUSPECT_FAILURES", "5"), ("RESTART_ACTION", "log")],
            "DECIDE_SUSPECT_FAILURES",
        ),
        (
            vec![
                ("PYTORCH_EVENTS_TABLE", "x; DROP"),
                ("RESTART_ACTION", "log"),
            ],
            "PYTORCH_EVENTS_TABLE",
        ),
        (vec![], "RESTART_ACTION=run needs GitHub credentials"),
    ];
    for (extra, expected) in cases {
        let mut env = base.clone();
        for (k, v) in &extra {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        }
        let o = autorevert(&["serve"], &env);
        let (out, err) = text(&o);
        assert!(!o.status.success(), "{extra:?} started");
        assert!(
            err.contains(expected),
            "{extra:?}: expected {expected:?} in {err}{out}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !err.contains("not a pem") || expected.contains("PEM"),
            "secret echoed: {err}"
        );
    }
}

// ---- `autorevert signals` and the decisions in `autorevert check` ----

use autorevert::store::batch::{Batch, Entry};
use autorevert::store::signal_state::DecisionRow;
use chrono::{Duration, Utc};
use common::trunk_history::{SIGNAL, broken_trunk, landed, posted_revert};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_shows_the_grid_and_decides_as_the_app_does() {
    let app = TestApp::start().await;
    let env = app.clickhouse_env();
    let t0 = Utc::now() - Duration::hours(6);
    let shas = broken_trunk(&app.store, t0).await;
    let (suspect, baseline) = (&shas[2], &shas[1]);
    assert_ne!(suspect[..7], baseline[..7]);

    let o = autorevert(
        &["signals", "trunk", "--repo", REPO, "--width", "160"],
        &env,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.starts_with("trunk on pytorch/pytorch as of "), "{out}");
    assert!(
        out.contains("5 commit(s), 1 signal(s) shown (1 failing); decisions: 1 revert"),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.starts_with(&format!("trunk:{SIGNAL} ")))
        .unwrap_or_else(|| panic!("no row for the signal: {out}"));
    assert!(
        row.contains(" REVERT ") && row.ends_with("F  F  FF SS S"),
        "{row}"
    );
    assert!(
        out.contains(&format!(
            "trunk:{SIGNAL}: revert {} (baseline {})",
            &suspect[..7],
            &baseline[..7]
        )),
        "the suspect and its reason: {out}"
    );

    let o = autorevert(&["signals", "trunk", "--repo", REPO, "--json"], &env);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("--json is JSON");
    assert_eq!(json["workflow"], "trunk");
    assert_eq!(json["lookback_hours"], 16);
    assert_eq!(json["workflows_seen"], serde_json::json!(["trunk"]));
    assert_eq!(json["commits"].as_array().unwrap().len(), 5);
    assert_eq!(json["commits"][0]["sha"], shas[4], "newest first");
    assert!(json["commits"][0]["pushed_at"].is_string());
    let signal = &json["signals"][0];
    assert_eq!(signal["job"], SIGNAL);
    assert_eq!(signal["decision"]["kind"], "revert");
    assert_eq!(signal["decision"]["suspect"], suspect.as_str());
    assert_eq!(signal["decision"]["baseline"], baseline.as_str());
    assert_eq!(
        signal["cells"][2].as_array().unwrap().len(),
        2,
        "c ran twice"
    );

    // The same thresholds as serve: five failures needed, four seen.
    let mut strict = env.clone();
    strict.push(("DECIDE_MIN_FAILURES".into(), "5".into()));
    strict.push(("DECIDE_SUSPECT_FAILURES".into(), "2".into()));
    let o = autorevert(&["signals", "trunk", "--repo", REPO, "--json"], &strict);
    let json: serde_json::Value = serde_json::from_str(&text(&o).0).expect("JSON");
    assert_ne!(json["signals"][0]["decision"]["kind"], "revert", "{json:#}");

    // As of a moment after b landed: two commits, nothing had failed yet.
    let before = (t0 + Duration::minutes(45)).to_rfc3339();
    let o = autorevert(
        &["signals", "trunk", "--repo", REPO, "--as-of", &before],
        &env,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("no signal to show over 2 commit(s)"), "{out}");
    assert!(!out.contains("REVERT") && !out.contains('F'), "{out}");
    let minute = (t0 + Duration::minutes(45))
        .format("%Y-%m-%d %H:%M")
        .to_string();
    let o = autorevert(
        &[
            "signals", "trunk", "--repo", REPO, "--as-of", &minute, "--json",
        ],
        &env,
    );
    let json: serde_json::Value = serde_json::from_str(&text(&o).0).expect("JSON");
    assert_eq!(json["commits"].as_array().unwrap().len(), 2, "{json:#}");
    assert_eq!(json["signals"].as_array().unwrap().len(), 0, "{json:#}");

    // Another workflow has no signal here; the message names those seen.
    let o = autorevert(&["signals", "trnk", "--repo", REPO], &env);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(
        out.contains("no job of workflow \"trnk\" in the window; workflows seen: trunk"),
        "{out}"
    );
}

#[test]
fn signals_refuses_a_bad_time_and_an_unreachable_clickhouse_clearly() {
    let env = vec![(
        "CLICKHOUSE_URL".to_string(),
        "http://127.0.0.1:9".to_string(),
    )];
    let o = autorevert(&["signals", "trunk", "--as-of", "yesterday"], &env);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(
        err.contains("--as-of") && err.contains("is not a time"),
        "{err}"
    );
    let o = autorevert(
        &["signals", "trunk", "--as-of", "2999-01-01T00:00:00Z"],
        &env,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("in the future"), "{:?}", text(&o));

    let o = autorevert(&["signals", "trunk"], &env);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("ClickHouse at http://127.0.0.1:9/ is not reachable"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let o = autorevert(&["signals", "trunk", "--width", "wide"], &env);
    assert_eq!(o.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_shows_the_decisions_about_a_commit_and_the_revert_action() {
    let app = TestApp::start().await;
    let env = app.clickhouse_env();
    let (parent, suspect, newer) = (landed(301), landed(302), landed(303));
    let now = Utc::now();
    let decision = |job: &str, label: &str, reason: &str| DecisionRow {
        ts: now,
        repo: REPO.into(),
        workflow: "trunk".into(),
        job: job.into(),
        label: label.into(),
        reason: reason.into(),
        suspect: String::new(),
        baseline: String::new(),
        restarts: vec![],
        detail: "{}".into(),
    };
    let mut b = Batch::default();
    let mut revert = decision(SIGNAL, "revert", "revert");
    revert.suspect = suspect.clone();
    revert.baseline = parent.clone();
    b.push(Entry::Decision(revert));
    let mut restart = decision("linux-jammy / build", "restart", "restart");
    restart.restarts = vec![format!("{newer}:same_revision_repro")];
    b.push(Entry::Decision(restart));
    b.push(Entry::Decision(decision(
        "other / test",
        "ineligible",
        "flaky",
    )));
    b.push(Entry::RevertAction(posted_revert(&suspect, now)));
    app.store.write(&mut b).await.unwrap();

    let o = autorevert(&["check", "trunk", &suspect, "--repo", REPO], &env);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "not restarted: {out}{err}");
    assert!(
        out.contains(&format!("trunk:{SIGNAL} revert (the suspect; revert)")),
        "{out}"
    );
    assert!(
        out.contains("culprit: revert on PR #4242: posted")
            && out.contains("comment https://github.com/pytorch/pytorch/pull/4242#issuecomment-77"),
        "{out}"
    );
    assert!(!out.contains("build") && !out.contains("flaky"), "{out}");
    let o = autorevert(&["check", "trunk", &parent, "--repo", REPO], &env);
    let (out, _) = text(&o);
    assert!(out.contains("revert (the baseline; revert)"), "{out}");
    assert!(!out.contains("culprit"), "{out}");
    let o = autorevert(&["check", "trunk", &newer, "--repo", REPO], &env);
    let (out, _) = text(&o);
    assert!(
        out.contains(
            "trunk:linux-jammy / build restart (to run again: same_revision_repro; restart)"
        ),
        "{out}"
    );
}

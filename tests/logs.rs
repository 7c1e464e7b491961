//! Structured logs: `LOG_FORMAT=json` gives one JSON object per line, and what is logged
//! while a delivery is handled carries the delivery's span (id, repository, sha, run).

mod common;

use common::binary::Binary;
use common::*;
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_delivery_span() {
    let store = fresh_store().await;
    let github = fake_github::FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let mut bin = Binary::new(&store, &github);
    let log = temp_dir().join("serve.log");
    bin.log_to = Some(log.clone());
    bin.env.push(("LOG_FORMAT".into(), "json".into()));
    let mut app = bin.start();
    bin.wait_up().await;
    assert_eq!(
        bin.deliver("logged-340", failure(&sha(340), 340)).await,
        202
    );
    for _ in 0..100 {
        if !github.dispatches().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.kill().unwrap();
    app.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 3, "{text}");
    let dispatched = lines
        .iter()
        .find(|l| l["fields"]["kind"] == "dispatched")
        .unwrap_or_else(|| panic!("no dispatched line in {text}"));
    let span = &dispatched["span"];
    assert_eq!(span["id"], "logged-340", "{dispatched}");
    assert_eq!(span["repo"], REPO);
    assert_eq!(span["sha"], sha(340));
    assert_eq!(span["run_id"], 340);
}

#[test]
fn an_unknown_log_format_is_refused_with_one_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_autorevert"))
        .args(["serve"])
        .env("LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("LOG_FORMAT \"xml\""), "{err}");
}

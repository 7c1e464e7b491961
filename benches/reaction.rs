//! Reaction latency: from a failing `workflow_run.completed` delivery handed to the App's
//! router to the dispatch POST reaching GitHub (the fake GitHub timestamps its arrival).
//! Real router, pipeline and ClickHouse store (CLICKHOUSE_URL; bench/reaction.sh starts the
//! local one), real octocrab over loopback HTTP.
//!
//!   N=1000 COLD=20 cargo bench --bench reaction
//!
//! "warm": installation token cached (the steady state). "cold": a new App process, so the
//! token is fetched with the App JWT first.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use std::time::{Duration, Instant};

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn one(app: &TestApp, n: u32, seen: usize) -> Duration {
    let sha = format!("{:040x}", 0xbe00_0000_0000u64 + n as u64);
    let body = failure(&sha, 7_000_000 + n as u64);
    let t0 = Instant::now();
    let (status, _) = app.deliver("workflow_run", &body).await;
    assert_eq!(status.as_u16(), 202);
    loop {
        if let Some(d) = app.github.dispatches().get(seen) {
            return d.at.duration_since(t0);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no dispatch within 30 s for delivery {n}"
        );
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
}

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{name:5} n={:5}  p50 {:7.2} ms  p90 {:7.2} ms  p99 {:7.2} ms  max {:7.2} ms",
        v.len(),
        pct(&v, 0.50),
        pct(&v, 0.90),
        pct(&v, 0.99),
        v.last().unwrap().as_secs_f64() * 1000.0
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: u32 = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let cold: u32 = std::env::var("COLD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);

    // Every failure is on its own commit; the hourly budget must not hold any of them.
    let options = || Options {
        max_restarts_per_hour: u32::MAX,
        kill_switch_ttl: Duration::from_secs(60), // production default: looked up once a minute
        ..Options::default()
    };
    let app = TestApp::with(options()).await;
    one(&app, u32::MAX, 0).await; // fetch the token once
    let mut warm = Vec::with_capacity(n as usize);
    for i in 0..n {
        warm.push(one(&app, i, i as usize + 1).await);
    }
    let mut cold_v = Vec::with_capacity(cold as usize);
    for i in 0..cold {
        let fresh =
            TestApp::assemble(options(), app.store.clone(), app.github.clone(), temp_dir()).await;
        let seen = app.github.dispatches().len();
        cold_v.push(one(&fresh, 1_000_000 + i, seen).await);
    }
    println!(
        "delivery -> dispatch POST at GitHub, distinct commits, {} dispatches",
        app.github.dispatches().len()
    );
    report("warm", warm);
    report("cold", cold_v);
}

//! Throughput of the whole pipeline: N mixed deliveries (PyTorch-like: ~70 jobs per trunk
//! run, each job queued → in_progress → completed, so ~98 % are `workflow_job`) POSTed over
//! HTTP to a running App (the release binary, a process of its own, ingestion into the
//! mirror on, RESTART_ACTION=log), then waited for until ClickHouse holds every delivery
//! and every job. Reports deliveries/s end to end and the INSERTs ClickHouse saw
//! (`system.events` InsertQuery / InsertedRows deltas).
//!
//!   bench/pipeline.sh            (N=100000 CONNS=32 JOBS_PER_RUN=70 FAIL_EVERY=10)
//!
//! Needs CLICKHOUSE_URL and AUTOREVERT_BIN (bench/pipeline.sh sets both).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{job_payload, run_payload};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SECRET: &str = "bench-pipeline-secret";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One delivery, signed and ready to send.
struct Delivery {
    event: &'static str,
    id: String,
    body: Vec<u8>,
    signature: String,
}

/// Trunk runs on main, in the order GitHub sends their events.
fn deliveries(n: usize, jobs_per_run: usize, fail_every: usize) -> (Vec<Delivery>, usize) {
    fn push(out: &mut Vec<Delivery>, event: &'static str, body: Vec<u8>) {
        let i = out.len();
        out.push(Delivery {
            event,
            id: format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), i),
            signature: autorevert::intake::signature::sign(SECRET, &body),
            body,
        });
    }
    let mut out = Vec::with_capacity(n);
    let mut jobs = 0;
    let mut run = 0u64;
    'runs: loop {
        run += 1;
        let sha = format!("{:040x}", 0x5eed_0000_0000u64 + run);
        let run_id = 30_000_000_000 + run;
        let failing = fail_every > 0 && run.is_multiple_of(fail_every as u64);
        let job_id = |j: usize| 90_000_000_000 + run * 1_000 + j as u64;
        let name = |j: usize| {
            format!(
                "linux-jammy-py3.10-gcc11 / test (default, {}, {jobs_per_run}, linux.4xlarge)",
                j + 1
            )
        };
        let room = n - out.len();
        if room < 3 {
            break;
        }
        // Jobs that fit after the run's three events.
        let k = jobs_per_run.min((room - 3) / 3);
        push(
            &mut out,
            "workflow_run",
            run_payload("requested", run_id, &sha, "push", "main", None, |_| {}),
        );
        for j in 0..k {
            push(
                &mut out,
                "workflow_job",
                job_payload("queued", job_id(j), run_id, &sha, "main", &name(j), None),
            );
        }
        push(
            &mut out,
            "workflow_run",
            run_payload("in_progress", run_id, &sha, "push", "main", None, |_| {}),
        );
        for j in 0..k {
            push(
                &mut out,
                "workflow_job",
                job_payload(
                    "in_progress",
                    job_id(j),
                    run_id,
                    &sha,
                    "main",
                    &name(j),
                    None,
                ),
            );
        }
        for j in 0..k {
            let concl = if failing && j == 0 {
                "failure"
            } else {
                "success"
            };
            push(
                &mut out,
                "workflow_job",
                job_payload(
                    "completed",
                    job_id(j),
                    run_id,
                    &sha,
                    "main",
                    &name(j),
                    Some(concl),
                ),
            );
        }
        jobs += k;
        let concl = if failing { "failure" } else { "success" };
        push(
            &mut out,
            "workflow_run",
            run_payload(
                "completed",
                run_id,
                &sha,
                "push",
                "main",
                Some(concl),
                |_| {},
            ),
        );
        if k < jobs_per_run {
            break 'runs;
        }
    }
    (out, jobs)
}

async fn query(http: &reqwest::Client, url: &str, sql: &str) -> String {
    let resp = http
        .post(url)
        .body(sql.to_string())
        .send()
        .await
        .expect("ClickHouse answers");
    let status = resp.status();
    let text = resp.text().await.expect("ClickHouse body");
    assert!(status.is_success(), "{sql}: {status} {text}");
    text.trim().to_string()
}

async fn counter(http: &reqwest::Client, url: &str, event: &str) -> u64 {
    query(
        http,
        url,
        &format!("SELECT sum(value) FROM system.events WHERE event = '{event}'"),
    )
    .await
    .parse()
    .unwrap_or(0)
}

struct App(Child);

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env_num("N", 100_000);
    let conns = env_num("CONNS", 32);
    let jobs_per_run = env_num("JOBS_PER_RUN", 70);
    let fail_every = env_num("FAIL_EVERY", 10);
    let ch = std::env::var("CLICKHOUSE_URL").expect("CLICKHOUSE_URL (bench/pipeline.sh sets it)");
    let bin = std::env::var("AUTOREVERT_BIN").expect("AUTOREVERT_BIN (bench/pipeline.sh sets it)");
    let db = format!("pipeline_{}", std::process::id());
    let spool = common::temp_dir();
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let addr = format!("127.0.0.1:{port}");

    let (all, jobs) = deliveries(n, jobs_per_run, fail_every);
    let job_events = all.iter().filter(|d| d.event == "workflow_job").count();
    let bytes: usize = all.iter().map(|d| d.body.len()).sum();

    let mut cmd = Command::new(&bin);
    cmd.arg("serve")
        .env("LISTEN_ADDR", &addr)
        .env("WEBHOOK_SECRET", SECRET)
        .env("RESTART_ACTION", "log")
        .env("AUTOREVERT_INGEST", "true")
        .env("CLICKHOUSE_URL", &ch)
        .env("CLICKHOUSE_DATABASE", &db)
        .env("CLICKHOUSE_JOB_TABLE", format!("{db}.workflow_job"))
        .env("CLICKHOUSE_RUN_TABLE", format!("{db}.workflow_run"))
        .env(
            "CLICKHOUSE_JOB_BY_SHA_TABLE",
            format!("{db}.workflow_job_by_head_sha"),
        )
        .env("SPOOL_DIR", &spool)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    let app = App(cmd.spawn().expect("start the App binary"));
    let pid = app.0.id();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .build()
        .expect("client");
    let base = format!("http://{addr}");
    let t0 = Instant::now();
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the App did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let inserts0 = counter(&http, &ch, "InsertQuery").await;
    let rows0 = counter(&http, &ch, "InsertedRows").await;
    let all = Arc::new(all);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..conns {
        let (all, next, http) = (all.clone(), next.clone(), http.clone());
        let url = format!("{base}/webhook");
        senders.push(tokio::spawn(async move {
            let mut retried = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(d) = all.get(i) else {
                    return retried;
                };
                loop {
                    let resp = http
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .header("X-GitHub-Event", d.event)
                        .header("X-GitHub-Delivery", &d.id)
                        .header("X-Hub-Signature-256", &d.signature)
                        .body(d.body.clone())
                        .send()
                        .await
                        .expect("the App answers");
                    match resp.status().as_u16() {
                        202 => break,
                        // Back-pressure: do as GitHub's sender would be asked to.
                        503 => {
                            retried += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        s => panic!("delivery {i}: HTTP {s}"),
                    }
                }
            }
        }));
    }
    let mut retried = 0;
    for s in senders {
        retried += s.await.expect("sender");
    }
    let accepted = start.elapsed();

    let delivered = format!("SELECT count() FROM {db}.deliveries FINAL");
    let mirrored = format!("SELECT uniqExact(id) FROM {db}.workflow_job FINAL");
    loop {
        let d: usize = query(&http, &ch, &delivered).await.parse().unwrap_or(0);
        if d >= all.len() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "only {d} of {} deliveries recorded after 600 s",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = start.elapsed();
    let inserts = counter(&http, &ch, "InsertQuery").await - inserts0;
    let rows = counter(&http, &ch, "InsertedRows").await - rows0;
    let mirror_jobs: usize = query(&http, &ch, &mirrored).await.parse().unwrap_or(0);
    assert_eq!(mirror_jobs, jobs, "every job is in the mirror");
    let restarts: usize = query(
        &http,
        &ch,
        &format!("SELECT count() FROM {db}.restarts FINAL"),
    )
    .await
    .parse()
    .unwrap_or(0);
    let rss = peak_rss_mib(pid);
    drop(app);
    let _ = std::fs::remove_dir_all(&spool);

    let secs = done.as_secs_f64();
    println!(
        "{} deliveries ({} workflow_job, {} workflow_run; {:.1} MiB of bodies), {} connections",
        all.len(),
        job_events,
        all.len() - job_events,
        bytes as f64 / 1_048_576.0,
        conns
    );
    println!(
        "accepted (all 202):      {:7.2} s  {:8.0} deliveries/s  ({retried} answers were 503, retried)",
        accepted.as_secs_f64(),
        all.len() as f64 / accepted.as_secs_f64()
    );
    println!(
        "recorded in ClickHouse:  {:7.2} s  {:8.0} deliveries/s end to end",
        secs,
        all.len() as f64 / secs
    );
    println!(
        "ClickHouse INSERTs:      {inserts} ({:.1}/s), {rows} rows, {:.0} rows per INSERT",
        inserts as f64 / secs,
        rows as f64 / inserts.max(1) as f64
    );
    println!(
        "mirror: {mirror_jobs} jobs; restarts recorded (dry-run): {restarts}; App peak RSS {rss:.0} MiB"
    );
}

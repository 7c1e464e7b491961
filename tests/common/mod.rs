//! Test harness: the real router, pipeline and store, a real ClickHouse engine (a database of
//! its own per test), and the fake GitHub above. Payloads are built from the real fixtures.

#![allow(dead_code)]

pub mod binary;
pub mod fake_github;
pub mod payloads;
pub mod scenario;
pub mod trunk_history;

pub use payloads::{JobEvent, RunEvent, rest_job};
#[allow(unused_imports)] // used by the files that tell scenarios, not by every test file
pub use scenario::Scenario;

use autorevert::github::GitHub;
use autorevert::github::{GitHubAuth, GitHubConfig};
use autorevert::intake::signature::sign;
use autorevert::pipeline::{Engine, Pipeline, Timing};
use autorevert::restart::{Policy, RestartAction};
use autorevert::restart::{Restart, RestartKey};
use autorevert::server::{Parts, assemble};
use autorevert::store::Store;
use autorevert::store::{ClickHouseConfig, Tables};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use fake_github::{APP_ID, FakeGitHub};
use http_body_util::BodyExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

pub const SECRET: &str = "test-webhook-secret";
pub const INSTALLATION: u64 = 48123456;
pub const REPO: &str = "pytorch/pytorch";

/// The ClickHouse every test runs against. Never skipped: without one the tests fail.
pub fn clickhouse_url() -> String {
    std::env::var("CLICKHOUSE_URL").unwrap_or_else(|_| {
        panic!(
            "CLICKHOUSE_URL is not set. Run the tests with `scripts/test` (it starts the local \
             ClickHouse in clickhouse-local/), or point CLICKHOUSE_URL at a ClickHouse server."
        )
    })
}

/// A fresh database on the test ClickHouse, with the App's tables and the mirror in it.
pub async fn fresh_store() -> Store {
    let db = format!("t_{}", uuid::Uuid::new_v4().simple());
    let cfg = ClickHouseConfig {
        url: url::Url::parse(&clickhouse_url()).expect("CLICKHOUSE_URL is a URL"),
        user: None,
        password: None,
        tables: Tables {
            job: format!("{db}.workflow_job"),
            run: format!("{db}.workflow_run"),
            job_by_sha: format!("{db}.workflow_job_by_head_sha"),
            tests: format!("{db}.all_test_runs"),
            database: db,
        },
        ingest: true,
        timeout: Duration::from_secs(30),
    };
    let store = Store::new(&cfg);
    store
        .migrate()
        .await
        .expect("migrating a fresh test database");
    store
}

pub struct Options {
    pub action: RestartAction,
    pub max_restarts: u32,
    pub confirm_window: Duration,
    pub workflows: Vec<String>,
    pub min_spacing_mins: i64,
    pub max_restarts_per_hour: u32,
    pub kill_switch_ttl: Duration,
    /// Wait after a refused dispatch (doubling, at most 60 min).
    pub backoff_base_mins: i64,
    /// Heartbeat in `instances` (None: off; tests usually beat explicitly).
    pub heartbeat: Option<Duration>,
    pub workers: usize,
    pub queue_capacity: usize,
    /// How long a delivery waits for room in a full queue before a 503.
    pub queue_wait: Duration,
    /// The decision engine's settings.
    pub decide: autorevert::pipeline::decider::Settings,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            action: RestartAction::Run,
            max_restarts: 1,
            confirm_window: Duration::from_secs(20),
            workflows: vec!["trunk".into()],
            min_spacing_mins: 0,
            max_restarts_per_hour: 1000,
            kill_switch_ttl: Duration::ZERO,
            backoff_base_mins: 20,
            heartbeat: None,
            workers: 4,
            queue_capacity: 1024,
            queue_wait: Duration::from_secs(2),
            decide: Default::default(),
        }
    }
}

pub struct TestApp {
    pub router: Router,
    pub intake: Arc<autorevert::intake::webhook::Intake>,
    pub engine: Arc<Engine>,
    pub pipeline: Arc<Pipeline>,
    pub store: Store,
    pub github: FakeGitHub,
    /// The App's own GitHub client (pointed at the fake).
    pub client: GitHub,
    /// The delivery log's directory (a restart of the process reopens it).
    pub spool_dir: std::path::PathBuf,
    /// Deliveries the delivery log handed back at start-up.
    pub recovered: usize,
    /// The App's background tasks (they stop when this is dropped).
    pub tasks: autorevert::background::Tasks,
}

/// Waits until `f` holds, polling every 50 ms for at most `secs` seconds.
pub async fn eventually(secs: u64, mut f: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..secs * 20 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The value of a `/metrics` series with these labels, summed over the others (0 when
/// absent); a histogram's count.
pub fn metric(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus_parse::Value;
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

/// A plain HTTP client for talking to a running binary. reqwest is built without a default
/// TLS provider (the App installs ring's); install it here too, or a test that runs before
/// any App is assembled panics with "No provider set".
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub fn temp_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("autorevert-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl TestApp {
    pub async fn start() -> TestApp {
        TestApp::with(Options::default()).await
    }

    pub async fn with(o: Options) -> TestApp {
        // Logs only when asked for (RUST_LOG=autorevert=debug cargo test ...); the App's
        // ERROR events are always counted, for `Scenario::finish`.
        scenario::install_tracing();
        let store = fresh_store().await;
        let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
        TestApp::assemble(o, store, github, temp_dir()).await
    }

    /// Builds the App over an existing store, fake GitHub and delivery log: a new process.
    pub async fn assemble(
        o: Options,
        store: Store,
        github: FakeGitHub,
        spool_dir: std::path::PathBuf,
    ) -> TestApp {
        let key = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/keys/test-app.private-key.pem"
        ))
        .unwrap();
        let gh = GitHub::new(&GitHubConfig {
            api_url: url::Url::parse(&github.url).unwrap(),
            auth: GitHubAuth::App {
                app_id: APP_ID,
                key: jsonwebtoken::EncodingKey::from_rsa_pem(&key).unwrap(),
            },
            timeout: Duration::from_secs(5),
        })
        .unwrap();
        let policy = Policy {
            repos: vec![REPO.into()],
            workflows: o.workflows,
            main_branch: "main".into(),
            max_restarts: o.max_restarts,
            action: o.action,
            ingest: true,
            min_spacing: chrono::Duration::minutes(o.min_spacing_mins),
            backoff_base: chrono::Duration::minutes(o.backoff_base_mins),
            backoff_max: chrono::Duration::minutes(60),
            max_restarts_per_hour: o.max_restarts_per_hour,
            kill_switch_label: Some("ci: disable-autorevert".into()),
            simulate: false,
        };
        let app = assemble(Parts {
            policy,
            store: Some(store.clone()),
            github: Some(gh.clone()),
            timing: Timing {
                confirm_window: o.confirm_window,
                confirm_backoff: Duration::from_millis(50),
                dispatch_lookup_delay: Duration::from_millis(50),
                kill_switch_ttl: o.kill_switch_ttl,
            },
            secrets: vec![SecretString::from(SECRET.to_string())],
            decide: o.decide,
            spool_dir: Some(spool_dir.clone()),
            queue: autorevert::server::Queue {
                workers: o.workers,
                capacity: o.queue_capacity,
                wait: o.queue_wait,
            },
            tasks: autorevert::server::TaskPlan {
                heartbeat: o.heartbeat,
                ..Default::default() // tests run reconciler and sweep passes explicitly
            },
        })
        .await
        .expect("assembling the App");
        // As `serve` would be once start-up is done (schema, ledger): the tests that take
        // ClickHouse away at start-up use `assemble_unready`.
        for _ in 0..600 {
            if app.progress.snapshot().ready {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            app.progress.snapshot().ready,
            "start-up did not finish within 30 s"
        );
        TestApp {
            router: app.router,
            intake: app.intake,
            engine: app.engine,
            pipeline: app.pipeline,
            store,
            github,
            client: gh,
            spool_dir,
            recovered: app.recovered,
            tasks: app.tasks,
        }
    }

    /// `GET /healthz` as JSON.
    pub async fn health(&self) -> Value {
        let resp = self
            .router
            .clone()
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Delivers a body as GitHub would (signed, fresh delivery id); returns status and JSON.
    pub async fn deliver(&self, event: &str, body: &[u8]) -> (StatusCode, Value) {
        let id = uuid::Uuid::new_v4().to_string();
        self.deliver_as(event, &id, body).await
    }

    pub async fn deliver_as(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
    ) -> (StatusCode, Value) {
        self.post(
            Some(event),
            Some(delivery),
            Some(sign(SECRET, body)),
            body.to_vec(),
        )
        .await
    }

    /// A raw POST /webhook with any subset of GitHub's headers.
    pub async fn post(
        &self,
        event: Option<&str>,
        delivery: Option<&str>,
        signature: Option<String>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = Request::post("/webhook").header("content-type", "application/json");
        if let Some(e) = event {
            req = req.header("x-github-event", e);
        }
        if let Some(d) = delivery {
            req = req.header("x-github-delivery", d);
        }
        if let Some(s) = signature {
            req = req.header("x-hub-signature-256", s);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
        (status, json)
    }

    /// Waits until every delivery and follow-up has been handled.
    pub async fn settle(&self) {
        assert!(
            self.engine.wait_idle(Duration::from_secs(60)).await,
            "the pipeline did not settle within 60 s"
        );
    }

    /// The environment that points the CLI at this test's ClickHouse database.
    pub fn clickhouse_env(&self) -> Vec<(String, String)> {
        let t = self.store.tables();
        vec![
            ("CLICKHOUSE_URL".into(), clickhouse_url()),
            ("CLICKHOUSE_DATABASE".into(), t.database.clone()),
            ("CLICKHOUSE_JOB_TABLE".into(), t.job.clone()),
            ("CLICKHOUSE_RUN_TABLE".into(), t.run.clone()),
            ("CLICKHOUSE_JOB_BY_SHA_TABLE".into(), t.job_by_sha.clone()),
            ("CLICKHOUSE_TESTS_TABLE".into(), t.tests.clone()),
        ]
    }

    pub fn key(sha: &str) -> RestartKey {
        RestartKey {
            repo: REPO.into(),
            workflow: "trunk".into(),
            head_sha: sha.into(),
        }
    }

    /// The restarts of a commit as ClickHouse has them (FINAL), not as memory does.
    pub async fn stored_restarts(&self, sha: &str) -> Vec<Restart> {
        self.store.restarts_for(&TestApp::key(sha)).await.unwrap()
    }

    pub async fn event_kinds(&self, sha: &str) -> Vec<String> {
        self.store
            .events_for(&TestApp::key(sha))
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }
}

// ---- payloads, built from the real fixtures in fixtures/github (see payloads.rs) ----

pub fn fixture_bytes(rel: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A `workflow_run` delivery of trunk on pytorch/pytorch; `edit` changes anything else.
/// Positional, kept for the older tests: new code says the same with [`RunEvent`].
pub fn run_payload(
    action: &str,
    id: u64,
    sha: &str,
    event: &str,
    branch: &str,
    conclusion: Option<&str>,
    edit: impl FnOnce(&mut Value),
) -> Vec<u8> {
    let status = if action == "completed" {
        "completed"
    } else {
        action
    };
    let mut p = RunEvent::new(action, sha)
        .run(id)
        .event(event)
        .branch(branch)
        .status(status)
        .conclusion(conclusion)
        .json();
    edit(&mut p);
    serde_json::to_vec(&p).unwrap()
}

/// A failed `trunk` push run on main: what the App restarts.
pub fn failure(sha: &str, run: u64) -> Vec<u8> {
    RunEvent::failure(sha).run(run).body()
}

/// A `workflow_job` delivery of a trunk job on pytorch/pytorch.
/// Positional, kept for the older tests: new code says the same with [`JobEvent`].
pub fn job_payload(
    action: &str,
    id: u64,
    run_id: u64,
    sha: &str,
    branch: &str,
    name: &str,
    conclusion: Option<&str>,
) -> Vec<u8> {
    let status = if action == "completed" {
        "completed"
    } else {
        action
    };
    JobEvent::new(action, sha, name)
        .id(id)
        .run(run_id)
        .branch(branch)
        .status(status)
        .conclusion(conclusion)
        .body()
}

pub fn sha(n: u32) -> String {
    format!("{:040x}", 0xabc0_0000_u64 + n as u64)
}

pub const TEST_1: &str = "linux-jammy-py3.10-gcc11 / test (default, 1, 2, linux.4xlarge)";
pub const TEST_2: &str = "linux-jammy-py3.10-gcc11 / test (default, 2, 2, linux.4xlarge)";
pub const BUILD: &str = "linux-jammy-py3.10-gcc11 / build";

impl TestApp {
    /// The original trunk run on main: its jobs complete, then the run fails.
    pub async fn original_failure(&self, sha: &str, run_id: u64, jobs: &[(&str, &str)]) {
        for (i, (name, concl)) in jobs.iter().enumerate() {
            let body = job_payload(
                "completed",
                run_id * 100 + i as u64,
                run_id,
                sha,
                "main",
                name,
                Some(concl),
            );
            assert_eq!(
                self.deliver("workflow_job", &body).await.0,
                StatusCode::ACCEPTED
            );
        }
        let body = run_payload(
            "completed",
            run_id,
            sha,
            "push",
            "main",
            Some("failure"),
            |_| {},
        );
        assert_eq!(
            self.deliver("workflow_run", &body).await.0,
            StatusCode::ACCEPTED
        );
    }

    /// GitHub's follow-ups for a dispatched run: requested, its jobs, completed.
    pub async fn restart_follow_ups(
        &self,
        sha: &str,
        run_id: u64,
        jobs: &[(&str, &str)],
        conclusion: &str,
    ) {
        let tag = format!("trunk/{sha}");
        let body = run_payload(
            "requested",
            run_id,
            sha,
            "workflow_dispatch",
            &tag,
            None,
            |_| {},
        );
        assert_eq!(
            self.deliver("workflow_run", &body).await.0,
            StatusCode::ACCEPTED
        );
        for (i, (name, _)) in jobs.iter().enumerate() {
            let body = job_payload(
                "queued",
                run_id * 100 + i as u64,
                run_id,
                sha,
                &tag,
                name,
                None,
            );
            assert_eq!(
                self.deliver("workflow_job", &body).await.0,
                StatusCode::ACCEPTED
            );
        }
        for (i, (name, concl)) in jobs.iter().enumerate() {
            let body = job_payload(
                "completed",
                run_id * 100 + i as u64,
                run_id,
                sha,
                &tag,
                name,
                Some(concl),
            );
            assert_eq!(
                self.deliver("workflow_job", &body).await.0,
                StatusCode::ACCEPTED
            );
        }
        let body = run_payload(
            "completed",
            run_id,
            sha,
            "workflow_dispatch",
            &tag,
            Some(conclusion),
            |_| {},
        );
        assert_eq!(
            self.deliver("workflow_run", &body).await.0,
            StatusCode::ACCEPTED
        );
    }
}

/// A TCP proxy in front of the test ClickHouse that can be switched off, to take
/// ClickHouse "down" and bring it back while the App runs, or made to hang (a partition).
#[derive(Clone)]
pub struct Outage {
    pub url: String,
    mode: Arc<std::sync::atomic::AtomicU8>,
}

const UP: u8 = 0;
const DOWN: u8 = 1;
const HUNG: u8 = 2;
const ANSWERS_LOST: u8 = 3;

impl Outage {
    pub async fn start(upstream: &str) -> Outage {
        use std::sync::atomic::Ordering::SeqCst;
        let target = url::Url::parse(upstream).unwrap();
        let target = format!("{}:{}", target.host_str().unwrap(), target.port().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mode = Arc::new(std::sync::atomic::AtomicU8::new(UP));
        let flag = mode.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                match flag.load(SeqCst) {
                    // Dropped: connection closed, as a dead server's would be.
                    DOWN => continue,
                    // Requests reach ClickHouse and are carried out; answers never return.
                    ANSWERS_LOST => {
                        let target = target.clone();
                        tokio::spawn(async move {
                            if let Ok(outbound) = tokio::net::TcpStream::connect(target).await {
                                let (mut from_server, mut to_server) = outbound.into_split();
                                let (mut from_client, _to_client) = inbound.into_split();
                                let mut dropped = tokio::io::sink();
                                let _ = tokio::join!(
                                    tokio::io::copy(&mut from_client, &mut to_server),
                                    tokio::io::copy(&mut from_server, &mut dropped),
                                );
                                std::future::pending::<()>().await
                            }
                        });
                        continue;
                    }
                    // Accepted and never answered, never closed.
                    HUNG => {
                        tokio::spawn(async move {
                            let _held = inbound;
                            std::future::pending::<()>().await
                        });
                        continue;
                    }
                    _ => {}
                }
                let target = target.clone();
                let flag = flag.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        // Cut established connections too when the switch goes off; a hang
                        // freezes them instead (held open, nothing more forwarded).
                        let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                        let cut = async {
                            while flag.load(SeqCst) == UP {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        };
                        tokio::select! { _ = copy => return, _ = cut => {} }
                        if flag.load(SeqCst) != DOWN {
                            std::future::pending::<()>().await
                        }
                    }
                });
            }
        });
        Outage { url, mode }
    }

    pub fn down(&self) {
        self.mode.store(DOWN, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(60)); // as in `hang`
    }

    /// Connections open and stay open, but nothing is answered: a network partition that
    /// drops packets, or a stuck server. Connections made while hung stay hung.
    pub fn hang(&self) {
        self.mode.store(HUNG, std::sync::atomic::Ordering::SeqCst);
        // Established connections notice within 20 ms; none may slip a request through.
        std::thread::sleep(Duration::from_millis(60));
    }

    /// Requests reach ClickHouse and are carried out, but no answer comes back (a one-way
    /// partition): the client sees a timeout for an INSERT that was written.
    pub fn lose_answers(&self) {
        self.mode
            .store(ANSWERS_LOST, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn up(&self) {
        self.mode.store(UP, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A server that is not there, then is: while closed, nothing listens on its port and every
/// connection is refused (GitHub unreachable); once opened, it forwards to `upstream`.
pub struct Gate {
    pub url: String,
    addr: std::net::SocketAddr,
    upstream: String,
    open: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Gate {
    pub async fn closed(upstream: &str) -> Gate {
        let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe); // the port is free again: connecting to it is refused
        let target = url::Url::parse(upstream).unwrap();
        Gate {
            url: format!("http://{addr}"),
            addr,
            upstream: format!("{}:{}", target.host_str().unwrap(), target.port().unwrap()),
            open: std::sync::Mutex::new(None),
        }
    }

    pub async fn open(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let upstream = self.upstream.clone();
        let task = tokio::spawn(async move {
            // Connections live in this set: closing the gate drops them all.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        *self.open.lock().unwrap() = Some(task);
    }

    pub async fn close(&self) {
        let task = self.open.lock().unwrap().take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
    }
}

/// A store over the same database, reached through `via` (e.g. an `Outage` proxy).
pub fn store_via(store: &Store, via: &str) -> Store {
    store_via_within(store, via, Duration::from_secs(30))
}

/// `store_via` whose every ClickHouse call gives up after `timeout`.
pub fn store_via_within(store: &Store, via: &str, timeout: Duration) -> Store {
    let t = store.tables().clone();
    Store::new(&ClickHouseConfig {
        url: url::Url::parse(via).unwrap(),
        user: None,
        password: None,
        tables: t,
        ingest: true,
        timeout,
    })
}

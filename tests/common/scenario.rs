//! Scenarios: a test reads as what happens on GitHub and what the App must have done, and
//! it ends strictly (after rust-lang/bors's `BorsTester`).
//!
//! ```ignore
//! let mut s = Scenario::start().await;
//! s.push_fails(&sha, &[(TEST_1, "failure"), (BUILD, "success")]).await;
//! s.expect_dispatches(1).await;
//! let restart = s.restart_run(&sha);
//! s.github_runs(restart, &[(TEST_1, "failure"), (BUILD, "success")], "failure").await;
//! assert_eq!(s.restart(&sha).await.outcome, Some(Verdict::Reproduced));
//! s.finish().await;
//! ```
//!
//! GitHub's side changes the fake's state first (`FakeGitHub::push_run`, `queue_jobs`,
//! `complete_jobs`, `complete_run`) and every delivery is generated from that state
//! (`FakeGitHub::run_event`, `job_events`), so a run's ids, tag, trigger and job names
//! cannot disagree between what GitHub's API answers and what its webhooks said.
//!
//! `finish` settles the App, then fails the test
//! * for every dispatch POST the fake GitHub received that the test did not claim with
//!   `expect_dispatches` or `take_dispatches` (a POST counts once it passed the token
//!   check, whatever it was answered; see `FakeGitHub::dispatches`);
//! * for every ERROR event the App (`autorevert::*`) logged since the scenario started: the
//!   App logs the failures it swallows (a row not recorded, a delivery-log write, a failed
//!   read) with `tracing::error!`. A test that provokes one says `allow_errors()`.
//!
//! A scenario dropped without `finish` fails the test too.
//!
//! How ERROR events are counted: one global `tracing` subscriber per test process (cargo
//! runs each `tests/*.rs` as a process of its own) whose layer appends every ERROR event
//! with an `autorevert` target to one list. Per-test attribution by a thread-local
//! dispatcher (`tracing::subscriber::set_default`) would miss the App's own threads (the
//! delivery log's writer and spare-segment threads) and any multi-threaded runtime, so
//! scenarios instead run one at a time: each holds a process-wide lock from `start` until
//! it is dropped, and reads only the errors appended since it started. Tests in a file that
//! uses `Scenario` should all use it: a plain `TestApp` alongside is not kept apart, and
//! its errors would be blamed on whichever scenario runs at the time.

use super::fake_github::Dispatch;
use super::{Options, TestApp};
use autorevert::restart::Restart;
use axum::http::StatusCode;
use serde_json::Value;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer};

/// ERROR events the App logged in this process, as `target: message field=value ...`.
static APP_ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static INSTALLED: OnceLock<bool> = OnceLock::new();
/// Held by each scenario while it runs: scenarios run one at a time (see above).
static ONE_AT_A_TIME: LazyLock<Arc<tokio::sync::Mutex<()>>> = LazyLock::new(Default::default);

fn app_errors() -> std::sync::MutexGuard<'static, Vec<String>> {
    APP_ERRORS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Installs this process's `tracing` subscriber once: the ERROR counter always, and the
/// test log writer when `RUST_LOG` is set (`RUST_LOG=autorevert=debug cargo test ...`).
/// Returns whether ours is the process's subscriber (it is not when something else set
/// one first; scenarios then refuse to run, since they could not see errors).
pub fn install_tracing() -> bool {
    *INSTALLED.get_or_init(|| {
        use tracing_subscriber::prelude::*;
        let logs = std::env::var_os("RUST_LOG").is_some().then(|| {
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(EnvFilter::from_default_env())
        });
        let errors =
            CountErrors.with_filter(Targets::new().with_target("autorevert", LevelFilter::ERROR));
        tracing_subscriber::registry()
            .with(logs)
            .with(errors)
            .try_init()
            .is_ok()
    })
}

struct CountErrors;

impl<S: tracing::Subscriber> Layer<S> for CountErrors {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut line = event.metadata().target().to_string();
        event.record(&mut Line(&mut line));
        app_errors().push(line);
    }
}

struct Line<'a>(&'a mut String);

impl tracing::field::Visit for Line<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = if field.name() == "message" {
            write!(self.0, ": {value:?}")
        } else {
            write!(self.0, " {}={value:?}", field.name())
        };
    }
}

/// A `TestApp` (reachable through `Deref`: `s.github`, `s.deliver`, `s.stored_restarts`...)
/// with GitHub's side as steps, claimed dispatches, and a strict `finish`.
pub struct Scenario {
    app: TestApp,
    /// Dispatches the test has claimed: the first `claimed` of `github.dispatches()`.
    claimed: usize,
    /// Where this scenario's errors start in `APP_ERRORS`.
    errors_from: usize,
    errors_allowed: bool,
    finished: bool,
    _one_at_a_time: tokio::sync::OwnedMutexGuard<()>,
}

impl std::ops::Deref for Scenario {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl Scenario {
    pub async fn start() -> Scenario {
        Scenario::with(Options::default()).await
    }

    pub async fn with(o: Options) -> Scenario {
        assert!(
            install_tracing(),
            "another tracing subscriber was installed first: scenarios cannot see the App's errors"
        );
        let turn = ONE_AT_A_TIME.clone().lock_owned().await;
        let errors_from = app_errors().len();
        Scenario {
            app: TestApp::with(o).await,
            claimed: 0,
            errors_from,
            errors_allowed: false,
            finished: false,
            _one_at_a_time: turn,
        }
    }

    /// This scenario provokes errors on purpose: `finish` does not fail on them.
    pub fn allow_errors(&mut self) {
        self.errors_allowed = true;
    }

    /// The ERROR events the App logged since this scenario started.
    pub fn errors(&self) -> Vec<String> {
        app_errors()[self.errors_from..].to_vec()
    }

    /// Delivers a body as GitHub would and asserts the App took it (202).
    pub async fn deliver_ok(&self, event: &str, body: &[u8]) -> Value {
        let (status, answer) = self.app.deliver(event, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{event}: {answer}");
        answer
    }

    // ---- GitHub's side: the fake's state changes, then its deliveries follow from it ----

    /// GitHub creates the jobs of run `run_id`: `workflow_run requested`, then one
    /// `workflow_job queued` per name.
    pub async fn github_queues(&self, run_id: u64, names: &[&str]) {
        let gh = &self.app.github;
        self.deliver_ok("workflow_run", &gh.run_event(run_id, "requested"))
            .await;
        for job in gh.queue_jobs(run_id, names) {
            let body = gh.job_event(run_id, job, "queued");
            self.deliver_ok("workflow_job", &body).await;
        }
    }

    /// GitHub runs queued jobs to the end: `workflow_run in_progress`, one
    /// `workflow_job completed` per job named here with its conclusion, then
    /// `workflow_run completed` with `conclusion`.
    pub async fn github_completes(&self, run_id: u64, jobs: &[(&str, &str)], conclusion: &str) {
        let gh = &self.app.github;
        gh.start_run(run_id);
        self.deliver_ok("workflow_run", &gh.run_event(run_id, "in_progress"))
            .await;
        for job in gh.complete_jobs(run_id, jobs) {
            let body = gh.job_event(run_id, job, "completed");
            self.deliver_ok("workflow_job", &body).await;
        }
        gh.complete_run(run_id, conclusion);
        self.deliver_ok("workflow_run", &gh.run_event(run_id, "completed"))
            .await;
    }

    /// GitHub runs `run_id` from start to finish, each job ending with its conclusion.
    pub async fn github_runs(&self, run_id: u64, jobs: &[(&str, &str)], conclusion: &str) {
        let names: Vec<&str> = jobs.iter().map(|(n, _)| *n).collect();
        self.github_queues(run_id, &names).await;
        self.github_completes(run_id, jobs, conclusion).await;
    }

    /// A push of `sha` to main runs `trunk`, and the run fails with these job conclusions.
    /// Returns the run's id.
    pub async fn push_fails(&self, sha: &str, jobs: &[(&str, &str)]) -> u64 {
        let run_id = self.app.github.push_run(sha);
        self.github_runs(run_id, jobs, "failure").await;
        run_id
    }

    /// The one run GitHub created on `trunk/<sha>` for a dispatch.
    pub fn restart_run(&self, sha: &str) -> u64 {
        let runs = self.app.github.dispatched_runs(sha);
        assert_eq!(
            runs.len(),
            1,
            "GitHub holds {} dispatched runs on trunk/{sha}: {runs:?}",
            runs.len()
        );
        runs[0].id
    }

    // ---- what the App did ----

    /// Settles the App; the one restart of `sha` in the ledger, as ClickHouse has it.
    pub async fn restart(&self, sha: &str) -> Restart {
        self.app.settle().await;
        let mut rs = self.app.stored_restarts(sha).await;
        assert_eq!(rs.len(), 1, "restarts of {sha}: {rs:?}");
        rs.remove(0)
    }

    /// Settles the App and claims every dispatch not claimed yet.
    pub async fn take_dispatches(&mut self) -> Vec<Dispatch> {
        self.app.settle().await;
        let new = self.app.github.dispatches().split_off(self.claimed);
        self.claimed += new.len();
        new
    }

    /// Settles the App and claims the dispatches not claimed yet: exactly `n` of them.
    pub async fn expect_dispatches(&mut self, n: usize) -> Vec<Dispatch> {
        let new = self.take_dispatches().await;
        assert_eq!(
            new.len(),
            n,
            "expected {n} new dispatches, GitHub received {}: {}",
            new.len(),
            describe(&new)
        );
        new
    }

    /// Settles the App; fails on unclaimed dispatches and on errors the App logged.
    pub async fn finish(mut self) {
        self.finished = true;
        self.app.settle().await;
        let unclaimed = self.app.github.dispatches().split_off(self.claimed);
        assert!(
            unclaimed.is_empty(),
            "{} unclaimed dispatch(es) at the end of the scenario: {}",
            unclaimed.len(),
            describe(&unclaimed)
        );
        let errors = self.errors();
        assert!(
            self.errors_allowed || errors.is_empty(),
            "the App logged {} error(s) during the scenario:\n{}",
            errors.len(),
            errors.join("\n")
        );
    }
}

fn describe(ds: &[Dispatch]) -> String {
    ds.iter()
        .map(|d| format!("[{} {} {}]", d.repo, d.workflow, d.body))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if !self.finished && !std::thread::panicking() {
            panic!("a scenario must end with `finish().await` (its checks never ran)");
        }
    }
}

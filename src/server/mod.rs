//! The App as `serve` runs it: its parts assembled (`assemble`), its routes (`routes`),
//! and serving until SIGTERM with a graceful drain. `setup` is what `serve` runs instead before
//! the App has credentials (GitHub's App-manifest flow).

pub mod connections;
pub mod descriptors;
pub mod healthz;
pub mod metrics;
pub mod routes;
pub mod setup;
pub mod startup;
pub mod status;

pub use connections::Limits;

use crate::background::heartbeat::{self, Heartbeat};
use crate::background::reconcile::Reconciler;
use crate::background::{Tasks, redeliver};
use crate::github::GitHub;
use crate::intake::delivery_log::DeliveryLog;
use crate::intake::webhook::Intake;
use crate::intake::{Delivery, DeliveryQueue};
use crate::pipeline::effects::{Actions, ClickHouseEvidence, Evidence, MemoryEvidence, NoGitHub};
use crate::pipeline::{Engine, Pipeline, Start, Timing};
use crate::restart::Policy;
use crate::store::Store;
use crate::store::recorder::{MAX_BUFFERED_ROWS, Recorder};
use anyhow::Context;
use axum::Router;
use secrecy::SecretString;
use startup::StartupStatus;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Everything `serve` runs, assembled the same way for the tests.
pub struct App {
    pub router: Router,
    pub intake: Arc<Intake>,
    pub pipeline: Arc<Pipeline>,
    pub engine: Arc<Engine>,
    /// The background tasks started (reconciler, redelivery sweep, heartbeat).
    pub tasks: Tasks,
    /// Deliveries from the delivery log to be handled again (the backlog).
    pub recovered: usize,
    /// Start-up: schema, ledger, then `ready` (aborted if the App stops first).
    pub startup: tokio::task::JoinHandle<()>,
    /// Where start-up stands.
    pub progress: StartupStatus,
    /// This instance's heartbeat (`serve` records the clean stop).
    pub heartbeat: Option<Arc<Heartbeat>>,
}

pub struct Parts {
    pub policy: Policy,
    pub store: Option<Store>,
    pub github: Option<GitHub>,
    pub timing: Timing,
    pub secrets: Vec<SecretString>,
    /// The decision engine's settings.
    pub decide: crate::pipeline::decider::Settings,
    pub spool_dir: Option<PathBuf>,
    pub queue: Queue,
    pub tasks: TaskPlan,
}

/// The work queue: its workers and bounds.
#[derive(Debug, Clone)]
pub struct Queue {
    pub workers: usize,
    pub capacity: usize,
    /// How long a delivery waits for room in a full queue before intake answers 503.
    pub wait: Duration,
}

/// Which background tasks run, and how often (None: off).
#[derive(Debug, Clone, Default)]
pub struct TaskPlan {
    /// Reconcile with GitHub every `.0`, looking back `.1`.
    pub reconcile: Option<(Duration, Duration)>,
    /// Redelivery sweep every `.0`, at most `.1` per pass (App auth only).
    pub redeliver: Option<(Duration, usize)>,
    /// Heartbeat in `instances` every this often, to notice a second instance.
    pub heartbeat: Option<Duration>,
}

/// Assembles the App without waiting for anything outside the process: the delivery log
/// is opened and what it held becomes the backlog; the workers, the background tasks and
/// the backlog wait for start-up (`startup`: schema and ledger, retried until ClickHouse
/// answers), while intake takes deliveries at once.
pub async fn assemble(p: Parts) -> anyhow::Result<App> {
    metrics::handle(); // recording starts before the first delivery
    let (log, backlog, ids) = open_log(&p)?;
    let recovered = backlog.len();
    let (evidence, actions) = effects(&p, &log);
    let engine = Arc::new(Engine::new(
        p.policy.clone(),
        evidence,
        actions,
        p.timing.clone(),
        p.decide.clone(),
    ));
    let (ready_tx, ready) = watch::channel(false);
    let start = Start {
        ready: ready.clone(),
        backlog,
    };
    let pipeline = Arc::new(Pipeline::start(
        engine.clone(),
        p.queue.workers,
        p.queue.capacity,
        start,
    ));
    let queue: Arc<dyn DeliveryQueue> = pipeline.clone();
    let intake = Arc::new(Intake::new(p.secrets.clone(), queue, log, p.queue.wait));
    intake.remember(ids);
    if recovered > 0 {
        tracing::info!(
            deliveries = recovered,
            "deliveries left from the last run are handled first"
        );
    }
    let (tasks, heartbeat) = start_tasks(&p, &engine, &pipeline, &intake, ready);
    let status = StartupStatus::default();
    let startup = tokio::spawn(startup::run(
        p.store.clone(),
        engine.clone(),
        ready_tx,
        status.clone(),
    ));
    let router = routes::router(routes::Health {
        intake: intake.clone(),
        pipeline: pipeline.clone(),
        tasks: tasks.status(),
        heartbeat: heartbeat.clone(),
        startup: status.clone(),
        store: p.store.clone(),
        github: p.github.clone(),
    });
    Ok(App {
        router,
        intake,
        pipeline,
        engine,
        tasks,
        recovered,
        startup,
        progress: status,
        heartbeat,
    })
}

/// The delivery log, what it held unfinished (as deliveries, in log order), and every id
/// it held (to recognise redeliveries).
fn open_log(p: &Parts) -> anyhow::Result<(Option<DeliveryLog>, Vec<Delivery>, Vec<String>)> {
    let Some(dir) = &p.spool_dir else {
        return Ok((None, Vec::new(), Vec::new()));
    };
    let (log, rec) = DeliveryLog::open(dir)
        .with_context(|| format!("cannot open the delivery log in {}", dir.display()))?;
    let backlog = rec
        .pending
        .into_iter()
        .map(|r| Delivery {
            id: r.id,
            event_name: r.event_name,
            event: r.event,
            received_at: chrono::DateTime::from_timestamp_millis(r.received_at_ms)
                .unwrap_or_else(chrono::Utc::now),
            body_bytes: r.body_bytes,
            seq: Some(r.seq),
            replayed: true,
        })
        .collect();
    Ok((Some(log), backlog, rec.ids))
}

/// Where records go and what is asked of GitHub: ClickHouse and GitHub when configured,
/// memory and "nothing is sent" otherwise.
fn effects(p: &Parts, log: &Option<DeliveryLog>) -> (Arc<dyn Evidence>, Arc<dyn Actions>) {
    let evidence: Arc<dyn Evidence> = match &p.store {
        // At most one INSERT per table per second, or per 5,000 rows under load: ClickHouse
        // wants few, large inserts. Readers that need fresh rows flush first.
        Some(store) => {
            let every = Duration::from_secs(1);
            let recorder =
                Recorder::start(store.clone(), log.clone(), every, 5000, MAX_BUFFERED_ROWS);
            Arc::new(ClickHouseEvidence::new(store.clone(), recorder))
        }
        None => Arc::new(MemoryEvidence::default()),
    };
    let actions: Arc<dyn Actions> = match &p.github {
        Some(gh) => Arc::new(gh.clone()),
        None => Arc::new(NoGitHub),
    };
    (evidence, actions)
}

/// Starts every background task the parts configure: the reconciler and the redelivery
/// sweep need GitHub (the sweep, App auth and a delivery log for its state), the heartbeat
/// needs ClickHouse.
fn start_tasks(
    p: &Parts,
    engine: &Arc<Engine>,
    pipeline: &Arc<Pipeline>,
    intake: &Arc<Intake>,
    ready: watch::Receiver<bool>,
) -> (Tasks, Option<Arc<Heartbeat>>) {
    let mut tasks = Tasks::after(ready);
    if let (Some((every, lookback)), Some(gh)) = (p.tasks.reconcile, &p.github) {
        let (engine, pipeline, gh) = (engine.clone(), pipeline.clone(), gh.clone());
        tasks.every("reconcile", every, move || {
            let (engine, pipeline, gh) = (engine.clone(), pipeline.clone(), gh.clone());
            async move {
                let r = Reconciler {
                    engine: &engine,
                    pipeline: &pipeline,
                    github: &gh,
                    lookback,
                };
                Ok(r.pass().await)
            }
        });
    }
    match (p.tasks.redeliver, &p.github, &p.store, &p.spool_dir) {
        (Some(sweep), Some(gh), Some(store), Some(dir)) if gh.is_app() => {
            let state = dir.join("redelivery-state.json");
            redeliver::start(
                &mut tasks,
                gh.clone(),
                intake.clone(),
                store.clone(),
                state,
                sweep,
            );
        }
        (Some(_), Some(gh), _, _) if !gh.is_app() => {
            tracing::warn!(
                "REDELIVER_SECS is set but GitHub auth is a token: the redelivery sweep needs App authentication; not started"
            );
        }
        _ => {}
    }
    let heartbeat = match (p.tasks.heartbeat, &p.store) {
        (Some(every), Some(store)) => {
            let hb = Heartbeat::new(store.clone(), heartbeat::me(), every);
            hb.start(&mut tasks);
            Some(hb)
        }
        _ => None,
    };
    (tasks, heartbeat)
}

/// Serves until SIGTERM or Ctrl-C, then stops taking deliveries, finishes the queued ones
/// and waits for follow-ups: all within `limits.grace`, whatever clients do.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    limits: Limits,
) -> anyhow::Result<()> {
    let App {
        router,
        pipeline,
        tasks,
        heartbeat,
        startup,
        ..
    } = app;
    let stopped_at = connections::serve(listener, router, &limits, shutdown_signal()).await;
    let deadline = stopped_at + limits.grace;
    let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
    tracing::info!("stopped taking deliveries; finishing queued work");
    startup.abort(); // not ready yet: the workers stop waiting, the log keeps the deliveries
    tasks.stop(left().min(Duration::from_secs(2))).await;
    if !pipeline.shutdown(left()).await {
        tracing::warn!(
            "follow-ups still running at exit; they resume from the ledger at the next start"
        );
    }
    if let Some(h) = heartbeat
        && tokio::time::timeout(left(), h.record_stop()).await.is_err()
    {
        tracing::warn!("no time left to record the stop in instances");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

//! The App as `serve` runs it: its parts assembled (`assemble`), its routes (`routes`),
//! and serving until SIGTERM with a graceful drain.

pub mod connections;
pub mod descriptors;
pub mod routes;

pub use connections::Limits;

use crate::background::heartbeat::{self, Heartbeat};
use crate::background::reconcile::Reconciler;
use crate::background::{Tasks, redeliver};
use crate::github::GitHub;
use crate::intake::delivery_log::{DeliveryLog, Recovered};
use crate::intake::webhook::Intake;
use crate::intake::{Delivery, DeliveryQueue};
use crate::pipeline::effects::{Actions, ClickHouseEvidence, Evidence, MemoryEvidence, NoGitHub};
use crate::pipeline::{Engine, Pipeline, Timing};
use crate::restart::Policy;
use crate::store::Store;
use crate::store::recorder::{MAX_BUFFERED_ROWS, Recorder};
use anyhow::Context;
use axum::Router;
use secrecy::SecretString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Everything `serve` runs, assembled the same way for the tests.
pub struct App {
    pub router: Router,
    pub intake: Arc<Intake>,
    pub pipeline: Arc<Pipeline>,
    pub engine: Arc<Engine>,
    /// The background tasks started (reconciler, redelivery sweep, heartbeat).
    pub tasks: Tasks,
    /// Deliveries from the delivery log handled again at start-up.
    pub recovered: usize,
    pub restarts_loaded: usize,
    /// This instance's heartbeat (`serve` records the clean stop).
    pub heartbeat: Option<Arc<Heartbeat>>,
}

pub struct Parts {
    pub policy: Policy,
    pub store: Option<Store>,
    pub github: Option<GitHub>,
    pub timing: Timing,
    pub secrets: Vec<SecretString>,
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

/// Opens the delivery log, reloads the ledger, starts the workers and the background
/// tasks, and queues again every delivery that was answered but not fully handled before
/// the last stop.
pub async fn assemble(p: Parts) -> anyhow::Result<App> {
    let (log, recovered) = match &p.spool_dir {
        Some(dir) => {
            let (log, rec) = DeliveryLog::open(dir)
                .with_context(|| format!("cannot open the delivery log in {}", dir.display()))?;
            (Some(log), Some(rec))
        }
        None => (None, None),
    };
    let evidence: Arc<dyn Evidence> = match &p.store {
        // At most one INSERT per table per second, or per 5,000 rows under load: ClickHouse
        // wants few, large inserts. Readers that need fresh rows flush first.
        Some(store) => {
            let recorder = Recorder::start(
                store.clone(),
                log.clone(),
                Duration::from_secs(1),
                5000,
                MAX_BUFFERED_ROWS,
            );
            Arc::new(ClickHouseEvidence::new(store.clone(), recorder))
        }
        None => Arc::new(MemoryEvidence::default()),
    };
    let actions: Arc<dyn Actions> = match &p.github {
        Some(gh) => Arc::new(gh.clone()),
        None => Arc::new(NoGitHub),
    };
    let engine = Arc::new(Engine::new(
        p.policy.clone(),
        evidence,
        actions,
        p.timing.clone(),
    ));
    let restarts_loaded = engine.resume().await?;
    let pipeline = Arc::new(Pipeline::start(
        engine.clone(),
        p.queue.workers,
        p.queue.capacity,
    ));
    let queue: Arc<dyn DeliveryQueue> = pipeline.clone();
    let intake = Arc::new(Intake::new(p.secrets.clone(), queue, log, p.queue.wait));
    let recovered = match recovered {
        Some(rec) => requeue(&intake, &pipeline, rec).await,
        None => 0,
    };
    let (tasks, heartbeat) = start_tasks(&p, &engine, &pipeline, &intake);
    let router = routes::router(routes::Health {
        intake: intake.clone(),
        pipeline: pipeline.clone(),
        tasks: tasks.status(),
        heartbeat: heartbeat.clone(),
    });
    Ok(App {
        router,
        intake,
        pipeline,
        engine,
        tasks,
        recovered,
        restarts_loaded,
        heartbeat,
    })
}

/// Queues again what the delivery log held unfinished; remembers every id it held.
async fn requeue(intake: &Intake, pipeline: &Pipeline, rec: Recovered) -> usize {
    intake.remember(rec.ids);
    let mut requeued = 0;
    for r in rec.pending {
        let d = Delivery {
            id: r.id,
            event_name: r.event_name,
            event: r.event,
            received_at: chrono::DateTime::from_timestamp_millis(r.received_at_ms)
                .unwrap_or_else(chrono::Utc::now),
            body_bytes: r.body_bytes,
            seq: Some(r.seq),
            replayed: true,
        };
        if pipeline.enqueue(d).await.is_ok() {
            requeued += 1;
        }
    }
    if requeued > 0 {
        tracing::info!(
            deliveries = requeued,
            "handling deliveries left from the last run"
        );
    }
    requeued
}

/// Starts every background task the parts configure: the reconciler and the redelivery
/// sweep need GitHub (the sweep, App auth and a delivery log for its state), the heartbeat
/// needs ClickHouse.
fn start_tasks(
    p: &Parts,
    engine: &Arc<Engine>,
    pipeline: &Arc<Pipeline>,
    intake: &Arc<Intake>,
) -> (Tasks, Option<Arc<Heartbeat>>) {
    let mut tasks = Tasks::default();
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
        ..
    } = app;
    let stopped_at = connections::serve(listener, router, &limits, shutdown_signal()).await;
    let deadline = stopped_at + limits.grace;
    let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
    tracing::info!("stopped taking deliveries; finishing queued work");
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

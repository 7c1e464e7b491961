//! The HTTP server: routes, layers, start-up wiring and graceful shutdown.

use crate::decide::Policy;
use crate::github::GitHub;
use crate::pipeline::{Delivery, Engine, Pipeline, Timing};
use crate::spool::Spool;
use crate::store::Store;
use crate::webhook::{self, Intake, MAX_BODY_BYTES};
use anyhow::Context;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::SecretString;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Everything `serve` runs, assembled the same way for the tests.
pub struct App {
    pub router: Router,
    pub intake: Arc<Intake>,
    pub pipeline: Arc<Pipeline>,
    pub engine: Arc<Engine>,
    /// Deliveries from the delivery log handled again at start-up.
    pub recovered: usize,
    pub restarts_loaded: usize,
    /// This instance's heartbeat (`serve` records the clean stop).
    pub heartbeat: Option<crate::instances::Heartbeat>,
}

pub struct Parts {
    pub policy: Policy,
    pub store: Option<Store>,
    pub github: Option<GitHub>,
    pub timing: Timing,
    pub secrets: Vec<SecretString>,
    pub spool_dir: Option<PathBuf>,
    pub workers: usize,
    pub queue_capacity: usize,
    /// How long a delivery waits for room in a full queue before intake answers 503.
    pub queue_wait: Duration,
    /// Reconcile with GitHub every `.0`, looking back `.1` (None: off).
    pub reconcile: Option<(Duration, Duration)>,
    /// Redelivery sweep every `.0`, at most `.1` per pass (None: off; App auth only).
    pub redeliver: Option<(Duration, usize)>,
    /// Heartbeat in `instances` every this often, to notice a second instance (None: off).
    pub heartbeat: Option<Duration>,
}

/// Opens the delivery log, reloads the ledger, starts the workers, and queues again every
/// delivery that was answered but not fully handled before the last stop.
pub async fn assemble(p: Parts) -> anyhow::Result<App> {
    let (spool, recovered) = match &p.spool_dir {
        Some(dir) => {
            let (spool, rec) = Spool::open(dir)
                .with_context(|| format!("cannot open the delivery log in {}", dir.display()))?;
            (Some(spool), Some(rec))
        }
        None => (None, None),
    };
    let others = crate::instances::Others::default();
    let heartbeat = match (p.heartbeat, &p.store) {
        (Some(every), Some(store)) => Some(crate::instances::spawn(
            store.clone(),
            crate::instances::me(),
            every,
            others.clone(),
        )),
        _ => None,
    };
    let engine = Arc::new(Engine::new(
        p.policy,
        p.store,
        p.github,
        spool.clone(),
        p.timing,
    ));
    let restarts_loaded = engine.resume().await?;
    let pipeline = Arc::new(Pipeline::start(engine.clone(), p.workers, p.queue_capacity));
    let intake = Arc::new(Intake::new(
        p.secrets,
        pipeline.clone(),
        spool.clone(),
        p.queue_wait,
    ));
    let mut requeued = 0;
    if let Some(rec) = recovered {
        intake.remember(rec.ids);
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
    }
    if let (Some((every, lookback)), Some(gh)) = (p.reconcile, engine.github()) {
        crate::reconcile::spawn(
            engine.clone(),
            pipeline.clone(),
            gh.clone(),
            every,
            lookback,
        );
    }
    Ok(App {
        router: router(intake.clone(), others),
        intake,
        pipeline,
        engine,
        recovered: requeued,
        restarts_loaded,
        heartbeat,
    })
}

/// The App's router; tests call it in-process, `serve` puts it on a socket.
pub fn router(intake: Arc<Intake>, others: crate::instances::Others) -> Router {
    Router::new()
        .route("/webhook", post(webhook::receive))
        .route(
            "/healthz",
            get(move |state: State<Arc<Intake>>| healthz(state, others.clone())),
        )
        .route(
            "/",
            get(|| async { "autorevert: POST /webhook, GET /healthz\n" }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(intake)
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "error": "internal error" })),
    )
        .into_response()
}

async fn healthz(State(intake): State<Arc<Intake>>, others: crate::instances::Others) -> Response {
    let p = intake.pipeline();
    let others = others.lock().expect("others lock").clone();
    Json(json!({
        "status": "ok",
        "queued": p.queued(),
        "restarts_tracked": p.engine().all_restarts().len(),
        // Non-empty: another instance writes to the same database (run one replica).
        "other_instances": others,
    }))
    .into_response()
}

/// Serves until SIGTERM or Ctrl-C, then stops taking deliveries, finishes the queued ones
/// and waits for follow-ups up to `grace`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    grace: Duration,
) -> anyhow::Result<()> {
    let App {
        router,
        pipeline,
        heartbeat,
        ..
    } = app;
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("stopped taking deliveries; finishing queued work");
    if !pipeline.shutdown(grace).await {
        tracing::warn!(
            "follow-ups still running at exit; they resume from the ledger at the next start"
        );
    }
    if let Some(h) = heartbeat {
        h.stop().await;
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

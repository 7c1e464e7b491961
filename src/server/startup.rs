//! Start-up that binds first. The port opens and deliveries are taken into the delivery log
//! at once; the schema, the restart ledger and then the backlog follow as ClickHouse allows.
//! Until the ledger is loaded no delivery is decided (a commit restarted before the last
//! stop must not be restarted again), so the workers and the background tasks wait for
//! `ready`. `/healthz` says where start-up stands.

use crate::pipeline::Engine;
use crate::store::Store;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Where start-up stands, for `/healthz`.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub ready: bool,
    /// What it is doing or waiting for.
    pub phase: String,
    pub since: DateTime<Utc>,
    /// Why the last attempt of this phase failed (it is retried).
    pub last_error: Option<String>,
    pub restarts_loaded: Option<usize>,
}

#[derive(Clone)]
pub struct StartupStatus(Arc<Mutex<Progress>>);

impl Default for StartupStatus {
    fn default() -> Self {
        StartupStatus(Arc::new(Mutex::new(Progress {
            ready: false,
            phase: "starting".into(),
            since: Utc::now(),
            last_error: None,
            restarts_loaded: None,
        })))
    }
}

impl StartupStatus {
    pub fn snapshot(&self) -> Progress {
        self.0.lock().expect("startup lock").clone()
    }

    fn set(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.0.lock().expect("startup lock"))
    }

    fn phase(&self, phase: &str) {
        self.set(|p| {
            p.phase = phase.to_string();
            p.since = Utc::now();
            p.last_error = None;
        })
    }
}

/// Retries `attempt` until it succeeds, waiting 1 s, then twice as long each time, up to
/// 30 s; each failure is logged and shown on `/healthz`.
async fn until_ok<T, F, Fut>(status: &StartupStatus, phase: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    status.phase(phase);
    let mut wait = Duration::from_secs(1);
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(e) => {
                let e = format!("{e:#}");
                tracing::warn!(
                    phase,
                    error = e,
                    retry_in_secs = wait.as_secs(),
                    "start-up is waiting"
                );
                status.set(|p| p.last_error = Some(e));
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

/// Brings the schema up to date and loads the ledger (each retried until ClickHouse
/// answers), then lets the workers and tasks begin.
pub async fn run(
    store: Option<Store>,
    engine: Arc<Engine>,
    ready: watch::Sender<bool>,
    status: StartupStatus,
) {
    if let Some(store) = &store {
        until_ok(&status, "waiting for ClickHouse (schema)", || async {
            store.ping().await?;
            store.migrate().await
        })
        .await;
    }
    let loaded = until_ok(&status, "loading the restart ledger", || engine.resume()).await;
    status.set(|p| {
        p.ready = true;
        p.phase = "ready".into();
        p.since = Utc::now();
        p.last_error = None;
        p.restarts_loaded = Some(loaded);
    });
    tracing::info!(
        restarts_loaded = loaded,
        backlog = engine.activity().backlog(),
        "start-up done: handling deliveries"
    );
    let _ = ready.send(true);
}

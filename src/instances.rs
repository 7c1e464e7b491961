//! Heartbeats: each running App records itself in `instances` and looks for others.
//!
//! autorevert runs as one replica: the ledger that makes a dispatch happen once lives in the
//! process (README, "One replica"). Two instances writing to one database (a rolling deploy
//! that overlaps, a second replica by mistake) could restart one commit twice. This is not a
//! lock, ClickHouse has no compare-and-set to build one on, but it makes the situation loud:
//! an error in the log every beat and the other instances listed on `/healthz`.

use crate::store::{InstanceRow, Store};
use chrono::Utc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// This process, as it introduces itself.
pub fn me() -> InstanceRow {
    let now = Utc::now();
    InstanceRow {
        instance_id: uuid::Uuid::new_v4().to_string(),
        host: std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into()),
        pid: std::process::id(),
        started_at: now,
        seen_at: now,
        stopped: false,
    }
}

/// Others seen alive, for `/healthz` ("host pid N, seen <time>").
pub type Others = Arc<Mutex<Vec<String>>>;

/// One beat: records `me`, returns the other instances that beat within `within`.
pub async fn beat_once(
    store: &Store,
    me: &mut InstanceRow,
    within: Duration,
) -> anyhow::Result<Vec<InstanceRow>> {
    me.seen_at = Utc::now();
    store.heartbeat(me).await?;
    store.other_instances(&me.instance_id, within).await
}

/// The running heartbeat; `stop` records a clean stop, so that the next start of the App
/// does not take this one for a second instance.
pub struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
    store: Store,
    me: InstanceRow,
}

impl Heartbeat {
    pub async fn stop(mut self) {
        self.task.abort();
        self.me.seen_at = Utc::now();
        self.me.stopped = true;
        if let Err(e) = self.store.heartbeat(&self.me).await {
            tracing::warn!(error = format!("{e:#}"), "recording a clean stop failed");
        }
    }
}

/// Beats every `every`; another instance seen within three beats is logged as an error.
pub fn spawn(store: Store, me: InstanceRow, every: Duration, others: Others) -> Heartbeat {
    let (beat_store, mut beating) = (store.clone(), me.clone());
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let seen = beat_once(&beat_store, &mut beating, every * 3).await;
            match seen {
                Ok(seen) => {
                    for o in &seen {
                        tracing::error!(
                            other_host = o.host,
                            other_pid = o.pid,
                            other_started = %o.started_at,
                            other_seen = %o.seen_at,
                            "another autorevert instance writes to this database: run one replica, or a commit may be restarted twice (an instance that crashed is forgotten {} s after its last beat)",
                            (every * 3).as_secs()
                        );
                    }
                    *others.lock().expect("others lock") = seen
                        .iter()
                        .map(|o| format!("{} pid {}, seen {}", o.host, o.pid, o.seen_at))
                        .collect();
                }
                Err(e) => tracing::warn!(error = format!("{e:#}"), "heartbeat failed"),
            }
        }
    });
    Heartbeat { task, store, me }
}

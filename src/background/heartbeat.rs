//! Heartbeats: each running App records itself in `instances` and looks for others.
//!
//! autorevert runs as one replica: the ledger that makes a dispatch happen once lives in the
//! process (README, "One replica"). Two instances writing to one database (a rolling deploy
//! that overlaps, a second replica by mistake) could restart one commit twice. This is not a
//! lock, ClickHouse has no compare-and-set to build one on, but it makes the situation loud:
//! an error in the log every beat and the other instances listed on `/healthz`.

use super::Tasks;
use crate::store::Store;
use crate::store::rows::InstanceRow;
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

/// One beat: records `me`, returns the other instances that beat within `within`.
pub async fn beat_once(
    store: &Store,
    me: &mut InstanceRow,
    within: Duration,
) -> anyhow::Result<Vec<InstanceRow>> {
    me.seen_at = Utc::now();
    beat_as(store, me, within).await
}

/// Records `me` as it is, returns the others seen within `within`.
async fn beat_as(
    store: &Store,
    me: &InstanceRow,
    within: Duration,
) -> anyhow::Result<Vec<InstanceRow>> {
    store.heartbeat(me).await?;
    store.other_instances(&me.instance_id, within).await
}

/// This instance's heartbeat: beats every `every`; another instance seen within three
/// beats is logged as an error and listed on `/healthz`.
pub struct Heartbeat {
    store: Store,
    me: Mutex<InstanceRow>,
    every: Duration,
    /// Others seen alive ("host pid N, seen <time>").
    others: Mutex<Vec<String>>,
}

impl Heartbeat {
    pub fn new(store: Store, me: InstanceRow, every: Duration) -> Arc<Heartbeat> {
        Arc::new(Heartbeat {
            store,
            me: Mutex::new(me),
            every,
            others: Mutex::default(),
        })
    }

    /// Beats as a background task.
    pub fn start(self: &Arc<Self>, tasks: &mut Tasks) {
        let me = self.clone();
        tasks.every("heartbeat", self.every, move || {
            let me = me.clone();
            async move { me.beat().await }
        });
    }

    /// Other instances seen at the last beat.
    pub fn others(&self) -> Vec<String> {
        self.others.lock().expect("others lock").clone()
    }

    async fn beat(&self) -> anyhow::Result<serde_json::Value> {
        // Remembered before the row goes out: the stop must come after any beat, even one
        // abandoned in flight (rows of one instance are versioned by `seen_at`).
        let me = {
            let mut me = self.me.lock().expect("me lock");
            me.seen_at = Utc::now();
            me.clone()
        };
        let seen = beat_as(&self.store, &me, self.every * 3).await?;
        for o in &seen {
            tracing::error!(
                other_host = o.host,
                other_pid = o.pid,
                other_started = %o.started_at,
                other_seen = %o.seen_at,
                "another autorevert instance writes to this database: run one replica, or a commit may be restarted twice (an instance that crashed is forgotten {} s after its last beat)",
                (self.every * 3).as_secs()
            );
        }
        *self.others.lock().expect("others lock") = seen
            .iter()
            .map(|o| format!("{} pid {}, seen {}", o.host, o.pid, o.seen_at))
            .collect();
        Ok(serde_json::json!({ "other_instances": seen.len() }))
    }

    /// Records a clean stop, so that the next start of the App does not take this one for
    /// a second instance. Call it once the task is stopped.
    pub async fn record_stop(&self) {
        let mut me = self.me.lock().expect("me lock").clone();
        me.seen_at = Utc::now().max(me.seen_at + chrono::Duration::milliseconds(1));
        me.stopped = true;
        if let Err(e) = self.store.heartbeat(&me).await {
            tracing::warn!(error = format!("{e:#}"), "recording a clean stop failed");
        }
    }
}

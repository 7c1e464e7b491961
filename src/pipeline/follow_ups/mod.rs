//! Follow-ups: the slow steps of a restart (settling an unknown dispatch, confirming in
//! ClickHouse, judging the finished run, bringing its check run on the commit up to date)
//! run as tasks of their own (deciding what a dispatch asks for, `scope`, runs before it,
//! bounded), never inline in a
//! worker, so a slow GitHub or ClickHouse never holds a commit's shard. At most one of each
//! kind runs per restart: a second request while one runs is dropped (its work is done
//! by the running one).

pub mod check_run;
pub mod confirm;
pub mod dispatch;
pub mod evaluate;
pub mod revert;
pub mod scope;
pub mod settle;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::Instrument;

/// Work in flight: queued deliveries, deliveries being handled, and follow-ups. Waiting
/// for it to reach zero is how shutdown, replay and the tests know everything is done.
#[derive(Default)]
pub struct Activity {
    in_flight: AtomicUsize,
    idle: Notify,
    /// Deliveries whose handling panicked since start.
    panics: AtomicUsize,
    /// Deliveries left from the last run and not handled yet.
    backlog: std::sync::atomic::AtomicIsize,
}

impl Activity {
    pub fn panicked(&self) {
        self.panics.fetch_add(1, Ordering::SeqCst);
    }

    pub fn panics(&self) -> usize {
        self.panics.load(Ordering::SeqCst)
    }

    pub fn backlog_added(&self, n: isize) {
        self.backlog.fetch_add(n, Ordering::SeqCst);
    }

    /// Deliveries left from the last run and not handled yet.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::SeqCst).max(0) as usize
    }

    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    pub fn end(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Waits until nothing is in flight, or `timeout`; whether it got there.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight.load(Ordering::SeqCst) == 0;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Settle,
    Confirm,
    Evaluate,
    CheckRun,
    /// Acting on a culprit (keyed by `repo@sha`).
    Revert,
}

/// Spawns follow-ups, one of each kind per restart at a time.
#[derive(Clone)]
pub struct FollowUps {
    activity: Arc<Activity>,
    running: Arc<Mutex<HashSet<(Kind, String)>>>,
}

impl FollowUps {
    pub fn new(activity: Arc<Activity>) -> FollowUps {
        FollowUps {
            activity,
            running: Arc::default(),
        }
    }

    /// Starts `work` unless a follow-up of this kind already runs for this restart.
    pub fn spawn(
        &self,
        kind: Kind,
        restart_id: &str,
        work: impl Future<Output = ()> + Send + 'static,
    ) -> bool {
        let key = (kind, restart_id.to_string());
        if !self
            .running
            .lock()
            .expect("follow-ups lock")
            .insert(key.clone())
        {
            return false;
        }
        self.activity.begin();
        let done = Done {
            activity: self.activity.clone(),
            running: self.running.clone(),
            key,
        };
        // In the span of what started it (the delivery), named by its restart.
        let span = tracing::info_span!("follow_up", kind = ?kind, restart = restart_id);
        tokio::spawn(
            async move {
                let _done = done;
                work.await;
            }
            .instrument(span),
        );
        true
    }
}

/// Marks a follow-up finished, also when it panicked.
struct Done {
    activity: Arc<Activity>,
    running: Arc<Mutex<HashSet<(Kind, String)>>>,
    key: (Kind, String),
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(&self.key);
        }
        self.activity.end();
    }
}

//! Background tasks, owned in one place: the reconciler, the redelivery sweep and the
//! heartbeat each run as a named periodic task with an interval and a shutdown handle. A
//! task that is configured is started here, and `/healthz` lists what runs and how each
//! last pass went.

pub mod heartbeat;
pub mod reconcile;
pub mod redeliver;

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How one task is doing, for `/healthz`.
#[derive(Debug, Clone, Serialize)]
pub struct TaskStatus {
    pub every_secs: u64,
    pub passes: u64,
    pub last_pass: Option<DateTime<Utc>>,
    /// What the last pass said: its summary, or its error.
    pub last_result: Option<serde_json::Value>,
    pub last_ok: Option<bool>,
}

type Statuses = Arc<Mutex<BTreeMap<&'static str, TaskStatus>>>;

/// The running background tasks. Dropping this stops them (as `stop` does, without waiting).
pub struct Tasks {
    statuses: Statuses,
    stop: watch::Sender<bool>,
    /// Passes begin once this is true (start-up has loaded the ledger).
    ready: watch::Receiver<bool>,
    handles: Vec<(&'static str, JoinHandle<()>)>,
}

impl Default for Tasks {
    fn default() -> Self {
        Tasks::after(watch::channel(true).1)
    }
}

impl Tasks {
    /// Tasks whose first pass waits until `ready` is true.
    pub fn after(ready: watch::Receiver<bool>) -> Tasks {
        Tasks {
            statuses: Statuses::default(),
            stop: watch::channel(false).0,
            ready,
            handles: Vec::new(),
        }
    }

    /// Runs `pass` every `every`, the first right away, until `stop`. A pass says what it
    /// did (a summary to serialize), or why it failed; the next pass comes regardless.
    pub fn every<F, Fut, S>(&mut self, name: &'static str, every: Duration, mut pass: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<S>> + Send,
        S: Serialize,
    {
        self.statuses.lock().expect("tasks lock").insert(
            name,
            TaskStatus {
                every_secs: every.as_secs(),
                passes: 0,
                last_pass: None,
                last_result: None,
                last_ok: None,
            },
        );
        let statuses = self.statuses.clone();
        let mut stop = self.stop.subscribe();
        let mut ready = self.ready.clone();
        let handle = tokio::spawn(async move {
            tokio::select! {
                r = ready.wait_for(|r| *r) => if r.is_err() { return },
                _ = stop.changed() => return,
            }
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let result = tokio::select! {
                    r = pass() => r,
                    _ = stop.changed() => return,
                };
                let result = result.map(|s| serde_json::to_value(s).unwrap_or_default());
                report(&statuses, name, result);
            }
        });
        tracing::info!(
            task = name,
            every_secs = every.as_secs(),
            "background task started"
        );
        self.handles.push((name, handle));
    }

    /// Names of the tasks started, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.handles.iter().map(|(n, _)| *n).collect()
    }

    /// A handle that reads the tasks' statuses (for `/healthz`).
    pub fn status(&self) -> TaskView {
        TaskView {
            statuses: self.statuses.clone(),
        }
    }

    /// Stops every task (a pass in progress is abandoned) and waits up to `grace`.
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        for (name, h) in self.handles {
            if tokio::time::timeout_at(deadline, h).await.is_err() {
                tracing::warn!(task = name, "background task did not stop in time");
            }
        }
    }
}

fn report(statuses: &Statuses, name: &'static str, result: anyhow::Result<serde_json::Value>) {
    let ok = result.is_ok();
    let said = match result {
        Ok(summary) => {
            tracing::info!(task = name, %summary, "background pass done");
            summary
        }
        Err(e) => {
            let e = format!("{e:#}");
            tracing::warn!(
                task = name,
                error = e,
                "background pass failed; the next one retries"
            );
            serde_json::Value::String(e)
        }
    };
    if let Some(s) = statuses.lock().expect("tasks lock").get_mut(name) {
        s.passes += 1;
        s.last_pass = Some(Utc::now());
        s.last_result = Some(said);
        s.last_ok = Some(ok);
    }
}

/// The tasks' statuses, readable while they run.
#[derive(Clone, Default)]
pub struct TaskView {
    statuses: Statuses,
}

impl TaskView {
    pub fn snapshot(&self) -> BTreeMap<&'static str, TaskStatus> {
        self.statuses.lock().expect("tasks lock").clone()
    }
}

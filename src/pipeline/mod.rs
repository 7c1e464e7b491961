//! The pipeline: accepted deliveries -> decisions -> effects.
//!
//! Deliveries are spread over a few workers by (repository, head_sha), so all events of one
//! commit are handled one at a time, in arrival order, while different commits proceed in
//! parallel. A decision is taken and its restart claimed in the ledger under one lock
//! (`restarts`), so two deliveries of the same failure can never both dispatch. Slow steps
//! run as follow-ups (`follow_ups`), never in a worker.

pub mod decider;
pub mod effects;
pub mod engine;
pub mod fault;
pub mod follow_ups;
pub mod kill_switch;
pub mod restarts;

pub use engine::{Engine, Timing};

use crate::intake::{Delivery, DeliveryQueue, EnqueueError, Event, QueueSlot};
use follow_ups::Activity;
use futures_util::FutureExt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// A reserved place in a worker's queue.
struct Slot {
    permit: Option<mpsc::OwnedPermit<Delivery>>,
    activity: Arc<Activity>,
}

impl QueueSlot for Slot {
    fn send(mut self: Box<Self>, d: Delivery) {
        if let Some(p) = self.permit.take() {
            p.send(d);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.permit.is_some() {
            self.activity.end(); // reserved but never used
        }
    }
}

/// The workers and their bounded queues.
pub struct Pipeline {
    engine: Arc<Engine>,
    /// Emptied at shutdown, which closes the queues.
    senders: RwLock<Vec<mpsc::Sender<Delivery>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// When the workers may begin: the ledger is loaded (start-up waits for ClickHouse), and
/// what the delivery log held from the last run, to be handled first.
pub struct Start {
    pub ready: watch::Receiver<bool>,
    pub backlog: Vec<Delivery>,
}

impl Start {
    /// At once, with nothing left from before.
    pub fn now() -> Start {
        Start {
            ready: watch::channel(true).1,
            backlog: Vec::new(),
        }
    }
}

impl Pipeline {
    /// Starts the workers. Deliveries can be queued at once; the workers wait for
    /// `start.ready`, then handle their share of the backlog, in log order, before their queue.
    pub fn start(engine: Arc<Engine>, workers: usize, capacity: usize, start: Start) -> Pipeline {
        let per_worker = capacity.div_ceil(workers).max(1);
        let mut shares: Vec<Vec<Delivery>> = (0..workers).map(|_| Vec::new()).collect();
        for d in start.backlog {
            engine.activity().begin();
            engine.activity().backlog_added(1);
            shares[shard(&d.event, workers)].push(d);
        }
        let (senders, handles) = shares
            .into_iter()
            .map(|backlog| {
                let (tx, rx) = mpsc::channel::<Delivery>(per_worker);
                let ready = start.ready.clone();
                (tx, tokio::spawn(work(engine.clone(), ready, backlog, rx)))
            })
            .unzip();
        Pipeline {
            engine,
            senders: RwLock::new(senders),
            workers: Mutex::new(handles),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The queue of the worker that handles this event's commit.
    fn sender_for(&self, event: &Event) -> Result<mpsc::Sender<Delivery>, EnqueueError> {
        let senders = self.senders.read().expect("senders lock");
        if senders.is_empty() {
            return Err(EnqueueError::Closed);
        }
        Ok(senders[shard(event, senders.len())].clone())
    }

    /// Queues a delivery, waiting for room (recovery at start-up, the reconciler).
    pub async fn enqueue(&self, d: Delivery) -> Result<(), EnqueueError> {
        let sender = self.sender_for(&d.event)?;
        let activity = self.engine.activity();
        activity.begin();
        sender.send(d).await.map_err(|_| {
            activity.end();
            EnqueueError::Closed
        })
    }

    /// Deliveries waiting in the queues.
    pub fn queued(&self) -> usize {
        self.senders
            .read()
            .expect("senders lock")
            .iter()
            .map(|s| s.max_capacity() - s.capacity())
            .sum()
    }

    /// Stops taking deliveries, lets the workers finish what is queued, and waits for
    /// follow-ups up to `grace`.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.senders.write().expect("senders lock").clear();
        let workers: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.workers.lock().expect("workers lock"));
        let deadline = tokio::time::Instant::now() + grace;
        for w in workers {
            // A worker still retrying (ClickHouse down) is left behind: its delivery stays
            // unacknowledged in the delivery log and is handled at the next start.
            let _ = tokio::time::timeout_at(deadline, w).await;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.engine.wait_idle(left).await
    }
}

/// Everything logged while a delivery is handled (its follow-ups included) carries these.
fn delivery_span(d: &Delivery) -> tracing::Span {
    let (repo, sha) = d.event.commit_key().unwrap_or(("", ""));
    let (workflow, run_id, job_id) = match &d.event {
        Event::WorkflowRun(e) => (e.run.name.as_str(), e.run.id, None),
        Event::WorkflowJob(e) => (e.job.workflow_name.as_str(), e.job.run_id, Some(e.job.id)),
        _ => ("", 0, None),
    };
    tracing::info_span!("delivery", id = %d.id, event = %d.event_name, repo, workflow, sha, run_id, job_id)
}

/// The worker of an event's commit: all events of one commit go to one worker.
fn shard(event: &Event, workers: usize) -> usize {
    match event.commit_key() {
        Some(key) => {
            let mut h = DefaultHasher::new();
            key.hash(&mut h);
            (h.finish() % workers as u64) as usize
        }
        None => 0,
    }
}

/// One worker: once ready, its share of the backlog, then its queue's deliveries, one at a
/// time.
async fn work(
    engine: Arc<Engine>,
    mut ready: watch::Receiver<bool>,
    backlog: Vec<Delivery>,
    mut rx: mpsc::Receiver<Delivery>,
) {
    if ready.wait_for(|r| *r).await.is_err() {
        return; // start-up gave up (the App is stopping)
    }
    for d in backlog {
        handle_guarded(&engine, &d).await;
        engine.activity().backlog_added(-1);
    }
    while let Some(d) = rx.recv().await {
        handle_guarded(&engine, &d).await;
    }
}

/// Handles one delivery. One whose handling panics takes no worker down: it is logged and
/// counted (`/healthz`), and it stays unacknowledged in the delivery log, so the next start
/// handles it again.
async fn handle_guarded(engine: &Engine, d: &Delivery) {
    let handled = AssertUnwindSafe(handle_one(engine, d))
        .catch_unwind()
        .instrument(delivery_span(d))
        .await;
    if handled.is_err() {
        engine.activity().panicked();
        tracing::error!(
            delivery = d.id,
            event = d.event_name,
            "handling a delivery panicked; it stays in the delivery log for the next start"
        );
    }
    engine.activity().end();
}

async fn handle_one(engine: &Engine, d: &Delivery) {
    fault::check(&d.id);
    let decided = engine.handle(d).await;
    // Behind the delivery's rows: done in the log once they are written.
    engine.acknowledge(d.seq).await;
    tracing::debug!(delivery = d.id, event = d.event_name, decisions = ?decided.iter().map(|c| c.describe()).collect::<Vec<_>>());
}

#[async_trait::async_trait]
impl DeliveryQueue for Pipeline {
    /// Reserves a place in the queue, waiting up to `wait` for one (then the intake answers
    /// 503), so that a delivery is written to the delivery log only if it can be queued.
    /// A burst slows the answers down instead of turning into 503s, which GitHub does not
    /// redeliver by itself.
    async fn reserve(
        &self,
        event: &Event,
        wait: Duration,
    ) -> Result<Box<dyn QueueSlot>, EnqueueError> {
        let permit = match self.sender_for(event)?.try_reserve_owned() {
            Ok(p) => p,
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(EnqueueError::Closed),
            Err(mpsc::error::TrySendError::Full(sender)) => {
                match tokio::time::timeout(wait, sender.reserve_owned()).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(EnqueueError::Closed),
                    Err(_) => return Err(EnqueueError::Full),
                }
            }
        };
        let activity = self.engine.activity().clone();
        activity.begin();
        Ok(Box::new(Slot {
            permit: Some(permit),
            activity,
        }))
    }
}

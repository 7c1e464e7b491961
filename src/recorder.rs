//! Batched writes to ClickHouse: deliveries, the event log, job states and mirror rows are
//! collected by one task and written together, one INSERT per table, at most every
//! `interval` or every `max_rows` rows (ClickHouse wants few, large inserts, not one per
//! event). Restart ledger rows travel the same way: a restart's intent is already durable
//! in the delivery log (its delivery is acknowledged only after these rows are written, and
//! a delivery replayed after a crash looks its run up before sending anything).
//!
//! Readers that depend on recorded rows (judging a restart, confirming it) call `flush`.
//!
//! A delivery's acknowledgement to the delivery log travels through here too, behind its
//! rows: it is passed on only once the batch holding those rows is written, so a delivery
//! whose records never reached ClickHouse is processed again after a crash.

use crate::events::{Job, Run};
use crate::ledger::Restart;
use crate::spool::Spool;
use crate::store::{Batch, DeliveryRow, EventRow, Store};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Rows kept across failed writes before the oldest are given up (bounded memory while
/// ClickHouse is down).
const MAX_BUFFERED_ROWS: usize = 200_000;

pub enum Entry {
    /// A new version of a restart's ledger row.
    Restart(Restart),
    Delivery(DeliveryRow),
    Event(EventRow),
    Job(String, Job),
    MirrorRun(String, Run),
    MirrorJob(String, Job),
    /// The delivery with this log sequence number is fully handled.
    Ack(u64),
}

enum Msg {
    Add(Box<Entry>),
    Flush(oneshot::Sender<bool>),
}

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Msg>,
}

impl Recorder {
    pub fn start(
        store: Store,
        spool: Option<Spool>,
        interval: Duration,
        max_rows: usize,
    ) -> Recorder {
        let (tx, rx) = mpsc::channel(8192);
        tokio::spawn(run(store, spool, rx, interval, max_rows));
        Recorder { tx }
    }

    pub async fn add(&self, e: Entry) {
        if self.tx.send(Msg::Add(Box::new(e))).await.is_err() {
            tracing::error!("the recorder has stopped; a row was not recorded");
        }
    }

    /// Writes everything buffered so far; false if ClickHouse refused it.
    pub async fn flush(&self) -> bool {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_err() {
            return false;
        }
        done.await.unwrap_or(false)
    }
}

async fn write(
    store: &Store,
    spool: &Option<Spool>,
    batch: &mut Batch,
    acks: &mut Vec<u64>,
) -> bool {
    if batch.is_empty() && acks.is_empty() {
        return true;
    }
    let n = batch.len();
    match store.write(batch).await {
        Ok(()) => {
            tracing::debug!(rows = n, "recorded");
            if let Some(spool) = spool {
                for seq in acks.drain(..) {
                    spool.ack(seq);
                }
            }
            acks.clear();
            true
        }
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                buffered = batch.len(),
                "writing to ClickHouse failed; will retry"
            );
            if batch.len() > MAX_BUFFERED_ROWS {
                tracing::error!(
                    rows = batch.len(),
                    "ClickHouse unavailable for too long: buffered rows dropped"
                );
                *batch = Batch::default();
            }
            false
        }
    }
}

async fn run(
    store: Store,
    spool: Option<Spool>,
    mut rx: mpsc::Receiver<Msg>,
    interval: Duration,
    max_rows: usize,
) {
    let mut batch = Batch::default();
    let mut acks: Vec<u64> = Vec::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                None => {
                    write(&store, &spool, &mut batch, &mut acks).await;
                    return;
                }
                Some(Msg::Add(e)) => {
                    match *e {
                        Entry::Restart(r) => batch.restart(&r),
                        Entry::Delivery(r) => batch.delivery(r),
                        Entry::Event(r) => batch.event(r),
                        Entry::Job(repo, j) => batch.job(&repo, &j),
                        Entry::MirrorRun(repo, r) => batch.mirror_run(&repo, &r),
                        Entry::MirrorJob(repo, j) => batch.mirror_job(&repo, &j),
                        Entry::Ack(seq) => acks.push(seq),
                    }
                    if batch.len() >= max_rows {
                        write(&store, &spool, &mut batch, &mut acks).await;
                    }
                }
                Some(Msg::Flush(ack)) => {
                    let ok = write(&store, &spool, &mut batch, &mut acks).await;
                    let _ = ack.send(ok);
                }
            },
            _ = tick.tick(), if !batch.is_empty() || !acks.is_empty() => {
                write(&store, &spool, &mut batch, &mut acks).await;
            }
        }
    }
}

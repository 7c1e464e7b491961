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
//!
//! Two tasks: one collects rows, one writes them. Collection never waits for ClickHouse:
//! whatever piles up while an INSERT is in flight goes out together in the next, larger
//! one, so a slow ClickHouse makes inserts bigger instead of stalling the pipeline (and then
//! intake); past a bound, rows are given up, never the deliveries (see `Collector`). A
//! failed INSERT is sent again unchanged (see `Writer`).

pub use super::batch::Entry;

use super::Store;
use super::batch::Batch;
use crate::intake::delivery_log::DeliveryLog;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Rows kept across failed writes before the oldest are given up (bounded memory while
/// ClickHouse is down).
pub const MAX_BUFFERED_ROWS: usize = 200_000;

enum Msg {
    Add(Box<Entry>),
    Flush(oneshot::Sender<bool>),
}

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Msg>,
}

impl Recorder {
    /// Writes every `interval`, or once `max_rows` are collected; keeps at most
    /// `max_buffered` rows across failed writes (`MAX_BUFFERED_ROWS` in production).
    pub fn start(
        store: Store,
        log: Option<DeliveryLog>,
        interval: Duration,
        max_rows: usize,
        max_buffered: usize,
    ) -> Recorder {
        let (tx, rx) = mpsc::channel(8192);
        tokio::spawn(run(store, log, rx, interval, max_rows, max_buffered));
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

/// A handed-over batch: its rows, the deliveries it completes, and flushes waiting on it.
#[derive(Default)]
struct Handover {
    batch: Batch,
    acks: Vec<u64>,
    done: Vec<oneshot::Sender<bool>>,
}

impl Handover {
    fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.acks.is_empty() && self.done.is_empty()
    }
    fn absorb(&mut self, other: Handover) {
        self.batch.absorb(other.batch);
        self.acks.extend(other.acks);
        self.done.extend(other.done);
    }
    fn answer(&mut self, ok: bool) {
        for d in self.done.drain(..) {
            let _ = d.send(ok);
        }
    }
}

/// How long the writer waits before trying a failed INSERT again (new rows join meanwhile).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Writes handed-over batches in order, merging whatever queued behind the one in flight.
///
/// A batch whose write failed is sent again as it was, without the rows that arrived since:
/// a failed INSERT may have been written all the same (its answer lost, or the timeout came
/// first), and ClickHouse recognizes a repeated block only if it is the same block. Rows that
/// arrive meanwhile wait in `later` and go out together once it is through.
struct Writer {
    store: Store,
    log: Option<DeliveryLog>,
    max_buffered: usize,
    pending: Handover,
    later: Handover,
    /// False once the collector has stopped: the next failure is the last try.
    open: bool,
    /// After rows were given up, an ack below this may belong to a delivery whose rows were
    /// among them (a delivery's rows can span batches): it is not passed on, and the
    /// delivery is handled again at the next start (its rows collapse by key, or are
    /// recognized as repeats). Shared with the collector, which may give rows up too.
    distrust_below: Arc<AtomicU64>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Handover>) {
        while self.take_pending(&mut rx).await {
            let n = self.pending.batch.len();
            let written = if n == 0 {
                Ok(())
            } else {
                self.store.write(&mut self.pending.batch).await
            };
            match written {
                Ok(()) => self.written(n),
                Err(e) => {
                    self.failed(e);
                    if !self.open {
                        return; // shutting down: this was the last try; the log keeps the rest
                    }
                    self.wait_for_retry(&mut rx).await;
                }
            }
        }
    }

    /// Something to write: what failed before, else what waited, else the next handover
    /// (with all that queued behind it). False when there is nothing more to come.
    async fn take_pending(&mut self, rx: &mut mpsc::Receiver<Handover>) -> bool {
        if !self.pending.is_empty() {
            return true;
        }
        self.pending = std::mem::take(&mut self.later);
        if self.pending.is_empty() {
            if !self.open {
                return false;
            }
            match rx.recv().await {
                Some(j) => self.pending.absorb(j),
                None => return false,
            }
        }
        while let Ok(j) = rx.try_recv() {
            self.pending.absorb(j);
        }
        true
    }

    /// Passes the batch's acks on to the delivery log and answers its flushes.
    fn written(&mut self, rows: usize) {
        tracing::debug!(rows, "recorded");
        if let Some(log) = &self.log {
            for seq in self.pending.acks.drain(..) {
                if seq >= self.distrust_below.load(Ordering::SeqCst) {
                    log.ack(seq);
                }
            }
        }
        self.pending.answer(true);
        self.pending = Handover::default();
    }

    fn failed(&mut self, e: anyhow::Error) {
        metrics::counter!("autorevert_clickhouse_errors_total", "why" => "insert").increment(1);
        let buffered = self.pending.batch.len() + self.later.batch.len();
        tracing::error!(
            error = format!("{e:#}"),
            buffered,
            "writing to ClickHouse failed; will retry"
        );
        // Everyone who asked for a flush before this attempt hears how it went.
        self.pending.answer(false);
        self.later.answer(false);
        if buffered > self.max_buffered {
            // Their deliveries are not acknowledged either: they stay in the delivery log
            // and are processed (and recorded) again at the next start.
            tracing::error!(
                rows = self.pending.batch.len(),
                deliveries = self.pending.acks.len(),
                "ClickHouse unavailable for too long: buffered rows given up; their deliveries stay in the delivery log"
            );
            self.pending = Handover::default();
            if let Some(log) = &self.log {
                self.distrust_below
                    .fetch_max(log.next_seq(), Ordering::SeqCst);
            }
        }
    }

    /// Waits before the retry, collecting what arrives meanwhile into `later`.
    async fn wait_for_retry(&mut self, rx: &mut mpsc::Receiver<Handover>) {
        match tokio::time::timeout(RETRY_AFTER, rx.recv()).await {
            Ok(Some(j)) => self.later.absorb(j),
            // Shutting down: one last try, then the log keeps the rest.
            Ok(None) => self.open = false,
            Err(_) => {}
        }
        while let Ok(j) = rx.try_recv() {
            self.later.absorb(j);
        }
    }
}

/// The collecting task: adds rows to the open handover, and hands it to the writer every
/// `interval`, at `max_rows`, or on a flush. It never waits for the writer: while the
/// writer is busy (a slow or hanging ClickHouse) the rows stay in the open handover, which
/// grows, up to `max_buffered` rows; past that its rows are given up (their deliveries stay
/// in the delivery log) rather than slowing the pipeline, and with it intake.
struct Collector {
    open: Handover,
    to_writer: mpsc::Sender<Handover>,
    max_rows: usize,
    max_buffered: usize,
    log: Option<DeliveryLog>,
    distrust_below: Arc<AtomicU64>,
}

impl Collector {
    /// Hands the open rows over if the writer has room; false once the writer has stopped.
    fn hand_over(&mut self) -> bool {
        match self.to_writer.try_send(std::mem::take(&mut self.open)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(back)) => {
                self.open = back;
                if self.open.batch.len() > self.max_buffered {
                    self.give_up();
                }
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn give_up(&mut self) {
        tracing::error!(
            rows = self.open.batch.len(),
            deliveries = self.open.acks.len(),
            "ClickHouse too slow for too long: collected rows given up; their deliveries stay in the delivery log"
        );
        self.open.batch = Batch::default();
        self.open.acks.clear();
        self.open.answer(false);
        if let Some(log) = &self.log {
            self.distrust_below
                .fetch_max(log.next_seq(), Ordering::SeqCst);
        }
    }

    /// Takes one message; false once the writer has stopped.
    fn take(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Add(e) => {
                if let Some(seq) = self.open.batch.push(*e) {
                    self.open.acks.push(seq);
                }
                self.open.batch.len() < self.max_rows || self.hand_over()
            }
            Msg::Flush(ack) => {
                self.open.done.push(ack);
                self.hand_over()
            }
        }
    }
}

async fn run(
    store: Store,
    log: Option<DeliveryLog>,
    mut rx: mpsc::Receiver<Msg>,
    interval: Duration,
    max_rows: usize,
    max_buffered: usize,
) {
    let (to_writer, wrx) = mpsc::channel::<Handover>(4);
    let distrust_below = Arc::new(AtomicU64::new(0));
    let writer = Writer {
        store,
        log: log.clone(),
        max_buffered,
        pending: Handover::default(),
        later: Handover::default(),
        open: true,
        distrust_below: distrust_below.clone(),
    };
    let writing = tokio::spawn(writer.run(wrx));
    let mut c = Collector {
        open: Handover::default(),
        to_writer,
        max_rows,
        max_buffered,
        log,
        distrust_below,
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let keep_on = tokio::select! {
            msg = rx.recv() => match msg {
                None => break,
                Some(msg) => c.take(msg),
            },
            _ = tick.tick(), if !c.open.is_empty() => c.hand_over(),
        };
        if !keep_on {
            break;
        }
    }
    // Stopping: what is left goes to the writer for its last try.
    let _ = c.to_writer.send(std::mem::take(&mut c.open)).await;
    drop(c);
    let _ = writing.await;
}

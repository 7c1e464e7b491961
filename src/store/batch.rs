//! Rows written together, one INSERT per table (ClickHouse wants few, large inserts).

use super::Store;
use super::mirror::{MirrorJobRow, MirrorRunRow};
use super::rows::{DeliveryRow, EventRow, JobResultRow, RestartRow, VerdictRow};
use anyhow::Result;
use clickhouse::{RowOwned, RowWrite};

/// What is recorded: rows arrive built (from borrowed events, one copy of their strings).
pub enum Entry {
    /// A new version of a restart's ledger row.
    Restart(RestartRow),
    Delivery(DeliveryRow),
    Event(EventRow),
    Job(JobResultRow),
    Verdict(VerdictRow),
    MirrorRun(MirrorRunRow),
    MirrorJob(MirrorJobRow),
    /// The delivery with this log sequence number is fully handled.
    Ack(u64),
}

#[derive(Default)]
pub struct Batch {
    restarts: Vec<RestartRow>,
    deliveries: Vec<DeliveryRow>,
    events: Vec<EventRow>,
    jobs: Vec<JobResultRow>,
    verdicts: Vec<VerdictRow>,
    mirror_runs: Vec<MirrorRunRow>,
    mirror_jobs: Vec<MirrorJobRow>,
}

impl Batch {
    /// Adds an entry's row; gives back an acknowledgement, which is no row.
    pub fn push(&mut self, e: Entry) -> Option<u64> {
        match e {
            Entry::Restart(r) => self.restarts.push(r),
            Entry::Delivery(r) => self.deliveries.push(r),
            Entry::Event(r) => self.events.push(r),
            Entry::Job(r) => self.jobs.push(r),
            Entry::Verdict(r) => self.verdicts.push(r),
            Entry::MirrorRun(r) => self.mirror_runs.push(r),
            Entry::MirrorJob(r) => self.mirror_jobs.push(r),
            Entry::Ack(seq) => return Some(seq),
        }
        None
    }

    pub fn len(&self) -> usize {
        self.restarts.len()
            + self.deliveries.len()
            + self.events.len()
            + self.jobs.len()
            + self.verdicts.len()
            + self.mirror_runs.len()
            + self.mirror_jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves `other`'s rows behind these (batches that queued while an INSERT was in flight
    /// go out together as one larger INSERT).
    pub fn absorb(&mut self, mut other: Batch) {
        self.restarts.append(&mut other.restarts);
        self.deliveries.append(&mut other.deliveries);
        self.events.append(&mut other.events);
        self.jobs.append(&mut other.jobs);
        self.verdicts.append(&mut other.verdicts);
        self.mirror_runs.append(&mut other.mirror_runs);
        self.mirror_jobs.append(&mut other.mirror_jobs);
    }
}

/// The errors of the tables not written.
#[derive(Default)]
struct Failures(Vec<anyhow::Error>);

impl Failures {
    /// Empties a table's rows once written; keeps them and the error otherwise.
    fn note<T>(&mut self, rows: &mut Vec<T>, r: Result<()>) {
        match r {
            Ok(()) => rows.clear(),
            Err(e) => self.0.push(e),
        }
    }

    fn into_result(self) -> Result<()> {
        let more = self.0.len().saturating_sub(1);
        match self.0.into_iter().next() {
            None => Ok(()),
            Some(e) if more == 0 => Err(e),
            Some(e) => Err(anyhow::anyhow!(
                "{e:#} (and {more} more table(s) not written)"
            )),
        }
    }
}

impl Store {
    async fn write_table<T>(&self, table: &str, rows: &mut Vec<T>, failed: &mut Failures)
    where
        T: RowOwned + RowWrite,
    {
        let r = self.insert_rows::<T>(&self.t(table), rows).await;
        failed.note(rows, r);
    }

    /// Writes a batch: one INSERT per table that has rows. Every table is tried (one failing
    /// does not hold back the others); a table written successfully is emptied from the
    /// batch, and the rest stays, unchanged, for the next attempt.
    pub async fn write(&self, b: &mut Batch) -> Result<()> {
        let mut failed = Failures::default();
        self.write_table("restarts", &mut b.restarts, &mut failed)
            .await;
        self.write_table("deliveries", &mut b.deliveries, &mut failed)
            .await;
        self.write_table("events", &mut b.events, &mut failed).await;
        self.write_table("job_results", &mut b.jobs, &mut failed)
            .await;
        self.write_table("restart_job_verdicts", &mut b.verdicts, &mut failed)
            .await;
        if self.mirror_enabled() {
            let tables = self.tables().clone();
            let r = self
                .insert_rows::<MirrorRunRow>(&tables.run, &b.mirror_runs)
                .await;
            failed.note(&mut b.mirror_runs, r);
            // Without schema validation: ClickHouse 26 prints the named `steps` Tuple over
            // several lines in DESCRIBE, which clickhouse-rs 0.15's type parser rejects. Plain
            // RowBinary with an explicit column list (the struct's fields, in order) needs none.
            let r = self
                .insert_with::<MirrorJobRow>(&self.unvalidated, &tables.job, &b.mirror_jobs)
                .await;
            failed.note(&mut b.mirror_jobs, r);
        } else {
            b.mirror_runs.clear();
            b.mirror_jobs.clear();
        }
        failed.into_result()
    }
}

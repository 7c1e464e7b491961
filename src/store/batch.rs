//! Rows written together, one INSERT per table (ClickHouse wants few, large inserts).

use super::Store;
use super::mirror::{MirrorJobRow, MirrorRunRow};
use super::rows::{DeliveryRow, EventRow, JobResultRow, RestartRow, VerdictRow};
use super::signal_state::{DecisionRow, MainCommitRow, RevertActionRow, RunResultRow};
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
    /// The decision engine's state (`signal_state`).
    MainCommit(MainCommitRow),
    Run(RunResultRow),
    Decision(DecisionRow),
    RevertAction(RevertActionRow),
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
    main_commits: Vec<MainCommitRow>,
    runs: Vec<RunResultRow>,
    decisions: Vec<DecisionRow>,
    revert_actions: Vec<RevertActionRow>,
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
            Entry::MainCommit(r) => self.main_commits.push(r),
            Entry::Run(r) => self.runs.push(r),
            Entry::Decision(r) => self.decisions.push(r),
            Entry::RevertAction(r) => self.revert_actions.push(r),
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
            + self.main_commits.len()
            + self.runs.len()
            + self.decisions.len()
            + self.revert_actions.len()
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
        self.main_commits.append(&mut other.main_commits);
        self.runs.append(&mut other.runs);
        self.decisions.append(&mut other.decisions);
        self.revert_actions.append(&mut other.revert_actions);
    }
}

impl Store {
    /// Writes one table's rows; empties them once written, keeps them otherwise.
    async fn write_rows<T>(&self, table: &str, rows: &mut Vec<T>) -> Result<()>
    where
        T: RowOwned + RowWrite,
    {
        self.insert_rows::<T>(table, rows).await?;
        rows.clear();
        Ok(())
    }

    /// Writes a batch: one INSERT per table that has rows, all tables at once, so a
    /// ClickHouse that hangs costs one timeout per attempt, not one per table. Every table
    /// is tried (one failing does not hold back the others); a table written successfully
    /// is emptied from the batch, and the rest stays, unchanged, for the next attempt.
    pub async fn write(&self, b: &mut Batch) -> Result<()> {
        let (restarts, deliveries, events) =
            (self.t("restarts"), self.t("deliveries"), self.t("events"));
        let (jobs, verdicts) = (self.t("job_results"), self.t("restart_job_verdicts"));
        let (commits, runs) = (self.t("main_commits"), self.t("run_results"));
        let (decisions, actions) = (self.t("decisions"), self.t("revert_actions"));
        let mirror = self.mirror_enabled();
        if !mirror {
            b.mirror_runs.clear();
            b.mirror_jobs.clear();
        }
        let tables = self.tables().clone();
        let results = tokio::join!(
            self.write_rows(&restarts, &mut b.restarts),
            self.write_rows(&deliveries, &mut b.deliveries),
            self.write_rows(&events, &mut b.events),
            self.write_rows(&jobs, &mut b.jobs),
            self.write_rows(&verdicts, &mut b.verdicts),
            self.write_rows(&tables.run, &mut b.mirror_runs),
            self.write_mirror_jobs(&tables.job, &mut b.mirror_jobs),
            self.write_rows(&commits, &mut b.main_commits),
            self.write_rows(&runs, &mut b.runs),
            self.write_rows(&decisions, &mut b.decisions),
            self.write_rows(&actions, &mut b.revert_actions),
        );
        let (r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10) = results;
        let failed: Vec<anyhow::Error> = [r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10]
            .into_iter()
            .filter_map(Result::err)
            .collect();
        let more = failed.len().saturating_sub(1);
        match failed.into_iter().next() {
            None => Ok(()),
            Some(e) if more == 0 => Err(e),
            Some(e) => Err(anyhow::anyhow!(
                "{e:#} (and {more} more table(s) not written)"
            )),
        }
    }

    /// Without schema validation: ClickHouse 26 prints the named `steps` Tuple over several
    /// lines in DESCRIBE, which clickhouse-rs 0.15's type parser rejects. Plain RowBinary with
    /// an explicit column list (the struct's fields, in order) needs none.
    async fn write_mirror_jobs(&self, table: &str, rows: &mut Vec<MirrorJobRow>) -> Result<()> {
        self.insert_with::<MirrorJobRow>(&self.unvalidated, table, rows)
            .await?;
        rows.clear();
        Ok(())
    }
}

//! The pipeline's effects, behind two small interfaces, so that `serve`, the in-process
//! `replay` and the tests build the same engine and no `Option` stands in for a mode:
//! * `Evidence`: where records go and evidence is read back (ClickHouse, or memory);
//! * `Actions`: what the App asks of GitHub (the real API, or "nothing is ever sent"),
//!   the restart's check run on its commit included.

mod clickhouse;
mod github;
mod memory;
mod reverts;

pub use clickhouse::ClickHouseEvidence;
pub use github::NoGitHub;
pub use memory::MemoryEvidence;
pub use reverts::{CommentOutcome, RevertActions, post_once};

use crate::github::{
    CheckRunCreated, CheckRunRef, CheckRunRequest, DispatchRequest, DispatchResult, KillSwitch,
};
use crate::intake::events::{Job, Run};
use crate::restart::scope::{Declared, TestEvidence};
use crate::restart::{CheckRunView, JobState, Restart, RestartKey, Scope};
use crate::store::pytorch_events::PytorchEventRow;
use crate::store::recorder::Entry;
use crate::store::signal_state::SignalState;
use anyhow::Result;

/// Where the App's records go and its evidence is read back.
#[async_trait::async_trait]
pub trait Evidence: Send + Sync {
    /// Keeps a record (batched; a delivery's `Ack` travels behind its rows).
    async fn record(&self, entry: Entry);
    /// Writes what is held, before reading what was recorded; false if that failed.
    async fn flush(&self) -> bool;
    /// Restarts to resume at start-up (requested within `days`).
    async fn restarts(&self, days: u32) -> Result<Vec<Restart>>;
    /// The latest known state of every job of a run.
    async fn job_states(&self, repo: &str, run_id: u64) -> Result<Vec<JobState>>;
    /// Whether the restart's jobs are visible (PyTorch's confirmation query).
    async fn restart_visible(&self, key: &RestartKey) -> Result<bool>;
    /// The classification rules and failing tests of these jobs (PyTorch's job table and
    /// `tests.all_test_runs`), for a restart's test filter.
    async fn test_evidence(&self, job_ids: &[u64]) -> Result<TestEvidence>;
    /// What the decision engine's history is rebuilt from: main's commits pushed since
    /// `since`, with their runs and jobs.
    async fn signal_state(&self, since: chrono::DateTime<chrono::Utc>) -> Result<SignalState>;
    /// Appends a row to PyTorch's action log (`PYTORCH_EVENTS_TABLE`), so that its Lambda's
    /// caps and revert-once rule count what the App did.
    async fn pytorch_event(&self, table: &str, row: PytorchEventRow) -> Result<()>;
    /// Whether PyTorch's action log holds a revert of `sha` (the Lambda's, or ours).
    async fn pytorch_reverted(&self, table: &str, repo: &str, sha: &str) -> Result<bool>;
    /// Commits PyTorch's action log shows reverted since `since` (the Lambda's and ours).
    async fn pytorch_reverts_since(
        &self,
        table: &str,
        repo: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64>;
    /// The actions on culprits decided since `since` (once per commit, the daily cap).
    async fn revert_actions(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<crate::store::signal_state::RevertActionRow>>;
}

/// What the pipeline asks of GitHub about a restart. Reads are retried by the client's one
/// retry layer; `dispatch` is sent once and reports what it came to.
/// (`RevertActions`: what acting on a culprit asks, on the same client.)
#[async_trait::async_trait]
pub trait Actions: RevertActions + Send + Sync {
    /// Sends the restart's dispatch once. An error before the POST (no installation token)
    /// is `NotSent`: nothing reached GitHub.
    async fn dispatch(&self, r: &Restart) -> DispatchResult;
    /// Runs of the restart's workflow dispatched on its `trunk/<sha>`.
    async fn dispatched_runs(&self, r: &Restart) -> Result<Vec<Run>>;
    /// Every job of a run's latest attempt (a run of the restart's repository).
    async fn run_jobs(&self, r: &Restart, run_id: u64) -> Result<Vec<Job>>;
    /// The dispatch inputs the restart's workflow file declares at its `trunk/<sha>`;
    /// `Err`: why it could not be read or parsed.
    async fn declared_inputs(&self, r: &Restart) -> Result<Declared, String>;
    /// The kill switch of a repository, if one is on. An error: its state is unknown.
    async fn kill_switch(
        &self,
        repo: &str,
        label: &str,
        installation: Option<u64>,
    ) -> Result<Option<KillSwitch>>;
    /// GitHub's time minus ours (from its answers' `Date` headers): corrects comparisons of
    /// our times with GitHub's.
    fn clock_offset(&self) -> chrono::Duration {
        chrono::Duration::zero()
    }
    /// The restart's check run on its commit, found by its external id (a retried read).
    async fn find_check_run(
        &self,
        r: &Restart,
        req: &CheckRunRequest,
    ) -> Result<Option<CheckRunRef>>;
    /// Creates it: one POST, never retried (look it up first).
    async fn create_check_run(&self, r: &Restart, req: &CheckRunRequest) -> CheckRunCreated;
    /// Brings check run `id` to `req` (a PATCH, retried like a read).
    async fn update_check_run(
        &self,
        r: &Restart,
        req: &CheckRunRequest,
        id: u64,
    ) -> Result<CheckRunRef>;
}

/// Appends `row` to PyTorch's action log; a row that cannot be built or written is logged
/// and dropped (the log is advisory for the Lambda: the App's own tables keep everything).
pub async fn tell_pytorch(
    evidence: &dyn Evidence,
    table: &str,
    row: Result<PytorchEventRow>,
    about: &str,
) {
    let written = match row {
        Ok(row) => evidence.pytorch_event(table, row).await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        tracing::warn!(
            about,
            error = format!("{e:#}"),
            "PyTorch's action log not written"
        );
    }
}

/// The check run a restart's view stands for (named by the restart id on its commit).
pub fn check_run_request(r: &Restart, view: &CheckRunView) -> CheckRunRequest {
    CheckRunRequest {
        repo: r.key.repo.clone(),
        head_sha: r.key.head_sha.clone(),
        external_id: r.restart_id.clone(),
        completed: view.completed,
        title: view.title.clone(),
        summary: view.summary.clone(),
        details_url: view.details_url.clone(),
    }
}

/// The dispatch a restart stands for: the same request every time it is sent, filters
/// included (they were decided, and written, before the first POST).
pub fn request(r: &Restart) -> DispatchRequest {
    DispatchRequest {
        repo: r.key.repo.clone(),
        workflow_file: r.workflow_file.clone(),
        git_ref: r.trunk_ref(),
        inputs: r.scope.as_ref().and_then(Scope::inputs),
    }
}

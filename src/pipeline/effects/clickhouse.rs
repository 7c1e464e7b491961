//! `Evidence` in ClickHouse: rows go through the recorder (batched INSERTs, acks behind
//! them), reads go to the store.

use super::Evidence;
use crate::restart::scope::TestEvidence;
use crate::restart::{JobState, Restart, RestartKey};
use crate::store::Store;
use crate::store::recorder::{Entry, Recorder};
use anyhow::Result;

pub struct ClickHouseEvidence {
    store: Store,
    recorder: Recorder,
}

impl ClickHouseEvidence {
    pub fn new(store: Store, recorder: Recorder) -> ClickHouseEvidence {
        ClickHouseEvidence { store, recorder }
    }
}

#[async_trait::async_trait]
impl Evidence for ClickHouseEvidence {
    async fn record(&self, entry: Entry) {
        self.recorder.add(entry).await
    }

    async fn flush(&self) -> bool {
        self.recorder.flush().await
    }

    async fn restarts(&self, days: u32) -> Result<Vec<Restart>> {
        self.store.load_restarts(days).await
    }

    async fn job_states(&self, repo: &str, run_id: u64) -> Result<Vec<JobState>> {
        self.store.job_states(repo, run_id).await
    }

    async fn restart_visible(&self, key: &RestartKey) -> Result<bool> {
        self.store.restart_visible(key).await
    }

    async fn test_evidence(&self, job_ids: &[u64]) -> Result<TestEvidence> {
        self.store.test_evidence(job_ids).await
    }

    async fn signal_state(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::store::signal_state::SignalState> {
        self.store.signal_state(since, None).await
    }

    async fn pytorch_event(
        &self,
        table: &str,
        row: crate::store::pytorch_events::PytorchEventRow,
    ) -> Result<()> {
        self.store.write_pytorch_event(table, row).await.map(|_| ())
    }

    async fn pytorch_reverted(&self, table: &str, repo: &str, sha: &str) -> Result<bool> {
        self.store.pytorch_reverts_of(table, repo, sha).await
    }

    async fn pytorch_reverts_since(
        &self,
        table: &str,
        repo: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64> {
        self.store.pytorch_reverts_since(table, repo, since).await
    }

    async fn revert_actions(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<crate::store::signal_state::RevertActionRow>> {
        self.store.revert_actions(since).await
    }
}

//! `Evidence` in memory, for the in-process `replay`: job states are kept so a restart can
//! be judged; everything else is only logged. Nothing survives the process.

use super::Evidence;
use crate::restart::scope::TestEvidence;
use crate::restart::{JobState, Restart, RestartKey, trunk_ref};
use crate::store::recorder::Entry;
use crate::store::signal_state::SignalState;
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// (repo, run id) -> job id -> (state, workflow name, head branch)
type Jobs = HashMap<(String, u64), BTreeMap<u64, (JobState, String, String)>>;

#[derive(Default)]
pub struct MemoryEvidence {
    jobs: Mutex<Jobs>,
}

#[async_trait::async_trait]
impl Evidence for MemoryEvidence {
    async fn record(&self, entry: Entry) {
        if let Entry::Job(row) = entry {
            {
                let (repo, run_id, job_id) = row.identity();
                self.jobs
                    .lock()
                    .expect("memory evidence lock")
                    .entry((repo.to_string(), run_id))
                    .or_default()
                    .insert(
                        job_id,
                        (
                            row.state(),
                            row.workflow_name().into(),
                            row.head_branch().into(),
                        ),
                    );
            }
        }
    }

    async fn flush(&self) -> bool {
        true
    }

    async fn restarts(&self, _days: u32) -> Result<Vec<Restart>> {
        Ok(vec![])
    }

    async fn job_states(&self, repo: &str, run_id: u64) -> Result<Vec<JobState>> {
        let jobs = self.jobs.lock().expect("memory evidence lock");
        Ok(jobs
            .get(&(repo.to_string(), run_id))
            .map(|m| m.values().map(|(s, _, _)| s.clone()).collect())
            .unwrap_or_default())
    }

    /// Without ClickHouse there is no test evidence: a restart gets no test filter.
    async fn test_evidence(&self, _: &[u64]) -> Result<TestEvidence> {
        anyhow::bail!("no ClickHouse is configured to read failing tests from")
    }

    /// Nothing survives the process: the history starts empty.
    async fn signal_state(&self, _: chrono::DateTime<chrono::Utc>) -> Result<SignalState> {
        Ok(SignalState::default())
    }

    async fn pytorch_event(
        &self,
        _: &str,
        _: crate::store::pytorch_events::PytorchEventRow,
    ) -> Result<()> {
        anyhow::bail!("no ClickHouse is configured to write PyTorch's action log to")
    }

    async fn pytorch_reverted(&self, _: &str, _: &str, _: &str) -> Result<bool> {
        anyhow::bail!("no ClickHouse is configured to read PyTorch's action log from")
    }

    async fn pytorch_reverts_since(
        &self,
        _: &str,
        _: &str,
        _: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64> {
        anyhow::bail!("no ClickHouse is configured to read PyTorch's action log from")
    }

    async fn revert_actions(
        &self,
        _: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<crate::store::signal_state::RevertActionRow>> {
        Ok(Vec::new())
    }

    /// A job of the workflow recorded on `trunk/<sha>` (what PyTorch's query looks for).
    async fn restart_visible(&self, key: &RestartKey) -> Result<bool> {
        let branch = trunk_ref(&key.head_sha);
        let jobs = self.jobs.lock().expect("memory evidence lock");
        Ok(jobs.iter().any(|((repo, _), m)| {
            *repo == key.repo
                && m.values()
                    .any(|(_, workflow, head)| *workflow == key.workflow && *head == branch)
        }))
    }
}

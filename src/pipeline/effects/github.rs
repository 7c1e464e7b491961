//! `Actions` on GitHub's REST API, and the stand-in when no credentials are configured.

use super::Actions;
use crate::github::{DispatchRequest, DispatchResult, GitHub, KillSwitch};
use crate::intake::events::{Job, Run};
use anyhow::Result;

#[async_trait::async_trait]
impl Actions for GitHub {
    async fn dispatch(&self, req: &DispatchRequest, installation: Option<u64>) -> DispatchResult {
        GitHub::dispatch(self, req, installation)
            .await
            .unwrap_or_else(|e| DispatchResult::NotSent {
                reason: format!("{e:#}"),
            })
    }

    async fn dispatched_runs(
        &self,
        repo: &str,
        workflow_file: &str,
        git_ref: &str,
        installation: Option<u64>,
    ) -> Result<Vec<Run>> {
        GitHub::dispatched_runs(self, repo, workflow_file, git_ref, installation).await
    }

    async fn run_jobs(
        &self,
        repo: &str,
        run_id: u64,
        installation: Option<u64>,
    ) -> Result<Vec<Job>> {
        GitHub::run_jobs(self, repo, run_id, installation).await
    }

    async fn kill_switch(
        &self,
        repo: &str,
        label: &str,
        installation: Option<u64>,
    ) -> Result<Option<KillSwitch>> {
        GitHub::kill_switch(self, repo, label, installation).await
    }
}

/// No GitHub credentials (`RESTART_ACTION=log` without them, in-process replay): nothing is
/// ever sent, and GitHub has nothing to add to what the webhooks said.
pub struct NoGitHub;

#[async_trait::async_trait]
impl Actions for NoGitHub {
    async fn dispatch(&self, _: &DispatchRequest, _: Option<u64>) -> DispatchResult {
        // Refused before anything was sent: nothing can be, so the restart fails plainly.
        DispatchResult::Rejected {
            status: 0,
            message: "no GitHub credentials are configured".into(),
        }
    }

    async fn dispatched_runs(&self, _: &str, _: &str, _: &str, _: Option<u64>) -> Result<Vec<Run>> {
        Ok(vec![])
    }

    async fn run_jobs(&self, _: &str, _: u64, _: Option<u64>) -> Result<Vec<Job>> {
        Ok(vec![])
    }

    async fn kill_switch(&self, _: &str, _: &str, _: Option<u64>) -> Result<Option<KillSwitch>> {
        Ok(None)
    }
}

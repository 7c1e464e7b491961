//! `Actions` on GitHub's REST API, and the stand-in when no credentials are configured.

use super::{Actions, request};
use crate::github::{
    CheckRunCreated, CheckRunRef, CheckRunRequest, DispatchResult, GitHub, KillSwitch,
};
use crate::intake::events::{Job, Run};
use crate::restart::Restart;
use crate::restart::scope::Declared;
use anyhow::Result;

#[async_trait::async_trait]
impl Actions for GitHub {
    async fn dispatch(&self, r: &Restart) -> DispatchResult {
        GitHub::dispatch(self, &request(r), r.installation_id)
            .await
            .unwrap_or_else(|e| DispatchResult::NotSent {
                reason: format!("{e:#}"),
            })
    }

    async fn dispatched_runs(&self, r: &Restart) -> Result<Vec<Run>> {
        let (repo, file) = (&r.key.repo, &r.workflow_file);
        GitHub::dispatched_runs(self, repo, file, &r.trunk_ref(), r.installation_id).await
    }

    async fn run_jobs(&self, r: &Restart, run_id: u64) -> Result<Vec<Job>> {
        GitHub::run_jobs(self, &r.key.repo, run_id, r.installation_id).await
    }

    async fn declared_inputs(&self, r: &Restart) -> Result<Declared, String> {
        let (repo, file, git_ref) = (&r.key.repo, &r.workflow_file, r.trunk_ref());
        let read = GitHub::workflow_file(self, repo, file, &git_ref, r.installation_id).await;
        match read {
            Ok(Some(f)) => Ok(Declared {
                inputs: f.inputs,
                file: format!("{}@{}", f.path, f.blob_sha),
            }),
            Ok(None) => Err(format!(
                ".github/workflows/{file} not found at {git_ref} (GitHub answered 404)"
            )),
            Err(e) => Err(format!("{e:#}")),
        }
    }

    async fn kill_switch(
        &self,
        repo: &str,
        label: &str,
        installation: Option<u64>,
    ) -> Result<Option<KillSwitch>> {
        GitHub::kill_switch(self, repo, label, installation).await
    }

    fn clock_offset(&self) -> chrono::Duration {
        GitHub::clock_offset(self)
    }

    async fn find_check_run(
        &self,
        r: &Restart,
        req: &CheckRunRequest,
    ) -> Result<Option<CheckRunRef>> {
        GitHub::find_check_run(self, req, r.installation_id).await
    }

    async fn create_check_run(&self, r: &Restart, req: &CheckRunRequest) -> CheckRunCreated {
        GitHub::create_check_run(self, req, r.installation_id).await
    }

    async fn update_check_run(
        &self,
        r: &Restart,
        req: &CheckRunRequest,
        id: u64,
    ) -> Result<CheckRunRef> {
        GitHub::update_check_run(self, req, id, r.installation_id).await
    }
}

/// No GitHub credentials (`RESTART_ACTION=log` without them, in-process replay): nothing is
/// ever sent, and GitHub has nothing to add to what the webhooks said.
pub struct NoGitHub;

#[async_trait::async_trait]
impl Actions for NoGitHub {
    async fn dispatch(&self, _: &Restart) -> DispatchResult {
        // Refused before anything was sent: nothing can be, so the restart fails plainly.
        DispatchResult::Rejected {
            status: 0,
            message: "no GitHub credentials are configured".into(),
        }
    }

    async fn dispatched_runs(&self, _: &Restart) -> Result<Vec<Run>> {
        Ok(vec![])
    }

    async fn run_jobs(&self, _: &Restart, _: u64) -> Result<Vec<Job>> {
        Ok(vec![])
    }

    async fn declared_inputs(&self, _: &Restart) -> Result<Declared, String> {
        Err("no GitHub credentials are configured".into())
    }

    async fn kill_switch(&self, _: &str, _: &str, _: Option<u64>) -> Result<Option<KillSwitch>> {
        Ok(None)
    }

    // Nothing is dispatched without credentials, so no restart ever wants a check run;
    // were one asked for, it is refused plainly, like a dispatch.
    async fn find_check_run(
        &self,
        _: &Restart,
        _: &CheckRunRequest,
    ) -> Result<Option<CheckRunRef>> {
        Ok(None)
    }

    async fn create_check_run(&self, _: &Restart, _: &CheckRunRequest) -> CheckRunCreated {
        CheckRunCreated::Refused("no GitHub credentials are configured".into())
    }

    async fn update_check_run(
        &self,
        _: &Restart,
        _: &CheckRunRequest,
        _: u64,
    ) -> Result<CheckRunRef> {
        anyhow::bail!("no GitHub credentials are configured")
    }
}

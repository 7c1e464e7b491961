//! Runs, jobs and workflows of a repository (GitHub Actions' REST API), as the App reads
//! them.

use super::GitHub;
use super::transport::{base64_decode, url_escape};
use crate::intake::events::{Job, Run, workflow_file};
use anyhow::{Context, Result, bail};
use serde::Deserialize;

#[derive(Deserialize)]
struct RunsPage {
    workflow_runs: Vec<Run>,
}

#[derive(Deserialize)]
struct JobsPage {
    total_count: u64,
    jobs: Vec<Job>,
}

impl GitHub {
    /// Runs of a workflow dispatched on `git_ref` (how an unknown dispatch outcome is settled).
    pub async fn dispatched_runs(
        &self,
        repo: &str,
        workflow_file: &str,
        git_ref: &str,
        installation: Option<u64>,
    ) -> Result<Vec<Run>> {
        self.runs(
            repo,
            workflow_file,
            &[("branch", git_ref), ("event", "workflow_dispatch")],
            installation,
        )
        .await
    }

    /// Runs of a workflow file, newest first, filtered by GitHub's query parameters
    /// (`branch`, `event`, `status`, `created`, ...).
    pub async fn runs(
        &self,
        repo: &str,
        workflow_file: &str,
        query: &[(&str, &str)],
        installation: Option<u64>,
    ) -> Result<Vec<Run>> {
        let client = self.client_for(repo, installation).await?;
        let qs: String = query
            .iter()
            .map(|(k, v)| format!("&{k}={}", url_escape(v)))
            .collect();
        let route =
            format!("/repos/{repo}/actions/workflows/{workflow_file}/runs?per_page=100{qs}");
        let page: RunsPage = client.get_json(&route).await?;
        Ok(page.workflow_runs)
    }

    /// One run (`GET /repos/{repo}/actions/runs/{id}`).
    pub async fn run(&self, repo: &str, run_id: u64, installation: Option<u64>) -> Result<Run> {
        let client = self.client_for(repo, installation).await?;
        client
            .get_json(&format!("/repos/{repo}/actions/runs/{run_id}"))
            .await
    }

    /// Every job of a run's latest attempt (`filter=latest`), all pages.
    pub async fn run_jobs(
        &self,
        repo: &str,
        run_id: u64,
        installation: Option<u64>,
    ) -> Result<Vec<Job>> {
        let client = self.client_for(repo, installation).await?;
        let mut jobs = Vec::new();
        for page in 1..=20u32 {
            let route = format!(
                "/repos/{repo}/actions/runs/{run_id}/jobs?filter=latest&per_page=100&page={page}"
            );
            let p: JobsPage = client.get_json(&route).await?;
            let n = p.jobs.len();
            jobs.extend(p.jobs);
            if n < 100 || jobs.len() as u64 >= p.total_count {
                break;
            }
        }
        Ok(jobs)
    }

    /// The kill switch: an open issue carrying `label` counts only if the user who applied
    /// the label (the latest `labeled` event for it) has write, maintain or admin permission.
    /// workflow with the same display name once blocked PyTorch's dispatches, test-infra#7617).
    pub async fn resolve_workflow(&self, repo: &str, name: &str) -> Result<String> {
        if name.ends_with(".yml") || name.ends_with(".yaml") {
            return Ok(name.to_string());
        }
        #[derive(Deserialize)]
        struct Wf {
            name: String,
            path: String,
            state: String,
        }
        #[derive(Deserialize)]
        struct Wfs {
            workflows: Vec<Wf>,
        }
        let client = self.client_for(repo, None).await?;
        let list: Wfs = client
            .get_json(&format!("/repos/{repo}/actions/workflows?per_page=100"))
            .await?;
        let active: Vec<&Wf> = list
            .workflows
            .iter()
            .filter(|w| w.name == name && w.state == "active")
            .collect();
        match active.as_slice() {
            [one] => Ok(workflow_file(&one.path).to_string()),
            [] => bail!("{repo} has no active workflow named {name:?}"),
            many => bail!(
                "{repo} has {} active workflows named {name:?}; name the file instead",
                many.len()
            ),
        }
    }

    /// Whether the workflow file at `git_ref` declares `workflow_dispatch`, and its inputs.
    pub async fn workflow_inputs(
        &self,
        repo: &str,
        workflow_file: &str,
        git_ref: &str,
        installation: Option<u64>,
    ) -> Result<Option<Vec<String>>> {
        #[derive(Deserialize)]
        struct Content {
            content: String,
        }
        let client = self.client_for(repo, installation).await?;
        let route = format!(
            "/repos/{repo}/contents/.github/workflows/{workflow_file}?ref={}",
            url_escape(git_ref)
        );
        let c: Content = client.get_json(&route).await?;
        let raw: String = c.content.split_whitespace().collect();
        let text = base64_decode(&raw).context("workflow file content is not base64")?;
        super::workflow_file::dispatch_inputs(&text).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

//! Runs, jobs and workflows of a repository (GitHub Actions' REST API), as the App reads
//! them.

use super::GitHub;
use super::transport::{base64_decode, url_escape};
use super::workflow_file::{MAX_WORKFLOW_BYTES, WorkflowFile};
use crate::intake::events::{Job, Run, workflow_file};
use anyhow::{Result, bail};
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
        match self
            .workflow_file(repo, workflow_file, git_ref, installation)
            .await?
        {
            Some(file) => Ok(file.inputs),
            None => bail!(".github/workflows/{workflow_file} is not in {repo} at {git_ref}"),
        }
    }

    /// The workflow file at `git_ref` (`GET /repos/{repo}/contents/{path}?ref=`, base64 as
    /// GitHub documents it) and the dispatch inputs it declares, parsed once per blob.
    /// `Ok(None)`: there is no such file at that ref (404). `Err`: GitHub could not be read,
    /// or the file is not one this App reads (not a file, too large, not YAML, aliases).
    pub async fn workflow_file(
        &self,
        repo: &str,
        workflow_file: &str,
        git_ref: &str,
        installation: Option<u64>,
    ) -> Result<Option<WorkflowFile>> {
        let client = self.client_for(repo, installation).await?;
        let path = format!(".github/workflows/{workflow_file}");
        let route = format!("/repos/{repo}/contents/{path}?ref={}", url_escape(git_ref));
        let Some(c) = client.get_optional::<Content>(&route).await? else {
            return Ok(None);
        };
        let inputs = self
            .workflow_files
            .inputs(&path, &c.sha, || c.text())
            .map_err(|e| anyhow::anyhow!("{path} at {git_ref}: {e}"))?;
        Ok(Some(WorkflowFile {
            path,
            blob_sha: c.sha,
            inputs,
        }))
    }
}

/// A file as the contents API answers for it.
#[derive(Deserialize)]
struct Content {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    encoding: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    sha: String,
    #[serde(default)]
    size: usize,
}

impl Content {
    /// The file's text. Files over 1 MB come with `encoding: none` and no content.
    fn text(&self) -> Result<String, String> {
        if self.kind != "file" {
            return Err(format!("a {:?}, not a file", self.kind));
        }
        if self.size > MAX_WORKFLOW_BYTES {
            return Err(format!(
                "{} bytes, more than {MAX_WORKFLOW_BYTES}",
                self.size
            ));
        }
        if self.encoding != "base64" {
            return Err(format!("content encoded {:?}, not base64", self.encoding));
        }
        let raw: String = self.content.split_whitespace().collect();
        base64_decode(&raw).map_err(|e| format!("content is not base64 UTF-8 text: {e:#}"))
    }
}

//! What the App watches and how far it may go: the policy every decision reads.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// `RESTART_ACTION`: what to do when a restart is warranted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartAction {
    /// Dispatch for real.
    Run,
    /// Record the restart as a dry run; send nothing.
    Log,
    /// Do nothing but record the decision.
    Skip,
}

impl FromStr for RestartAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "run" => Ok(RestartAction::Run),
            "log" => Ok(RestartAction::Log),
            "skip" => Ok(RestartAction::Skip),
            other => Err(format!(
                "unknown restart action {other:?}: expected run, log or skip"
            )),
        }
    }
}

impl fmt::Display for RestartAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestartAction::Run => "run",
            RestartAction::Log => "log",
            RestartAction::Skip => "skip",
        })
    }
}

/// What the App watches and how far it may go.
#[derive(Debug, Clone)]
pub struct Policy {
    pub repos: Vec<String>,
    /// Workflow display names (`trunk`), compared exactly.
    pub workflows: Vec<String>,
    pub main_branch: String,
    /// Restarts allowed per (repository, workflow, sha).
    pub max_restarts: u32,
    pub action: RestartAction,
    /// Write received runs and jobs into the local `workflow_run`/`workflow_job` mirror.
    pub ingest: bool,
    /// Minimum time between two restarts of one (repository, workflow, sha).
    pub min_spacing: chrono::Duration,
    /// Wait after `n` consecutive failed dispatches: `backoff_base * 2^(n-1)`, at most `backoff_max`.
    pub backoff_base: chrono::Duration,
    pub backoff_max: chrono::Duration,
    /// Restarts dispatched in the last hour, across everything, before new ones wait.
    pub max_restarts_per_hour: u32,
    /// Label of the kill-switch issue (`ci: disable-autorevert`); None: no kill switch.
    pub kill_switch_label: Option<String>,
    /// In-process replay only: a dry-run restart adopts the dispatched run that follows it,
    /// so a developer can follow the whole path without GitHub.
    pub simulate: bool,
}

impl Policy {
    pub fn repo_allowed(&self, repo: &str) -> bool {
        self.repos.iter().any(|r| r.eq_ignore_ascii_case(repo))
    }

    pub fn watched(&self, workflow: &str) -> bool {
        self.workflows.iter().any(|w| w == workflow)
    }
}

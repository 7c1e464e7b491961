//! What a decision asks for: commands the pipeline carries out.

use super::model::{Restart, RestartKey};
use crate::intake::events::{Job, Run};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Nothing to do for this delivery; why.
    Ignore {
        reason: String,
    },
    /// A restart was warranted but the policy holds it back (cap, `RESTART_ACTION=skip`).
    Skip {
        key: RestartKey,
        original_run_id: u64,
        reason: String,
    },
    /// Record this new restart and dispatch it (or only record it, when `dry_run`).
    Dispatch {
        restart: Box<Restart>,
    },
    /// Keep this job's state: the evidence a restart is judged on.
    RecordJob {
        repo: String,
        job: Box<Job>,
    },
    /// A run on `trunk/{sha}` belongs to this restart.
    AttachRun {
        restart_id: String,
        run_id: u64,
        run_url: String,
    },
    /// The restart's jobs exist: confirm them in ClickHouse.
    Confirm {
        restart_id: String,
    },
    /// The restarted run completed: judge it against the original run.
    Evaluate {
        restart_id: String,
        run_conclusion: String,
    },
    MirrorRun {
        repo: String,
        run: Box<Run>,
    },
    MirrorJob {
        repo: String,
        job: Box<Job>,
    },
}

impl Command {
    /// Whether this keeps evidence (job states, mirror rows): such commands run first, so
    /// that what reads the evidence in the same delivery sees it.
    pub fn writes_evidence(&self) -> bool {
        matches!(
            self,
            Command::RecordJob { .. } | Command::MirrorRun { .. } | Command::MirrorJob { .. }
        )
    }

    /// One line for logs and `autorevert replay`.
    pub fn describe(&self) -> String {
        match self {
            Command::Ignore { reason } => format!("ignore: {reason}"),
            Command::Skip { key, reason, .. } => format!("no restart of {key}: {reason}"),
            Command::Dispatch { restart } => format!(
                "{} {} on {} (restart #{} of {}){}",
                if restart.dry_run {
                    "would dispatch"
                } else {
                    "dispatch"
                },
                restart.workflow_file,
                restart.trunk_ref(),
                restart.attempt,
                restart.key,
                if restart.dry_run { " [dry-run]" } else { "" }
            ),
            Command::RecordJob { job, .. } => format!(
                "record job {} ({}, {})",
                job.name,
                job.status,
                job.conclusion
                    .as_ref()
                    .map_or("-".to_string(), |c| c.to_string())
            ),
            Command::AttachRun {
                restart_id, run_id, ..
            } => format!("run {run_id} is restart {restart_id}"),
            Command::Confirm { restart_id } => {
                format!("confirm restart {restart_id} in ClickHouse")
            }
            Command::Evaluate {
                restart_id,
                run_conclusion,
            } => format!("judge restart {restart_id} (run concluded {run_conclusion})"),
            Command::MirrorRun { run, .. } => format!("mirror workflow_run {}", run.id),
            Command::MirrorJob { job, .. } => format!("mirror workflow_job {}", job.id),
        }
    }
}

/// While the kill switch is on, or its state unknown, a decided dispatch becomes a recorded
/// skip with `reason` (pure).
pub fn hold_for_kill_switch(commands: Vec<Command>, reason: &str) -> Vec<Command> {
    commands
        .into_iter()
        .map(|c| match c {
            Command::Dispatch { restart } => Command::Skip {
                original_run_id: restart.original_run_id,
                key: restart.key,
                reason: reason.to_string(),
            },
            other => other,
        })
        .collect()
}

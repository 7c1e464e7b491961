//! Decisions: a pure function from (event, ledger, policy, time) to commands.
//!
//! No I/O happens here, so every rule is tested without a network, a clock or a database
//! (`tests` below and `tests/decisions.rs`). The pipeline executes the commands.

use crate::events::{Event, Job, Run, WorkflowJobEvent, WorkflowRunEvent};
use crate::ledger::{Ledger, Restart, RestartKey, Status, next_version, trunk_ref};
use chrono::{DateTime, Utc};
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
    fn repo_allowed(&self, repo: &str) -> bool {
        self.repos.iter().any(|r| r.eq_ignore_ascii_case(repo))
    }
    fn watched(&self, workflow: &str) -> bool {
        self.workflows.iter().any(|w| w == workflow)
    }
}

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
                job.conclusion.as_deref().unwrap_or("-")
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

/// While the kill switch is on, a decided dispatch becomes a recorded skip (pure).
pub fn hold_for_kill_switch(commands: Vec<Command>, switch: &str) -> Vec<Command> {
    commands
        .into_iter()
        .map(|c| match c {
            Command::Dispatch { restart } => Command::Skip {
                original_run_id: restart.original_run_id,
                key: restart.key,
                reason: format!("kill switch on: {switch}"),
            },
            other => other,
        })
        .collect()
}

/// Whether an event could lead to a dispatch (only then is the kill switch looked up).
pub fn may_dispatch(event: &Event) -> bool {
    matches!(event, Event::WorkflowRun(e) if e.action == "completed"
        && RESTART_CONCLUSIONS.contains(&e.run.conclusion.as_deref().unwrap_or("")))
}

/// Conclusions that warrant a restart.
const RESTART_CONCLUSIONS: [&str; 2] = ["failure", "timed_out"];

/// Dispatches GitHub refused (a `trunk/<sha>` tag not pushed yet, a missing permission)
/// after which a commit is not tried again. They do not count against the restart cap:
/// nothing ran. Between them the backoff applies (20, 40, 60 min by default).
pub const MAX_FAILED_DISPATCHES: usize = 4;

/// Whether a commit whose restarts all failed to dispatch may be tried again now: what the
/// reconciler asks before it hands the failed run back to `decide`.
pub fn retry_due(
    existing: &[Restart],
    ledger: &Ledger,
    policy: &Policy,
    now: DateTime<Utc>,
) -> bool {
    let failed = existing
        .iter()
        .filter(|r| r.status == Status::DispatchFailed)
        .count();
    failed > 0
        && failed == existing.len()
        && failed < MAX_FAILED_DISPATCHES
        && paced(existing, ledger, policy, now).is_none()
}

/// Decides what one delivery means.
pub fn decide(
    event: &Event,
    delivery_id: &str,
    ledger: &Ledger,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Vec<Command> {
    let mut out = match event {
        Event::WorkflowRun(e) => decide_run(e, delivery_id, ledger, policy, now),
        Event::WorkflowJob(e) => decide_job(e, ledger, policy),
        Event::Ping { .. } => vec![ignore("ping")],
        Event::Other { name } => vec![ignore(format!("event {name} is not handled"))],
    };
    if policy.ingest && policy.repo_allowed(event.repo()) {
        match event {
            Event::WorkflowRun(e) => out.push(Command::MirrorRun {
                repo: e.repo.clone(),
                run: Box::new(e.run.clone()),
            }),
            Event::WorkflowJob(e) => out.push(Command::MirrorJob {
                repo: e.repo.clone(),
                job: Box::new(e.job.clone()),
            }),
            _ => {}
        }
    }
    out
}

fn ignore(reason: impl Into<String>) -> Command {
    Command::Ignore {
        reason: reason.into(),
    }
}

/// `.github/workflows/trunk.yml` -> `trunk.yml` (the dispatch API takes the file name).
pub fn workflow_file(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether a run or job is a restart: `event = workflow_dispatch` on `trunk/{its sha}`.
pub fn is_restart_branch(head_branch: Option<&str>, head_sha: &str) -> bool {
    head_branch == Some(trunk_ref(head_sha).as_str())
}

fn decide_run(
    e: &WorkflowRunEvent,
    delivery_id: &str,
    ledger: &Ledger,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Vec<Command> {
    let run = &e.run;
    if !policy.repo_allowed(&e.repo) {
        return vec![ignore(format!("repository {} is not watched", e.repo))];
    }
    if !policy.watched(&run.name) {
        return vec![ignore(format!("workflow {:?} is not watched", run.name))];
    }
    let key = RestartKey {
        repo: e.repo.clone(),
        workflow: run.name.clone(),
        head_sha: run.head_sha.clone(),
    };
    let head_branch = run.head_branch.as_deref();

    // A run on trunk/{sha}: a restart (ours, or someone's). Never a trigger.
    if is_restart_branch(head_branch, &run.head_sha) {
        if run.event != "workflow_dispatch" {
            return vec![ignore(format!(
                "run on {} by event {} is not a dispatch",
                trunk_ref(&run.head_sha),
                run.event
            ))];
        }
        let Some(restart) = ledger.for_run(&key, run.id, policy.simulate) else {
            return vec![ignore(format!(
                "dispatched run {} on {} was not started by this App",
                run.id,
                trunk_ref(&run.head_sha)
            ))];
        };
        let mut out = Vec::new();
        if restart.restart_run_id != Some(run.id) {
            out.push(Command::AttachRun {
                restart_id: restart.restart_id.clone(),
                run_id: run.id,
                run_url: run.html_url.clone(),
            });
        }
        // A running or finished run has jobs: confirm, even if their webhooks were missed.
        if matches!(e.action.as_str(), "in_progress" | "completed")
            && restart.confirmed_at.is_none()
            && !matches!(restart.status, Status::Unconfirmed | Status::Confirmed)
        {
            out.push(Command::Confirm {
                restart_id: restart.restart_id.clone(),
            });
        }
        if e.action == "completed" && restart.status != Status::Completed {
            out.push(Command::Evaluate {
                restart_id: restart.restart_id.clone(),
                run_conclusion: run.conclusion.clone().unwrap_or_default(),
            });
        }
        if out.is_empty() {
            out.push(ignore(format!(
                "restart run {} {}: nothing new",
                run.id, e.action
            )));
        }
        return out;
    }

    if e.action != "completed" {
        return vec![ignore(format!("run {} is {}", run.id, e.action))];
    }
    let conclusion = run.conclusion.as_deref().unwrap_or("none");
    if !RESTART_CONCLUSIONS.contains(&conclusion) {
        return vec![ignore(format!("run {} concluded {conclusion}", run.id))];
    }
    if run.event != "push" {
        return vec![ignore(format!(
            "run {} was triggered by {}, not push",
            run.id, run.event
        ))];
    }
    if head_branch != Some(policy.main_branch.as_str()) {
        return vec![ignore(format!(
            "run {} is on branch {}, not {}",
            run.id,
            head_branch.unwrap_or("(none)"),
            policy.main_branch
        ))];
    }
    let file = workflow_file(&run.path);
    if file.is_empty() {
        return vec![ignore(format!(
            "run {} names no workflow file to dispatch",
            run.id
        ))];
    }

    let existing = ledger.restarts(&key);
    let failed = existing
        .iter()
        .filter(|r| r.status == Status::DispatchFailed)
        .count();
    let counted = (existing.len() - failed) as u32;
    if counted >= policy.max_restarts {
        let latest = existing.last().map(|r| r.status.as_str()).unwrap_or("-");
        return vec![Command::Skip {
            key,
            original_run_id: run.id,
            reason: format!(
                "{counted} restart(s) already (cap {}; latest {latest})",
                policy.max_restarts
            ),
        }];
    }
    if failed >= MAX_FAILED_DISPATCHES {
        let latest = existing.last().map(|r| r.reason.as_str()).unwrap_or("-");
        return vec![Command::Skip {
            key,
            original_run_id: run.id,
            reason: format!("gave up after {failed} refused dispatches (latest: {latest})"),
        }];
    }
    if let Some(reason) = paced(existing, ledger, policy, now) {
        return vec![Command::Skip {
            key,
            original_run_id: run.id,
            reason,
        }];
    }
    if policy.action == RestartAction::Skip {
        return vec![Command::Skip {
            key,
            original_run_id: run.id,
            reason: "RESTART_ACTION=skip".into(),
        }];
    }
    let attempt = existing.iter().map(|r| r.attempt).max().unwrap_or(0) + 1;
    let dry_run = policy.action == RestartAction::Log;
    let restart = Restart {
        restart_id: format!("{}/{}/{}/{}", key.repo, key.workflow, key.head_sha, attempt),
        key,
        attempt,
        workflow_file: file.to_string(),
        original_run_id: run.id,
        installation_id: e.installation_id,
        status: if dry_run {
            Status::DryRun
        } else {
            Status::Dispatching
        },
        dispatch_attempts: if dry_run { 0 } else { 1 },
        restart_run_id: None,
        run_url: String::new(),
        dry_run,
        requested_at: now,
        dispatched_at: None,
        confirmed_at: None,
        confirm_latency_ms: None,
        completed_at: None,
        outcome: None,
        reason: format!("run {} concluded {conclusion}", run.id),
        delivery_id: delivery_id.to_string(),
        version: next_version(),
    };
    vec![Command::Dispatch {
        restart: Box::new(restart),
    }]
}

/// Pacing (PyTorch's rules): spacing after a restart, backoff after failed dispatches,
/// and a global hourly budget. `Some(reason)` holds the restart back.
fn paced(
    existing: &[Restart],
    ledger: &Ledger,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<String> {
    if let Some(last) = existing.iter().max_by_key(|r| r.requested_at) {
        let since = now - last.requested_at;
        let failures = existing
            .iter()
            .rev()
            .take_while(|r| r.status == Status::DispatchFailed)
            .count() as u32;
        if failures > 0 {
            let factor = 2i32.saturating_pow(failures.saturating_sub(1).min(16));
            let wait = (policy.backoff_base * factor).min(policy.backoff_max);
            if since < wait {
                return Some(format!(
                    "backing off after {failures} failed dispatch(es): next try {} min after the last",
                    wait.num_minutes()
                ));
            }
        } else if since < policy.min_spacing {
            return Some(format!(
                "restarted {} min ago; minimum spacing is {} min",
                since.num_minutes(),
                policy.min_spacing.num_minutes()
            ));
        }
    }
    let hour_ago = now - chrono::Duration::hours(1);
    let recent = ledger
        .all()
        .filter(|r| !r.dry_run && r.requested_at > hour_ago && r.status != Status::DispatchFailed)
        .count() as u32;
    if recent >= policy.max_restarts_per_hour {
        return Some(format!(
            "global budget reached: {recent} restarts in the last hour (limit {})",
            policy.max_restarts_per_hour
        ));
    }
    None
}

fn decide_job(e: &WorkflowJobEvent, ledger: &Ledger, policy: &Policy) -> Vec<Command> {
    let job = &e.job;
    if !policy.repo_allowed(&e.repo) {
        return vec![ignore(format!("repository {} is not watched", e.repo))];
    }
    if !policy.watched(&job.workflow_name) {
        return vec![ignore(format!(
            "workflow {:?} is not watched",
            job.workflow_name
        ))];
    }
    let head_branch = job.head_branch.as_deref();
    let on_restart = is_restart_branch(head_branch, &job.head_sha);
    if !on_restart && head_branch != Some(policy.main_branch.as_str()) {
        return vec![ignore(format!(
            "job {} is on branch {}",
            job.id,
            head_branch.unwrap_or("(none)")
        ))];
    }
    let mut out = vec![Command::RecordJob {
        repo: e.repo.clone(),
        job: Box::new(job.clone()),
    }];
    if on_restart {
        let key = RestartKey {
            repo: e.repo.clone(),
            workflow: job.workflow_name.clone(),
            head_sha: job.head_sha.clone(),
        };
        if let Some(restart) = ledger.for_run(&key, job.run_id, policy.simulate) {
            if restart.restart_run_id != Some(job.run_id) {
                out.push(Command::AttachRun {
                    restart_id: restart.restart_id.clone(),
                    run_id: job.run_id,
                    run_url: String::new(),
                });
            }
            if restart.confirmed_at.is_none()
                && !matches!(restart.status, Status::Unconfirmed | Status::Confirmed)
            {
                out.push(Command::Confirm {
                    restart_id: restart.restart_id.clone(),
                });
            }
        }
    }
    out
}

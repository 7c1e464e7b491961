//! Decisions: a pure function from (event, ledger, policy, time) to commands.
//!
//! No I/O happens here, so every rule is tested without a network, a clock or a database
//! (`tests/decisions.rs`). The pipeline executes the commands.

use super::check_run::CheckRun;
use super::command::Command;
use super::ledger::Ledger;
use super::model::{
    Restart, RestartKey, Status, Timeline, is_restart_branch, next_version, trunk_ref,
};
use super::pacing::{MAX_FAILED_DISPATCHES, paced};
use super::policy::{Policy, RestartAction};
use crate::intake::events::{Event, WorkflowJobEvent, WorkflowRunEvent, workflow_file};
use crate::intake::states::{Action, Trigger, failed};
use chrono::{DateTime, Utc};

/// Whether an event could lead to a dispatch (only then is the kill switch looked up).
pub fn may_dispatch(event: &Event) -> bool {
    matches!(event, Event::WorkflowRun(e) if e.action == Action::Completed
        && failed(e.run.conclusion.as_ref()))
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
        Event::Push(e) => vec![ignore(format!(
            "push to {}: the commit order, for the decision engine",
            e.git_ref
        ))],
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
    // A run on trunk/{sha}: a restart (ours, or someone's). Never a trigger.
    if is_restart_branch(run.head_branch.as_deref(), &run.head_sha) {
        return follow_restart_run(e, ledger, policy);
    }
    if let Err(why) = restartable(e, policy) {
        return vec![ignore(why)];
    }
    let key = RestartKey {
        repo: e.repo.clone(),
        workflow: run.name.clone(),
        head_sha: run.head_sha.clone(),
    };
    let skip = |reason: String| Command::Skip {
        key: key.clone(),
        original_run_id: run.id,
        reason,
    };
    let existing = ledger.restarts(&key);
    if let Some(reason) = held_back(existing, ledger, policy, now) {
        return vec![skip(reason)];
    }
    if policy.action == RestartAction::Skip {
        return vec![skip("RESTART_ACTION=skip".into())];
    }
    let conclusion = run.conclusion.clone().unwrap_or_default();
    let asked = Asked {
        key,
        workflow_file: workflow_file(&run.path).to_string(),
        original_run_id: run.id,
        installation_id: e.installation_id,
        jobs: Vec::new(),
        reason: format!("run {} concluded {conclusion}", run.id),
    };
    let restart = new_restart(asked, existing, delivery_id, policy, now);
    vec![Command::Dispatch {
        restart: Box::new(restart),
    }]
}

/// A restart the decision engine asks for: a commit's workflow again, for some jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    pub key: RestartKey,
    pub workflow_file: String,
    /// The commit's run the restart is compared with (0: none known).
    pub original_run_id: u64,
    pub installation_id: Option<u64>,
    /// Normalized job names (`linux-jammy / test (default)`); empty: the whole workflow.
    pub jobs: Vec<String>,
    pub reason: String,
}

/// What an engine's ask comes to, under the same cap, give-up and pacing as any restart.
/// A commit whose restart is under way (or recorded as a dry run) gets nothing new and
/// nothing logged: the engine asks again on every event until the restart's jobs show up
/// as pending. A finished one leaves the decision to the cap.
pub fn decide_asked(
    asked: Asked,
    delivery_id: &str,
    ledger: &Ledger,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Vec<Command> {
    let existing = ledger.restarts(&asked.key);
    let skip = |reason: String| Command::Skip {
        key: asked.key.clone(),
        original_run_id: asked.original_run_id,
        reason,
    };
    let under_way = |r: &Restart| {
        r.status.awaits_run() || matches!(r.status, Status::Confirmed | Status::DryRun)
    };
    if existing.iter().any(under_way) {
        return Vec::new();
    }
    if let Some(reason) = held_back(existing, ledger, policy, now) {
        return vec![skip(reason)];
    }
    if policy.action == RestartAction::Skip {
        return vec![skip("RESTART_ACTION=skip".into())];
    }
    let restart = new_restart(asked, existing, delivery_id, policy, now);
    vec![Command::Dispatch {
        restart: Box::new(restart),
    }]
}

/// A failed push run on the main branch with a workflow file to dispatch; else why not.
fn restartable(e: &WorkflowRunEvent, policy: &Policy) -> Result<(), String> {
    let run = &e.run;
    if e.action != Action::Completed {
        return Err(format!("run {} is {}", run.id, e.action));
    }
    if !failed(run.conclusion.as_ref()) {
        let conclusion = run.conclusion.as_ref().map(|c| c.to_string());
        return Err(format!(
            "run {} concluded {}",
            run.id,
            conclusion.as_deref().unwrap_or("none")
        ));
    }
    if run.event != Trigger::Push {
        return Err(format!(
            "run {} was triggered by {}, not push",
            run.id, run.event
        ));
    }
    let head_branch = run.head_branch.as_deref();
    if head_branch != Some(policy.main_branch.as_str()) {
        return Err(format!(
            "run {} is on branch {}, not {}",
            run.id,
            head_branch.unwrap_or("(none)"),
            policy.main_branch
        ));
    }
    if workflow_file(&run.path).is_empty() {
        return Err(format!("run {} names no workflow file to dispatch", run.id));
    }
    Ok(())
}

/// The restart cap, the give-up after refused dispatches, and pacing.
fn held_back(
    existing: &[Restart],
    ledger: &Ledger,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<String> {
    let failed = existing
        .iter()
        .filter(|r| r.status == Status::DispatchFailed)
        .count();
    let counted = (existing.len() - failed) as u32;
    if counted >= policy.max_restarts {
        let latest = existing.last().map(|r| r.status.as_str()).unwrap_or("-");
        return Some(format!(
            "{counted} restart(s) already (cap {}; latest {latest})",
            policy.max_restarts
        ));
    }
    if failed >= MAX_FAILED_DISPATCHES {
        let latest = existing.last().map(|r| r.reason.as_str()).unwrap_or("-");
        return Some(format!(
            "gave up after {failed} refused dispatches (latest: {latest})"
        ));
    }
    paced(existing, ledger, policy, now)
}

fn new_restart(
    asked: Asked,
    existing: &[Restart],
    delivery_id: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Restart {
    let key = asked.key;
    let attempt = existing.iter().map(|r| r.attempt).max().unwrap_or(0) + 1;
    let dry_run = policy.action == RestartAction::Log;
    Restart {
        restart_id: format!("{}/{}/{}/{}", key.repo, key.workflow, key.head_sha, attempt),
        key,
        attempt,
        workflow_file: asked.workflow_file,
        original_run_id: asked.original_run_id,
        installation_id: asked.installation_id,
        status: if dry_run {
            Status::DryRun
        } else {
            Status::Dispatching
        },
        dispatch_attempts: if dry_run { 0 } else { 1 },
        restart_run_id: None,
        run_url: String::new(),
        dry_run,
        times: Timeline::requested(now),
        outcome: None,
        reason: asked.reason,
        delivery_id: delivery_id.to_string(),
        version: next_version(),
        check: CheckRun::new(!dry_run),
        scope: None,
        asked_jobs: asked.jobs,
    }
}

/// A dispatched run on `trunk/<sha>`: attach it to its restart, confirm, judge.
fn follow_restart_run(e: &WorkflowRunEvent, ledger: &Ledger, policy: &Policy) -> Vec<Command> {
    let run = &e.run;
    if run.event != Trigger::WorkflowDispatch {
        return vec![ignore(format!(
            "run on {} by event {} is not a dispatch",
            trunk_ref(&run.head_sha),
            run.event
        ))];
    }
    let key = RestartKey {
        repo: e.repo.clone(),
        workflow: run.name.clone(),
        head_sha: run.head_sha.clone(),
    };
    let Some(restart) = ledger.for_run(&key, run.id, policy.simulate) else {
        return vec![ignore(format!(
            "dispatched run {} on {} was not started by this App",
            run.id,
            trunk_ref(&run.head_sha)
        ))];
    };
    let mut out = attach_and_confirm(restart, run.id, &run.html_url);
    // A running or finished run has jobs: confirm, even if their webhooks were missed.
    if !matches!(e.action, Action::InProgress | Action::Completed) {
        out.retain(|c| !matches!(c, Command::Confirm { .. }));
    }
    if e.action == Action::Completed && restart.status != Status::Completed {
        out.push(Command::Evaluate {
            restart_id: restart.restart_id.clone(),
            run_conclusion: run.conclusion.clone().unwrap_or_default().to_string(),
        });
    }
    if out.is_empty() {
        out.push(ignore(format!(
            "restart run {} {}: nothing new",
            run.id, e.action
        )));
    }
    out
}

/// Attach a run that is not yet the restart's; confirm a restart not yet confirmed.
fn attach_and_confirm(restart: &Restart, run_id: u64, run_url: &str) -> Vec<Command> {
    let mut out = Vec::new();
    if restart.restart_run_id != Some(run_id) {
        out.push(Command::AttachRun {
            restart_id: restart.restart_id.clone(),
            run_id,
            run_url: run_url.to_string(),
        });
    }
    if restart.awaits_confirmation() {
        out.push(Command::Confirm {
            restart_id: restart.restart_id.clone(),
        });
    }
    out
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
            out.extend(attach_and_confirm(restart, job.run_id, ""));
        }
    }
    out
}

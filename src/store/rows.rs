//! Rows of the App's own tables, built from the domain's types (and read back into them).

use crate::intake::Delivery;
use crate::intake::events::Job;
use crate::restart::check_run::{CheckEvidence, CheckRun};
use crate::restart::outcome::JobVerdict;
use crate::restart::{
    Change, Command, EventKind, JobState, Restart, RestartKey, Scope, ScopeKind, Status, Timeline,
    Verdict,
};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clickhouse::Row;
use serde::{Deserialize, Serialize};

/// A running App, as its heartbeat records it (see `background/heartbeat.rs`).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct InstanceRow {
    pub instance_id: String,
    pub host: String,
    pub pid: u32,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    pub seen_at: DateTime<Utc>,
    /// Its last row, written on a clean stop: no longer counted as running.
    pub stopped: bool,
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct RestartRow {
    restart_id: String,
    repo: String,
    workflow: String,
    head_sha: String,
    attempt: u32,
    workflow_file: String,
    original_run_id: u64,
    installation_id: Option<u64>,
    status: String,
    restart_run_id: Option<u64>,
    run_url: String,
    dry_run: u8,
    dispatch_attempts: u32,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    requested_at: DateTime<Utc>,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis::option")]
    dispatched_at: Option<DateTime<Utc>>,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis::option")]
    confirmed_at: Option<DateTime<Utc>>,
    confirm_latency_ms: Option<u64>,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis::option")]
    completed_at: Option<DateTime<Utc>>,
    outcome: String,
    reason: String,
    delivery_id: String,
    version: u64,
    // The check run on the commit (migration 6), together.
    check_run_wanted: bool,
    check_run_id: Option<u64>,
    check_run_url: String,
    check_run_shown: u32,
    /// `CheckEvidence` as JSON ('' when none).
    check_run_jobs: String,
    check_run_error: String,
    // The scope (migration 6): what the dispatch asked for, why, and the jobs it ran.
    scope_kind: String,
    scope_reason: String,
    scope_jobs: Vec<String>,
    scope_tests: Vec<String>,
    scope_source: String,
    jobs_original: u32,
    jobs_asked: u32,
    jobs_restarted: Option<u32>,
}

impl RestartRow {
    /// The scope's columns (`scope_kind` empty: not decided yet).
    fn with_scope(mut self, scope: Option<&Scope>) -> RestartRow {
        if let Some(s) = scope {
            self.scope_kind = s.kind.as_str().to_string();
            self.scope_reason = s.reason.clone();
            self.scope_jobs = s.jobs.clone();
            self.scope_tests = s.tests.clone();
            self.scope_source = s.source.clone();
            self.jobs_original = s.jobs_original;
            self.jobs_asked = s.jobs_asked;
            self.jobs_restarted = s.jobs_restarted;
        }
        self
    }

    /// The scope these columns hold. Rows written before migration 6 read as full restarts
    /// (the column's default), which is what they were.
    fn scope(&self) -> Result<Option<Scope>> {
        if self.scope_kind.is_empty() {
            return Ok(None);
        }
        let kind = ScopeKind::parse(&self.scope_kind).with_context(|| {
            format!(
                "restart {}: unknown scope kind {:?}",
                self.restart_id, self.scope_kind
            )
        })?;
        Ok(Some(Scope {
            kind,
            reason: self.scope_reason.clone(),
            jobs: self.scope_jobs.clone(),
            tests: self.scope_tests.clone(),
            source: self.scope_source.clone(),
            jobs_original: self.jobs_original,
            jobs_asked: self.jobs_asked,
            jobs_restarted: self.jobs_restarted,
        }))
    }
}

impl From<&Restart> for RestartRow {
    fn from(r: &Restart) -> Self {
        RestartRow {
            restart_id: r.restart_id.clone(),
            repo: r.key.repo.clone(),
            workflow: r.key.workflow.clone(),
            head_sha: r.key.head_sha.clone(),
            attempt: r.attempt,
            workflow_file: r.workflow_file.clone(),
            original_run_id: r.original_run_id,
            installation_id: r.installation_id,
            status: r.status.as_str().to_string(),
            restart_run_id: r.restart_run_id,
            run_url: r.run_url.clone(),
            dry_run: r.dry_run as u8,
            dispatch_attempts: r.dispatch_attempts,
            requested_at: r.times.requested_at,
            dispatched_at: r.times.dispatched_at,
            confirmed_at: r.times.confirmed_at,
            confirm_latency_ms: r.times.confirm_latency_ms(),
            completed_at: r.times.completed_at,
            outcome: r
                .outcome
                .map(|o| o.as_str().to_string())
                .unwrap_or_default(),
            reason: r.reason.clone(),
            delivery_id: r.delivery_id.clone(),
            version: r.version,
            check_run_wanted: r.check.wanted,
            check_run_id: r.check.id,
            check_run_url: r.check.url.clone(),
            check_run_shown: r.check.shown,
            check_run_jobs: if r.check.evidence == CheckEvidence::default() {
                String::new()
            } else {
                serde_json::to_string(&r.check.evidence).unwrap_or_default()
            },
            check_run_error: r.check.error.clone(),
            scope_kind: String::new(),
            scope_reason: String::new(),
            scope_jobs: vec![],
            scope_tests: vec![],
            scope_source: String::new(),
            jobs_original: 0,
            jobs_asked: 0,
            jobs_restarted: None,
        }
        .with_scope(r.scope.as_ref())
    }
}

impl RestartRow {
    pub fn into_restart(self) -> Result<Restart> {
        let id = &self.restart_id;
        let status: Status = self
            .status
            .parse()
            .with_context(|| format!("restart {id}: unknown status {:?}", self.status))?;
        let outcome = match self.outcome.as_str() {
            "" => None,
            other => Some(
                other
                    .parse::<Verdict>()
                    .with_context(|| format!("restart {id}: unknown outcome {other:?}"))?,
            ),
        };
        let scope = self.scope()?;
        let evidence = match self.check_run_jobs.as_str() {
            "" => CheckEvidence::default(),
            json => serde_json::from_str(json)
                .with_context(|| format!("restart {id}: unreadable check_run_jobs"))?,
        };
        let check = CheckRun {
            wanted: self.check_run_wanted,
            id: self.check_run_id,
            url: self.check_run_url,
            evidence,
            shown: self.check_run_shown,
            error: self.check_run_error,
        };
        Ok(Restart {
            scope,
            key: RestartKey {
                repo: self.repo,
                workflow: self.workflow,
                head_sha: self.head_sha,
            },
            attempt: self.attempt,
            workflow_file: self.workflow_file,
            original_run_id: self.original_run_id,
            installation_id: self.installation_id,
            status,
            restart_run_id: self.restart_run_id,
            run_url: self.run_url,
            dry_run: self.dry_run != 0,
            dispatch_attempts: self.dispatch_attempts,
            times: Timeline {
                requested_at: self.requested_at,
                dispatched_at: self.dispatched_at,
                confirmed_at: self.confirmed_at,
                completed_at: self.completed_at,
            },
            outcome,
            reason: self.reason,
            delivery_id: self.delivery_id,
            version: self.version,
            restart_id: self.restart_id,
            check,
            asked_jobs: Vec::new(),
        })
    }
}

/// One line of the append-only event log.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct EventRow {
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    pub ts: DateTime<Utc>,
    pub event_id: String,
    pub repo: String,
    pub workflow: String,
    pub head_sha: String,
    pub restart_id: String,
    pub kind: String,
    pub dry_run: u8,
    pub delivery_id: String,
    pub message: String,
    pub details: String,
}

impl EventRow {
    fn about(key: &RestartKey, kind: EventKind, message: String) -> EventRow {
        EventRow {
            ts: Utc::now(),
            event_id: uuid::Uuid::new_v4().to_string(),
            repo: key.repo.clone(),
            workflow: key.workflow.clone(),
            head_sha: key.head_sha.clone(),
            restart_id: String::new(),
            kind: kind.as_str().to_string(),
            dry_run: 0,
            delivery_id: String::new(),
            message,
            details: String::new(),
        }
    }

    /// What changed in a restart.
    pub fn for_change(r: &Restart, change: &Change) -> EventRow {
        EventRow {
            restart_id: r.restart_id.clone(),
            dry_run: r.dry_run as u8,
            delivery_id: r.delivery_id.clone(),
            details: change.details.clone().unwrap_or_default(),
            ..EventRow::about(&r.key, change.kind, change.message.clone())
        }
    }

    /// A restart held back by the policy (there is no restart to name).
    pub fn skipped(key: &RestartKey, delivery_id: &str, reason: String) -> EventRow {
        EventRow {
            delivery_id: delivery_id.to_string(),
            ..EventRow::about(key, EventKind::Skipped, reason)
        }
    }
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct DeliveryRow {
    pub delivery_id: String,
    pub event: String,
    pub action: String,
    pub repo: String,
    pub head_sha: String,
    pub installation_id: Option<u64>,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    pub received_at: DateTime<Utc>,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    pub processed_at: DateTime<Utc>,
    pub decision: String,
    pub body_bytes: u32,
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct JobResultRow {
    repo: String,
    run_id: u64,
    job_id: u64,
    run_attempt: u32,
    head_sha: String,
    head_branch: String,
    workflow_name: String,
    name: String,
    status: String,
    conclusion: String,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    updated_at: DateTime<Utc>,
    version: u64,
    // When the job was queued, started and ended (migration 8): the decision engine's
    // signals are ordered in time by them.
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis::option")]
    created_at: Option<DateTime<Utc>>,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis::option")]
    started_at: Option<DateTime<Utc>>,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis::option")]
    completed_at: Option<DateTime<Utc>>,
}

impl JobResultRow {
    pub fn new(repo: &str, job: &Job) -> Self {
        let now = Utc::now();
        JobResultRow {
            repo: repo.to_string(),
            run_id: job.run_id,
            job_id: job.id,
            run_attempt: job.run_attempt,
            head_sha: job.head_sha.clone(),
            head_branch: job.head_branch.clone().unwrap_or_default(),
            workflow_name: job.workflow_name.clone(),
            name: job.name.clone(),
            status: job.status.to_string(),
            conclusion: job
                .conclusion
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            updated_at: now,
            // A later status wins over an earlier one even when deliveries arrive out of order.
            version: job.status.rank() * 10u64.pow(16) + now.timestamp_micros().max(0) as u64,
            created_at: job.created_at,
            started_at: job.started_at,
            completed_at: job.completed_at,
        }
    }

    /// The job again, as the decision engine's history takes it at start-up.
    pub fn job(&self) -> Job {
        Job {
            id: self.job_id,
            run_id: self.run_id,
            run_attempt: self.run_attempt,
            name: self.name.clone(),
            workflow_name: self.workflow_name.clone(),
            head_sha: self.head_sha.clone(),
            head_branch: Some(self.head_branch.clone()).filter(|b| !b.is_empty()),
            status: self.status.clone().into(),
            conclusion: (!self.conclusion.is_empty()).then(|| self.conclusion.clone().into()),
            created_at: self.created_at,
            started_at: self.started_at,
            completed_at: self.completed_at,
            ..Job::default()
        }
    }

    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// (repository, run id, job id): what identifies the job.
    pub fn identity(&self) -> (&str, u64, u64) {
        (&self.repo, self.run_id, self.job_id)
    }

    pub fn state(&self) -> JobState {
        JobStateRow {
            job_id: self.job_id,
            name: self.name.clone(),
            status: self.status.clone(),
            conclusion: self.conclusion.clone(),
        }
        .into()
    }

    pub fn workflow_name(&self) -> &str {
        &self.workflow_name
    }

    pub fn head_branch(&self) -> &str {
        &self.head_branch
    }
}

/// One originally failing job's verdict in a judged restart.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct VerdictRow {
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    ts: DateTime<Utc>,
    restart_id: String,
    repo: String,
    workflow: String,
    head_sha: String,
    original_run_id: u64,
    restart_run_id: u64,
    job: String,
    verdict: String,
    detail: String,
}

impl VerdictRow {
    pub fn new(r: &Restart, j: &JobVerdict) -> VerdictRow {
        VerdictRow {
            ts: Utc::now(),
            restart_id: r.restart_id.clone(),
            repo: r.key.repo.clone(),
            workflow: r.key.workflow.clone(),
            head_sha: r.key.head_sha.clone(),
            original_run_id: r.original_run_id,
            restart_run_id: r.restart_run_id.unwrap_or(0),
            job: j.job.clone(),
            verdict: j.verdict.as_str().to_string(),
            detail: j.detail.clone(),
        }
    }
}

/// A job's state as `job_results` has it.
#[derive(Debug, Row, Deserialize)]
pub struct JobStateRow {
    job_id: u64,
    name: String,
    status: String,
    conclusion: String,
}

impl From<JobStateRow> for JobState {
    fn from(r: JobStateRow) -> JobState {
        JobState {
            id: r.job_id,
            name: r.name,
            status: r.status.into(),
            conclusion: (!r.conclusion.is_empty()).then(|| r.conclusion.into()),
        }
    }
}

impl DeliveryRow {
    /// A handled delivery and what was decided (mirror writes left out: they are not decisions).
    pub fn of(d: &Delivery, commands: &[Command], processed_at: DateTime<Utc>) -> DeliveryRow {
        let (repo, sha) = d.event.commit_key().unwrap_or(("", ""));
        let decision = commands
            .iter()
            .filter(|c| !matches!(c, Command::MirrorRun { .. } | Command::MirrorJob { .. }))
            .map(Command::describe)
            .collect::<Vec<_>>()
            .join("; ");
        DeliveryRow {
            delivery_id: d.id.clone(),
            event: d.event_name.clone(),
            action: d.event.action().map(|a| a.to_string()).unwrap_or_default(),
            repo: repo.to_string(),
            head_sha: sha.to_string(),
            installation_id: d.event.installation_id(),
            received_at: d.received_at,
            processed_at,
            decision,
            body_bytes: d.body_bytes,
        }
    }
}

//! The reconciler: webhooks are hints, the API is the truth (rust-lang/bors learned this
//! the hard way: missed "completed" webhooks left builds pending forever).
//!
//! Periodically it reads GitHub and turns what it finds into the same events the webhooks
//! would have carried, handled by the same decisions in the same workers:
//! * failed push runs on the main branch of each watched workflow that have no restart in
//!   the ledger (their failure webhook was missed) become `completed` events;
//! * every restart not finished yet is read back: with a run id, the run itself; without
//!   one, the dispatched runs on `trunk/<sha>` (the adopt rule of `restart::adopt`). Its
//!   state becomes an event, so a run is attached, confirmed and judged even when its
//!   follow-up webhooks never came;
//! * every restart whose check run GitHub shows behind its state (a check-run call failed)
//!   gets its check-run follow-up again.

use crate::github::GitHub;
use crate::intake::events::{Run, WorkflowRunEvent};
use crate::intake::states::{Action, RunStatus, failed};
use crate::intake::{Delivery, Event};
use crate::pipeline::{Engine, Pipeline};
use crate::restart::{Restart, RestartKey, Status, adoptable};
use chrono::Utc;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Default, PartialEq, serde::Serialize)]
pub struct Pass {
    /// Failed main-branch runs found without a restart (missed failure webhooks).
    pub missed_failures: usize,
    /// Restarts whose run state was fed back in.
    pub restarts_refreshed: usize,
    /// Restarts with an unknown dispatch outcome looked up again.
    pub unknown_settled: usize,
    /// Failed runs handed back to the decision because GitHub refused their dispatch and
    /// the backoff has passed.
    pub retried_refused: usize,
    /// Restarts whose check run on the commit was behind (a failed call) and is updated.
    pub check_runs_resynced: usize,
    pub errors: usize,
}

impl Pass {
    fn failed(&mut self, about: &str, what: &str, e: anyhow::Error) {
        tracing::warn!(about, error = format!("{e:#}"), "reconcile: {what} failed");
        self.errors += 1;
    }
}

/// The delivery GitHub would have sent for a run in this state.
fn synthetic(repo: &str, installation_id: Option<u64>, run: Run) -> Delivery {
    let action = match run.status {
        RunStatus::Completed => Action::Completed,
        RunStatus::InProgress => Action::InProgress,
        _ => Action::Requested, // queued, waiting, pending, requested: no jobs running yet
    };
    let id = format!("reconcile-{}-{}-{action}", run.id, run.run_attempt);
    let event = Event::WorkflowRun(WorkflowRunEvent {
        action,
        repo: repo.to_string(),
        installation_id,
        run,
    });
    Delivery::synthetic(id, "workflow_run", event)
}

/// What one pass works with.
pub struct Reconciler<'a> {
    pub engine: &'a Engine,
    pub pipeline: &'a Pipeline,
    pub github: &'a GitHub,
    pub lookback: Duration,
}

impl Reconciler<'_> {
    /// One pass over every watched repository and workflow, then the restarts in flight.
    pub async fn pass(&self) -> Pass {
        let mut pass = Pass::default();
        let mut installations: HashMap<String, Option<u64>> = HashMap::new();
        for repo in &self.engine.policy.repos {
            // Token auth has no installation; App auth looks it up (cached).
            let installation = self.github.installation_of(repo).await.ok();
            installations.insert(repo.clone(), installation);
            for name in &self.engine.policy.workflows {
                if let Err(e) = self.failed_runs(repo, name, installation, &mut pass).await {
                    pass.failed(&format!("{repo} {name}"), "reading failed runs", e);
                }
            }
        }
        for r in self.engine.restarts().all() {
            if self.in_flight(&r) {
                let installation = installations.get(&r.key.repo).copied().flatten();
                self.refresh(&r, installation, &mut pass).await;
            }
        }
        pass.check_runs_resynced = self.engine.resync_check_runs();
        pass
    }

    /// Failed main-branch push runs of a workflow: those without a restart (a missed
    /// webhook) or due another try after a refused dispatch go back to the decision.
    async fn failed_runs(
        &self,
        repo: &str,
        name: &str,
        installation: Option<u64>,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let file = self.github.resolve_workflow(repo, name).await?;
        let since = Utc::now()
            - chrono::Duration::from_std(self.lookback).unwrap_or(chrono::Duration::hours(6));
        let created = format!(">={}", since.format("%Y-%m-%dT%H:%M:%SZ"));
        let query = [
            ("branch", self.engine.policy.main_branch.as_str()),
            ("event", "push"),
            ("status", "completed"),
            ("created", created.as_str()),
        ];
        let runs = self.github.runs(repo, &file, &query, installation).await?;
        for run in runs.into_iter().filter(|r| failed(r.conclusion.as_ref())) {
            let key = RestartKey {
                repo: repo.to_string(),
                workflow: run.name.clone(),
                head_sha: run.head_sha.clone(),
            };
            let why = if self.engine.restarts().of(&key).is_empty() {
                pass.missed_failures += 1;
                "a failed run had no restart (missed webhook)"
            } else if self.engine.retry_due(&key) {
                pass.retried_refused += 1;
                "GitHub refused this commit's dispatch; trying again after the backoff"
            } else {
                continue;
            };
            tracing::info!(repo, run = run.id, sha = run.head_sha, "reconcile: {why}");
            let _ = self
                .pipeline
                .enqueue(synthetic(repo, installation, run))
                .await;
        }
        Ok(())
    }

    /// A restart whose run may still change: sent, not finished, within three days.
    fn in_flight(&self, r: &Restart) -> bool {
        !r.dry_run
            && !matches!(r.status, Status::Completed | Status::DispatchFailed)
            && r.times.requested_at >= Utc::now() - chrono::Duration::days(3)
    }

    /// Reads a restart's run back and feeds its state in as an event.
    async fn refresh(&self, r: &Restart, repo_installation: Option<u64>, pass: &mut Pass) {
        if r.status == Status::DispatchUnknown && r.restart_run_id.is_none() {
            // GitHub may have been down: look for the run, send again only if there is none.
            pass.unknown_settled += 1;
            self.engine.settle(&r.restart_id);
            return;
        }
        let installation = r.installation_id.or(repo_installation);
        let gh = self.github;
        let run = match r.restart_run_id {
            Some(id) => gh.run(&r.key.repo, id, installation).await.map(Some),
            None => gh
                .dispatched_runs(&r.key.repo, &r.workflow_file, &r.trunk_ref(), installation)
                .await
                .map(|runs| {
                    let taken = self.engine.restarts().taken_runs(&r.key);
                    adoptable(r, &runs, &taken, gh.clock_offset()).cloned()
                }),
        };
        match run {
            Ok(Some(run)) if run.head_sha == r.key.head_sha => {
                pass.restarts_refreshed += 1;
                let d = synthetic(&r.key.repo, installation, run);
                let _ = self.pipeline.enqueue(d).await;
            }
            Ok(_) => {}
            Err(e) => pass.failed(&r.restart_id, "reading the restart's run", e),
        }
    }
}

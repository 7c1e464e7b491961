//! The reconciler: webhooks are hints, the API is the truth (rust-lang/bors learned this
//! the hard way: missed "completed" webhooks left builds pending forever).
//!
//! Periodically it reads GitHub and turns what it finds into the same events the webhooks
//! would have carried, handled by the same decisions in the same workers:
//! * failed push runs on the main branch of each watched workflow that have no restart in
//!   the ledger (their failure webhook was missed) become `completed` events;
//! * every restart not finished yet is read back: with a run id, the run itself; without
//!   one, the dispatched runs on `trunk/<sha>`. Its state becomes an event, so a run is
//!   attached, confirmed and judged even when its follow-up webhooks never came.

use crate::decide::{is_restart_branch, workflow_file};
use crate::events::{Event, Run, WorkflowRunEvent};
use crate::github::GitHub;
use crate::ledger::{RestartKey, Status};
use crate::pipeline::{Delivery, Engine, Pipeline};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Default, PartialEq)]
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
    pub errors: usize,
}

fn synthetic(repo: &str, installation_id: Option<u64>, run: Run) -> Delivery {
    // The webhook action GitHub would have sent for this state.
    let action = match run.status.as_str() {
        "completed" => "completed",
        "in_progress" => "in_progress",
        _ => "requested", // queued, waiting, pending, requested: no jobs running yet
    };
    Delivery {
        id: format!("reconcile-{}-{}-{action}", run.id, run.run_attempt),
        event_name: "workflow_run".into(),
        received_at: Utc::now(),
        body_bytes: 0,
        seq: None,
        replayed: false,
        event: Event::WorkflowRun(WorkflowRunEvent {
            action: action.into(),
            repo: repo.to_string(),
            installation_id,
            run,
        }),
    }
}

/// One pass over every watched repository and workflow.
pub async fn reconcile_once(
    engine: &Arc<Engine>,
    pipeline: &Pipeline,
    gh: &GitHub,
    lookback: Duration,
) -> Pass {
    let mut pass = Pass::default();
    let since =
        Utc::now() - chrono::Duration::from_std(lookback).unwrap_or(chrono::Duration::hours(6));
    let created = format!(">={}", since.format("%Y-%m-%dT%H:%M:%SZ"));
    let policy = &engine.policy;
    let mut installations: HashMap<String, Option<u64>> = HashMap::new();
    for repo in &policy.repos {
        // Token auth has no installation; App auth looks it up (cached).
        let installation = gh.installation_of(repo).await.ok();
        installations.insert(repo.clone(), installation);
        for name in &policy.workflows {
            let file = match gh.resolve_workflow(repo, name).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(
                        repo,
                        workflow = name,
                        error = format!("{e:#}"),
                        "reconcile: cannot resolve the workflow"
                    );
                    pass.errors += 1;
                    continue;
                }
            };
            let runs = gh
                .runs(
                    repo,
                    &file,
                    &[
                        ("branch", policy.main_branch.as_str()),
                        ("event", "push"),
                        ("status", "completed"),
                        ("created", created.as_str()),
                    ],
                    installation,
                )
                .await;
            let runs = match runs {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(
                        repo,
                        workflow = name,
                        error = format!("{e:#}"),
                        "reconcile: listing runs failed"
                    );
                    pass.errors += 1;
                    continue;
                }
            };
            for run in runs {
                let failed = matches!(run.conclusion.as_deref(), Some("failure" | "timed_out"));
                let key = RestartKey {
                    repo: repo.clone(),
                    workflow: run.name.clone(),
                    head_sha: run.head_sha.clone(),
                };
                if !failed {
                    continue;
                }
                let why = if engine.restarts(&key).is_empty() {
                    pass.missed_failures += 1;
                    "a failed run had no restart (missed webhook)"
                } else if engine.retry_due(&key) {
                    pass.retried_refused += 1;
                    "GitHub refused this commit's dispatch; trying again after the backoff"
                } else {
                    continue;
                };
                tracing::info!(repo, run = run.id, sha = run.head_sha, "reconcile: {why}");
                let _ = pipeline.enqueue(synthetic(repo, installation, run)).await;
            }
        }
    }
    // Restarts still in flight: read their runs back.
    for r in engine.all_restarts() {
        if r.dry_run
            || matches!(r.status, Status::Completed | Status::DispatchFailed)
            || r.requested_at < Utc::now() - chrono::Duration::days(3)
        {
            continue;
        }
        if r.status == Status::DispatchUnknown && r.restart_run_id.is_none() {
            // GitHub may have been down: look for the run, send again only if there is none.
            pass.unknown_settled += 1;
            engine.settle(&r.restart_id);
            continue;
        }
        let installation = r
            .installation_id
            .or(installations.get(&r.key.repo).copied().flatten());
        let runs = match r.restart_run_id {
            Some(id) => gh
                .run(&r.key.repo, id, installation)
                .await
                .map(|run| vec![run]),
            None => gh
                .dispatched_runs(&r.key.repo, &r.workflow_file, &r.trunk_ref(), installation)
                .await
                .map(|runs| {
                    runs.into_iter()
                        .filter(|run| {
                            run.created_at >= r.requested_at - chrono::Duration::seconds(120)
                        })
                        .min_by_key(|run| run.created_at)
                        .into_iter()
                        .collect()
                }),
        };
        match runs {
            Ok(runs) => {
                for run in runs {
                    if is_restart_branch(run.head_branch.as_deref(), &run.head_sha)
                        && workflow_file(&run.path) == r.workflow_file
                    {
                        pass.restarts_refreshed += 1;
                        let _ = pipeline
                            .enqueue(synthetic(&r.key.repo, installation, run))
                            .await;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(
                    restart = r.restart_id,
                    error = format!("{e:#}"),
                    "reconcile: reading the restart's run failed"
                );
                pass.errors += 1;
            }
        }
    }
    pass
}

/// Runs `reconcile_once` every `every`, the first pass right after start-up.
pub fn spawn(
    engine: Arc<Engine>,
    pipeline: Arc<Pipeline>,
    gh: GitHub,
    every: Duration,
    lookback: Duration,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let pass = reconcile_once(&engine, &pipeline, &gh, lookback).await;
            tracing::info!(
                missed_failures = pass.missed_failures,
                restarts_refreshed = pass.restarts_refreshed,
                unknown_settled = pass.unknown_settled,
                retried_refused = pass.retried_refused,
                errors = pass.errors,
                "reconcile pass done"
            );
        }
    });
}

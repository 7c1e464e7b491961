//! Judging a finished restart job by job, against the original run. The job states are
//! what the webhooks told us, completed from the REST API where they left gaps (missed
//! deliveries, jobs not finished when the run completed).

use crate::intake::states::RunStatus;
use crate::pipeline::effects::{Actions, Evidence};
use crate::pipeline::restarts::Restarts;
use crate::restart::{JobState, Restart, Transition, failing_base_names, judge};
use crate::store::recorder::Entry;
use crate::store::rows::JobResultRow;
use std::sync::Arc;

/// What judging uses: the ledger, the evidence, and GitHub for the gaps.
#[derive(Clone)]
pub struct Evaluate {
    pub restarts: Arc<Restarts>,
    pub evidence: Arc<dyn Evidence>,
    pub github: Arc<dyn Actions>,
}

impl Evaluate {
    pub async fn run(&self, restart_id: &str, run_conclusion: &str) {
        let Some(r) = self.restarts.get(restart_id) else {
            return;
        };
        let Some(run_id) = r.restart_run_id else {
            return;
        };
        let (evidence, github) = (&*self.evidence, &*self.github);
        let (original, _) = job_states(evidence, github, &r, r.original_run_id, true).await;
        let (restarted, _) = job_states(evidence, github, &r, run_id, false).await;
        // Only the jobs the restart asked for are compared (a filter skips the others).
        let asked = |name: &str| r.scope.as_ref().is_none_or(|s| s.asks_for(name));
        let t = Transition::Judged {
            run_conclusion: run_conclusion.to_string(),
            judgement: judge(&original, &restarted, asked),
        };
        self.restarts.on_transition(restart_id, t).await;
    }
}

/// Where a run's job states came from.
pub const FROM_EVIDENCE: &str = "the App's job records";
pub const FROM_GITHUB: &str = "GitHub's job list";

/// Job states of a run, from the evidence, or from GitHub when the evidence has gaps (a
/// job not finished, none recorded, or no failure where one is `need_failures`); and which.
pub async fn job_states(
    evidence: &dyn Evidence,
    github: &dyn Actions,
    r: &Restart,
    run_id: u64,
    need_failures: bool,
) -> (Vec<JobState>, &'static str) {
    evidence.flush().await; // job events recorded moments ago are part of it
    let known = evidence
        .job_states(&r.key.repo, run_id)
        .await
        .unwrap_or_else(|e| {
            tracing::error!(
                error = format!("{e:#}"),
                run_id,
                "reading job states failed"
            );
            vec![]
        });
    let gap = known.is_empty()
        || known.iter().any(|j| j.status != RunStatus::Completed)
        || (need_failures && failing_base_names(&known).is_empty());
    if !gap {
        return (known, FROM_EVIDENCE);
    }
    match github.run_jobs(r, run_id).await {
        Ok(jobs) if !jobs.is_empty() => {
            let states = jobs.iter().map(JobState::of).collect();
            for j in &jobs {
                let row = JobResultRow::new(&r.key.repo, j);
                evidence.record(Entry::Job(row)).await;
            }
            (states, FROM_GITHUB)
        }
        Ok(_) => (known, FROM_EVIDENCE),
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                run_id,
                "listing jobs from GitHub failed"
            );
            (known, FROM_EVIDENCE)
        }
    }
}

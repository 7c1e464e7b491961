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
        let original = self.jobs_of(&r, r.original_run_id, true).await;
        let restarted = self.jobs_of(&r, run_id, false).await;
        let t = Transition::Judged {
            run_conclusion: run_conclusion.to_string(),
            judgement: judge(&original, &restarted),
        };
        self.restarts.on_transition(restart_id, t).await;
    }

    /// Job states of a run, from the evidence, or from GitHub when the evidence has gaps.
    pub async fn jobs_of(&self, r: &Restart, run_id: u64, need_failures: bool) -> Vec<JobState> {
        self.evidence.flush().await; // job events recorded moments ago are part of it
        let known = self
            .evidence
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
            return known;
        }
        match self.github.run_jobs(r, run_id).await {
            Ok(jobs) if !jobs.is_empty() => {
                let states = jobs.iter().map(JobState::of).collect();
                for j in &jobs {
                    let row = JobResultRow::new(&r.key.repo, j);
                    self.evidence.record(Entry::Job(row)).await;
                }
                states
            }
            Ok(_) => known,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    run_id,
                    "listing jobs from GitHub failed"
                );
                known
            }
        }
    }
}

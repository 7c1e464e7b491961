//! Reading what a restart's scope is decided from, just before its dispatch: the dispatch
//! inputs its workflow file declares at `trunk/<sha>`, then (only when it takes a filter)
//! the jobs of the original run (as judging reads them) and, when a test filter can be
//! sent, how the failing jobs failed. The
//! decision itself is `restart::scope::plan` (pure). Nothing here fails a restart: what
//! cannot be read makes it a full restart (or drops the test filter), with the reason.
//!
//! Restarts do not wait for ClickHouse: its reads get `EVIDENCE_WAIT` in all. Past that the
//! original run's jobs are taken from GitHub's job list, and no test filter is sent.

use super::evaluate::{FROM_GITHUB, job_states};
use crate::pipeline::effects::{Actions, Evidence};
use crate::restart::scope::{Declared, TestEvidence, plan, test_lookup};
use crate::restart::{JobState, Restart, Scope};
use std::sync::Arc;
use std::time::Duration;

/// How long the ClickHouse reads of a scope may take before the dispatch goes on without.
pub const EVIDENCE_WAIT: Duration = Duration::from_secs(2);

/// What deciding a scope reads from.
#[derive(Clone)]
pub struct Scoping {
    pub evidence: Arc<dyn Evidence>,
    pub github: Arc<dyn Actions>,
}

impl Scoping {
    pub async fn decide(&self, r: &Restart) -> Scope {
        let declared = self.github.declared_inputs(r).await;
        if let Err(why) = &declared {
            tracing::warn!(restart = r.restart_id, why, "workflow file not read");
        }
        // No filter can be sent: a full restart, nothing more to read (the job counts
        // are filled in when it is judged).
        if !declared.as_ref().is_ok_and(Declared::takes_a_filter) {
            return plan(&declared, &[], "not read (no filter to send)", None);
        }
        // The decision engine named the jobs: they are the ones to run, whatever the
        // commit's own run did (a parent asked for as the baseline passed them).
        if !r.asked_jobs.is_empty() {
            let asked: Vec<JobState> = r.asked_jobs.iter().map(|j| JobState::asked(j)).collect();
            return plan(&declared, &asked, "asked by the decision engine", None);
        }
        let deadline = tokio::time::Instant::now() + EVIDENCE_WAIT;
        let (jobs, jobs_source) = self.original_jobs(r, deadline).await;
        let tests = match test_lookup(&declared, &jobs) {
            Some(ids) => Some(self.tests(r, &ids, deadline).await),
            None => None,
        };
        plan(&declared, &jobs, jobs_source, tests.as_ref())
    }

    /// The original run's jobs, from the evidence (GitHub filling its gaps), or from GitHub
    /// alone when ClickHouse did not answer in time.
    async fn original_jobs(
        &self,
        r: &Restart,
        deadline: tokio::time::Instant,
    ) -> (Vec<JobState>, &'static str) {
        let (evidence, github) = (&*self.evidence, &*self.github);
        let read = job_states(evidence, github, r, r.original_run_id, true);
        if let Ok(found) = tokio::time::timeout_at(deadline, read).await {
            return found;
        }
        tracing::warn!(
            restart = r.restart_id,
            "job records not read within {EVIDENCE_WAIT:?}; asking GitHub"
        );
        match github.run_jobs(r, r.original_run_id).await {
            Ok(jobs) => (jobs.iter().map(JobState::of).collect(), FROM_GITHUB),
            Err(e) => {
                tracing::warn!(
                    restart = r.restart_id,
                    error = format!("{e:#}"),
                    "no job list"
                );
                (vec![], FROM_GITHUB)
            }
        }
    }

    async fn tests(
        &self,
        r: &Restart,
        job_ids: &[u64],
        deadline: tokio::time::Instant,
    ) -> Result<TestEvidence, String> {
        let read = self.evidence.test_evidence(job_ids);
        let outcome = match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(found)) => return Ok(found),
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => format!("not read within {EVIDENCE_WAIT:?}"),
        };
        tracing::warn!(
            restart = r.restart_id,
            error = outcome,
            "failing tests not read"
        );
        Err(outcome)
    }
}

//! The restart's check run on its commit, brought to what `restart::check_run::desired`
//! says the restart's state should show. `Restarts::on_transition` starts it whenever
//! GitHub is behind (so do the start-up and the reconciler), one at a time per restart.
//!
//! The create is a POST, so it is never sent blindly: the check run is looked up by its
//! external id (the restart id) first, and after an unknown outcome it is looked up again
//! rather than created again. Its id is then remembered in the ledger, and updates (PATCH)
//! can be applied twice. A failed call is recorded (ledger `check_run_error`, the event log,
//! `autorevert_restart_events_total{kind="check_run_failed"}`,
//! `autorevert_github_errors_total{endpoint="check_runs"}`) and never holds up the
//! restart: it is tried again at the restart's next change, the next start or the
//! reconciler's next pass.

use super::evaluate::{Evaluate, job_states};
use super::{FollowUps, Kind};
use crate::github::{CheckRunCreated, CheckRunRef, CheckRunRequest};
use crate::pipeline::effects::{Actions, Evidence, check_run_request};
use crate::pipeline::restarts::Restarts;
use crate::restart::check_run::{desired, needs_sync};
use crate::restart::lifecycle::CheckRunStep;
use crate::restart::{Restart, Transition, failing_base_names};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Rounds of one follow-up: a change that lands while GitHub is being updated is shown by
/// the next round.
const MAX_ROUNDS: usize = 4;

/// Starts the check-run follow-up of a restart whose check run is behind. Holds the ledger
/// weakly: the ledger holds it (`Restarts::on_change`).
pub struct CheckRuns {
    pub restarts: Weak<Restarts>,
    pub evidence: Arc<dyn Evidence>,
    pub github: Arc<dyn Actions>,
    pub follow_ups: FollowUps,
    /// Wait before looking a check run up again after a create with an unknown outcome.
    pub lookup_delay: Duration,
}

impl CheckRuns {
    /// Called with every new version of a restart; true when a follow-up was started.
    pub fn changed(&self, r: &Restart) -> bool {
        if !needs_sync(r) {
            return false;
        }
        let Some(restarts) = self.restarts.upgrade() else {
            return false;
        };
        let sync = CheckRunSync {
            evaluate: Evaluate {
                restarts,
                evidence: self.evidence.clone(),
                github: self.github.clone(),
            },
            lookup_delay: self.lookup_delay,
        };
        let id = r.restart_id.clone();
        self.follow_ups.spawn(
            Kind::CheckRun,
            &r.restart_id,
            async move { sync.run(&id).await },
        )
    }
}

/// One follow-up's work (it reads the original run's failing jobs as judging does).
struct CheckRunSync {
    evaluate: Evaluate,
    lookup_delay: Duration,
}

impl CheckRunSync {
    async fn run(&self, restart_id: &str) {
        let restarts = &self.evaluate.restarts;
        for _ in 0..MAX_ROUNDS {
            let Some(r) = restarts.get(restart_id) else {
                return;
            };
            let Some(step) = self.round(r).await else {
                return; // GitHub shows the restart as it is
            };
            let failed = matches!(step, CheckRunStep::Failed { .. });
            if let CheckRunStep::Failed { reason } = &step {
                let reason = reason.as_str();
                tracing::warn!(
                    restart = restart_id,
                    reason,
                    "check run not brought up to date"
                );
            }
            restarts
                .on_transition(restart_id, Transition::CheckRun(step))
                .await;
            if failed {
                return;
            }
        }
    }

    /// Brings GitHub to the restart as it is now; None when it is there already.
    async fn round(&self, mut r: Restart) -> Option<CheckRunStep> {
        desired(&r)?; // none wanted (any more)
        let ev = &r.check.evidence;
        if ev.failing_jobs.is_empty() && ev.verdicts.is_empty() {
            let original = r.original_run_id;
            let (evidence, github) = (&*self.evaluate.evidence, &*self.evaluate.github);
            let (jobs, _) = job_states(evidence, github, &r, original, true).await;
            r.check.evidence.failing_jobs = failing_base_names(&jobs);
        }
        let view = desired(&r)?;
        let digest = view.digest();
        if digest == r.check.shown {
            return None;
        }
        let req = check_run_request(&r, &view);
        let shown = match r.check.id {
            Some(id) => self.update(&r, &req, id).await,
            None => match self.find_or_create(&r, &req).await {
                Ok((c, true)) => Ok((c, true)),
                Ok((c, false)) => self.update(&r, &req, c.id).await,
                Err(reason) => Err(reason),
            },
        };
        Some(match shown {
            Ok((c, created)) => CheckRunStep::Shown {
                id: c.id,
                url: c.html_url,
                digest,
                completed: view.completed,
                created,
                failing_jobs: r.check.evidence.failing_jobs,
            },
            Err(reason) => CheckRunStep::Failed { reason },
        })
    }

    /// PATCHes check run `id` to `req` (created: false).
    async fn update(
        &self,
        r: &Restart,
        req: &CheckRunRequest,
        id: u64,
    ) -> Result<(CheckRunRef, bool), String> {
        match self.evaluate.github.update_check_run(r, req, id).await {
            Ok(c) => Ok((c, false)),
            Err(e) => Err(format!("updating check run {id} failed: {e:#}")),
        }
    }

    /// The check run of this restart: found by its external id, else created (true). After
    /// a create whose outcome is unknown it is looked up once more, never created again.
    async fn find_or_create(
        &self,
        r: &Restart,
        req: &CheckRunRequest,
    ) -> Result<(CheckRunRef, bool), String> {
        let github = &self.evaluate.github;
        let mut unknown = String::new();
        for look in 0..2 {
            match github.find_check_run(r, req).await {
                Ok(Some(c)) => return Ok((c, false)),
                Ok(None) if look == 0 => {}
                Ok(None) => break,
                Err(e) => return Err(format!("looking up the check run failed: {e:#}")),
            }
            match github.create_check_run(r, req).await {
                CheckRunCreated::Created(c) => return Ok((c, true)),
                CheckRunCreated::Refused(m) => return Err(format!("creating the check run: {m}")),
                CheckRunCreated::Unknown(m) => unknown = m,
            }
            tokio::time::sleep(self.lookup_delay).await;
        }
        Err(format!(
            "creating the check run: {unknown}; it will be looked up before any new create"
        ))
    }
}

//! Settling a dispatch whose outcome is unknown (5xx, timeout, a crash mid-POST): list the
//! workflow's dispatched runs on `trunk/<sha>` first; adopt the run that appeared since the
//! restart was requested (compared on GitHub's clock); only if there is none, send the POST
//! once more, and look again if that too is unknown. Never more than `MAX_DISPATCH_ATTEMPTS`
//! POSTs, never a resend without a successful lookup.

use crate::github::DispatchResult;
use crate::pipeline::effects::Actions;
use crate::pipeline::restarts::Restarts;
use crate::restart::{MAX_DISPATCH_ATTEMPTS, Restart, Transition, adoptable};
use std::sync::Arc;
use std::time::Duration;

/// What settling uses: the ledger and GitHub.
#[derive(Clone)]
pub struct Settle {
    pub restarts: Arc<Restarts>,
    pub github: Arc<dyn Actions>,
    /// Wait before listing runs (GitHub lists a new run a moment after creating it).
    pub lookup_delay: Duration,
}

impl Settle {
    pub async fn run(&self, restart_id: &str, resend: bool) {
        let mut may_resend = resend;
        loop {
            tokio::time::sleep(self.lookup_delay).await;
            let Some(r) = self.look(restart_id).await else {
                return;
            };
            if !may_resend || r.dispatch_attempts >= MAX_DISPATCH_ATTEMPTS {
                self.restarts
                    .on_transition(restart_id, Transition::NoRunFound)
                    .await;
                return;
            }
            may_resend = false;
            if !self.resend(&r).await {
                return;
            }
        }
    }

    /// Lists the dispatched runs and adopts this restart's, if GitHub created it. `None`:
    /// settled (a run adopted, or nothing more to do); `Some`: no run, send again if allowed.
    async fn look(&self, restart_id: &str) -> Option<Restart> {
        let r = self.restarts.get(restart_id)?;
        if r.restart_run_id.is_some() || !r.status.awaits_run() {
            return None; // a webhook already told us
        }
        let listed = self.github.dispatched_runs(&r).await;
        let runs = match listed {
            Ok(runs) => runs,
            Err(e) => {
                let reason = format!("could not list runs on {}: {e:#}", r.trunk_ref());
                let t = Transition::LookupFailed { reason };
                self.restarts.on_transition(restart_id, t).await;
                return None; // never resend without a successful lookup
            }
        };
        let taken = self.restarts.taken_runs(&r.key);
        let offset = self.github.clock_offset();
        let Some(run) = adoptable(&r, &runs, &taken, offset) else {
            return Some(r);
        };
        let result = DispatchResult::Created {
            run_id: run.id,
            html_url: run.html_url.clone(),
        };
        let t = Transition::Dispatch {
            result,
            found: true,
        };
        self.restarts.on_transition(restart_id, t).await;
        None
    }

    /// Sends the POST again (counted and persisted before it goes out); whether its outcome
    /// is unknown again, so the runs are to be looked at once more. Counted only if nothing
    /// changed since `seen` was read (a compare-and-increment under the ledger's lock): a
    /// run attached meanwhile, or another settle's resend, means no POST from here.
    async fn resend(&self, seen: &Restart) -> bool {
        let restart_id = seen.restart_id.as_str();
        let unchanged = |now: &Restart| {
            now.dispatch_attempts == seen.dispatch_attempts
                && now.restart_run_id.is_none()
                && now.status.awaits_run()
        };
        let resend = self
            .restarts
            .on_transition_if(restart_id, unchanged, Transition::Resend);
        let Some(r) = resend.await else {
            tracing::info!(
                restart = restart_id,
                "not resending: the restart changed meanwhile"
            );
            return false;
        };
        let result = self.github.dispatch(&r).await;
        let unknown = matches!(result, DispatchResult::Unknown { .. });
        let t = Transition::Dispatch {
            result,
            found: false,
        };
        self.restarts.on_transition(restart_id, t).await;
        unknown
    }
}

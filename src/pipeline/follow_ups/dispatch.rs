//! Sending a claimed restart. Its intent is durable already: the delivery that caused it
//! stays in the delivery log until the restart's rows are written, and is replayed after a
//! crash, when `replayed` makes the dispatch list runs before it POSTs.
//!
//! What the dispatch asks for (its `scope`: the whole workflow, or which jobs and tests) is
//! decided first and written with the restart's first row, so every POST of it, a resend
//! after an unknown outcome included, sends the same inputs.

use super::scope::Scoping;
use super::settle::Settle;
use super::{FollowUps, Kind};
use crate::github::DispatchResult;
use crate::pipeline::effects::request;
use crate::pipeline::restarts::Restarts;
use crate::restart::{Change, EventKind, Restart, Transition};

/// Decides the claimed restart's scope and records it, then sends it once (a dry run only
/// logs what it would send; a replayed one is settled: runs are listed first). An outcome
/// that leaves the run unknown is settled by a follow-up.
pub async fn dispatch(
    settle: &Settle,
    scoping: &Scoping,
    follow_ups: &FollowUps,
    r: Restart,
    replayed: bool,
) {
    let restarts = &settle.restarts;
    let r = scoped(restarts, scoping, r).await;
    let req = request(&r);
    if r.dry_run {
        let change = Change::new(
            EventKind::DispatchDryRun,
            format!("would POST {} ref={}", req.route(), req.git_ref),
        )
        .with_details(&req.body(true));
        restarts.note(&r, change).await;
        return;
    }
    if replayed {
        // This delivery was handled before a crash: the POST may have gone out already.
        let change = Change::new(
            EventKind::DispatchReplayed,
            "handled again after a restart of the App: looking for the run before sending",
        );
        restarts.note(&r, change).await;
        settle.spawn(follow_ups, &r.restart_id, true);
        return;
    }
    let result = settle.github.dispatch(&r).await;
    let unsettled = matches!(
        result,
        DispatchResult::Unknown { .. } | DispatchResult::NotSent { .. }
    );
    let t = Transition::Dispatch {
        result,
        found: false,
    };
    restarts.on_transition(&r.restart_id, t).await;
    if unsettled {
        settle.spawn(follow_ups, &r.restart_id, true);
    }
}

/// The restart with its scope decided and written (its first row); one that has a scope
/// already is written as it is.
async fn scoped(restarts: &Restarts, scoping: &Scoping, r: Restart) -> Restart {
    if r.scope.is_some() {
        restarts.persist(&r).await;
        return r;
    }
    let scope = scoping.decide(&r).await;
    let t = Transition::Scoped { scope };
    match restarts.on_transition(&r.restart_id, t).await {
        Some(updated) => updated,
        None => {
            // Not in the ledger (it always is: claimed before this runs); written as it is.
            restarts.persist(&r).await;
            r
        }
    }
}

impl Settle {
    /// Settles a restart in a follow-up of its own (one at a time per restart).
    pub fn spawn(&self, follow_ups: &FollowUps, restart_id: &str, may_resend: bool) -> bool {
        let settle = self.clone();
        let id = restart_id.to_string();
        follow_ups.spawn(Kind::Settle, restart_id, async move {
            settle.run(&id, may_resend).await
        })
    }
}

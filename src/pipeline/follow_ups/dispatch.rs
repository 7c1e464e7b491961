//! Sending a claimed restart. Its intent is durable already: the delivery that caused it
//! stays in the delivery log until the restart's rows are written, and is replayed after a
//! crash, when `replayed` makes the dispatch list runs before it POSTs.

use super::settle::Settle;
use super::{FollowUps, Kind};
use crate::github::DispatchResult;
use crate::pipeline::effects::request;
use crate::restart::{Change, EventKind, Restart, Transition};

/// Records the claimed restart, then sends it once (a dry run only logs what it would send;
/// a replayed one is settled: runs are listed first). An outcome that leaves the run unknown
/// is settled by a follow-up.
pub async fn dispatch(settle: &Settle, follow_ups: &FollowUps, r: Restart, replayed: bool) {
    let restarts = &settle.restarts;
    restarts.persist(&r).await;
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

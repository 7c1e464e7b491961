//! Which run on `trunk/<sha>` belongs to a restart whose dispatch gave no run id (an
//! unknown outcome, a crash mid-POST): the one rule, used by the follow-up that settles an
//! unknown dispatch and by the reconciler alike.

use super::model::{Restart, is_restart_branch};
use crate::intake::events::{Run, workflow_file};
use crate::intake::states::Trigger;
use std::collections::HashSet;

/// How long before the request a run may have been created and still be this restart's:
/// GitHub's clock and ours differ, and a run is created while the POST is in flight.
pub const CLOCK_SLACK_SECS: i64 = 120;

/// The earliest dispatched run of the restart's workflow on its `trunk/<sha>`, created
/// since the restart was requested (less the slack), that no other restart has taken.
pub fn adoptable<'a>(r: &Restart, runs: &'a [Run], taken: &HashSet<u64>) -> Option<&'a Run> {
    let since = r.times.requested_at - chrono::Duration::seconds(CLOCK_SLACK_SECS);
    runs.iter()
        .filter(|run| {
            run.created_at >= since
                && !taken.contains(&run.id)
                && run.event == Trigger::WorkflowDispatch
                && is_restart_branch(run.head_branch.as_deref(), &run.head_sha)
                && run.head_sha == r.key.head_sha
                && workflow_file(&run.path) == r.workflow_file
        })
        .min_by_key(|run| run.created_at)
}

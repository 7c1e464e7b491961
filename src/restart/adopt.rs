//! Which run on `trunk/<sha>` belongs to a restart whose dispatch gave no run id (an
//! unknown outcome, a crash mid-POST): the one rule, used by the follow-up that settles an
//! unknown dispatch and by the reconciler alike.

use super::model::{Restart, is_restart_branch};
use crate::intake::events::{Run, workflow_file};
use crate::intake::states::Trigger;
use std::collections::HashSet;

/// How long before the request (on GitHub's clock) a run may have been created and still be
/// this restart's: the offset between the clocks is measured to a second or so, and a run is
/// created while the POST is in flight.
pub const CLOCK_SLACK_SECS: i64 = 120;

/// The earliest dispatched run of the restart's workflow on its `trunk/<sha>`, created
/// since the restart was requested (less the slack), that no other restart has taken.
///
/// `requested_at` is our clock, a run's `created_at` GitHub's: `github_offset` (GitHub's
/// time minus ours, from its `Date` headers) puts the request on GitHub's clock first, so
/// a clock of ours that runs minutes fast does not make the run look too old.
pub fn adoptable<'a>(
    r: &Restart,
    runs: &'a [Run],
    taken: &HashSet<u64>,
    github_offset: chrono::Duration,
) -> Option<&'a Run> {
    let requested_on_github = r.times.requested_at + github_offset;
    let since = requested_on_github - chrono::Duration::seconds(CLOCK_SLACK_SECS);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restart::model::fixtures::{at, dispatching};
    use chrono::{DateTime, Duration, Utc};

    /// The run GitHub created for the fixture's restart, at `created_at` (GitHub's clock).
    fn run(id: u64, created_at: DateTime<Utc>) -> Run {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": "trunk", "path": ".github/workflows/trunk.yml",
            "head_sha": "abc", "head_branch": "trunk/abc", "event": "workflow_dispatch",
            "status": "queued", "conclusion": null, "created_at": created_at,
        }))
        .unwrap()
    }

    #[test]
    fn a_run_created_after_the_request_is_adopted_the_earliest_first() {
        let r = dispatching(); // requested at(0), our clock
        let runs = [run(2, at(5)), run(1, at(3))];
        let none = HashSet::new();
        assert_eq!(adoptable(&r, &runs, &none, Duration::zero()).unwrap().id, 1);
        assert_eq!(
            adoptable(&r, &runs, &HashSet::from([1]), Duration::zero())
                .unwrap()
                .id,
            2
        );
        // Created long before the request: another restart's, or a manual dispatch.
        assert!(adoptable(&r, &[run(3, at(-600))], &none, Duration::zero()).is_none());
    }

    #[test]
    fn our_clock_running_fast_is_corrected_by_github_s_offset() {
        let r = dispatching();
        // Our clock is 3 minutes fast: GitHub created the run 2 s after the request, at
        // what its clock calls at(-178).
        let runs = [run(1, at(-178))];
        let none = HashSet::new();
        assert!(
            adoptable(&r, &runs, &none, Duration::zero()).is_none(),
            "uncorrected, the run looks older than the request"
        );
        let offset = Duration::seconds(-180);
        assert_eq!(adoptable(&r, &runs, &none, offset).unwrap().id, 1);
        // A run created before the request, on GitHub's clock, is still not this restart's.
        assert!(adoptable(&r, &[run(2, at(-180 - 600))], &none, offset).is_none());
    }

    #[test]
    fn our_clock_running_slow_does_not_widen_the_window() {
        let r = dispatching();
        // Our clock is 10 minutes slow: a run GitHub created 5 minutes before the request
        // is at(300) on its clock; it is not this restart's.
        let runs = [run(1, at(300))];
        let none = HashSet::new();
        assert!(adoptable(&r, &runs, &none, Duration::zero()).is_some());
        assert!(adoptable(&r, &runs, &none, Duration::seconds(600)).is_none());
        assert!(adoptable(&r, &[run(2, at(601))], &none, Duration::seconds(600)).is_some());
    }
}

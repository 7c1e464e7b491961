//! Pacing (PyTorch's rules): spacing after a restart, backoff after refused dispatches, and
//! a global hourly budget.

use super::ledger::Ledger;
use super::model::{Restart, Status};
use super::policy::Policy;
use chrono::{DateTime, Utc};

/// Dispatches GitHub refused (a `trunk/<sha>` tag not pushed yet, a missing permission)
/// after which a commit is not tried again. They do not count against the restart cap:
/// nothing ran. Between them the backoff applies (20, 40, 60 min by default).
pub const MAX_FAILED_DISPATCHES: usize = 4;

/// Whether a commit whose restarts all failed to dispatch may be tried again now: what the
/// reconciler asks before it hands the failed run back to `decide`.
pub fn retry_due(
    existing: &[Restart],
    ledger: &Ledger,
    policy: &Policy,
    now: DateTime<Utc>,
) -> bool {
    let failed = existing
        .iter()
        .filter(|r| r.status == Status::DispatchFailed)
        .count();
    failed > 0
        && failed == existing.len()
        && failed < MAX_FAILED_DISPATCHES
        && paced(existing, ledger, policy, now).is_none()
}

/// Pacing (PyTorch's rules): spacing after a restart, backoff after failed dispatches,
/// and a global hourly budget. `Some(reason)` holds the restart back.
pub fn paced(
    existing: &[Restart],
    ledger: &Ledger,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<String> {
    if let Some(last) = existing.iter().max_by_key(|r| r.times.requested_at) {
        let since = now - last.times.requested_at;
        let failures = existing
            .iter()
            .rev()
            .take_while(|r| r.status == Status::DispatchFailed)
            .count() as u32;
        if failures > 0 {
            let factor = 2i32.saturating_pow(failures.saturating_sub(1).min(16));
            let wait = (policy.backoff_base * factor).min(policy.backoff_max);
            if since < wait {
                return Some(format!(
                    "backing off after {failures} failed dispatch(es): next try {} min after the last",
                    wait.num_minutes()
                ));
            }
        } else if since < policy.min_spacing {
            return Some(format!(
                "restarted {} min ago; minimum spacing is {} min",
                since.num_minutes(),
                policy.min_spacing.num_minutes()
            ));
        }
    }
    let hour_ago = now - chrono::Duration::hours(1);
    let recent = ledger
        .all()
        .filter(|r| {
            !r.dry_run && r.times.requested_at > hour_ago && r.status != Status::DispatchFailed
        })
        .count() as u32;
    if recent >= policy.max_restarts_per_hour {
        return Some(format!(
            "global budget reached: {recent} restarts in the last hour (limit {})",
            policy.max_restarts_per_hour
        ));
    }
    None
}

//! File descriptors: the soft `RLIMIT_NOFILE` is raised to the hard limit at start-up, and the
//! connection cap is sized from the result, so that clients can never take the descriptors
//! the App needs for itself (and the accept loop never meets `EMFILE`).

use anyhow::{Result, bail};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept for everything but clients: ClickHouse and GitHub connections (pooled,
/// a handful each), the delivery log's segment and spare, the runtime's epoll and signal
/// pipes, stdio. At least this many, or an eighth of the limit when that is more.
const RESERVED_MIN: u64 = 128;

/// The cap when `MAX_CONNECTIONS` is not set and descriptors are plentiful (containers often
/// allow a million): beyond a few thousand, what stuck clients would exhaust is memory
/// (every connection holds a task and an 8 KiB read buffer at least), not descriptors. GitHub
/// sends a few deliveries at a time.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Raises the soft descriptor limit to the hard one, logs both, and returns the soft limit
/// now in force (`None`: unlimited).
pub fn raise_limit() -> Option<u64> {
    let before = getrlimit(Resource::Nofile);
    if before.current == before.maximum {
        tracing::info!(
            soft = show(before.current),
            hard = show(before.maximum),
            "descriptor limit (RLIMIT_NOFILE)"
        );
        return before.current;
    }
    let raised = Rlimit {
        current: before.maximum,
        maximum: before.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::info!(
                soft_was = show(before.current),
                soft = show(before.maximum),
                hard = show(before.maximum),
                "descriptor limit (RLIMIT_NOFILE) raised to the hard limit"
            );
            before.maximum
        }
        Err(e) => {
            tracing::warn!(
                soft = show(before.current),
                hard = show(before.maximum),
                error = %e,
                "cannot raise the descriptor limit (RLIMIT_NOFILE); keeping the soft limit"
            );
            before.current
        }
    }
}

fn show(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".into(), |n| n.to_string())
}

/// How many client connections may be open at once under the soft descriptor limit `soft`:
/// `wanted` (`MAX_CONNECTIONS`; 0: as many as the limit allows, at most
/// [`DEFAULT_MAX_CONNECTIONS`]), after the descriptors the App keeps for itself.
pub fn connection_cap(soft: Option<u64>, wanted: usize) -> Result<usize> {
    let limit = soft.unwrap_or(u64::MAX);
    let reserved = RESERVED_MIN.max(limit / 8);
    let room = usize::try_from(limit.saturating_sub(reserved)).unwrap_or(usize::MAX);
    if room == 0 {
        bail!(
            "the descriptor limit (RLIMIT_NOFILE) is {limit}: the App keeps {reserved} for itself \
             and needs more for clients; raise it (ulimit -n, or the container's nofile)"
        );
    }
    if wanted > room {
        bail!(
            "MAX_CONNECTIONS={wanted} is more than the descriptor limit allows: RLIMIT_NOFILE is \
             {limit} and {reserved} are kept for ClickHouse, GitHub and the delivery log; at most {room}"
        );
    }
    Ok(match wanted {
        0 => room.min(DEFAULT_MAX_CONNECTIONS),
        n => n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_headroom_under_the_limit() {
        assert_eq!(connection_cap(Some(1024), 0).unwrap(), 896);
        assert_eq!(connection_cap(Some(4096), 0).unwrap(), 3584);
        assert_eq!(
            connection_cap(Some(1 << 20), 0).unwrap(),
            DEFAULT_MAX_CONNECTIONS
        );
        assert_eq!(connection_cap(None, 0).unwrap(), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(1 << 20), 50_000).unwrap(), 50_000);
        assert_eq!(connection_cap(Some(1024), 500).unwrap(), 500);
    }

    #[test]
    fn a_cap_the_limit_cannot_hold_is_refused() {
        let e = connection_cap(Some(1024), 1000).unwrap_err().to_string();
        assert!(e.starts_with("MAX_CONNECTIONS=1000"), "{e}");
        assert!(e.contains("at most 896"), "{e}");
        assert!(connection_cap(Some(100), 0).is_err());
    }
}

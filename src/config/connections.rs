//! How `serve` holds its port against clients that never finish (`server::Limits`).

use crate::server::Limits;
use anyhow::{Result, bail};
use clap::Args;
use std::time::Duration;

const DEFAULT_KEEPALIVE_SECS: u64 = 5;

#[derive(Args, Clone)]
pub struct ConnectionArgs {
    /// Seconds a connection may take to send a request's headers, counted from when it waits
    /// for one (accepted, or answered); then it is closed.
    #[arg(long, env = "HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds the whole body may take to arrive once its headers are in (408 after).
    #[arg(long, env = "BODY_TIMEOUT_SECS", default_value_t = 10)]
    pub body_timeout_secs: u64,
    /// Seconds an answered connection is kept open for its next request (0: one request per
    /// connection). At most HEADER_TIMEOUT_SECS, whose timer runs meanwhile too.
    /// Default: 5, or HEADER_TIMEOUT_SECS when that is shorter.
    #[arg(long, env = "KEEPALIVE_TIMEOUT_SECS")]
    pub keepalive_timeout_secs: Option<u64>,
    /// Open connections at most (0: sized from the descriptor limit, at most 4096).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,
    /// Seconds from SIGTERM to exit: requests in flight, queued work and follow-ups get this
    /// long, whatever clients do.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
}

impl ConnectionArgs {
    /// The limits; `max_connections` is still as set (0: auto), `serve` sizes it from the
    /// descriptor limit.
    pub fn validate(&self) -> Result<Limits> {
        for (var, secs) in [
            ("HEADER_TIMEOUT_SECS", self.header_timeout_secs),
            ("BODY_TIMEOUT_SECS", self.body_timeout_secs),
            ("SHUTDOWN_GRACE_SECS", self.shutdown_grace_secs),
        ] {
            if secs == 0 {
                bail!("{var} must be at least 1");
            }
        }
        let keep_alive = self
            .keepalive_timeout_secs
            .unwrap_or(DEFAULT_KEEPALIVE_SECS.min(self.header_timeout_secs));
        if keep_alive > self.header_timeout_secs {
            bail!(
                "KEEPALIVE_TIMEOUT_SECS={keep_alive} is longer than HEADER_TIMEOUT_SECS={}: the \
                 header timeout already closes a connection that waits that long for its next request",
                self.header_timeout_secs
            );
        }
        Ok(Limits {
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            body_timeout: Duration::from_secs(self.body_timeout_secs),
            keep_alive: Duration::from_secs(keep_alive),
            max_connections: self.max_connections,
            grace: Duration::from_secs(self.shutdown_grace_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(header: u64, keep_alive: Option<u64>) -> ConnectionArgs {
        ConnectionArgs {
            header_timeout_secs: header,
            body_timeout_secs: 10,
            keepalive_timeout_secs: keep_alive,
            max_connections: 0,
            shutdown_grace_secs: 20,
        }
    }

    #[test]
    fn keep_alive_defaults_to_five_seconds_within_the_header_timeout() {
        assert_eq!(args(10, None).validate().unwrap().keep_alive.as_secs(), 5);
        assert_eq!(args(3, None).validate().unwrap().keep_alive.as_secs(), 3);
        assert_eq!(args(3, Some(0)).validate().unwrap().keep_alive.as_secs(), 0);
    }

    #[test]
    fn bad_values_are_named() {
        let e = args(3, Some(4)).validate().unwrap_err().to_string();
        assert!(e.starts_with("KEEPALIVE_TIMEOUT_SECS=4"), "{e}");
        let e = args(0, None).validate().unwrap_err().to_string();
        assert_eq!(e, "HEADER_TIMEOUT_SECS must be at least 1");
    }
}

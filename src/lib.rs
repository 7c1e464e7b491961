//! autorevert: a GitHub App that restarts failed PyTorch trunk runs on `trunk/{sha}`,
//! confirms the restart in ClickHouse and records whether the failure reproduced.
//!
//! The house, top to bottom (imports only run downward; `tests/layout.rs` checks it):
//! * `cli` (the thin binary's commands) and `config` (flags and environment);
//! * `simulator`: a seeded trunk in simulated time that scores decision policies;
//! * `server`: the App assembled, its routes, serving and draining;
//! * `background`: periodic tasks (reconciler, redelivery sweep, heartbeat);
//! * `pipeline`: queues and workers, effects behind interfaces, follow-ups;
//! * `store` (ClickHouse);
//! * `decisions` (per signal: revert, restart or why not; pure) over `signals` (the
//!   commit-ordered history per workflow and job, built from our own event types);
//! * `reverts` (acting on a revert decision: guards, comment bodies; pure);
//! * `restart` (the domain: pure decisions, lifecycle, verdicts),
//!   `github` (the REST client and dispatch protocol);
//! * `intake`: the webhook, the delivery log, our own event types.

#![warn(clippy::too_many_lines)]

pub mod background;
pub mod cli;
pub mod config;
pub mod decisions;
pub mod github;
pub mod intake;
pub mod pipeline;
pub mod restart;
pub mod reverts;
pub mod server;
pub mod signals;
pub mod simulator;
pub mod store;

//! autorevert: a GitHub App that restarts failed PyTorch trunk runs on `trunk/{sha}`,
//! confirms the restart in ClickHouse and records whether the failure reproduced.
//!
//! Layout: `webhook` (intake) -> `events` (our narrow payload types) -> `pipeline`
//! (workers) -> `decide` (pure decisions) -> effects through `github` and `store`.
//! `ledger` is the restart state, `outcome` judges restarts job by job, `cli` and `server`
//! are the entry points.

pub mod cli;
pub mod config;
pub mod decide;
pub mod events;
pub mod github;
pub mod instances;
pub mod ledger;
pub mod outcome;
pub mod pipeline;
pub mod reconcile;
pub mod recorder;
pub mod redeliver;
pub mod server;
pub mod spool;
pub mod store;
pub mod webhook;
pub mod workflow_file;

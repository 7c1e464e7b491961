//! Decisions: for each signal, `Revert(suspect)`, `Restart(commits)` or
//! `Ineligible(reason)`; pure functions of the signal and a `DecisionConfig`, explainable
//! (every restart names the evidence it asks for, every refusal its reason). Grouped
//! into a `Plan`: restarts per (workflow, commit) with their jobs, reverts per commit.

pub mod bisect;
pub mod config;
pub mod explain;
pub mod partition;
pub mod plan;
pub mod repro;
pub mod rules;

pub use config::DecisionConfig;
pub use partition::{Partition, Sandwich};
pub use plan::{Plan, plan};
pub use repro::Repro;
pub use rules::{
    Decision, Ineligible, IneligibleReason, Restart, RestartCommit, RestartReason, Revert, decide,
};

#[cfg(test)]
mod tests;

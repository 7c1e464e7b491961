//! Signals: per (workflow, normalized job name), the commit-ordered history of events
//! (failed / passed / pending, per commit and run attempt) built from the App's own event
//! types and the order of main's commits. Pure: no I/O, no clock.

pub mod grid;
pub mod history;
pub mod model;

pub use grid::{Grid, render_text};
pub use history::{CommitOrder, History};
pub use model::{Outcome, Signal, SignalCommit, SignalEvent, SignalKey, Track};

#[cfg(test)]
mod tests;

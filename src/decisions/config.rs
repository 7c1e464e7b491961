//! Every threshold of the decision rules, in one place.

use serde::Serialize;

/// The decision rules' thresholds. `pytorch()` is PyTorch's autorevert Lambda
/// (pytorch-autorevert.md §4.3); `Default` is the App's engine: the same rules, with a
/// reproduction that must fail the same shard (`same_way_repro`) in a restart paired with
/// a green restart of the parent (`pairing_window_secs`: the guard against outages),
/// flakiness judged on the commits the decision is about (`flaky_across_window` off), and
/// no restart for a lone first failure until a newer commit has a result
/// (`restart_on_first_failure` off). Session 6's outage guard
/// (`require_failure_after_green`) is kept as a setting, off: pairing does its job
/// without waiting for a newer failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionConfig {
    /// Failure events needed over the failed side (PyTorch: 3).
    pub min_failure_events: usize,
    /// Success events needed over the baseline side (PyTorch: 2).
    pub min_success_events: usize,
    /// Job-track signals: the suspect must fail this many times on the same revision
    /// (PyTorch: 2, #7396 "all false-positives come from job signals").
    pub suspect_failures: usize,
    /// Gap commits restarted at once per signal; `None`: all of them (PyTorch's default,
    /// `BISECTION_LIMIT` unset); otherwise midpoints of the largest gaps.
    pub bisection_limit: Option<usize>,
    /// A failure must also have started after the newest baseline success started: the
    /// breakage outlived a green baseline. An outage that ends between the suspect's and
    /// the baseline's restarts passes PyTorch's sandwich (success, failure, success) but
    /// not this (PyTorch: off).
    pub require_failure_after_green: bool,
    /// A commit that both passed and failed anywhere in the window makes the signal
    /// flaky (PyTorch). Off: only on the failing side of the partition, the commits the
    /// decision is about; an old flake then no longer blinds the signal for the whole
    /// window.
    pub flaky_across_window: bool,
    /// Restart on a signal's first failure (PyTorch). Off: one failure on the newest
    /// finished commit waits for a newer commit's result first; a flake is then usually
    /// over (the newer commit passes) before anything is restarted.
    pub restart_on_first_failure: bool,
    /// A reproduction on the suspect counts only when a baseline (parent) success ran
    /// alongside it: both restarts, created at most this many seconds apart (LUCI
    /// Bisection re-runs the suspect and its parent together). An outage then fails the
    /// parent too and nothing is reverted. The engine restarts the two as a pair.
    /// `None`: unpaired reproductions count (PyTorch).
    pub pairing_window_secs: Option<u32>,
    /// A reproduction must fail the same job (shard) as another failure on the suspect:
    /// the suspect "failed the same way" `suspect_failures` times. Flakes on different
    /// shards of a merged signal then do not add up (PyTorch: off; the signal itself
    /// stays merged either way).
    pub same_way_repro: bool,
}

impl DecisionConfig {
    /// The engine's pairing window: the suspect's and its parent's restarts are
    /// dispatched together, so their runs are created seconds apart; five minutes leaves
    /// room for a slow or paced dispatch and little for an outage to begin in between.
    pub const PAIRING_WINDOW_SECS: u32 = 300;

    /// PyTorch's Lambda, as it runs (every gap commit at once).
    pub fn pytorch() -> DecisionConfig {
        DecisionConfig {
            min_failure_events: 3,
            min_success_events: 2,
            suspect_failures: 2,
            bisection_limit: None,
            require_failure_after_green: false,
            flaky_across_window: true,
            restart_on_first_failure: true,
            pairing_window_secs: None,
            same_way_repro: false,
        }
    }

    /// Whether the values make sense together; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_failure_events == 0 {
            return Err("min_failure_events must be at least 1".into());
        }
        if self.min_success_events == 0 {
            return Err("min_success_events must be at least 1 (a baseline is needed)".into());
        }
        if self.suspect_failures > self.min_failure_events {
            return Err(format!(
                "suspect_failures ({}) cannot exceed min_failure_events ({})",
                self.suspect_failures, self.min_failure_events
            ));
        }
        if self.pairing_window_secs == Some(0) {
            return Err(
                "pairing_window_secs must be at least 1 second (or unset: no pairing)".into(),
            );
        }
        Ok(())
    }
}

impl Default for DecisionConfig {
    fn default() -> DecisionConfig {
        DecisionConfig {
            // Pairing guards against outages without waiting for a newer failure.
            require_failure_after_green: false,
            flaky_across_window: false,
            restart_on_first_failure: false,
            pairing_window_secs: Some(DecisionConfig::PAIRING_WINDOW_SECS),
            same_way_repro: true,
            ..DecisionConfig::pytorch()
        }
    }
}

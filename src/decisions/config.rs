//! Every threshold of the decision rules, in one place.

use serde::Serialize;

/// The decision rules' thresholds. `pytorch()` is PyTorch's autorevert Lambda
/// (pytorch-autorevert.md §4.3); `Default` is the App's engine: the same rules plus one
/// guard against outages (`require_failure_after_green`), with flakiness judged on the
/// commits the decision is about (`flaky_across_window` off), and no restart for a lone
/// first failure until a newer commit has a result (`restart_on_first_failure` off).
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
}

impl DecisionConfig {
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
        Ok(())
    }
}

impl Default for DecisionConfig {
    fn default() -> DecisionConfig {
        DecisionConfig {
            require_failure_after_green: true,
            flaky_across_window: false,
            restart_on_first_failure: false,
            ..DecisionConfig::pytorch()
        }
    }
}

//! The decision engine's settings: which thresholds its rules use and how far back it
//! looks. Validated into `decider::Settings` with messages that name the variable.

use crate::decisions::DecisionConfig;
use crate::pipeline::decider::Settings;
use crate::pipeline::follow_ups::revert::Acting;
use crate::reverts::RevertMode;
use anyhow::{Result, bail};
use clap::Args;

#[derive(Args, Clone, Debug)]
pub struct DecideArgs {
    /// Run the decision engine (keep signals, decide, ask for restarts, act on culprits
    /// per REVERT_ACTION). false: only failed runs are restarted, as before.
    #[arg(long, env = "AUTOREVERT_DECIDE", default_value_t = true, action = clap::ArgAction::Set)]
    pub decide: bool,
    /// How far back main's commits are kept and decided on, hours (PyTorch: 16).
    #[arg(long, env = "DECIDE_LOOKBACK_HOURS", default_value_t = 16)]
    pub decide_lookback_hours: i64,
    /// Failure events a signal needs before a revert (PyTorch: 3).
    #[arg(long, env = "DECIDE_MIN_FAILURES", default_value_t = 3)]
    pub decide_min_failures: usize,
    /// Success events the baseline side needs (PyTorch: 2).
    #[arg(long, env = "DECIDE_MIN_SUCCESSES", default_value_t = 2)]
    pub decide_min_successes: usize,
    /// Failures the suspect itself needs (the same-commit reproduction; PyTorch: 2).
    #[arg(long, env = "DECIDE_SUSPECT_FAILURES", default_value_t = 2)]
    pub decide_suspect_failures: usize,
    /// Untested commits restarted at once per signal (bisection); unset: all of them.
    #[arg(long, env = "BISECTION_LIMIT")]
    pub bisection_limit: Option<usize>,
    /// A failure on the suspect counts as reproduced only in a restart created within this
    /// many seconds of a passing restart of its parent (LUCI's pair; an outage fails both).
    /// 0: PyTorch's rule, no pairing.
    #[arg(long, env = "DECIDE_PAIRING_WINDOW_SECS", default_value_t = 300)]
    pub decide_pairing_window_secs: u32,
    /// The suspect must fail the same job (shard) again, and newer failing commits too
    /// (false: PyTorch's merged view, any shard counts).
    #[arg(long, env = "DECIDE_SAME_WAY_REPRO", default_value_t = true, action = clap::ArgAction::Set)]
    pub decide_same_way_repro: bool,
    /// What to do about a culprit: skip; log (record what it would do); notify (a comment
    /// on NOTIFY_ISSUE); revert (`@pytorchbot revert` on the commit's PR).
    #[arg(long, env = "REVERT_ACTION", default_value = "log")]
    pub revert_action: RevertMode,
    /// The tracking issue notify comments go to (PyTorch's: 163650). Unset: none are posted.
    #[arg(long, env = "NOTIFY_ISSUE")]
    pub notify_issue: Option<u64>,
    /// A culprit that landed longer ago is left alone, hours (LUCI Bisection: 6).
    #[arg(long, env = "REVERT_MAX_AGE_HOURS", default_value_t = 6)]
    pub revert_max_age_hours: i64,
    /// Revert comments per repository in any 24 hours (LUCI Bisection submits at most 4).
    #[arg(long, env = "REVERT_MAX_PER_DAY", default_value_t = 4)]
    pub revert_max_per_day: u32,
    /// PyTorch's action log (`misc.autorevert_events_v2`): the App writes its restarts and
    /// reverts there, and counts the Lambda's reverts, so both keep one revert per commit.
    /// Unset: off.
    #[arg(long, env = "PYTORCH_EVENTS_TABLE")]
    pub pytorch_events_table: Option<String>,
}

impl DecideArgs {
    pub fn validate(&self) -> Result<Settings> {
        if !(1..=24 * 14).contains(&self.decide_lookback_hours) {
            bail!(
                "DECIDE_LOOKBACK_HOURS={} is out of range: 1 to 336 hours (PyTorch uses 16)",
                self.decide_lookback_hours
            );
        }
        if self.bisection_limit == Some(0) {
            bail!("BISECTION_LIMIT=0 would never test a commit: unset it, or use at least 1");
        }
        let rules = DecisionConfig {
            min_failure_events: self.decide_min_failures,
            min_success_events: self.decide_min_successes,
            suspect_failures: self.decide_suspect_failures,
            bisection_limit: self.bisection_limit,
            pairing_window_secs: Some(self.decide_pairing_window_secs).filter(|s| *s > 0),
            same_way_repro: self.decide_same_way_repro,
            ..DecisionConfig::default()
        };
        if let Err(why) = rules.validate() {
            let var = if why.starts_with("min_failure") {
                "DECIDE_MIN_FAILURES"
            } else if why.starts_with("min_success") {
                "DECIDE_MIN_SUCCESSES"
            } else {
                "DECIDE_SUSPECT_FAILURES"
            };
            bail!("{var}: {why}");
        }
        Ok(Settings {
            enabled: self.decide,
            lookback: chrono::Duration::hours(self.decide_lookback_hours),
            rules,
            acting: self.acting()?,
        })
    }

    fn acting(&self) -> Result<Acting> {
        if self.revert_max_age_hours < 1 {
            bail!(
                "REVERT_MAX_AGE_HOURS must be at least 1 (use REVERT_ACTION=skip to stop reverts)"
            );
        }
        if self.revert_max_per_day == 0 {
            bail!("REVERT_MAX_PER_DAY must be at least 1 (use REVERT_ACTION=skip to stop reverts)");
        }
        if self.revert_action == RevertMode::Notify && self.notify_issue.is_none() {
            bail!("REVERT_ACTION=notify needs NOTIFY_ISSUE: the issue number to comment on");
        }
        let pytorch_events = self
            .pytorch_events_table
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        if let Some(t) = pytorch_events {
            crate::store::pytorch_events::check_table(t)
                .map_err(|e| anyhow::anyhow!("PYTORCH_EVENTS_TABLE: {e:#}"))?;
        }
        Ok(Acting {
            pytorch_events: pytorch_events.map(str::to_string),
            mode: self.revert_action,
            notify_issue: self.notify_issue,
            max_age: chrono::Duration::hours(self.revert_max_age_hours),
            max_per_day: self.revert_max_per_day,
            ..Acting::default()
        })
    }
}

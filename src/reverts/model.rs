//! The revert domain's types: the mode, a culprit with its evidence, the facts looked up
//! about its commit, and the action chosen (with the reason when it is not a revert).

use crate::restart::snake_case_enum;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// `REVERT_ACTION`: what the App does with a revert decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevertMode {
    /// Nothing (the decision is still recorded with the reason `mode_skip`).
    Skip,
    /// Record what it would do; post nothing.
    #[default]
    Log,
    /// A comment on the tracking issue (`NOTIFY_ISSUE`) only.
    Notify,
    /// The `@pytorchbot revert` comment on the commit's PR (or a notify comment when a
    /// guard says so).
    Revert,
}

impl RevertMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RevertMode::Skip => "skip",
            RevertMode::Log => "log",
            RevertMode::Notify => "notify",
            RevertMode::Revert => "revert",
        }
    }
}

impl FromStr for RevertMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "skip" => Ok(RevertMode::Skip),
            "log" => Ok(RevertMode::Log),
            "notify" => Ok(RevertMode::Notify),
            "revert" => Ok(RevertMode::Revert),
            other => Err(format!(
                "unknown revert action {other:?}: expected skip, log, notify or revert"
            )),
        }
    }
}

impl fmt::Display for RevertMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One signal behind a culprit: the failing job and the restart evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// Workflow display name (`trunk`).
    pub workflow: String,
    /// The signal's normalized job name.
    pub job: String,
    /// `https://github.com/{repo}/actions/runs/{run}/job/{job}`.
    pub failing_job_url: String,
    pub run_id: u64,
    pub job_id: u64,
    /// One line, e.g. "suspect failed 3×, parent passed 2× in paired restarts".
    pub restart_evidence: String,
}

impl Evidence {
    /// A failing job's page on GitHub.
    pub fn job_url(repo: &str, run_id: u64, job_id: u64) -> String {
        format!("https://github.com/{repo}/actions/runs/{run_id}/job/{job_id}")
    }
}

/// A commit the decisions blame, with every signal that points at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Culprit {
    pub repo: String,
    pub sha: String,
    pub signals: Vec<Evidence>,
}

/// What GitHub says about the culprit's commit.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CommitFacts {
    /// The full commit message.
    pub message: String,
    /// The PR it came from (its message's `Pull Request resolved:` line, for a revert the
    /// PR it reverts, else the commit's merged PR into the default branch); None: none found.
    pub pr: Option<PullFacts>,
}

/// The PR behind a commit, as GitHub shows it now.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PullFacts {
    pub number: u64,
    pub open: bool,
    /// GitHub's `merged`. PyTorch's merge bot lands commits itself and closes the PR, so a
    /// landed PR is usually closed and not `merged`: only `open` is a guard.
    pub merged: bool,
    pub labels: Vec<String>,
}

snake_case_enum! {
/// Why the App does not post a revert comment (or why it notifies instead).
pub enum Reason {
    /// `REVERT_ACTION=skip`.
    ModeSkip,
    /// `REVERT_ACTION=notify`: the notify comment is the action asked for.
    ModeNotify,
    /// The kill switch is on.
    KillSwitch,
    /// The App already commented on this commit (a revert or a notify): once per commit, ever.
    AlreadyReverted,
    /// The signal was decided again just before acting and no longer asks for a revert.
    NoLongerFailing,
    /// The commit landed longer ago than `REVERT_MAX_AGE_HOURS`.
    TooOld,
    /// `REVERT_MAX_PER_DAY` reverts were made in the last 24 hours.
    DailyCap,
    /// The commit is itself a revert.
    CommitIsRevert,
    /// No PR was found for the commit.
    NoPrFound,
    /// The PR carries the label `autorevert: disable`.
    PrDisabledLabel,
    /// The PR is open (not landed, or reverted and reopened).
    PrOpen,
    /// A notify comment was due but no `NOTIFY_ISSUE` is configured.
    NoNotifyIssue,
}
}

impl Reason {
    /// One sentence for people (the notify comment, logs).
    pub fn describe(self) -> &'static str {
        match self {
            Reason::ModeSkip => "Reverts are switched off (REVERT_ACTION=skip).",
            Reason::ModeNotify => "Autorevert is in notify mode: it does not revert.",
            Reason::KillSwitch => "The kill switch is on.",
            Reason::AlreadyReverted => "Autorevert already acted on this commit.",
            Reason::NoLongerFailing => "The signals no longer fail.",
            Reason::TooOld => "The commit is older than autorevert may revert.",
            Reason::DailyCap => "Autorevert reached its daily number of reverts.",
            Reason::CommitIsRevert => "The commit is a revert.",
            Reason::NoPrFound => "No PR was found for the commit.",
            Reason::PrDisabledLabel => "The PR carries the label `autorevert: disable`.",
            Reason::PrOpen => "The PR is open.",
            Reason::NoNotifyIssue => "No notify issue is configured.",
        }
    }
}

/// What the App does about a culprit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Post the `@pytorchbot revert` comment on this PR.
    Revert { pr: u64 },
    /// Post the notify comment on this issue, and why it is not a revert.
    Notify { issue: u64, why: Reason },
    /// Nothing, for this reason.
    Skip { reason: Reason },
    /// `REVERT_ACTION=log`: nothing is posted; this is what would have been.
    Log { would: Box<Action> },
}

impl Action {
    /// `revert`, `notify`, `skip` or `log`.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Revert { .. } => "revert",
            Action::Notify { .. } => "notify",
            Action::Skip { .. } => "skip",
            Action::Log { .. } => "log",
        }
    }

    /// The reason recorded with it: a skip's, a notify's, or that of the action logged.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Action::Revert { .. } => None,
            Action::Notify { why, .. } => Some(*why),
            Action::Skip { reason } => Some(*reason),
            Action::Log { would } => would.reason(),
        }
    }

    /// Whether it posts a comment on GitHub.
    pub fn posts(&self) -> bool {
        matches!(self, Action::Revert { .. } | Action::Notify { .. })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Revert { pr } => write!(f, "revert PR #{pr}"),
            Action::Notify { issue, why } => write!(f, "notify on issue #{issue} ({why})"),
            Action::Skip { reason } => write!(f, "skip ({reason})"),
            Action::Log { would } => write!(f, "log: would {would}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_reads_its_four_names_and_says_what_else_it_expected() {
        for mode in [
            RevertMode::Skip,
            RevertMode::Log,
            RevertMode::Notify,
            RevertMode::Revert,
        ] {
            assert_eq!(mode.to_string().parse::<RevertMode>(), Ok(mode));
        }
        assert_eq!(" Revert ".parse::<RevertMode>(), Ok(RevertMode::Revert));
        assert_eq!(RevertMode::default(), RevertMode::Log);
        let err = "run-revert".parse::<RevertMode>().unwrap_err();
        assert_eq!(
            err,
            "unknown revert action \"run-revert\": expected skip, log, notify or revert"
        );
    }

    #[test]
    fn reasons_have_stable_snake_case_names() {
        let names = [
            (Reason::AlreadyReverted, "already_reverted"),
            (Reason::PrDisabledLabel, "pr_disabled_label"),
            (Reason::PrOpen, "pr_open"),
            (Reason::CommitIsRevert, "commit_is_revert"),
            (Reason::NoPrFound, "no_pr_found"),
            (Reason::TooOld, "too_old"),
            (Reason::DailyCap, "daily_cap"),
            (Reason::KillSwitch, "kill_switch"),
            (Reason::NoLongerFailing, "no_longer_failing"),
            (Reason::ModeSkip, "mode_skip"),
            (Reason::ModeNotify, "mode_notify"),
            (Reason::NoNotifyIssue, "no_notify_issue"),
        ];
        for (reason, name) in names {
            assert_eq!(reason.as_str(), name);
            assert_eq!(name.parse::<Reason>(), Ok(reason));
            assert_eq!(serde_json::to_value(reason).unwrap(), name);
            assert!(reason.describe().ends_with('.'));
        }
    }

    #[test]
    fn actions_say_what_they_do_and_why() {
        let notify = Action::Notify {
            issue: 7,
            why: Reason::PrOpen,
        };
        let logged = Action::Log {
            would: Box::new(notify.clone()),
        };
        assert_eq!(
            logged.to_string(),
            "log: would notify on issue #7 (pr_open)"
        );
        assert_eq!(logged.reason(), Some(Reason::PrOpen));
        assert!(!logged.posts() && notify.posts());
        assert_eq!(Action::Revert { pr: 5 }.to_string(), "revert PR #5");
        assert_eq!(Action::Revert { pr: 5 }.reason(), None);
        assert_eq!(
            serde_json::to_value(&logged).unwrap(),
            serde_json::json!({"action": "log", "would": {"action": "notify", "issue": 7, "why": "pr_open"}})
        );
        assert_eq!(
            Evidence::job_url("o/r", 1, 2),
            "https://github.com/o/r/actions/runs/1/job/2"
        );
    }
}

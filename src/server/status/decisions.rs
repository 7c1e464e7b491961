//! What the status page and `/api/restarts` show of the decision engine: the signals whose
//! latest decision acts (a revert or a restart), and what was done about each culprit
//! (`revert_actions`: the action, the PR or issue commented on, why, and the comment). Read
//! from the engine's memory (its state is rebuilt from ClickHouse at start-up), so the
//! section costs no query. Only what pytorch/pytorch's public CI shows anyway.

use super::view::{commit_url, path, stamp};
use crate::decisions::Decision;
use crate::pipeline::engine::Engine;
use crate::signals::grid::{Explained, VerdictKind};
use crate::store::signal_state::RevertActionRow;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Culprit actions shown at most (newest first).
pub const MAX_ACTIONS: usize = 50;

#[derive(Debug, Serialize)]
pub struct DecisionsView {
    /// `AUTOREVERT_DECIDE`: whether the engine runs.
    pub engine: bool,
    /// `REVERT_ACTION`: `skip`, `log`, `notify` or `revert`.
    pub revert_action: &'static str,
    /// Signals whose latest decision is a revert or a restart: reverts first.
    pub signals: Vec<SignalDecision>,
    /// Signals decided whose decision does not act (ineligible: flaky, fixed, too few
    /// events…), counted only.
    pub ineligible: usize,
    /// The latest action about each culprit, newest first (at most `MAX_ACTIONS`).
    pub actions: Vec<CulpritAction>,
}

/// A commit named by a decision, with its link.
#[derive(Debug, Clone, Serialize)]
pub struct CommitRef {
    pub sha: String,
    pub url: String,
}

impl CommitRef {
    fn of(repo: &str, sha: &str) -> CommitRef {
        CommitRef {
            sha: sha.to_string(),
            url: commit_url(repo, sha),
        }
    }

    pub fn short(&self) -> &str {
        self.sha.get(..10).unwrap_or(&self.sha)
    }
}

/// One signal's latest decision.
#[derive(Debug, Serialize)]
pub struct SignalDecision {
    pub repo: String,
    pub workflow: String,
    pub job: String,
    /// `revert` or `restart`.
    pub kind: VerdictKind,
    /// Why, in words (the evidence of a revert, each restart's reasons).
    pub reason: String,
    pub suspect: Option<CommitRef>,
    pub baseline: Option<CommitRef>,
    /// The commits asked to run again (a restart), newest first.
    pub restart: Vec<CommitRef>,
}

impl SignalDecision {
    pub fn is_revert(&self) -> bool {
        self.kind == VerdictKind::Revert
    }
}

/// What was done, or would be done, about a culprit.
#[derive(Debug, Serialize)]
pub struct CulpritAction {
    pub repo: String,
    pub commit: CommitRef,
    /// `revert`, `notify`, `log` or `skip`.
    pub action: String,
    /// The PR (a revert) or the issue (a notify) commented on.
    pub target: Option<Target>,
    /// Why it is not a revert (a guard, the mode); empty for a revert.
    pub reason: String,
    /// `decided`, `intended`, `posted`, `refused`, `unknown` or `not_sent`.
    pub state: String,
    pub comment_url: Option<String>,
    /// The signals that blame it (`workflow:job`).
    pub signals: Vec<String>,
    /// The action in words (`would revert on PR #…` for `log`).
    pub detail: String,
    pub decided_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct Target {
    /// `pull` or `issue`.
    pub kind: &'static str,
    pub number: u64,
    pub url: String,
}

impl CulpritAction {
    fn of(a: &RevertActionRow) -> CulpritAction {
        let target = (a.target > 0).then(|| {
            let kind = if a.action == "notify" {
                "issue"
            } else {
                "pull"
            };
            Target {
                kind,
                number: a.target,
                url: format!(
                    "https://github.com/{}/{}/{}",
                    path(&a.repo),
                    if kind == "issue" { "issues" } else { "pull" },
                    a.target
                ),
            }
        });
        CulpritAction {
            repo: a.repo.clone(),
            commit: CommitRef::of(&a.repo, &a.sha),
            action: a.action.clone(),
            target,
            reason: a.reason.clone(),
            state: a.state.clone(),
            comment_url: a
                .comment_url
                .starts_with("https://")
                .then(|| a.comment_url.clone()),
            signals: a.signals.clone(),
            detail: a.detail.clone(),
            decided_at: a.decided_at,
            updated_at: a.updated_at,
        }
    }

    pub fn decided(&self) -> String {
        stamp(&self.decided_at)
    }

    pub fn reason_label(&self) -> String {
        self.reason.replace('_', " ")
    }
}

fn signal_decision(repo: &str, workflow: &str, job: &str, d: &Decision) -> SignalDecision {
    let v = d.verdict();
    SignalDecision {
        repo: repo.to_string(),
        workflow: workflow.to_string(),
        job: job.to_string(),
        kind: v.kind,
        reason: v.reason,
        suspect: v.suspect.map(|s| CommitRef::of(repo, &s)),
        baseline: v.baseline.map(|s| CommitRef::of(repo, &s)),
        restart: v.restart.iter().map(|s| CommitRef::of(repo, s)).collect(),
    }
}

impl DecisionsView {
    /// What the engine decided last, for every repository it knows, and its actions.
    pub fn of(engine: &Engine) -> DecisionsView {
        let decider = engine.decider();
        let mut signals = Vec::new();
        let mut ineligible = 0;
        for repo in decider.repos_known() {
            for (key, d) in decider.decisions(&repo) {
                if matches!(d, Decision::Ineligible(_)) {
                    ineligible += 1;
                    continue;
                }
                signals.push(signal_decision(&repo, &key.workflow, &key.job, &d));
            }
        }
        signals.sort_by(|a, b| {
            (a.kind, &a.repo, &a.workflow, &a.job).cmp(&(b.kind, &b.repo, &b.workflow, &b.job))
        });
        let reverts = engine.reverts();
        DecisionsView {
            engine: decider.settings().enabled,
            revert_action: reverts.acting.mode.as_str(),
            signals,
            ineligible,
            actions: reverts
                .actions()
                .iter()
                .take(MAX_ACTIONS)
                .map(CulpritAction::of)
                .collect(),
        }
    }
}

//! Acting on a culprit the decisions blame: the facts about its commit, the guards, the
//! action chosen (`reverts::choose`, pure), and the comment posted at most once
//! (`post_once`: our comment is looked up by its marker before any POST). Every step is
//! recorded in `revert_actions`, the outcome included, so a comment that failed is tried
//! again (PyTorch writes its dedup row first and never retries) and one that was posted is
//! never posted twice, also across a restart of the App.

use super::{FollowUps, Kind};
use crate::pipeline::decider::{Blamed, Decider};
use crate::pipeline::effects::{Actions, CommentOutcome, Evidence, post_once};
use crate::pipeline::kill_switch::KillSwitches;
use crate::reverts::{
    Action, CommitFacts, Culprit, Evidence as Proof, Guards, RevertMode, choose, marker,
    notify_comment, revert_comment,
};
use crate::store::pytorch_events::PytorchEventRow;
use crate::store::recorder::Entry;
use crate::store::signal_state::RevertActionRow;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the App acts on culprits (`REVERT_ACTION` and its limits).
#[derive(Debug, Clone)]
pub struct Acting {
    pub mode: RevertMode,
    /// `NOTIFY_ISSUE`.
    pub notify_issue: Option<u64>,
    /// `REVERT_MAX_AGE_HOURS`.
    pub max_age: chrono::Duration,
    /// `REVERT_MAX_PER_DAY`.
    pub max_per_day: u32,
    /// Tries of one comment before it waits for the next event, and the first wait
    /// between them (doubling).
    pub attempts: u32,
    pub backoff: Duration,
    /// `PYTORCH_EVENTS_TABLE`: PyTorch's action log, read (a revert by the Lambda counts)
    /// and written (our reverts count for the Lambda); None: off.
    pub pytorch_events: Option<String>,
}

impl Default for Acting {
    fn default() -> Acting {
        Acting {
            mode: RevertMode::Log,
            notify_issue: None,
            max_age: chrono::Duration::hours(crate::reverts::DEFAULT_MAX_AGE_HOURS),
            max_per_day: crate::reverts::DEFAULT_MAX_PER_DAY,
            attempts: 3,
            backoff: Duration::from_secs(10),
            pytorch_events: None,
        }
    }
}

/// After a comment could not be posted, the next event tries again from this long on.
const RETRY_AFTER: chrono::Duration = chrono::Duration::minutes(10);

/// The latest action about each commit: `(repo, sha)` -> its row.
type Acted = HashMap<(String, String), RevertActionRow>;

#[derive(Clone)]
pub struct Reverts {
    pub acting: Acting,
    pub evidence: Arc<dyn Evidence>,
    pub github: Arc<dyn Actions>,
    pub decider: Arc<Decider>,
    pub kill_switches: Arc<KillSwitches>,
    pub follow_ups: FollowUps,
    acted: Arc<Mutex<Acted>>,
}

impl Reverts {
    pub fn new(
        acting: Acting,
        evidence: Arc<dyn Evidence>,
        github: Arc<dyn Actions>,
        decider: Arc<Decider>,
        kill_switches: Arc<KillSwitches>,
        follow_ups: FollowUps,
    ) -> Reverts {
        Reverts {
            acting,
            evidence,
            github,
            decider,
            kill_switches,
            follow_ups,
            acted: Arc::default(),
        }
    }

    fn acted(&self) -> std::sync::MutexGuard<'_, Acted> {
        self.acted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What was done before (start-up).
    pub fn load(&self, rows: Vec<RevertActionRow>) {
        let mut acted = self.acted();
        for r in rows {
            acted.insert((r.repo.clone(), r.sha.clone()), r);
        }
    }

    /// The latest action about each commit, newest first (status page).
    pub fn actions(&self) -> Vec<RevertActionRow> {
        let mut out: Vec<RevertActionRow> = self.acted().values().cloned().collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.decided_at));
        out
    }

    /// A culprit found again: acted on unless that was done already, or is under way.
    pub fn consider(&self, b: Blamed) {
        let now = Utc::now();
        let key = (b.repo.clone(), b.sha.clone());
        if let Some(last) = self.acted().get(&key)
            && !due_again(last, b.new, now)
        {
            return;
        }
        let this = self.clone();
        let id = format!("{}@{}", b.repo, b.sha);
        self.follow_ups
            .spawn(Kind::Revert, &id, async move { this.act(b).await });
    }

    async fn act(&self, b: Blamed) {
        let culprit = culprit_of(&b);
        let action = self.choose(&b, &culprit).await;
        let mut row = action_row(&b, &action, Utc::now());
        tracing::info!(repo = b.repo, sha = b.sha, action = %action, "culprit acted on");
        self.record(row.clone()).await;
        if matches!(&action, Action::Log { would } if matches!(**would, Action::Revert { .. })) {
            self.tell_pytorch(&b, true).await;
        }
        let Some((issue, body)) = comment(&action, &culprit) else {
            return;
        };
        let outcome = self.post(&b, issue, &body).await;
        finish(&mut row, &outcome);
        self.record(row).await;
        if outcome.done() && matches!(action, Action::Revert { .. }) {
            self.tell_pytorch(&b, false).await;
        }
    }

    /// A revert in PyTorch's action log (only once it is posted, or as a dry run: the
    /// Lambda counts every revert row that is neither, and would never revert the commit).
    async fn tell_pytorch(&self, b: &Blamed, dry_run: bool) {
        let Some(table) = &self.acting.pytorch_events else {
            return;
        };
        let workflows = b.signals.iter().map(|(k, _)| k.workflow.clone());
        let mut workflows: Vec<String> = workflows.collect();
        workflows.dedup();
        let keys = b.signals.iter().map(|(k, _)| k.job.clone()).collect();
        let row =
            PytorchEventRow::revert(&b.repo, &b.sha, workflows, keys, dry_run, "autorevert app");
        let about = format!("{}@{}", b.repo, b.sha);
        crate::pipeline::effects::tell_pytorch(&*self.evidence, table, row, &about).await;
    }

    /// Commits reverted in the last 24 hours by the Lambda or us, as its action log says.
    async fn pytorch_reverts_last_day(&self, b: &Blamed, now: DateTime<Utc>) -> u32 {
        let Some(table) = &self.acting.pytorch_events else {
            return 0;
        };
        let since = now - chrono::Duration::hours(24);
        match self
            .evidence
            .pytorch_reverts_since(table, &b.repo, since)
            .await
        {
            Ok(n) => n.min(u64::from(u32::MAX)) as u32,
            Err(e) => {
                tracing::warn!(
                    repo = b.repo,
                    error = format!("{e:#}"),
                    "PyTorch's action log not read"
                );
                0
            }
        }
    }

    /// Whether the Lambda (or we, before) reverted the commit; unreadable: not known so.
    async fn reverted_by_pytorch(&self, b: &Blamed) -> bool {
        let Some(table) = &self.acting.pytorch_events else {
            return false;
        };
        match self.evidence.pytorch_reverted(table, &b.repo, &b.sha).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(
                    repo = b.repo,
                    sha = b.sha,
                    error = format!("{e:#}"),
                    "PyTorch's action log not read"
                );
                false
            }
        }
    }

    /// The action, from facts read now: the signals decided again, the kill switch, what
    /// was done before, the commit and its PR.
    async fn choose(&self, b: &Blamed, culprit: &Culprit) -> Action {
        let now = Utc::now();
        let mut guards = Guards::new(b.pushed_at.unwrap_or(now));
        guards.max_age = self.acting.max_age;
        guards.max_per_day = self.acting.max_per_day;
        guards.notify_issue = self.acting.notify_issue;
        guards.still_failing = b.signals.iter().any(|(key, _)| {
            matches!(self.decider.recheck(&b.repo, key),
                Some(crate::decisions::Decision::Revert(r)) if r.suspect == b.sha)
        });
        let by_pytorch = self.reverted_by_pytorch(b).await;
        let pytorch_day = self.pytorch_reverts_last_day(b, now).await;
        let switch = self.kill_switches.state(&b.repo, b.installation_id).await;
        guards.kill_switch = switch.hold_reason().is_some();
        {
            let acted = self.acted();
            guards.already_acted = acted
                .get(&(b.repo.clone(), b.sha.clone()))
                .is_some_and(|r| r.state == "posted")
                || by_pytorch;
            guards.reverts_last_day = acted
                .values()
                .filter(|r| r.repo == b.repo && r.action == "revert" && r.state == "posted")
                .filter(|r| now - r.updated_at < chrono::Duration::hours(24))
                .count() as u32;
            // The action log holds ours too (when written): the larger count, not the sum.
            guards.reverts_last_day = guards.reverts_last_day.max(pytorch_day);
        }
        let facts = match self.acting.mode {
            RevertMode::Revert | RevertMode::Log => self.facts(b).await,
            _ => CommitFacts::default(),
        };
        choose(self.acting.mode, culprit, &facts, &guards, now)
    }

    /// The commit's message and PR; unreadable: nothing known (a notify, not a revert).
    async fn facts(&self, b: &Blamed) -> CommitFacts {
        let read = self
            .github
            .commit_facts(&b.repo, b.installation_id, &b.sha)
            .await;
        read.unwrap_or_else(|e| {
            tracing::warn!(
                repo = b.repo,
                sha = b.sha,
                error = format!("{e:#}"),
                "commit facts not read"
            );
            CommitFacts::default()
        })
    }

    /// The comment, looked up before each POST; tried again while the outcome allows.
    async fn post(&self, b: &Blamed, issue: u64, body: &str) -> CommentOutcome {
        let mark = marker(&b.sha);
        let mut wait = self.acting.backoff;
        let mut attempt = 1;
        loop {
            let gh: &dyn crate::pipeline::effects::RevertActions = &*self.github;
            let outcome = post_once(gh, &b.repo, b.installation_id, issue, &mark, body).await;
            if !outcome.retryable() || attempt >= self.acting.attempts {
                return outcome;
            }
            tracing::warn!(
                repo = b.repo,
                sha = b.sha,
                ?outcome,
                "comment not posted yet; trying again"
            );
            tokio::time::sleep(wait).await;
            wait *= 2;
            attempt += 1;
        }
    }

    async fn record(&self, row: RevertActionRow) {
        self.acted()
            .insert((row.repo.clone(), row.sha.clone()), row.clone());
        self.evidence.record(Entry::RevertAction(row)).await;
    }
}

/// Whether a culprit acted on before is acted on again now: a comment still owed after a
/// wait, or a guard that may have lifted (kill switch, daily cap, a signal that recovered)
/// once the decision is new again.
fn due_again(last: &RevertActionRow, decision_is_new: bool, now: DateTime<Utc>) -> bool {
    match last.state.as_str() {
        "intended" | "unknown" | "not_sent" => now - last.updated_at >= RETRY_AFTER,
        "decided" => {
            decision_is_new
                && matches!(
                    last.reason.as_str(),
                    "kill_switch" | "daily_cap" | "no_longer_failing"
                )
        }
        _ => false,
    }
}

fn culprit_of(b: &Blamed) -> Culprit {
    Culprit {
        repo: b.repo.clone(),
        sha: b.sha.clone(),
        signals: b
            .signals
            .iter()
            .map(|(key, r)| Proof {
                workflow: key.workflow.clone(),
                job: key.job.clone(),
                failing_job_url: Proof::job_url(&b.repo, r.run_id, r.job_id),
                run_id: r.run_id,
                job_id: r.job_id,
                restart_evidence: format!(
                    "{} failure events from this commit on (its own restarts included), {} successes on its parent {}",
                    r.failure_events,
                    r.success_events,
                    &r.baseline[..r.baseline.len().min(10)]
                ),
            })
            .collect(),
    }
}

/// Where the comment goes and what it says; None: nothing is posted.
fn comment(action: &Action, culprit: &Culprit) -> Option<(u64, String)> {
    match action {
        Action::Revert { pr } => Some((*pr, revert_comment(culprit))),
        Action::Notify { issue, why } => Some((*issue, notify_comment(culprit, None, *why))),
        _ => None,
    }
}

fn action_row(b: &Blamed, action: &Action, now: DateTime<Utc>) -> RevertActionRow {
    let target = match action {
        Action::Revert { pr } => *pr,
        Action::Notify { issue, .. } => *issue,
        _ => 0,
    };
    RevertActionRow {
        repo: b.repo.clone(),
        sha: b.sha.clone(),
        action: action.kind().to_string(),
        target,
        reason: action
            .reason()
            .map(|r| r.as_str().to_string())
            .unwrap_or_default(),
        signals: b.signals.iter().map(|(k, _)| k.to_string()).collect(),
        state: if action.posts() {
            "intended"
        } else {
            "decided"
        }
        .to_string(),
        comment_id: None,
        comment_url: String::new(),
        detail: action.to_string(),
        decided_at: now,
        updated_at: now,
        version: crate::restart::next_version(),
    }
}

/// The row after the comment's outcome.
fn finish(row: &mut RevertActionRow, outcome: &CommentOutcome) {
    row.updated_at = Utc::now();
    row.version = crate::restart::next_version();
    match outcome {
        CommentOutcome::Posted { id, url } => {
            row.state = "posted".into();
            row.comment_id = Some(*id);
            row.comment_url = url.clone();
        }
        CommentOutcome::Found { id } => {
            row.state = "posted".into();
            row.comment_id = Some(*id);
        }
        CommentOutcome::Refused { status, message } if !outcome.retryable() => {
            row.state = "refused".into();
            row.detail = format!("{}; GitHub refused ({status}): {message}", row.detail);
        }
        CommentOutcome::Refused { message: error, .. }
        | CommentOutcome::Unknown { error }
        | CommentOutcome::NotSent { error } => {
            row.state = if matches!(outcome, CommentOutcome::NotSent { .. }) {
                "not_sent"
            } else {
                "unknown"
            }
            .into();
            row.detail = format!("{}; not posted yet: {error}", row.detail);
        }
    }
}

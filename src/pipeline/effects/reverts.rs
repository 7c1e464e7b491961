//! What acting on a revert decision asks of GitHub (`RevertActions`): the facts about the
//! culprit's commit, the App's comment found by its marker, and the comment's one POST; on
//! GitHub's REST API and for `NoGitHub`. `post_once` is the safe way to post: it looks the
//! comment up first and POSTs only when it is absent, so calling it again after any
//! failure, an unknown outcome included, never posts a second comment.

use super::NoGitHub;
use crate::github::GitHub;
use crate::github::comments::{CommentCreated, PullInfo, landed_through};
use crate::reverts::{CommitFacts, PullFacts, pr_from_message, reverted_pr};
use anyhow::{Result, bail};

/// What the App asks of GitHub to act on a revert decision.
#[async_trait::async_trait]
pub trait RevertActions: Send + Sync {
    /// The commit's message and its PR: the one its message names (`Pull Request
    /// resolved:`, or for a revert the PR it reverts), else the one GitHub associates with
    /// it on the default branch.
    async fn commit_facts(
        &self,
        repo: &str,
        installation: Option<u64>,
        sha: &str,
    ) -> Result<CommitFacts>;
    /// The id of the App's comment on issue (or PR) `issue` holding `marker`, if any.
    async fn find_comment(
        &self,
        repo: &str,
        installation: Option<u64>,
        issue: u64,
        marker: &str,
    ) -> Result<Option<u64>>;
    /// Posts a comment: one POST, never retried (use `post_once`).
    async fn create_comment(
        &self,
        repo: &str,
        installation: Option<u64>,
        issue: u64,
        body: &str,
    ) -> CommentCreated;
}

fn pull_facts(p: PullInfo) -> PullFacts {
    PullFacts {
        number: p.number,
        open: p.open,
        merged: p.merged,
        labels: p.labels,
    }
}

#[async_trait::async_trait]
impl RevertActions for GitHub {
    async fn commit_facts(
        &self,
        repo: &str,
        installation: Option<u64>,
        sha: &str,
    ) -> Result<CommitFacts> {
        let commit = GitHub::commit(self, repo, sha, installation).await?;
        let named =
            pr_from_message(&commit.message, repo).or_else(|| reverted_pr(&commit.message, repo));
        let pr = match named {
            Some(number) => GitHub::pull(self, repo, number, installation).await?,
            None => landed_through(GitHub::commit_pulls(self, repo, sha, installation).await?),
        };
        Ok(CommitFacts {
            message: commit.message,
            pr: pr.map(pull_facts),
        })
    }

    async fn find_comment(
        &self,
        repo: &str,
        installation: Option<u64>,
        issue: u64,
        marker: &str,
    ) -> Result<Option<u64>> {
        GitHub::find_comment(self, repo, issue, marker, installation).await
    }

    async fn create_comment(
        &self,
        repo: &str,
        installation: Option<u64>,
        issue: u64,
        body: &str,
    ) -> CommentCreated {
        GitHub::create_comment(self, repo, issue, body, installation).await
    }
}

const NO_CREDENTIALS: &str = "no GitHub credentials are configured";

#[async_trait::async_trait]
impl RevertActions for NoGitHub {
    async fn commit_facts(&self, _: &str, _: Option<u64>, _: &str) -> Result<CommitFacts> {
        bail!(NO_CREDENTIALS)
    }

    async fn find_comment(&self, _: &str, _: Option<u64>, _: u64, _: &str) -> Result<Option<u64>> {
        bail!(NO_CREDENTIALS)
    }

    async fn create_comment(&self, _: &str, _: Option<u64>, _: u64, _: &str) -> CommentCreated {
        CommentCreated::Refused {
            status: 0,
            message: NO_CREDENTIALS.into(),
        }
    }
}

/// What posting a comment came to.
#[derive(Debug, Clone, PartialEq)]
pub enum CommentOutcome {
    /// Posted now.
    Posted { id: u64, url: String },
    /// Already there (an earlier attempt's POST went through): nothing sent now.
    Found { id: u64 },
    /// GitHub refused the POST (4xx; status 0: it could not be sent): nothing was posted.
    Refused { status: u16, message: String },
    /// The POST's outcome is unknown: the comment may exist. Call again later: the lookup
    /// comes first.
    Unknown { error: String },
    /// The lookup failed, so nothing was sent. Call again later.
    NotSent { error: String },
}

impl CommentOutcome {
    /// The comment is on GitHub.
    pub fn done(&self) -> bool {
        matches!(
            self,
            CommentOutcome::Posted { .. } | CommentOutcome::Found { .. }
        )
    }

    /// Calling `post_once` again later may post it: an unknown outcome, a failed lookup,
    /// or a refusal for the rate limit (429, or a 403 saying so).
    pub fn retryable(&self) -> bool {
        match self {
            CommentOutcome::Unknown { .. } | CommentOutcome::NotSent { .. } => true,
            CommentOutcome::Refused { status, message } => {
                *status == 429 || (*status == 403 && message.to_lowercase().contains("rate limit"))
            }
            _ => false,
        }
    }
}

/// Posts `body` on issue (or PR) `issue` unless the App's comment holding `marker` is
/// already there: a lookup first, then at most one POST. Safe to call again after any
/// outcome: after `Unknown` (a 5xx, a timeout, a lost answer) the next call finds the
/// comment if GitHub made it, and posts only if it did not.
pub async fn post_once(
    actions: &dyn RevertActions,
    repo: &str,
    installation: Option<u64>,
    issue: u64,
    marker: &str,
    body: &str,
) -> CommentOutcome {
    if !body.contains(marker) {
        // It could never be found again: a retry would post it twice.
        return CommentOutcome::Refused {
            status: 0,
            message: format!("the comment does not hold its marker {marker:?}"),
        };
    }
    match actions
        .find_comment(repo, installation, issue, marker)
        .await
    {
        Ok(Some(id)) => return CommentOutcome::Found { id },
        Ok(None) => {}
        Err(e) => {
            return CommentOutcome::NotSent {
                error: format!("looking for the comment first: {e:#}"),
            };
        }
    }
    match actions
        .create_comment(repo, installation, issue, body)
        .await
    {
        CommentCreated::Created { id, url } => CommentOutcome::Posted { id, url },
        CommentCreated::Refused { status, message } => CommentOutcome::Refused { status, message },
        CommentCreated::Unknown { error } => CommentOutcome::Unknown { error },
    }
}

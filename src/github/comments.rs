//! Commits, their PRs, and comments on issues and PRs (PRs are issues here), for acting on
//! a revert decision. Reads go through the one retry layer. Creating a comment is a POST,
//! sent once and never retried: after an unknown outcome the caller looks its comment up
//! by its marker before posting again (`pipeline::effects::post_once`).
//! Comments are posted as the App's installation (pytorchbot takes revert commands from the
//! App), so they need App authentication and `issues: write` or `pull_requests: write`.

use super::GitHub;
use super::transport::{error_chain, github_message, url_escape};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::json;

/// Pages of comments read when looking for the App's own (100 each).
pub const MAX_COMMENT_PAGES: u32 = 100;

/// A commit as the App needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitInfo {
    pub sha: String,
    pub message: String,
}

/// A PR as the App needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct PullInfo {
    pub number: u64,
    pub open: bool,
    pub merged: bool,
    pub labels: Vec<String>,
    /// The branch it was opened against, and the repository's default branch.
    pub base: String,
    pub default_branch: String,
}

/// What the create POST came to.
#[derive(Debug, Clone, PartialEq)]
pub enum CommentCreated {
    Created {
        id: u64,
        url: String,
    },
    /// 4xx (or nothing could be sent: status 0): GitHub refused; nothing was created.
    Refused {
        status: u16,
        message: String,
    },
    /// 5xx, timeout, transport error, or an answer without the comment: it may exist; look
    /// it up before posting again.
    Unknown {
        error: String,
    },
}

#[derive(Deserialize)]
struct CommitJson {
    sha: String,
    commit: CommitDetail,
}

#[derive(Deserialize)]
struct CommitDetail {
    message: String,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct BaseRepo {
    default_branch: String,
}

#[derive(Deserialize)]
struct Base {
    #[serde(rename = "ref")]
    branch: String,
    repo: Option<BaseRepo>,
}

#[derive(Deserialize)]
struct PullJson {
    number: u64,
    state: String,
    /// Only the single-PR endpoint has `merged`; lists have `merged_at`.
    merged: Option<bool>,
    merged_at: Option<String>,
    #[serde(default)]
    labels: Vec<Named>,
    base: Base,
}

impl From<PullJson> for PullInfo {
    fn from(p: PullJson) -> PullInfo {
        PullInfo {
            number: p.number,
            open: p.state == "open",
            merged: p.merged.unwrap_or(p.merged_at.is_some()),
            labels: p.labels.into_iter().map(|l| l.name).collect(),
            default_branch: p.base.repo.map(|r| r.default_branch).unwrap_or_default(),
            base: p.base.branch,
        }
    }
}

#[derive(Deserialize)]
struct Author {
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize)]
struct CommentJson {
    id: u64,
    #[serde(default)]
    html_url: String,
    #[serde(default)]
    body: String,
    user: Option<Author>,
}

impl GitHub {
    /// `GET /repos/{repo}/commits/{sha}` (`per_page=1`: the commit, not its file list).
    pub async fn commit(
        &self,
        repo: &str,
        sha: &str,
        installation: Option<u64>,
    ) -> Result<CommitInfo> {
        let client = self.client_for(repo, installation).await?;
        let route = format!("/repos/{repo}/commits/{}?per_page=1", url_escape(sha));
        let c: CommitJson = client
            .get_json(&route)
            .await
            .with_context(|| format!("reading commit {sha} of {repo}"))?;
        Ok(CommitInfo {
            sha: c.sha,
            message: c.commit.message,
        })
    }

    /// `GET /repos/{repo}/commits/{sha}/pulls`: the PRs GitHub associates with the commit.
    pub async fn commit_pulls(
        &self,
        repo: &str,
        sha: &str,
        installation: Option<u64>,
    ) -> Result<Vec<PullInfo>> {
        let client = self.client_for(repo, installation).await?;
        let route = format!(
            "/repos/{repo}/commits/{}/pulls?per_page=100",
            url_escape(sha)
        );
        let pulls: Vec<PullJson> = client
            .get_all(&route, 3)
            .await
            .with_context(|| format!("listing the PRs of commit {sha} of {repo}"))?;
        Ok(pulls.into_iter().map(PullInfo::from).collect())
    }

    /// `GET /repos/{repo}/pulls/{number}`; None: GitHub has no such PR.
    pub async fn pull(
        &self,
        repo: &str,
        number: u64,
        installation: Option<u64>,
    ) -> Result<Option<PullInfo>> {
        let client = self.client_for(repo, installation).await?;
        let route = format!("/repos/{repo}/pulls/{number}");
        let pull: Option<PullJson> = client
            .get_optional(&route)
            .await
            .with_context(|| format!("reading PR #{number} of {repo}"))?;
        Ok(pull.map(PullInfo::from))
    }

    /// The id of a comment on issue (or PR) `issue` written by a bot whose body holds
    /// `marker` on a line of its own, if any. Every page is read (oldest first, as GitHub
    /// lists them) until it is found; more than `MAX_COMMENT_PAGES` is an error.
    pub async fn find_comment(
        &self,
        repo: &str,
        issue: u64,
        marker: &str,
        installation: Option<u64>,
    ) -> Result<Option<u64>> {
        let client = self.client_for(repo, installation).await?;
        let mut page = "1".to_string();
        for _ in 0..MAX_COMMENT_PAGES {
            let route = format!(
                "/repos/{repo}/issues/{issue}/comments?per_page=100&page={}",
                url_escape(&page)
            );
            let (comments, next): (Vec<CommentJson>, _) = client
                .get_page(&route, "page")
                .await
                .with_context(|| format!("listing the comments of #{issue} in {repo}"))?;
            if let Some(c) = comments.iter().find(|c| is_ours(c, marker)) {
                return Ok(Some(c.id));
            }
            match next {
                Some(n) => page = n,
                None => return Ok(None),
            }
        }
        bail!(
            "more than {MAX_COMMENT_PAGES} pages of comments on #{issue} in {repo}; not read to the end"
        )
    }

    /// `POST /repos/{repo}/issues/{issue}/comments`: one POST, never retried.
    pub async fn create_comment(
        &self,
        repo: &str,
        issue: u64,
        body: &str,
        installation: Option<u64>,
    ) -> CommentCreated {
        if !self.is_app() {
            return refused(
                0,
                "comments are posted as the App: App authentication is needed",
            );
        }
        let client = match self.client_for(repo, installation).await {
            Ok(c) => c,
            Err(e) => return refused(0, &format!("not sent: {e:#}")),
        };
        let route = format!("/repos/{repo}/issues/{issue}/comments");
        let (status, text) = match client.post(&route, Some(&json!({ "body": body }))).await {
            Ok(answer) => answer,
            Err(e) => {
                return CommentCreated::Unknown {
                    error: format!("POST {route}: no answer from GitHub: {}", error_chain(&e)),
                };
            }
        };
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                return CommentCreated::Unknown {
                    error: format!(
                        "POST {route}: GitHub answered {status}, then the answer was lost: {}",
                        error_chain(&e)
                    ),
                };
            }
        };
        match status {
            s if s.is_success() => match serde_json::from_str::<CommentJson>(&text) {
                Ok(c) => CommentCreated::Created {
                    id: c.id,
                    url: c.html_url,
                },
                Err(_) => CommentCreated::Unknown {
                    error: format!("POST {route}: GitHub answered {s} without the comment"),
                },
            },
            s if s.is_client_error() => refused(
                s.as_u16(),
                &format!(
                    "POST {route}: GitHub answered {s}: {}",
                    github_message(&text)
                ),
            ),
            s => CommentCreated::Unknown {
                error: format!(
                    "POST {route}: GitHub answered {s}: {}",
                    github_message(&text)
                ),
            },
        }
    }
}

fn refused(status: u16, message: &str) -> CommentCreated {
    CommentCreated::Refused {
        status,
        message: message.to_string(),
    }
}

/// A bot's comment holding `marker` on a line of its own (a person quoting it in a
/// sentence does not make it the App's).
fn is_ours(c: &CommentJson, marker: &str) -> bool {
    c.user.as_ref().is_some_and(|u| u.kind == "Bot") && c.body.lines().any(|l| l.trim() == marker)
}

/// Of a commit's PRs, the one it landed through: opened against the default branch,
/// merged on GitHub first, then closed (PyTorch's merge bot closes the PRs it lands), then
/// any still open.
pub fn landed_through(pulls: Vec<PullInfo>) -> Option<PullInfo> {
    let mut on_default: Vec<PullInfo> = pulls
        .into_iter()
        .filter(|p| !p.default_branch.is_empty() && p.base == p.default_branch)
        .collect();
    on_default.sort_by_key(|p| (!p.merged, p.open));
    on_default.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(number: u64, base: &str, open: bool, merged: bool) -> PullInfo {
        PullInfo {
            number,
            open,
            merged,
            labels: vec![],
            base: base.into(),
            default_branch: "main".into(),
        }
    }

    #[test]
    fn a_commit_lands_through_its_pr_into_the_default_branch() {
        let pulls = vec![
            pull(1, "release/2.9", false, true),
            pull(2, "main", true, false),
            pull(3, "main", false, false),
            pull(4, "main", false, true),
        ];
        assert_eq!(landed_through(pulls.clone()).map(|p| p.number), Some(4));
        assert_eq!(
            landed_through(pulls[..3].to_vec()).map(|p| p.number),
            Some(3)
        );
        assert_eq!(
            landed_through(pulls[..2].to_vec()).map(|p| p.number),
            Some(2)
        );
        assert_eq!(landed_through(pulls[..1].to_vec()), None);
    }

    #[test]
    fn a_pr_reads_from_a_list_and_from_its_own_endpoint() {
        let listed: PullJson = serde_json::from_value(json!({
            "number": 7, "state": "closed", "merged_at": "2026-11-30T10:00:00Z",
            "labels": [{"name": "autorevert: disable"}],
            "base": {"ref": "main", "repo": {"default_branch": "main"}}
        }))
        .unwrap();
        let p = PullInfo::from(listed);
        assert!(p.merged && !p.open);
        assert_eq!(p.labels, vec!["autorevert: disable"]);
        let single: PullJson = serde_json::from_value(json!({
            "number": 8, "state": "open", "merged": false, "merged_at": null,
            "base": {"ref": "main", "repo": {"default_branch": "main"}}
        }))
        .unwrap();
        let p = PullInfo::from(single);
        assert!(p.open && !p.merged && p.labels.is_empty());
    }

    #[test]
    fn only_a_bots_comment_with_the_marker_on_its_own_line_is_ours() {
        let marker = "<!-- autorevert:abc -->";
        let comment = |kind: &str, body: &str| CommentJson {
            id: 1,
            html_url: String::new(),
            body: body.into(),
            user: Some(Author { kind: kind.into() }),
        };
        assert!(is_ours(
            &comment("Bot", &format!("x\n\n{marker}\n")),
            marker
        ));
        assert!(!is_ours(&comment("User", &format!("x\n{marker}")), marker));
        assert!(!is_ours(
            &comment("Bot", &format!("quoting {marker} here")),
            marker
        ));
        assert!(!is_ours(
            &comment("Bot", "<!-- autorevert:abcd -->"),
            marker
        ));
    }
}

//! Check runs (permission `checks: write`): the App's `autorevert` check run on a commit.
//! Finding one by its `external_id` and updating it are safe to repeat (the GET and the
//! PATCH go through the one retry layer); creating one is a POST, sent once and never
//! retried: after an unknown outcome the caller looks it up before creating again.

use super::GitHub;
use super::transport::{Client, error_chain, github_message, url_escape};
use anyhow::{Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};

/// The check run's name on the commit.
pub const CHECK_NAME: &str = "autorevert";

/// Pages of check runs read when looking one up (100 each).
const MAX_PAGES: u32 = 10;

/// A check run as the App asks GitHub to show it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRunRequest {
    pub repo: String,
    pub head_sha: String,
    /// Our own id for it (the restart id): how it is found again.
    pub external_id: String,
    /// `completed` with conclusion `neutral`; else `in_progress`.
    pub completed: bool,
    pub title: String,
    pub summary: String,
    pub details_url: Option<String>,
}

impl CheckRunRequest {
    /// The fields an update sets (all of them absolute, so sending it twice is harmless).
    pub fn update_body(&self) -> Value {
        let mut body = json!({
            "status": if self.completed { "completed" } else { "in_progress" },
            "output": { "title": self.title, "summary": self.summary },
        });
        if self.completed {
            body["conclusion"] = json!("neutral");
        }
        if let Some(url) = &self.details_url {
            body["details_url"] = json!(url);
        }
        body
    }

    /// An update's fields plus what names the check run.
    pub fn create_body(&self) -> Value {
        let mut body = self.update_body();
        body["name"] = json!(CHECK_NAME);
        body["head_sha"] = json!(self.head_sha);
        body["external_id"] = json!(self.external_id);
        body
    }
}

/// A check run GitHub has.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CheckRunRef {
    pub id: u64,
    #[serde(default)]
    pub html_url: String,
    #[serde(default)]
    pub external_id: String,
}

/// What the create POST came to.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckRunCreated {
    Created(CheckRunRef),
    /// 4xx: GitHub refused; nothing was created.
    Refused(String),
    /// 5xx, timeout, transport error, or nothing sent: it may exist; look it up first.
    Unknown(String),
}

#[derive(Deserialize)]
struct CheckRunsPage {
    check_runs: Vec<CheckRunRef>,
}

impl GitHub {
    /// The `autorevert` check run on `head_sha` whose external id is `external_id`, if any
    /// (`filter=all`: GitHub's default lists only the latest run per name).
    pub async fn find_check_run(
        &self,
        req: &CheckRunRequest,
        installation: Option<u64>,
    ) -> Result<Option<CheckRunRef>> {
        let client = self.check_client(&req.repo, installation).await?;
        let mut page = "1".to_string();
        for _ in 0..MAX_PAGES {
            let route = format!(
                "/repos/{}/commits/{}/check-runs?check_name={CHECK_NAME}&filter=all&per_page=100&page={}",
                req.repo,
                url_escape(&req.head_sha),
                url_escape(&page)
            );
            let (p, next): (CheckRunsPage, _) = client.get_page(&route, "page").await?;
            if let Some(found) = p
                .check_runs
                .into_iter()
                .find(|c| c.external_id == req.external_id)
            {
                return Ok(Some(found));
            }
            match next {
                Some(n) => page = n,
                None => return Ok(None),
            }
        }
        bail!(
            "more than {MAX_PAGES} pages of {CHECK_NAME} check runs on {}",
            req.head_sha
        )
    }

    /// Creates the check run: one POST, never retried.
    pub async fn create_check_run(
        &self,
        req: &CheckRunRequest,
        installation: Option<u64>,
    ) -> CheckRunCreated {
        let client = match self.check_client(&req.repo, installation).await {
            Ok(c) => c,
            Err(e) => return CheckRunCreated::Unknown(format!("not sent: {e:#}")),
        };
        let route = format!("/repos/{}/check-runs", req.repo);
        let (status, text) = match client.post(&route, Some(&req.create_body())).await {
            Ok(answer) => answer,
            Err(e) => {
                return CheckRunCreated::Unknown(format!(
                    "no answer from GitHub: {}",
                    error_chain(&e)
                ));
            }
        };
        let text = text.unwrap_or_default();
        match status {
            s if s.is_success() => match serde_json::from_str::<CheckRunRef>(&text) {
                Ok(c) => CheckRunCreated::Created(c),
                Err(_) => {
                    CheckRunCreated::Unknown(format!("GitHub answered {s} without the check run"))
                }
            },
            s if s.is_client_error() => CheckRunCreated::Refused(format!(
                "POST {route}: GitHub answered {s}: {}",
                github_message(&text)
            )),
            s => CheckRunCreated::Unknown(format!(
                "POST {route}: GitHub answered {s}: {}",
                github_message(&text)
            )),
        }
    }

    /// Brings check run `id` to `req` (PATCH, retried like a read).
    pub async fn update_check_run(
        &self,
        req: &CheckRunRequest,
        id: u64,
        installation: Option<u64>,
    ) -> Result<CheckRunRef> {
        let client = self.check_client(&req.repo, installation).await?;
        let route = format!("/repos/{}/check-runs/{id}", req.repo);
        client.patch_json(&route, &req.update_body()).await
    }

    /// Only a GitHub App can write check runs; a token cannot.
    async fn check_client(&self, repo: &str, installation: Option<u64>) -> Result<Client> {
        if !self.is_app() {
            bail!("check runs need App authentication (a GITHUB_TOKEN cannot write them)");
        }
        self.client_for(repo, installation).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(completed: bool) -> CheckRunRequest {
        CheckRunRequest {
            repo: "o/r".into(),
            head_sha: "abc".into(),
            external_id: "o/r/trunk/abc/1".into(),
            completed,
            title: "t".into(),
            summary: "s".into(),
            details_url: Some("https://github.com/o/r/actions/runs/9".into()),
        }
    }

    #[test]
    fn a_completed_check_run_is_neutral_and_a_running_one_has_no_conclusion() {
        let done = req(true).create_body();
        assert_eq!(done["status"], "completed");
        assert_eq!(done["conclusion"], "neutral");
        assert_eq!(done["name"], CHECK_NAME);
        assert_eq!(done["external_id"], "o/r/trunk/abc/1");
        assert_eq!(done["head_sha"], "abc");
        assert_eq!(done["output"], json!({"title": "t", "summary": "s"}));
        let running = req(false).update_body();
        assert_eq!(running["status"], "in_progress");
        assert!(running.get("conclusion").is_none());
        assert!(
            running.get("name").is_none(),
            "an update does not rename it"
        );
        assert_eq!(
            running["details_url"],
            "https://github.com/o/r/actions/runs/9"
        );
    }
}

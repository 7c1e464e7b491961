//! GitHub client: App JWT -> installation tokens, workflow dispatch, run and job lookups.
//!
//! octocrab is built without its `retry` feature, so nothing below retries a request by
//! itself. Two kinds of resend exist, both safe by construction:
//! * after a 401, octocrab clears the cached installation token and sends once more with a
//!   fresh one; GitHub rejected the first attempt before acting on it;
//! * `get_json` retries reads (GET) on 5xx, transport errors and rate limits.
//!
//! The dispatch POST is never retried here: an unknown outcome (5xx, timeout) is reported
//! as such, and the caller lists the runs on `trunk/{sha}` before sending anything again.

use crate::config::{GitHubAuth, GitHubConfig};
use crate::events::{Job, Run};
use anyhow::{Context, Result, anyhow, bail};
use http::StatusCode;
use octocrab::Octocrab;
use octocrab::models::{AppId, InstallationId};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An open issue that switches restarts off, and who switched it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KillSwitch {
    pub issue: u64,
    pub labelled_by: String,
    pub permission: String,
}

impl std::fmt::Display for KillSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "issue #{} labelled by @{} ({})",
            self.issue, self.labelled_by, self.permission
        )
    }
}

/// One attempt of the App's webhook delivery log (`GET /app/hook/deliveries`).
#[derive(Debug, Clone, Deserialize)]
pub struct HookDelivery {
    pub id: u64,
    pub guid: String,
    pub delivered_at: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub redelivery: bool,
    #[serde(default)]
    pub status_code: u16,
    #[serde(default)]
    pub event: String,
}

/// What a dispatch POST came to.
#[derive(Debug, Clone, PartialEq)]
pub enum DispatchResult {
    /// 200 with the new run (`return_run_details: true`).
    Created { run_id: u64, html_url: String },
    /// 204: accepted, run id not returned (GitHub without `return_run_details`).
    Accepted,
    /// 4xx: GitHub refused; nothing was created. `message` is GitHub's own text.
    Rejected { status: u16, message: String },
    /// 5xx, timeout or transport error: a run may or may not have been created.
    Unknown { reason: String },
    /// Nothing reached GitHub (no installation token could be had: GitHub unreachable or
    /// refusing the App), so nothing was created and sending later is safe.
    NotSent { reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct DispatchRequest {
    pub repo: String,
    pub workflow_file: String,
    pub git_ref: String,
    pub inputs: Option<serde_json::Value>,
}

impl DispatchRequest {
    pub fn route(&self) -> String {
        format!(
            "/repos/{}/actions/workflows/{}/dispatches",
            self.repo, self.workflow_file
        )
    }

    pub fn body(&self, return_run_details: bool) -> serde_json::Value {
        let mut body = serde_json::json!({ "ref": self.git_ref });
        if let Some(inputs) = &self.inputs {
            body["inputs"] = inputs.clone();
        }
        if return_run_details {
            body["return_run_details"] = serde_json::Value::Bool(true);
        }
        body
    }
}

#[derive(Clone)]
pub struct GitHub {
    base: Arc<Octocrab>,
    is_app: bool,
    installations: Arc<Mutex<HashMap<u64, Arc<Octocrab>>>>,
    /// Held while a token is looked up, so concurrent first requests fetch one token.
    token_lock: Arc<tokio::sync::Mutex<()>>,
    repo_installations: Arc<Mutex<HashMap<String, u64>>>,
}

#[derive(Deserialize)]
struct RunsPage {
    workflow_runs: Vec<Run>,
}

#[derive(Deserialize)]
struct JobsPage {
    total_count: u64,
    jobs: Vec<Job>,
}

#[derive(Deserialize)]
struct InstallationRef {
    id: u64,
}

#[derive(Deserialize)]
struct DispatchDetails {
    workflow_run_id: u64,
    #[serde(default)]
    html_url: String,
}

/// GitHub's error body: `{"message": "...", "documentation_url": "..."}`.
fn github_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.chars().take(300).collect())
}

impl GitHub {
    pub fn new(cfg: &GitHubConfig) -> Result<GitHub> {
        // octocrab's TLS stack needs a process-wide crypto provider; ring is the one we build.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = Octocrab::builder()
            .base_uri(cfg.api_url.as_str())
            .context("GITHUB_API_URL is not usable as a base URI")?
            .set_connect_timeout(Some(cfg.timeout))
            .set_read_timeout(Some(cfg.timeout))
            .set_write_timeout(Some(cfg.timeout));
        let (builder, is_app) = match &cfg.auth {
            GitHubAuth::App { app_id, key } => (builder.app(AppId(*app_id), key.clone()), true),
            GitHubAuth::Token(t) => (builder.personal_token(t.expose_secret().to_string()), false),
        };
        Ok(GitHub {
            base: Arc::new(builder.build().context("building the GitHub client")?),
            is_app,
            installations: Default::default(),
            token_lock: Default::default(),
            repo_installations: Default::default(),
        })
    }

    /// Whether this client authenticates as a GitHub App (App-level endpoints need it).
    pub fn is_app(&self) -> bool {
        self.is_app
    }

    /// The client acting as an installation. One client per installation is kept behind an
    /// `Arc`: octocrab caches the token inside it (until 30 s before `expires_at`), and its
    /// `Clone` copies that cache by value, so a clone would fetch and refresh a token of its own.
    async fn client_for(&self, repo: &str, installation: Option<u64>) -> Result<Arc<Octocrab>> {
        if !self.is_app {
            return Ok(self.base.clone());
        }
        let id = match installation {
            Some(id) => id,
            None => self.installation_of(repo).await?,
        };
        let client = {
            let mut map = self.installations.lock().expect("installations lock");
            match map.get(&id) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(
                        self.base
                            .installation(InstallationId(id))
                            .context("the GitHub client is not App-authenticated")?,
                    );
                    map.insert(id, c.clone());
                    c
                }
            }
        };
        // Make sure a token is at hand (cached, or fetched with the App JWT) before any
        // request: a failure here means nothing was sent, which callers can rely on.
        // One lookup at a time, so concurrent first requests share one fetched token.
        let _one_fetch_at_a_time = self.token_lock.lock().await;
        client.installation_token().await.map_err(|e| {
            anyhow!(
                "could not get an installation token for installation {id}: {}",
                error_chain(&e)
            )
        })?;
        Ok(client)
    }

    /// `GET /repos/{owner}/{repo}/installation` (App JWT), cached per repository.
    pub async fn installation_of(&self, repo: &str) -> Result<u64> {
        if let Some(id) = self.repo_installations.lock().expect("lock").get(repo) {
            return Ok(*id);
        }
        let inst: InstallationRef = get_json(&self.base, &format!("/repos/{repo}/installation"))
            .await
            .with_context(|| format!("the App is not installed on {repo}"))?;
        self.repo_installations
            .lock()
            .expect("lock")
            .insert(repo.to_string(), inst.id);
        Ok(inst.id)
    }

    /// Sends the dispatch POST once (twice only when GitHub refused the request outright as
    /// not understanding `return_run_details`, as GHES <= 3.20 does: nothing was created).
    pub async fn dispatch(
        &self,
        req: &DispatchRequest,
        installation: Option<u64>,
    ) -> Result<DispatchResult> {
        let client = self.client_for(&req.repo, installation).await?;
        let first = post_once(&client, &req.route(), &req.body(true)).await;
        if let DispatchResult::Rejected {
            status: 400 | 422,
            message,
        } = &first
            && message.contains("return_run_details")
        {
            return Ok(post_once(&client, &req.route(), &req.body(false)).await);
        }
        Ok(first)
    }

    /// The App's failed webhook deliveries, newest first (App JWT), one page at a time.
    pub async fn failed_deliveries(
        &self,
        cursor: Option<&str>,
    ) -> Result<(Vec<HookDelivery>, Option<String>)> {
        let mut route = "/app/hook/deliveries?per_page=100&status=failure".to_string();
        if let Some(c) = cursor {
            route.push_str(&format!("&cursor={}", url_escape(c)));
        }
        get_page(&self.base, &route).await
    }

    /// Asks GitHub to deliver a delivery again (`POST …/attempts`, App JWT). Sent once: a
    /// redelivery that fails is seen by the next sweep.
    pub async fn redeliver(&self, delivery_id: u64) -> Result<()> {
        let route = format!("/app/hook/deliveries/{delivery_id}/attempts");
        let resp = self
            .base
            ._post(route.as_str(), None::<&()>)
            .await
            .map_err(|e| anyhow!("POST {route}: {}", error_chain(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = self.base.body_to_string(resp).await.unwrap_or_default();
        bail!(
            "POST {route}: GitHub answered {status}: {}",
            github_message(&text)
        )
    }

    /// Runs of a workflow dispatched on `git_ref` (how an unknown dispatch outcome is settled).
    pub async fn dispatched_runs(
        &self,
        repo: &str,
        workflow_file: &str,
        git_ref: &str,
        installation: Option<u64>,
    ) -> Result<Vec<Run>> {
        self.runs(
            repo,
            workflow_file,
            &[("branch", git_ref), ("event", "workflow_dispatch")],
            installation,
        )
        .await
    }

    /// Runs of a workflow file, newest first, filtered by GitHub's query parameters
    /// (`branch`, `event`, `status`, `created`, ...).
    pub async fn runs(
        &self,
        repo: &str,
        workflow_file: &str,
        query: &[(&str, &str)],
        installation: Option<u64>,
    ) -> Result<Vec<Run>> {
        let client = self.client_for(repo, installation).await?;
        let qs: String = query
            .iter()
            .map(|(k, v)| format!("&{k}={}", url_escape(v)))
            .collect();
        let route =
            format!("/repos/{repo}/actions/workflows/{workflow_file}/runs?per_page=100{qs}");
        let page: RunsPage = get_json(&client, &route).await?;
        Ok(page.workflow_runs)
    }

    /// One run (`GET /repos/{repo}/actions/runs/{id}`).
    pub async fn run(&self, repo: &str, run_id: u64, installation: Option<u64>) -> Result<Run> {
        let client = self.client_for(repo, installation).await?;
        get_json(&client, &format!("/repos/{repo}/actions/runs/{run_id}")).await
    }

    /// Every job of a run's latest attempt (`filter=latest`), all pages.
    pub async fn run_jobs(
        &self,
        repo: &str,
        run_id: u64,
        installation: Option<u64>,
    ) -> Result<Vec<Job>> {
        let client = self.client_for(repo, installation).await?;
        let mut jobs = Vec::new();
        for page in 1..=20u32 {
            let route = format!(
                "/repos/{repo}/actions/runs/{run_id}/jobs?filter=latest&per_page=100&page={page}"
            );
            let p: JobsPage = get_json(&client, &route).await?;
            let n = p.jobs.len();
            jobs.extend(p.jobs);
            if n < 100 || jobs.len() as u64 >= p.total_count {
                break;
            }
        }
        Ok(jobs)
    }

    /// The kill switch: an open issue carrying `label` counts only if the user who applied
    /// the label (the latest `labeled` event for it) has write, maintain or admin permission.
    /// Anyone can open an issue from a template that applies labels; PyTorch's autorevert was
    /// switched off for 15 hours that way (pytorch/test-infra#8229).
    pub async fn kill_switch(
        &self,
        repo: &str,
        label: &str,
        installation: Option<u64>,
    ) -> Result<Option<KillSwitch>> {
        #[derive(Deserialize)]
        struct Issue {
            number: u64,
        }
        #[derive(Deserialize)]
        struct Named {
            name: String,
        }
        #[derive(Deserialize)]
        struct Login {
            login: String,
        }
        #[derive(Deserialize)]
        struct IssueEvent {
            event: String,
            label: Option<Named>,
            actor: Option<Login>,
        }
        #[derive(Deserialize)]
        struct Permission {
            permission: String,
            #[serde(default)]
            role_name: String,
        }
        let client = self.client_for(repo, installation).await?;
        let issues: Vec<Issue> = get_json(
            &client,
            &format!(
                "/repos/{repo}/issues?labels={}&state=open&per_page=100",
                url_escape(label)
            ),
        )
        .await?;
        for issue in issues {
            let mut labelled_by = None;
            for page in 1..=10u32 {
                let events: Vec<IssueEvent> = get_json(
                    &client,
                    &format!(
                        "/repos/{repo}/issues/{}/events?per_page=100&page={page}",
                        issue.number
                    ),
                )
                .await?;
                let n = events.len();
                for e in events {
                    if e.event == "labeled" && e.label.as_ref().is_some_and(|l| l.name == label) {
                        labelled_by = e.actor.map(|a| a.login);
                    }
                }
                if n < 100 {
                    break;
                }
            }
            let Some(user) = labelled_by else { continue };
            let p: Permission = get_json(
                &client,
                &format!("/repos/{repo}/collaborators/{user}/permission"),
            )
            .await?;
            let role = if p.role_name.is_empty() {
                p.permission.clone()
            } else {
                p.role_name.clone()
            };
            if matches!(p.permission.as_str(), "admin" | "write")
                || matches!(role.as_str(), "admin" | "maintain" | "write")
            {
                return Ok(Some(KillSwitch {
                    issue: issue.number,
                    labelled_by: user,
                    permission: role,
                }));
            }
            tracing::warn!(
                repo,
                issue = issue.number,
                user,
                permission = p.permission,
                "kill-switch label applied by a user without write permission: ignored"
            );
        }
        Ok(None)
    }

    /// A workflow file name for `name`: a file name (`trunk.yml`) is taken as it is; a display
    /// name (`trunk`) is looked up among the repository's *active* workflows (a deleted
    /// workflow with the same display name once blocked PyTorch's dispatches, test-infra#7617).
    pub async fn resolve_workflow(&self, repo: &str, name: &str) -> Result<String> {
        if name.ends_with(".yml") || name.ends_with(".yaml") {
            return Ok(name.to_string());
        }
        #[derive(Deserialize)]
        struct Wf {
            name: String,
            path: String,
            state: String,
        }
        #[derive(Deserialize)]
        struct Wfs {
            workflows: Vec<Wf>,
        }
        let client = self.client_for(repo, None).await?;
        let list: Wfs = get_json(
            &client,
            &format!("/repos/{repo}/actions/workflows?per_page=100"),
        )
        .await?;
        let active: Vec<&Wf> = list
            .workflows
            .iter()
            .filter(|w| w.name == name && w.state == "active")
            .collect();
        match active.as_slice() {
            [one] => Ok(crate::decide::workflow_file(&one.path).to_string()),
            [] => bail!("{repo} has no active workflow named {name:?}"),
            many => bail!(
                "{repo} has {} active workflows named {name:?}; name the file instead",
                many.len()
            ),
        }
    }

    /// Whether the workflow file at `git_ref` declares `workflow_dispatch`, and its inputs.
    pub async fn workflow_inputs(
        &self,
        repo: &str,
        workflow_file: &str,
        git_ref: &str,
        installation: Option<u64>,
    ) -> Result<Option<Vec<String>>> {
        #[derive(Deserialize)]
        struct Content {
            content: String,
        }
        let client = self.client_for(repo, installation).await?;
        let route = format!(
            "/repos/{repo}/contents/.github/workflows/{workflow_file}?ref={}",
            url_escape(git_ref)
        );
        let c: Content = get_json(&client, &route).await?;
        let raw: String = c.content.split_whitespace().collect();
        let text = base64_decode(&raw).context("workflow file content is not base64")?;
        Ok(crate::workflow_file::dispatch_inputs(&text))
    }
}

async fn post_once(client: &Octocrab, route: &str, body: &serde_json::Value) -> DispatchResult {
    let resp = match client._post(route, Some(body)).await {
        Ok(r) => r,
        Err(e) => {
            return DispatchResult::Unknown {
                reason: format!("no answer from GitHub: {}", error_chain(&e)),
            };
        }
    };
    let status = resp.status();
    let text = match client.body_to_string(resp).await {
        Ok(t) => t,
        Err(e) if status.is_success() => {
            return DispatchResult::Unknown {
                reason: format!("GitHub answered {status} but the body was lost: {e}"),
            };
        }
        Err(_) => String::new(),
    };
    match status {
        StatusCode::NO_CONTENT => DispatchResult::Accepted,
        s if s.is_success() => match serde_json::from_str::<DispatchDetails>(&text) {
            Ok(d) => DispatchResult::Created {
                run_id: d.workflow_run_id,
                html_url: d.html_url,
            },
            Err(_) => DispatchResult::Accepted,
        },
        s if s.is_client_error() => DispatchResult::Rejected {
            status: s.as_u16(),
            message: github_message(&text),
        },
        s => DispatchResult::Unknown {
            reason: format!("GitHub answered {s}: {}", github_message(&text)),
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// How long to wait before retrying a read, from GitHub's rate-limit headers.
fn rate_limit_wait(headers: &http::HeaderMap, attempt: u32) -> Duration {
    let num = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    if let Some(secs) = num("retry-after") {
        return Duration::from_secs(secs.clamp(0, 120) as u64);
    }
    if num("x-ratelimit-remaining") == Some(0)
        && let Some(reset) = num("x-ratelimit-reset")
    {
        let wait = reset - chrono::Utc::now().timestamp();
        return Duration::from_secs(wait.clamp(1, 120) as u64);
    }
    Duration::from_millis(500 * 2u64.pow(attempt))
}

/// GET with the one retry layer for reads: 5xx, transport errors and rate limits
/// (403/429 with rate-limit headers) are retried up to 3 times.
async fn get_json<T: DeserializeOwned>(client: &Octocrab, route: &str) -> Result<T> {
    get_page(client, route).await.map(|(v, _)| v)
}

/// The `cursor` of the `rel="next"` link in GitHub's `Link` header, if any.
fn next_cursor(headers: &http::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',')
        .find(|part| part.contains("rel=\"next\""))
        .and_then(|part| part.split(['<', '>']).nth(1))
        .and_then(|url| url::Url::parse(url).ok())
        .and_then(|url| {
            url.query_pairs()
                .find(|(k, _)| k == "cursor")
                .map(|(_, v)| v.into_owned())
        })
}

/// `get_json`, also giving the next page's cursor.
async fn get_page<T: DeserializeOwned>(
    client: &Octocrab,
    route: &str,
) -> Result<(T, Option<String>)> {
    let mut attempt = 0;
    loop {
        let resp = client._get(route).await;
        let (status, headers, text) = match resp {
            Ok(r) => {
                let status = r.status();
                let headers = r.headers().clone();
                let text = client.body_to_string(r).await.unwrap_or_default();
                (Some(status), headers, text)
            }
            Err(e) => (None, http::HeaderMap::new(), error_chain(&e)),
        };
        let limited = matches!(
            status,
            Some(StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS)
        ) && (headers.contains_key("retry-after")
            || headers
                .get("x-ratelimit-remaining")
                .is_some_and(|v| v.as_bytes() == b"0"));
        match status {
            Some(s) if s.is_success() => {
                let value = serde_json::from_str(&text)
                    .with_context(|| format!("GET {route}: unexpected answer from GitHub"))?;
                return Ok((value, next_cursor(&headers)));
            }
            Some(s) if s.is_client_error() && !limited => {
                bail!(
                    "GET {route}: GitHub answered {s}: {}",
                    github_message(&text)
                )
            }
            _ if attempt >= 3 => {
                return Err(anyhow!(
                    "GET {route}: gave up after {} attempts: {}",
                    attempt + 1,
                    status.map(|s| s.to_string()).unwrap_or(text)
                ));
            }
            _ => {
                let wait = rate_limit_wait(&headers, attempt);
                tracing::warn!(
                    route,
                    ?status,
                    wait_ms = wait.as_millis() as u64,
                    "retrying GitHub read"
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

fn url_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn base64_decode(s: &str) -> Result<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s)?;
    String::from_utf8(bytes).context("workflow file is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_body_asks_for_run_details() {
        let req = DispatchRequest {
            repo: "pytorch/pytorch".into(),
            workflow_file: "trunk.yml".into(),
            git_ref: "trunk/abc".into(),
            inputs: None,
        };
        assert_eq!(
            req.body(true),
            serde_json::json!({"ref": "trunk/abc", "return_run_details": true})
        );
        assert_eq!(
            req.route(),
            "/repos/pytorch/pytorch/actions/workflows/trunk.yml/dispatches"
        );
    }

    #[test]
    fn github_message_is_extracted() {
        assert_eq!(
            github_message(r#"{"message":"No ref found for: trunk/x","status":"422"}"#),
            "No ref found for: trunk/x"
        );
        assert_eq!(github_message("oops"), "oops");
    }

    #[test]
    fn base64_roundtrip() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), "hello");
    }
}

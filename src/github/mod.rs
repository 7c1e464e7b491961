//! GitHub: the client (App JWT -> installation tokens, one client per installation) and
//! what the App asks of the REST API: `dispatch` (the dispatch protocol), `actions` (runs,
//! jobs, workflows), `check_runs` (the evidence on the commit), `kill_switch`, `hooks` (the
//! App's webhook deliveries), over `transport` (GET and idempotent PATCH with the one retry
//! layer), and `app_info` (the App, its installations and the manifest flow's code
//! exchange, for `doctor` and the setup pages).
//!
//! octocrab is built without its `retry` feature, so nothing below retries a request by
//! itself. Two kinds of resend exist, both safe by construction:
//! * after a 401, octocrab clears the cached installation token and sends once more with a
//!   fresh one; GitHub rejected the first attempt before acting on it;
//! * `get_json` retries reads (GET) on 5xx, transport errors and rate limits, and
//!   `patch_json` updates that set absolute values (a check run's PATCH) by the same rule.
//!
//! Every answer's `Date` header is noted (`clock`): times compared with GitHub's are
//! corrected by the offset between its clock and ours.
//!
//! The dispatch POST is never retried here: an unknown outcome (5xx, timeout) is reported
//! as such, and the caller lists the runs on `trunk/{sha}` before sending anything again.
//! A check run's create POST likewise: the caller looks it up by its external id first.

pub mod actions;
pub mod app_info;
pub mod check_runs;
pub mod clock;
pub mod comments;
pub mod dispatch;
pub mod health;
pub mod hooks;
pub mod kill_switch;
mod transport;
pub mod workflow_file;

pub use check_runs::{CheckRunCreated, CheckRunRef, CheckRunRequest};
pub use dispatch::{DispatchRequest, DispatchResult};
pub use hooks::HookDelivery;
pub use kill_switch::KillSwitch;

use anyhow::{Context, Result, anyhow};
use octocrab::Octocrab;
use octocrab::models::{AppId, InstallationId};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use transport::{Client, error_chain};
use url::Url;

/// How the App authenticates to GitHub.
#[derive(Clone)]
pub enum GitHubAuth {
    App {
        app_id: u64,
        key: jsonwebtoken::EncodingKey,
    },
    Token(SecretString),
}

#[derive(Clone)]
pub struct GitHubConfig {
    pub api_url: Url,
    pub auth: GitHubAuth,
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct GitHub {
    base: Arc<Octocrab>,
    is_app: bool,
    installations: Arc<Mutex<HashMap<u64, Arc<Octocrab>>>>,
    /// Held while a token is looked up, so concurrent first requests fetch one token.
    token_lock: Arc<tokio::sync::Mutex<()>>,
    repo_installations: Arc<Mutex<HashMap<String, u64>>>,
    /// GitHub's clock, from the `Date` header of every answer.
    clock: Arc<clock::Clock>,
    /// How GitHub has been answering (`/healthz`, `/metrics`).
    health: Arc<health::Health>,
    /// Workflow files parsed, by (path, blob sha).
    workflow_files: Arc<workflow_file::ParsedFiles>,
}

#[derive(Deserialize)]
struct InstallationRef {
    id: u64,
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
            clock: Default::default(),
            health: Default::default(),
            workflow_files: Default::default(),
        })
    }

    /// Whether this client authenticates as a GitHub App (App-level endpoints need it).
    pub fn is_app(&self) -> bool {
        self.is_app
    }

    /// GitHub's time minus ours, from the latest answer's `Date` header (zero before any).
    pub fn clock_offset(&self) -> chrono::Duration {
        self.clock.offset()
    }

    /// How GitHub has been answering: the last call, the last success and error, the rate
    /// limit left per credential.
    pub fn status(&self) -> health::GitHubStatus {
        self.health.snapshot()
    }

    /// The offset, once any answer carried a `Date` header (`None` before).
    pub fn observed_clock_offset(&self) -> Option<chrono::Duration> {
        self.clock.observed()
    }

    /// The client acting as the App itself (App JWT) or with the token.
    fn app_client(&self) -> Client {
        let auth = if self.is_app {
            health::Auth::App
        } else {
            health::Auth::Token
        };
        Client::new(
            self.base.clone(),
            self.clock.clone(),
            self.health.clone(),
            auth,
        )
    }

    /// The client acting as an installation. One client per installation is kept behind an
    /// `Arc`: octocrab caches the token inside it (until 30 s before `expires_at`), and its
    /// `Clone` copies that cache by value, so a clone would fetch and refresh a token of its own.
    async fn client_for(&self, repo: &str, installation: Option<u64>) -> Result<Client> {
        if !self.is_app {
            return Ok(self.app_client());
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
        if let Err(e) = client.installation_token().await {
            let route = format!("/app/installations/{id}/access_tokens");
            let status = match &e {
                octocrab::Error::GitHub { source, .. } => Some(source.status_code),
                _ => None,
            };
            let error = format!(
                "could not get an installation token for installation {id}: {}",
                error_chain(&e)
            );
            self.health.finished(&route, status, Some(error.clone()));
            return Err(anyhow!(error));
        }
        let (clock, health) = (self.clock.clone(), self.health.clone());
        Ok(Client::new(
            client,
            clock,
            health,
            health::Auth::Installation,
        ))
    }

    /// `GET /repos/{owner}/{repo}/installation` (App JWT), cached per repository.
    pub async fn installation_of(&self, repo: &str) -> Result<u64> {
        if let Some(id) = self.repo_installations.lock().expect("lock").get(repo) {
            return Ok(*id);
        }
        let inst: InstallationRef = self
            .app_client()
            .get_json(&format!("/repos/{repo}/installation"))
            .await
            .with_context(|| format!("the App is not installed on {repo}"))?;
        self.repo_installations
            .lock()
            .expect("lock")
            .insert(repo.to_string(), inst.id);
        Ok(inst.id)
    }
}

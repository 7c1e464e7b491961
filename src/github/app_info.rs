//! The App itself, as GitHub knows it: `GET /app` and its installations (App JWT), what an
//! installation must grant and why, the commits and `trunk/<sha>` tags of a repository (for
//! `autorevert doctor`), and the manifest flow's code exchange
//! (`POST /app-manifests/{code}/conversions`, unauthenticated, for the setup pages).

use super::GitHub;
use super::transport::{error_chain, github_message, url_escape};
use anyhow::{Context, Result, anyhow, bail};
use octocrab::Octocrab;
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use url::Url;

/// What each installation must grant (app-manifest.yml `default_permissions`); why each
/// is needed: `needed_for`.
pub const NEEDED_PERMISSIONS: [(&str, &str); 6] = [
    ("actions", "write"),
    ("checks", "write"),
    ("contents", "read"),
    ("issues", "write"),
    ("metadata", "read"),
    ("pull_requests", "write"),
];

/// Pages of 100 installations read at most (10,000 installations).
pub const MAX_INSTALLATION_PAGES: u32 = 100;

/// The events the App acts on (app-manifest.yml `default_events`).
pub const NEEDED_EVENTS: [&str; 3] = ["workflow_run", "workflow_job", "push"];

/// What the App does with a permission or an event, for a maintainer reading what is
/// missing.
pub fn needed_for(name: &str) -> &'static str {
    match name {
        "actions" => "dispatch restarts and read their runs and jobs",
        "checks" => "the `autorevert` check run with the evidence on the commit",
        "contents" => "read workflow files at trunk/<sha>; receive push events",
        "issues" => {
            "read the kill-switch issues; post the notify comments on the tracking issue \
             (NOTIFY_ISSUE)"
        }
        "metadata" => "every App has it",
        "pull_requests" => {
            "find the breaking commit's PR, read its labels and post the `@pytorchbot revert` \
             comment on it"
        }
        "workflow_run" => "a failed trunk run: what starts a restart",
        "workflow_job" => "each job's result: the restarts' verdicts and the signals",
        "push" => {
            "the order of main's commits (a ghstack push lands several at once), which \
             every signal and decision is built on"
        }
        _ => "",
    }
}

/// `name: level` for each needed permission `granted` lacks (or grants below the level
/// needed).
fn missing_permissions(granted: &BTreeMap<String, String>) -> Vec<String> {
    let rank = |level: &str| match level {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        _ => 0,
    };
    NEEDED_PERMISSIONS
        .iter()
        .filter(|(name, level)| granted.get(*name).map_or(0, |l| rank(l)) < rank(level))
        .map(|(name, level)| format!("{name}: {level}"))
        .collect()
}

/// The needed events `subscribed` lacks.
fn missing_events(subscribed: &[String]) -> Vec<&'static str> {
    NEEDED_EVENTS
        .into_iter()
        .filter(|e| !subscribed.iter().any(|x| x == e))
        .collect()
}

#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub login: String,
}

/// `GET /app`: the App the JWT is signed for.
#[derive(Debug, Clone, Deserialize)]
pub struct AppInfo {
    pub id: u64,
    #[serde(default)]
    pub slug: Option<String>,
    pub name: String,
    #[serde(default)]
    pub owner: Option<Account>,
    pub html_url: String,
    /// What the App asks of every installation (its settings, Permissions & events).
    #[serde(default)]
    pub permissions: BTreeMap<String, String>,
    #[serde(default)]
    pub events: Vec<String>,
}

impl AppInfo {
    /// The needed permissions the App itself does not ask for, as `name: level`.
    pub fn missing_permissions(&self) -> Vec<String> {
        missing_permissions(&self.permissions)
    }

    /// The needed events the App itself is not subscribed to.
    pub fn missing_events(&self) -> Vec<&'static str> {
        missing_events(&self.events)
    }

    /// Where an owner installs the App (`https://github.com/apps/{slug}/installations/new`).
    pub fn install_url(&self) -> String {
        format!("{}/installations/new", self.html_url.trim_end_matches('/'))
    }
}

/// An installation of the App (`GET /app/installations`, `GET /repos/{repo}/installation`).
#[derive(Debug, Clone, Deserialize)]
pub struct Installation {
    pub id: u64,
    #[serde(default)]
    pub account: Option<Account>,
    /// `all` or `selected` repositories.
    #[serde(default)]
    pub repository_selection: Option<String>,
    /// Permission name -> `read`, `write` or `admin`.
    #[serde(default)]
    pub permissions: BTreeMap<String, String>,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub suspended_at: Option<String>,
}

impl Installation {
    pub fn account_login(&self) -> &str {
        self.account.as_ref().map_or("?", |a| a.login.as_str())
    }

    /// The needed permissions this installation does not grant (or grants below the level
    /// needed), as `name: level`.
    pub fn missing_permissions(&self) -> Vec<String> {
        missing_permissions(&self.permissions)
    }

    /// The needed events this installation is not subscribed to.
    pub fn missing_events(&self) -> Vec<&'static str> {
        missing_events(&self.events)
    }
}

#[derive(Deserialize)]
struct CommitRef {
    sha: String,
}

impl GitHub {
    /// `GET /app` (App JWT): the App the private key and App id identify.
    pub async fn app(&self) -> Result<AppInfo> {
        self.app_client().get_json("/app").await
    }

    /// `GET /app/installations` (App JWT): every page, following `Link: rel="next"`, up to
    /// `MAX_INSTALLATION_PAGES` (more is an error: the list was not read to the end).
    pub async fn installations(&self) -> Result<Vec<Installation>> {
        self.app_client()
            .get_all("/app/installations?per_page=100", MAX_INSTALLATION_PAGES)
            .await
    }

    /// `GET /repos/{repo}/installation` (App JWT); `None` when the App is not installed on
    /// the repository (or the installation does not include it).
    pub async fn repo_installation(&self, repo: &str) -> Result<Option<Installation>> {
        self.app_client()
            .get_optional(&format!("/repos/{repo}/installation"))
            .await
    }

    /// The newest commit on `branch` (`GET /repos/{repo}/commits?per_page=1&sha=…`).
    pub async fn latest_commit(&self, repo: &str, branch: &str) -> Result<Option<String>> {
        let client = self.client_for(repo, None).await?;
        let route = format!(
            "/repos/{repo}/commits?per_page=1&sha={}",
            url_escape(branch)
        );
        let commits: Vec<CommitRef> = client.get_json(&route).await?;
        Ok(commits.into_iter().next().map(|c| c.sha))
    }

    /// Whether the tag `trunk/{sha}` exists (`GET /repos/{repo}/git/ref/tags/trunk/{sha}`).
    pub async fn trunk_tag_exists(&self, repo: &str, sha: &str) -> Result<bool> {
        let client = self.client_for(repo, None).await?;
        let route = format!("/repos/{repo}/git/ref/tags/trunk/{sha}");
        let found: Option<serde_json::Value> = client.get_optional(&route).await?;
        Ok(found.is_some())
    }
}

/// What GitHub hands over once, when a manifest's code is exchanged.
pub struct NewApp {
    pub id: u64,
    pub slug: Option<String>,
    pub name: String,
    pub html_url: String,
    pub owner: Option<String>,
    /// The App's private key (PEM).
    pub pem: SecretString,
    /// GitHub generates one for every App made from a manifest with a webhook.
    pub webhook_secret: Option<SecretString>,
}

#[derive(Deserialize)]
struct Conversion {
    id: u64,
    #[serde(default)]
    slug: Option<String>,
    name: String,
    html_url: String,
    #[serde(default)]
    owner: Option<Account>,
    pem: String,
    #[serde(default)]
    webhook_secret: Option<String>,
}

/// `POST /app-manifests/{code}/conversions` (no authentication): the App GitHub registered
/// from the manifest, with its private key and webhook secret. A code works once, within
/// an hour. Sent once: a code GitHub may have spent is not sent again.
pub async fn convert_manifest(api_url: &Url, timeout: Duration, code: &str) -> Result<NewApp> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let only_dots = code.chars().all(|c| c == '.');
    if only_dots || code.len() > 200 || !code.chars().all(plain) {
        bail!("the code GitHub sent back is not a manifest code");
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Octocrab::builder()
        .base_uri(api_url.as_str())
        .context("GITHUB_API_URL is not usable as a base URI")?
        .set_connect_timeout(Some(timeout))
        .set_read_timeout(Some(timeout))
        .set_write_timeout(Some(timeout))
        .build()
        .context("building the GitHub client")?;
    let route = format!("/app-manifests/{code}/conversions");
    let resp = client
        ._post(route.as_str(), None::<&()>)
        .await
        .map_err(|e| anyhow!("POST /app-manifests/…/conversions: {}", error_chain(&e)))?;
    let status = resp.status();
    let text = client.body_to_string(resp).await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "POST /app-manifests/…/conversions: GitHub answered {status}: {}",
            github_message(&text)
        );
    }
    // The body holds the private key: it is never quoted in an error.
    let c: Conversion = serde_json::from_str(&text)
        .map_err(|e| anyhow!("GitHub's answer to the code exchange is not an App: {e}"))?;
    Ok(NewApp {
        id: c.id,
        slug: c.slug,
        name: c.name,
        html_url: c.html_url,
        owner: c.owner.map(|o| o.login),
        pem: SecretString::from(c.pem),
        webhook_secret: c.webhook_secret.map(SecretString::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installation(perms: &[(&str, &str)]) -> Installation {
        Installation {
            id: 1,
            account: None,
            repository_selection: None,
            permissions: perms
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            events: vec!["workflow_run".into()],
            suspended_at: None,
        }
    }

    #[test]
    fn permissions_at_or_above_the_needed_level_count() {
        let all = installation(&[
            ("actions", "write"),
            ("contents", "write"),
            ("issues", "write"),
            ("metadata", "read"),
            ("checks", "write"),
            ("pull_requests", "admin"),
        ]);
        assert!(all.missing_permissions().is_empty());
        let some = installation(&[
            ("actions", "read"),
            ("metadata", "read"),
            ("issues", "read"),
        ]);
        assert_eq!(
            some.missing_permissions(),
            vec![
                "actions: write",
                "checks: write",
                "contents: read",
                "issues: write",
                "pull_requests: write"
            ]
        );
        assert_eq!(some.missing_events(), vec!["workflow_job", "push"]);
        for (name, _) in NEEDED_PERMISSIONS {
            assert!(!needed_for(name).is_empty(), "{name}");
        }
        for name in NEEDED_EVENTS {
            assert!(!needed_for(name).is_empty(), "{name}");
        }
    }

    #[test]
    fn a_code_is_checked_before_it_goes_into_a_path() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = Url::parse("http://127.0.0.1:9").unwrap();
        for code in ["../app", "..", "", "a/b", "a?b"] {
            let e = rt
                .block_on(convert_manifest(&url, Duration::from_secs(1), code))
                .err()
                .unwrap();
            assert!(e.to_string().contains("not a manifest code"), "{e}");
        }
    }
}

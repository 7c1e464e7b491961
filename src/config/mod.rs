//! Configuration from flags and environment (every flag has an `env`), validated once at
//! start-up into typed values. A bad value stops start-up with one line that names the
//! variable and what is wrong with it. Secrets are `SecretString` and are never logged.

mod connections;
mod decide;
mod setup;
mod values;

pub use connections::ConnectionArgs;
pub use decide::DecideArgs;
use values::{check_identifier, parse_http_url};

use crate::github::{GitHubAuth, GitHubConfig};
use crate::restart::{Policy, RestartAction};
use crate::server::Limits;
use crate::store::{ClickHouseConfig, Tables};
use anyhow::{Context, Result, bail};
use clap::Args;
use secrecy::SecretString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Clone)]
pub struct GitHubArgs {
    /// GitHub App id (App authentication; needs the private key too).
    #[arg(long, env = "GITHUB_APP_ID")]
    pub github_app_id: Option<u64>,
    /// The App's private key, PEM text.
    #[arg(long, env = "GITHUB_APP_PRIVATE_KEY", hide_env_values = true)]
    pub github_app_private_key: Option<String>,
    /// A file holding the App's private key (PEM).
    #[arg(long, env = "GITHUB_APP_PRIVATE_KEY_PATH")]
    pub github_app_private_key_path: Option<PathBuf>,
    /// A token instead of App authentication (for the CLI).
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<String>,
    /// REST API base URL (GitHub Enterprise Server, tests).
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api_url: String,
    /// Connect and read timeout of GitHub requests, seconds.
    #[arg(long, env = "GITHUB_TIMEOUT_SECS", default_value_t = 10)]
    pub github_timeout_secs: u64,
}

#[derive(Args, Clone)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP(S) URL, e.g. http://127.0.0.1:8123. Wins over CLICKHOUSE_HOST/PORT.
    #[arg(long, env = "CLICKHOUSE_URL")]
    pub clickhouse_url: Option<String>,
    /// ClickHouse host (PyTorch's variables); HTTPS when the port is 8443 or 443.
    #[arg(long, env = "CLICKHOUSE_HOST")]
    pub clickhouse_host: Option<String>,
    #[arg(long, env = "CLICKHOUSE_PORT", default_value_t = 8443)]
    pub clickhouse_port: u16,
    #[arg(long, env = "CLICKHOUSE_USER", alias = "clickhouse-username")]
    pub clickhouse_user: Option<String>,
    #[arg(long, env = "CLICKHOUSE_PASSWORD", hide_env_values = true)]
    pub clickhouse_password: Option<String>,
    /// Database of the App's own tables.
    #[arg(long, env = "CLICKHOUSE_DATABASE", default_value = "autorevert")]
    pub clickhouse_database: String,
    /// PyTorch's job table (read to confirm restarts).
    #[arg(
        long,
        env = "CLICKHOUSE_JOB_TABLE",
        default_value = "default.workflow_job"
    )]
    pub job_table: String,
    /// PyTorch's run table (source of `workflow_event`).
    #[arg(
        long,
        env = "CLICKHOUSE_RUN_TABLE",
        default_value = "default.workflow_run"
    )]
    pub run_table: String,
    /// PyTorch's sha -> (id, run_id) index view.
    #[arg(
        long,
        env = "CLICKHOUSE_JOB_BY_SHA_TABLE",
        default_value = "materialized_views.workflow_job_by_head_sha"
    )]
    pub job_by_sha_table: String,
    /// PyTorch's per-test results (the failing tests of a job: a restart's test filter).
    #[arg(
        long,
        env = "CLICKHOUSE_TESTS_TABLE",
        default_value = "tests.all_test_runs"
    )]
    pub tests_table: String,
    /// Longest wait for one ClickHouse query or INSERT, seconds. A server that stops
    /// answering (a network partition drops packets) would otherwise hold the caller for as
    /// long as TCP keepalive takes: many minutes.
    #[arg(long, env = "CLICKHOUSE_TIMEOUT_SECS", default_value_t = 30)]
    pub clickhouse_timeout_secs: u64,
    /// Write received runs and jobs into the workflow_run/workflow_job mirror.
    /// Default: on for a ClickHouse on loopback, off otherwise (never write PyTorch's tables).
    #[arg(long, env = "AUTOREVERT_INGEST")]
    pub ingest: Option<bool>,
}

#[derive(Args, Clone)]
pub struct PolicyArgs {
    /// Repositories the App acts on, comma-separated.
    #[arg(long, env = "AUTOREVERT_REPOS", default_value = "pytorch/pytorch")]
    pub repos: List,
    /// Workflow display names to watch, comma-separated
    /// (PyTorch's list: Lint,trunk,pull,inductor,linux-aarch64,slow).
    #[arg(long, env = "AUTOREVERT_WORKFLOWS", default_value = "trunk")]
    pub workflows: List,
    /// run = dispatch; log = record as dry-run, no POST; skip = record the decision only.
    #[arg(long, env = "RESTART_ACTION", default_value = "run")]
    pub restart_action: RestartAction,
    /// Restarts allowed per (repository, workflow, sha).
    #[arg(long, env = "AUTOREVERT_MAX_RESTARTS", default_value_t = 1)]
    pub max_restarts: u32,
    /// The branch whose failed push runs are restarted.
    #[arg(long, env = "AUTOREVERT_MAIN_BRANCH", default_value = "main")]
    pub main_branch: String,
    /// Minimum minutes between two restarts of one (repository, workflow, sha).
    #[arg(long, env = "AUTOREVERT_MIN_SPACING_MINS", default_value_t = 20)]
    pub min_spacing_mins: i64,
    /// Backoff after failed dispatches: base minutes, doubled per failure, up to the max.
    #[arg(long, env = "AUTOREVERT_BACKOFF_BASE_MINS", default_value_t = 20)]
    pub backoff_base_mins: i64,
    #[arg(long, env = "AUTOREVERT_BACKOFF_MAX_MINS", default_value_t = 60)]
    pub backoff_max_mins: i64,
    /// Restarts per hour across all repositories and commits, before new ones wait.
    #[arg(long, env = "AUTOREVERT_MAX_RESTARTS_PER_HOUR", default_value_t = 30)]
    pub max_restarts_per_hour: u32,
    /// An open issue with this label, applied by a user with write permission or more, stops
    /// all restarts. Empty: no kill switch.
    #[arg(
        long,
        env = "KILL_SWITCH_LABEL",
        default_value = "ci: disable-autorevert"
    )]
    pub kill_switch_label: String,
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Address the App listens on.
    #[arg(long = "listen", env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: String,
    /// Webhook secret(s), comma-separated: during a rotation both the old and the new one verify.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// How long a restart may take to become visible in ClickHouse before it is recorded
    /// as unconfirmed, seconds (PyTorch's ingestion lags by minutes).
    #[arg(long, env = "CONFIRM_WINDOW_SECS", default_value_t = 1800)]
    pub confirm_window_secs: u64,
    /// First wait between confirmation queries, milliseconds (doubles up to 60 s).
    #[arg(long, env = "CONFIRM_BACKOFF_MS", default_value_t = 500)]
    pub confirm_backoff_ms: u64,
    /// Wait after an unknown dispatch outcome (5xx, timeout) before listing runs, milliseconds.
    #[arg(long, env = "DISPATCH_LOOKUP_DELAY_MS", default_value_t = 5000)]
    pub dispatch_lookup_delay_ms: u64,
    /// Deliveries waiting to be processed (the work queue).
    #[arg(long, env = "QUEUE_CAPACITY", default_value_t = 4096)]
    pub queue_capacity: usize,
    /// How long a delivery waits for room in a full work queue before intake answers 503,
    /// milliseconds (at most 8000: GitHub gives up after 10 s).
    #[arg(long, env = "QUEUE_WAIT_MS", default_value_t = 2000)]
    pub queue_wait_ms: u64,
    /// Parallel workers; deliveries of one commit always go to the same worker.
    #[arg(long, env = "WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// Reconcile with GitHub's API every this many seconds (0: never): failed runs whose
    /// webhook was missed, restarts whose follow-ups were missed.
    #[arg(long, env = "RECONCILE_SECS", default_value_t = 600)]
    pub reconcile_secs: u64,
    /// How far back the reconciler looks for failed runs, hours.
    #[arg(long, env = "RECONCILE_LOOKBACK_HOURS", default_value_t = 6)]
    pub reconcile_lookback_hours: u64,
    /// Ask GitHub to redeliver failed deliveries every this many seconds (0: never; App auth).
    #[arg(long, env = "REDELIVER_SECS", default_value_t = 300)]
    pub redeliver_secs: u64,
    /// Redeliveries asked for per sweep, at most.
    #[arg(long, env = "REDELIVER_MAX_PER_PASS", default_value_t = 50)]
    pub redeliver_max_per_pass: usize,
    /// How long a kill-switch lookup is trusted, seconds.
    #[arg(long, env = "KILL_SWITCH_TTL_SECS", default_value_t = 60)]
    pub kill_switch_ttl_secs: u64,
    /// Directory of the delivery log (deliveries are on disk here before they are answered).
    #[arg(long, env = "SPOOL_DIR", default_value = "autorevert-spool")]
    pub spool_dir: PathBuf,
    /// This server's address as GitHub reaches it, e.g. https://autorevert.example.org
    /// (setup mode: the manifest's homepage, webhook and callback URLs).
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Setup mode: the file the registered App's id, private key and webhook secret go to.
    #[arg(long, env = "SETUP_CREDENTIALS_FILE")]
    pub setup_credentials_file: Option<PathBuf>,
    #[command(flatten)]
    pub connections: ConnectionArgs,
    #[command(flatten)]
    pub decide: DecideArgs,
}

impl GitHubArgs {
    /// `Ok(None)` when no credentials are configured at all.
    pub fn validate(&self) -> Result<Option<GitHubConfig>> {
        let api_url = parse_http_url("GITHUB_API_URL", &self.github_api_url)?;
        let pem = match (
            &self.github_app_private_key,
            &self.github_app_private_key_path,
        ) {
            (Some(_), Some(_)) => {
                bail!("set only one of GITHUB_APP_PRIVATE_KEY and GITHUB_APP_PRIVATE_KEY_PATH")
            }
            (Some(text), None) => Some(text.replace("\\n", "\n")),
            (None, Some(path)) => Some(std::fs::read_to_string(path).with_context(|| {
                format!(
                    "GITHUB_APP_PRIVATE_KEY_PATH: cannot read {}",
                    path.display()
                )
            })?),
            (None, None) => None,
        };
        let auth = match (self.github_app_id, pem, &self.github_token) {
            (Some(app_id), Some(pem), _) => {
                let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
                    anyhow::anyhow!(
                        "GITHUB_APP_PRIVATE_KEY is not an RSA private key in PEM form ({e}); \
                         use the .pem file GitHub generated for the App"
                    )
                })?;
                GitHubAuth::App { app_id, key }
            }
            (Some(_), None, _) => bail!(
                "GITHUB_APP_ID is set but no private key: set GITHUB_APP_PRIVATE_KEY or \
                 GITHUB_APP_PRIVATE_KEY_PATH"
            ),
            (None, Some(_), _) => bail!("a GitHub App private key is set but GITHUB_APP_ID is not"),
            (None, None, Some(token)) if !token.trim().is_empty() => {
                GitHubAuth::Token(SecretString::from(token.trim().to_string()))
            }
            _ => return Ok(None),
        };
        if self.github_timeout_secs == 0 {
            bail!("GITHUB_TIMEOUT_SECS must be at least 1");
        }
        Ok(Some(GitHubConfig {
            api_url,
            auth,
            timeout: Duration::from_secs(self.github_timeout_secs),
        }))
    }
}

impl ClickHouseArgs {
    pub fn validate(&self) -> Result<ClickHouseConfig> {
        let url = match (&self.clickhouse_url, &self.clickhouse_host) {
            (Some(u), _) => parse_http_url("CLICKHOUSE_URL", u)?,
            (None, Some(host)) => {
                let scheme = if matches!(self.clickhouse_port, 8443 | 443) {
                    "https"
                } else {
                    "http"
                };
                parse_http_url(
                    "CLICKHOUSE_HOST",
                    &format!("{scheme}://{host}:{}", self.clickhouse_port),
                )?
            }
            (None, None) => bail!(
                "no ClickHouse configured: set CLICKHOUSE_URL (e.g. http://127.0.0.1:8123) or \
                 CLICKHOUSE_HOST; scripts/run starts a local one for you"
            ),
        };
        for (var, name) in [
            ("CLICKHOUSE_DATABASE", &self.clickhouse_database),
            ("CLICKHOUSE_JOB_TABLE", &self.job_table),
            ("CLICKHOUSE_RUN_TABLE", &self.run_table),
            ("CLICKHOUSE_JOB_BY_SHA_TABLE", &self.job_by_sha_table),
            ("CLICKHOUSE_TESTS_TABLE", &self.tests_table),
        ] {
            check_identifier(var, name)?;
        }
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        let user = self
            .clickhouse_user
            .clone()
            .or_else(|| (!url.username().is_empty()).then(|| url.username().to_string()));
        let password = self
            .clickhouse_password
            .clone()
            .or_else(|| url.password().map(str::to_string))
            .map(SecretString::from);
        let mut url = url;
        let _ = url.set_password(None);
        let _ = url.set_username("");
        if self.clickhouse_timeout_secs == 0 {
            bail!("CLICKHOUSE_TIMEOUT_SECS must be at least 1");
        }
        Ok(ClickHouseConfig {
            url,
            user,
            password,
            tables: Tables {
                database: self.clickhouse_database.clone(),
                job: self.job_table.clone(),
                run: self.run_table.clone(),
                job_by_sha: self.job_by_sha_table.clone(),
                tests: self.tests_table.clone(),
            },
            ingest: self.ingest.unwrap_or(loopback),
            timeout: Duration::from_secs(self.clickhouse_timeout_secs),
        })
    }
}

impl PolicyArgs {
    pub fn validate(&self, ingest: bool) -> Result<Policy> {
        let repos = self.repos.0.clone();
        if repos.is_empty() {
            bail!("AUTOREVERT_REPOS is empty: name at least one owner/name");
        }
        for r in &repos {
            let mut parts = r.split('/');
            let ok = matches!((parts.next(), parts.next(), parts.next()), (Some(o), Some(n), None) if !o.is_empty() && !n.is_empty());
            if !ok {
                bail!("AUTOREVERT_REPOS: {r:?} is not owner/name");
            }
        }
        let workflows = self.workflows.0.clone();
        if workflows.is_empty() {
            bail!("AUTOREVERT_WORKFLOWS is empty: name at least one workflow (e.g. trunk)");
        }
        if self.max_restarts_per_hour == 0 {
            bail!(
                "AUTOREVERT_MAX_RESTARTS_PER_HOUR must be at least 1 (use RESTART_ACTION=skip to stop restarts)"
            );
        }
        if self.max_restarts == 0 {
            bail!(
                "AUTOREVERT_MAX_RESTARTS must be at least 1 (use RESTART_ACTION=skip to stop restarts)"
            );
        }
        Ok(Policy {
            repos,
            workflows,
            main_branch: self.main_branch.trim().to_string(),
            max_restarts: self.max_restarts,
            action: self.restart_action,
            ingest,
            min_spacing: chrono::Duration::minutes(self.min_spacing_mins.max(0)),
            backoff_base: chrono::Duration::minutes(self.backoff_base_mins.max(0)),
            backoff_max: chrono::Duration::minutes(self.backoff_max_mins.max(0)),
            max_restarts_per_hour: self.max_restarts_per_hour,
            kill_switch_label: Some(self.kill_switch_label.trim().to_string())
                .filter(|l| !l.is_empty()),
            simulate: false,
        })
    }
}

/// Longest `QUEUE_WAIT_MS`: the answer must still reach GitHub within its 10 s.
const MAX_QUEUE_WAIT_MS: u64 = 8000;

#[derive(Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub secrets: Vec<SecretString>,
    pub confirm_window: Duration,
    pub confirm_backoff: Duration,
    pub dispatch_lookup_delay: Duration,
    pub queue_capacity: usize,
    pub queue_wait: Duration,
    pub workers: usize,
    pub spool_dir: PathBuf,
    pub kill_switch_ttl: Duration,
    pub reconcile: Option<(Duration, Duration)>,
    pub redeliver: Option<(Duration, usize)>,
    /// Timeouts, connection cap (0: from the descriptor limit) and shutdown grace.
    pub limits: Limits,
    pub decide: crate::pipeline::decider::Settings,
}

impl ServeArgs {
    fn listen(&self) -> Result<SocketAddr> {
        self.listen_addr.parse().map_err(|_| {
            anyhow::anyhow!(
                "LISTEN_ADDR {:?} is not an address like 127.0.0.1:8080",
                self.listen_addr
            )
        })
    }

    pub fn validate(&self) -> Result<ServeConfig> {
        let listen = self.listen()?;
        let secrets = parse_secrets(self.webhook_secret.as_deref())?;
        if self.queue_capacity == 0 || self.workers == 0 {
            bail!("QUEUE_CAPACITY and WORKERS must be at least 1");
        }
        if self.queue_wait_ms > MAX_QUEUE_WAIT_MS {
            bail!(
                "QUEUE_WAIT_MS={} is too long: GitHub waits 10 s for an answer; at most {MAX_QUEUE_WAIT_MS}",
                self.queue_wait_ms
            );
        }
        let limits = self.connections.validate()?;
        Ok(ServeConfig {
            decide: self.decide.validate()?,
            listen,
            limits,
            secrets,
            confirm_window: Duration::from_secs(self.confirm_window_secs),
            confirm_backoff: Duration::from_millis(self.confirm_backoff_ms.max(1)),
            dispatch_lookup_delay: Duration::from_millis(self.dispatch_lookup_delay_ms),
            queue_capacity: self.queue_capacity,
            queue_wait: Duration::from_millis(self.queue_wait_ms),
            workers: self.workers,
            spool_dir: self.spool_dir.clone(),
            kill_switch_ttl: Duration::from_secs(self.kill_switch_ttl_secs),
            redeliver: (self.redeliver_secs > 0).then(|| {
                (
                    Duration::from_secs(self.redeliver_secs),
                    self.redeliver_max_per_pass,
                )
            }),
            reconcile: (self.reconcile_secs > 0).then(|| {
                (
                    Duration::from_secs(self.reconcile_secs),
                    Duration::from_secs(self.reconcile_lookback_hours.max(1) * 3600),
                )
            }),
        })
    }
}

/// `WEBHOOK_SECRET`: one secret or a comma-separated list (rotation). Every entry must be usable.
pub fn parse_secrets(raw: Option<&str>) -> Result<Vec<SecretString>> {
    let raw = raw.unwrap_or("");
    if raw.trim().is_empty() {
        bail!("WEBHOOK_SECRET is not set: the App verifies every delivery with it");
    }
    let mut out = Vec::new();
    for (i, s) in raw.split(',').enumerate() {
        let s = s.trim();
        if s.is_empty() {
            bail!(
                "WEBHOOK_SECRET entry {} is empty (check for a stray comma)",
                i + 1
            );
        }
        out.push(SecretString::from(s.to_string()));
    }
    Ok(out)
}

/// A comma-separated list: entries trimmed, empty ones dropped.
#[derive(Debug, Clone)]
pub struct List(pub Vec<String>);

impl std::str::FromStr for List {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<List, Self::Err> {
        let items = s.split(',').map(str::trim).filter(|s| !s.is_empty());
        Ok(List(items.map(str::to_string).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_list_rejects_empty_entries() {
        assert_eq!(parse_secrets(Some("a,b")).unwrap().len(), 2);
        assert!(parse_secrets(Some("a,,b")).is_err());
        assert!(parse_secrets(None).is_err());
    }
}

//! The command line: `serve`, `migrate`, `restart`, `check`, `replay`, `redeliver`,
//! `doctor`, `healthcheck`, `simulate`, `signals`.

mod check;
mod doctor;
mod healthcheck;
mod redeliver;
mod replay;
mod restart;
mod serve;
mod signals;
mod simulate;

use crate::config::{ClickHouseArgs, GitHubArgs, PolicyArgs, ServeArgs};
use crate::store::Store;
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "autorevert",
    version,
    about = "Restarts failed PyTorch trunk runs and records the evidence in ClickHouse"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// What the App itself is configured with: GitHub, ClickHouse and the policy (`serve` and
/// `doctor` read the same settings).
#[derive(clap::Args)]
struct AppArgs {
    #[command(flatten)]
    github: GitHubArgs,
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    #[command(flatten)]
    policy: PolicyArgs,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up; boxing buys nothing
enum Cmd {
    /// Run the GitHub App (webhook server).
    Serve {
        #[command(flatten)]
        serve: ServeArgs,
        #[command(flatten)]
        app: AppArgs,
    },
    /// Create or update the ClickHouse schema (and the local mirror when ingestion is on).
    Migrate {
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
    },
    /// Dispatch a workflow on trunk/<sha> by hand.
    Restart {
        /// Workflow file (trunk.yml) or display name (trunk).
        workflow: String,
        /// Commit SHA (40 hex characters).
        sha: String,
        #[arg(long, default_value = "pytorch/pytorch")]
        repo: String,
        /// Print the request without sending it.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        github: GitHubArgs,
    },
    /// Has this commit been restarted, is the restart confirmed, what was the outcome?
    /// Exit code: 0 confirmed or completed, 2 never restarted, 3 restarted but not confirmed.
    Check {
        /// Workflow display name (trunk).
        workflow: String,
        sha: String,
        #[arg(long, default_value = "pytorch/pytorch")]
        repo: String,
        /// Also report the kill switch (needs GitHub credentials).
        #[arg(
            long,
            env = "KILL_SWITCH_LABEL",
            default_value = "ci: disable-autorevert"
        )]
        kill_switch_label: String,
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
        #[command(flatten)]
        github: GitHubArgs,
    },
    /// Send payload files to a running App as GitHub would; without --url, run them through
    /// the decisions in-process (dry run) and print each decision.
    Replay {
        /// Payload files (raw bodies, or Probot envelopes {name, id, payload}).
        #[arg(required = true)]
        payloads: Vec<PathBuf>,
        /// The App's webhook URL, e.g. http://127.0.0.1:8080/webhook.
        #[arg(long)]
        url: Option<String>,
        /// X-GitHub-Event; by default taken from the file name (workflow_run.*.json) or the body.
        #[arg(long)]
        event: Option<String>,
        /// Secret to sign with (the first of WEBHOOK_SECRET).
        #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
        webhook_secret: Option<String>,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Ask GitHub to deliver webhooks to the App again: by id or GUID, or every failed
    /// delivery since a time that the App has no record of. Needs App credentials; with
    /// ClickHouse configured, deliveries the App recorded are skipped. Exit 1 when a request
    /// failed.
    Redeliver {
        /// GitHub's delivery id (a number: App settings → Advanced → Recent Deliveries) or
        /// the delivery's GUID (X-GitHub-Delivery, the `id` in the App's log).
        #[arg(required_unless_present = "since")]
        deliveries: Vec<String>,
        /// Every delivery GitHub marks failed since this time: RFC 3339, or a time ago
        /// (90m, 6h, 2d); at most 3 days (GitHub keeps deliveries no longer).
        #[arg(long)]
        since: Option<String>,
        /// Say what would be asked for, ask nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        github: GitHubArgs,
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
    },
    /// Check the configuration end to end (App key and id, installations and permissions,
    /// the trunk/<sha> tags, ClickHouse and the schema): one line per check, a fix for each
    /// failure. Exit 1 when a check failed.
    Doctor {
        #[command(flatten)]
        app: AppArgs,
        #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
        webhook_secret: Option<String>,
    },
    /// GET /healthz of the App listening on LISTEN_ADDR (0.0.0.0 is asked on 127.0.0.1);
    /// exit 0 when it answers 2xx, 1 otherwise. The container's HEALTHCHECK.
    Healthcheck {
        #[arg(long = "listen", env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
        listen_addr: String,
        /// Longest wait for the answer, seconds.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// Score decision policies (the App's engine, PyTorch's Lambda, any program) on a
    /// simulated trunk: false reverts, missed breakages, time to revert, restart job-hours.
    Simulate(simulate::SimulateArgs),
    /// The signals grid of a workflow as the App decides it: main's commits (newest first)
    /// × its signals, with each failing signal's decision (revert, restart, or why not)
    /// and its reason, read from ClickHouse. --as-of shows an earlier moment.
    Signals(signals::SignalsArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_tracing() {
        eprintln!("autorevert: {e:#}");
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("autorevert: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("autorevert: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`): text for people, or one JSON
/// object per line with `LOG_FORMAT=json` (for log shippers; spans come along as fields).
fn init_tracing() -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let format = std::env::var("LOG_FORMAT").unwrap_or_default();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format.trim().to_ascii_lowercase().as_str() {
        "" | "text" => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        "json" => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        other => bail!("LOG_FORMAT {other:?} is not text or json"),
    };
    Ok(())
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Cmd::Serve { serve, app } => {
            serve::run(serve, app.github, app.clickhouse, app.policy).await
        }
        Cmd::Migrate { clickhouse } => {
            let cfg = clickhouse.validate()?;
            let store = Store::new(&cfg);
            store
                .ping()
                .await
                .with_context(|| format!("at {}", cfg.display_url()))?;
            let applied = store.migrate().await?;
            println!(
                "schema of {} at {} is current ({} step(s) applied now{}){}",
                cfg.tables.database,
                cfg.display_url(),
                applied.len(),
                if cfg.ingest {
                    "; local mirror present"
                } else {
                    ""
                },
                applied
                    .iter()
                    .map(|a| format!("\n  {a}"))
                    .collect::<String>()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Restart {
            workflow,
            sha,
            repo,
            dry_run,
            github,
        } => restart::run(workflow, sha, repo, dry_run, github).await,
        Cmd::Check {
            workflow,
            sha,
            repo,
            kill_switch_label,
            clickhouse,
            github,
        } => check::run(workflow, sha, repo, kill_switch_label, clickhouse, github).await,
        Cmd::Replay {
            payloads,
            url,
            event,
            webhook_secret,
            policy,
        } => replay::run(payloads, url, event, webhook_secret, policy).await,
        Cmd::Redeliver {
            deliveries,
            since,
            dry_run,
            github,
            clickhouse,
        } => {
            let ask = redeliver::Ask {
                deliveries,
                since,
                dry_run,
            };
            redeliver::run(ask, github, clickhouse).await
        }
        Cmd::Doctor {
            app,
            webhook_secret,
        } => doctor::run(app.github, app.clickhouse, app.policy, webhook_secret).await,
        Cmd::Healthcheck {
            listen_addr,
            timeout_secs,
        } => healthcheck::run(listen_addr, Duration::from_secs(timeout_secs.max(1))).await,
        Cmd::Simulate(args) => simulate::run(args),
        Cmd::Signals(args) => signals::run(args).await,
    }
}

/// A full commit SHA, or a message that says what is wrong with it.
fn check_sha(sha: &str) -> Result<()> {
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{sha:?} is not a full commit SHA (40 hex characters)");
    }
    Ok(())
}

/// A time ago as the commands take it: `90m`, `6h`, `2d` (`--since`, `--as-of`); None when
/// the text is not one.
fn time_ago(text: &str) -> Option<chrono::Duration> {
    let cut = text.char_indices().last().map_or(0, |(i, _)| i);
    let (n, unit) = text.split_at(cut);
    let n: i64 = n.parse().ok().filter(|n| (1..=100_000).contains(n))?;
    match unit {
        "m" => Some(chrono::Duration::minutes(n)),
        "h" => Some(chrono::Duration::hours(n)),
        "d" => Some(chrono::Duration::days(n)),
        _ => None,
    }
}

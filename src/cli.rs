//! The command line: `serve`, `migrate`, `restart`, `check`, `replay`.

use crate::config::{ClickHouseArgs, GitHubArgs, PolicyArgs, ServeArgs, parse_secrets};
use crate::decide::RestartAction;
use crate::events;
use crate::github::{DispatchRequest, DispatchResult, GitHub};
use crate::ledger::{RestartKey, Status, trunk_ref};
use crate::pipeline::{Delivery, Engine, Timing};
use crate::server;
use crate::store::Store;
use crate::webhook::sign;
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
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

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up; boxing buys nothing
enum Cmd {
    /// Run the GitHub App (webhook server).
    Serve {
        #[command(flatten)]
        serve: ServeArgs,
        #[command(flatten)]
        github: GitHubArgs,
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
        #[command(flatten)]
        policy: PolicyArgs,
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
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
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

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Cmd::Serve {
            serve,
            github,
            clickhouse,
            policy,
        } => cmd_serve(serve, github, clickhouse, policy).await,
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
        } => cmd_restart(workflow, sha, repo, dry_run, github).await,
        Cmd::Check {
            workflow,
            sha,
            repo,
            kill_switch_label,
            clickhouse,
            github,
        } => cmd_check(workflow, sha, repo, kill_switch_label, clickhouse, github).await,
        Cmd::Replay {
            payloads,
            url,
            event,
            webhook_secret,
            policy,
        } => cmd_replay(payloads, url, event, webhook_secret, policy).await,
    }
}

async fn cmd_serve(
    serve: ServeArgs,
    github: GitHubArgs,
    clickhouse: ClickHouseArgs,
    policy: PolicyArgs,
) -> Result<ExitCode> {
    let serve = serve.validate()?;
    let gh = github.validate()?;
    let ch = clickhouse.validate()?;
    let policy = policy.validate(ch.ingest)?;
    if policy.action == RestartAction::Run && gh.is_none() {
        bail!(
            "RESTART_ACTION=run needs GitHub credentials: GITHUB_APP_ID with GITHUB_APP_PRIVATE_KEY(_PATH), \
             or GITHUB_TOKEN; RESTART_ACTION=log runs without them"
        );
    }
    let store = Store::new(&ch);
    store
        .ping()
        .await
        .with_context(|| format!("ClickHouse at {}", ch.display_url()))?;
    store.migrate().await?;
    let github = gh.as_ref().map(GitHub::new).transpose()?;
    let app = server::assemble(server::Parts {
        policy: policy.clone(),
        store: Some(store),
        github,
        timing: Timing {
            confirm_window: serve.confirm_window,
            confirm_backoff: serve.confirm_backoff,
            dispatch_lookup_delay: serve.dispatch_lookup_delay,
            kill_switch_ttl: serve.kill_switch_ttl,
        },
        secrets: serve.secrets.clone(),
        spool_dir: Some(serve.spool_dir.clone()),
        workers: serve.workers,
        queue_capacity: serve.queue_capacity,
        queue_wait: serve.queue_wait,
        reconcile: serve.reconcile,
        redeliver: serve.redeliver,
        heartbeat: Some(Duration::from_secs(30)),
    })
    .await?;
    let listener = tokio::net::TcpListener::bind(serve.listen)
        .await
        .with_context(|| format!("cannot listen on {}", serve.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        clickhouse = ch.display_url(),
        database = ch.tables.database,
        ingest = ch.ingest,
        repos = ?policy.repos,
        workflows = ?policy.workflows,
        restart_action = %policy.action,
        github = gh.as_ref().map(|g| g.api_url.to_string()).unwrap_or_else(|| "none".into()),
        delivery_log = %serve.spool_dir.display(),
        restarts_loaded = app.restarts_loaded,
        deliveries_recovered = app.recovered,
        "autorevert is serving"
    );
    server::serve(listener, app, Duration::from_secs(20)).await?;
    Ok(ExitCode::SUCCESS)
}

fn check_sha(sha: &str) -> Result<()> {
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{sha:?} is not a full commit SHA (40 hex characters)");
    }
    Ok(())
}

async fn cmd_restart(
    workflow: String,
    sha: String,
    repo: String,
    dry_run: bool,
    github: GitHubArgs,
) -> Result<ExitCode> {
    check_sha(&sha)?;
    let gh = match github.validate()? {
        Some(cfg) => Some(GitHub::new(&cfg)?),
        None if dry_run => None,
        None => {
            bail!("no GitHub credentials: set GITHUB_TOKEN, or GITHUB_APP_ID with its private key")
        }
    };
    let file = match &gh {
        Some(gh) => gh.resolve_workflow(&repo, &workflow).await?,
        None => workflow.clone(),
    };
    let req = DispatchRequest {
        repo: repo.clone(),
        workflow_file: file.clone(),
        git_ref: trunk_ref(&sha),
        inputs: None,
    };
    println!("POST {}", req.route());
    println!("{}", serde_json::to_string_pretty(&req.body(true))?);
    match &gh {
        Some(gh) => match gh.workflow_inputs(&repo, &file, &req.git_ref, None).await {
            Ok(None) => println!(
                "warning: {file} at {} has no workflow_dispatch trigger; GitHub will refuse",
                req.git_ref
            ),
            Ok(Some(inputs)) if inputs.is_empty() => {
                println!("dispatch inputs declared by {file}: none")
            }
            Ok(Some(inputs)) => {
                println!("dispatch inputs declared by {file}: {}", inputs.join(", "))
            }
            Err(e) => println!("dispatch inputs: unknown ({e:#})"),
        },
        None => println!("dispatch inputs: unknown (no GitHub credentials)"),
    }
    if dry_run {
        println!("dry run: nothing sent");
        return Ok(ExitCode::SUCCESS);
    }
    let gh = gh.expect("checked above");
    match gh.dispatch(&req, None).await? {
        DispatchResult::Created { run_id, html_url } => {
            println!("dispatched: run {run_id} {html_url}");
            Ok(ExitCode::SUCCESS)
        }
        DispatchResult::Accepted => {
            println!(
                "dispatched (GitHub returned no run id); runs on {}: see the Actions tab",
                req.git_ref
            );
            Ok(ExitCode::SUCCESS)
        }
        DispatchResult::Rejected { status, message } => {
            bail!("GitHub refused the dispatch ({status}): {message}")
        }
        DispatchResult::Unknown { reason } => bail!(
            "outcome unknown ({reason}); look for a run on {} before trying again",
            req.git_ref
        ),
        DispatchResult::NotSent { reason } => bail!("not sent: {reason}"),
    }
}

async fn cmd_check(
    workflow: String,
    sha: String,
    repo: String,
    kill_switch_label: String,
    clickhouse: ClickHouseArgs,
    github: GitHubArgs,
) -> Result<ExitCode> {
    check_sha(&sha)?;
    let cfg = clickhouse.validate()?;
    if let Some(gh) = github.validate()? {
        let gh = GitHub::new(&gh)?;
        match gh.kill_switch(&repo, &kill_switch_label, None).await {
            Ok(Some(ks)) => println!("kill switch ON for {repo}: {ks}"),
            Ok(None) => println!(
                "kill switch off for {repo} (no open issue labelled {kill_switch_label:?} by a writer)"
            ),
            Err(e) => println!(
                "kill switch: unknown ({e:#}); the App keeps restarting when it cannot tell"
            ),
        }
    }
    let store = Store::new(&cfg);
    let key = RestartKey {
        repo,
        workflow,
        head_sha: sha,
    };
    let restarts = store.restarts_for(&key).await?;
    let visible = store.restart_visible(&key).await?;
    println!("{key}");
    println!(
        "  restart jobs in {} (PyTorch's confirmation query): {}",
        cfg.tables.job,
        if visible { "yes" } else { "no" }
    );
    if restarts.is_empty() {
        println!("  no restart recorded by this App");
        return Ok(ExitCode::from(if visible { 0 } else { 2 }));
    }
    for r in &restarts {
        println!(
            "  #{} {}{}: run {} {}",
            r.attempt,
            r.status,
            if r.dry_run { " (dry run)" } else { "" },
            r.restart_run_id
                .map(|id| id.to_string())
                .unwrap_or_else(|| "-".into()),
            r.run_url
        );
        println!(
            "     requested {}  {}",
            r.requested_at.format("%Y-%m-%d %H:%M:%S UTC"),
            r.reason
        );
        if let Some(c) = r.confirmed_at {
            println!(
                "     confirmed {} ({} ms after dispatch)",
                c.format("%H:%M:%S"),
                r.confirm_latency_ms.unwrap_or(0)
            );
        }
        if let Some(o) = r.outcome {
            println!("     outcome: {o}");
        }
    }
    let confirmed = visible
        || restarts
            .iter()
            .any(|r| r.confirmed_at.is_some() || r.status == Status::Completed);
    Ok(ExitCode::from(if confirmed { 0 } else { 3 }))
}

/// The event name for a payload file: explicit, else the file name's first dot-part when it
/// names an event we know, else the body's shape.
fn event_name_for(
    path: &std::path::Path,
    explicit: Option<&str>,
    body: &serde_json::Value,
) -> String {
    if let Some(e) = explicit {
        return e.to_string();
    }
    let stem = path.file_name().and_then(|s| s.to_str()).unwrap_or("");
    for known in ["workflow_run", "workflow_job", "ping"] {
        if stem.starts_with(&format!("{known}.")) || stem.contains(&format!(".{known}.")) {
            return known.to_string();
        }
    }
    for known in ["workflow_run", "workflow_job"] {
        if body.get(known).is_some() {
            return known.to_string();
        }
    }
    if body.get("zen").is_some() {
        return "ping".into();
    }
    "unknown".into()
}

struct Payload {
    event: String,
    delivery: String,
    body: Vec<u8>,
}

fn load_payload(path: &std::path::Path, explicit: Option<&str>) -> Result<Payload> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_slice(&raw).with_context(|| format!("{} is not JSON", path.display()))?;
    // Probot envelope {name, id, payload}: the delivery as torchci's tests keep it.
    if let (Some(name), Some(payload)) = (
        value.get("name").and_then(|n| n.as_str()),
        value.get("payload"),
    ) && value.get("id").is_some()
    {
        let delivery = value["id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| value["id"].to_string());
        return Ok(Payload {
            event: explicit.unwrap_or(name).to_string(),
            delivery,
            body: serde_json::to_vec(payload)?,
        });
    }
    Ok(Payload {
        event: event_name_for(path, explicit, &value),
        delivery: uuid::Uuid::new_v4().to_string(),
        body: raw,
    })
}

async fn cmd_replay(
    payloads: Vec<PathBuf>,
    url: Option<String>,
    event: Option<String>,
    secret: Option<String>,
    policy: PolicyArgs,
) -> Result<ExitCode> {
    let files: Vec<(PathBuf, Payload)> = payloads
        .iter()
        .map(|p| load_payload(p, event.as_deref()).map(|l| (p.clone(), l)))
        .collect::<Result<_>>()?;
    if let Some(url) = url {
        let secrets = parse_secrets(secret.as_deref()).context("replay --url signs deliveries")?;
        let secret = secrets[0].expose_secret().to_string();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let mut failed = 0;
        for (path, p) in files {
            let resp = client
                .post(&url)
                .header("Content-Type", "application/json")
                .header("User-Agent", "GitHub-Hookshot/autorevert-replay")
                .header("X-GitHub-Event", &p.event)
                .header("X-GitHub-Delivery", &p.delivery)
                .header("X-GitHub-Hook-ID", "0")
                .header("X-Hub-Signature-256", sign(&secret, &p.body))
                .body(p.body)
                .send()
                .await
                .with_context(|| format!("POST {url}"))?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            println!(
                "{} {} {}: {status} {}",
                path.display(),
                p.event,
                p.delivery,
                text.trim()
            );
            if !status.is_success() {
                failed += 1;
            }
        }
        return Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    // In-process: the same decisions, nothing sent and nothing written.
    let mut policy = policy.validate(false)?;
    if policy.action == RestartAction::Run {
        policy.action = RestartAction::Log;
    }
    policy.simulate = true;
    let engine = Arc::new(Engine::new(policy, None, None, None, Timing::default()));
    let mut bad = 0;
    for (path, p) in files {
        match events::parse(&p.event, &p.body) {
            Ok(ev) => {
                let d = Delivery {
                    id: p.delivery.clone(),
                    event_name: p.event.clone(),
                    event: ev,
                    received_at: chrono::Utc::now(),
                    body_bytes: p.body.len() as u32,
                    seq: None,
                    replayed: false,
                };
                println!("{} ({}, {}):", path.display(), p.event, d.event.action());
                for c in engine.handle(&d).await {
                    println!("  {}", c.describe());
                    if let crate::decide::Command::Evaluate { restart_id, .. } = &c
                        && let Some(r) = engine
                            .all_restarts()
                            .into_iter()
                            .find(|r| r.restart_id == *restart_id)
                    {
                        println!(
                            "  => {}: {}",
                            r.outcome
                                .map(|o| o.to_string())
                                .unwrap_or_else(|| "-".into()),
                            r.reason
                        );
                    }
                }
            }
            Err(e) => {
                bad += 1;
                println!("{}: rejected (400): {e}", path.display());
            }
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

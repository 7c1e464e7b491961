//! `autorevert serve`: the App.

use crate::config::{ClickHouseArgs, GitHubArgs, PolicyArgs, ServeArgs};
use crate::github::GitHub;
use crate::pipeline::Timing;
use crate::restart::RestartAction;
use crate::server;
use crate::store::Store;
use anyhow::{Context, Result, bail};
use std::process::ExitCode;
use std::time::Duration;

pub async fn run(
    serve: ServeArgs,
    github: GitHubArgs,
    clickhouse: ClickHouseArgs,
    policy: PolicyArgs,
) -> Result<ExitCode> {
    if let Some(setup) = serve.setup_mode(&github)? {
        server::setup::run(setup).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let serve = serve.validate()?;
    let gh = github.validate()?;
    let ch = clickhouse.validate()?;
    let policy = policy.validate(ch.ingest)?;
    let descriptors = server::descriptors::raise_limit();
    let limits = server::Limits {
        max_connections: server::descriptors::connection_cap(
            descriptors,
            serve.limits.max_connections,
        )?,
        ..serve.limits.clone()
    };
    if policy.action == RestartAction::Run && gh.is_none() {
        bail!(
            "RESTART_ACTION=run needs GitHub credentials: GITHUB_APP_ID with GITHUB_APP_PRIVATE_KEY(_PATH), \
             or GITHUB_TOKEN; RESTART_ACTION=log runs without them"
        );
    }
    // Bound first: deliveries are taken into the log while ClickHouse is still coming up
    // or the backlog replays (start-up waits for ClickHouse in the background).
    let listener = tokio::net::TcpListener::bind(serve.listen)
        .await
        .with_context(|| format!("cannot listen on {}", serve.listen))?;
    let store = Store::new(&ch);
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
        decide: serve.decide.clone(),
        secrets: serve.secrets.clone(),
        spool_dir: Some(serve.spool_dir.clone()),
        queue: server::Queue {
            workers: serve.workers,
            capacity: serve.queue_capacity,
            wait: serve.queue_wait,
        },
        tasks: server::TaskPlan {
            reconcile: serve.reconcile,
            redeliver: serve.redeliver,
            heartbeat: Some(Duration::from_secs(30)),
        },
    })
    .await?;
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
        deliveries_recovered = app.recovered,
        max_connections = limits.max_connections,
        "autorevert is serving"
    );
    server::serve(listener, app, limits).await?;
    Ok(ExitCode::SUCCESS)
}

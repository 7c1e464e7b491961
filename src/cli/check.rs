//! `autorevert check`: was this commit restarted, is the restart confirmed, what was the
//! outcome? The exit code says it for scripts.

use super::check_sha;
use crate::config::{ClickHouseArgs, GitHubArgs};
use crate::github::GitHub;
use crate::restart::{RestartKey, Status};
use crate::store::Store;
use anyhow::Result;
use std::process::ExitCode;

pub async fn run(
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
                "kill switch UNKNOWN for {repo} ({e:#}); the App holds restarts while it cannot tell"
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
            r.times.requested_at.format("%Y-%m-%d %H:%M:%S UTC"),
            r.reason
        );
        if let Some(c) = r.times.confirmed_at {
            println!(
                "     confirmed {} ({} ms after dispatch)",
                c.format("%H:%M:%S"),
                r.times.confirm_latency_ms().unwrap_or(0)
            );
        }
        if let Some(scope) = &r.scope {
            println!("     asked for: {}", scope.describe());
        }
        if let Some(o) = r.outcome {
            println!("     outcome: {o}");
        }
        if !r.check.url.is_empty() {
            println!("     check run: {}", r.check.url);
        }
        if !r.check.error.is_empty() {
            println!("     check run not up to date: {}", r.check.error);
        }
    }
    let confirmed = visible
        || restarts
            .iter()
            .any(|r| r.times.confirmed_at.is_some() || r.status == Status::Completed);
    Ok(ExitCode::from(if confirmed { 0 } else { 3 }))
}

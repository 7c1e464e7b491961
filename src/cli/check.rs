//! `autorevert check`: was this commit restarted, is the restart confirmed, what was the
//! outcome? The exit code says it for scripts. It also shows what the decision engine
//! decided about the commit (the latest decision of each signal that names it) and what
//! was done about it as a culprit (`revert_actions`).

use super::check_sha;
use crate::config::{ClickHouseArgs, GitHubArgs};
use crate::github::GitHub;
use crate::restart::{RestartKey, Status};
use crate::store::Store;
use crate::store::signal_state::{DecisionRow, RevertActionRow};
use anyhow::Result;
use chrono::{DateTime, Utc};
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
    decided(&store, &key).await;
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

/// The latest decision of every signal of the workflow that names the commit, and the
/// action about it as a culprit. Unreadable (an older schema): said so, not fatal.
async fn decided(store: &Store, key: &RestartKey) {
    let (decisions, actions) = tokio::join!(
        store.latest_decisions(&key.repo, 100_000),
        store.revert_actions(DateTime::<Utc>::UNIX_EPOCH)
    );
    match decisions {
        Ok(rows) => {
            for r in rows.iter().filter(|r| r.workflow == key.workflow) {
                if let Some(role) = role(r, &key.head_sha) {
                    println!(
                        "  decision {}: {}:{} {} ({role}; {})",
                        r.ts.format("%Y-%m-%d %H:%M:%S"),
                        r.workflow,
                        r.job,
                        r.label,
                        r.reason
                    );
                }
            }
        }
        Err(e) => println!("  decisions not readable: {e:#}"),
    }
    match actions {
        Ok(rows) => {
            let about = rows
                .iter()
                .filter(|a| a.repo == key.repo && a.sha == key.head_sha);
            for a in about {
                println!("  culprit: {}", action_line(a));
            }
        }
        Err(e) => println!("  revert actions not readable: {e:#}"),
    }
}

/// What the commit is to a decision: its suspect, its baseline, or a commit it restarts.
fn role(r: &DecisionRow, sha: &str) -> Option<String> {
    if r.suspect == sha {
        return Some("the suspect".into());
    }
    if r.baseline == sha {
        return Some("the baseline".into());
    }
    r.restarts.iter().find_map(|x| {
        let why = x.strip_prefix(sha)?.strip_prefix(':')?;
        Some(format!("to run again: {why}"))
    })
}

/// `revert on PR #123: posted, https://…` / `log: decided (would …)`.
fn action_line(a: &RevertActionRow) -> String {
    let mut line = a.action.clone();
    if a.target > 0 {
        let what = if a.action == "notify" { "issue" } else { "PR" };
        line.push_str(&format!(" on {what} #{}", a.target));
    }
    line.push_str(&format!(
        ": {} at {}",
        a.state,
        a.updated_at.format("%Y-%m-%d %H:%M:%S")
    ));
    if !a.reason.is_empty() {
        line.push_str(&format!(", reason {}", a.reason));
    }
    if !a.comment_url.is_empty() {
        line.push_str(&format!(", comment {}", a.comment_url));
    }
    if !a.detail.is_empty() {
        line.push_str(&format!(" ({})", a.detail));
    }
    line
}

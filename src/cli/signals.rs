//! `autorevert signals <workflow>`: the signals grid of one workflow as the App decides it.
//! It reads what the App keeps in ClickHouse (main's commits, runs and jobs: the
//! `signal_state` tables), rebuilds the decision engine from it with the same `DECIDE_*`
//! thresholds as `serve`, decides every failing signal, and prints commits × signals with
//! each signal's decision and its reason (`--json`: the grid for tools). `--as-of` shows
//! the window as it was then: only what had been pushed and recorded by that time.

use crate::config::{ClickHouseArgs, DecideArgs};
use crate::pipeline::decider::Decider;
use crate::signals::SignalKey;
use crate::signals::grid::{Grid, VerdictKind, render_text};
use crate::store::Store;
use crate::store::signal_state::SignalState;
use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct SignalsArgs {
    /// Workflow display name (trunk).
    workflow: String,
    #[arg(long, default_value = "pytorch/pytorch")]
    repo: String,
    /// Show the window as of this time: RFC 3339 (2026-11-30T12:00:00Z), `2026-11-30 12:00`
    /// (UTC), or a time ago (90m, 6h, 2d). Default: now.
    #[arg(long, value_name = "TIME", value_parser = as_of_now)]
    as_of: Option<DateTime<Utc>>,
    /// The grid as JSON (commits, signals with their events per commit and decisions).
    #[arg(long)]
    json: bool,
    /// Every signal, also those with no failure and no revert or restart.
    #[arg(long)]
    all: bool,
    /// Terminal width the grid is fitted to (default: $COLUMNS, else 120).
    #[arg(long, value_name = "N")]
    width: Option<usize>,
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    #[command(flatten)]
    decide: DecideArgs,
}

/// What `--json` prints: the grid, and what it is the grid of.
#[derive(Serialize)]
struct Shown<'a> {
    repo: &'a str,
    workflow: &'a str,
    as_of: DateTime<Utc>,
    lookback_hours: i64,
    /// The workflows with jobs in the window (a name given wrong shows here).
    workflows_seen: &'a [String],
    #[serde(flatten)]
    grid: &'a Grid,
}

pub async fn run(args: SignalsArgs) -> Result<ExitCode> {
    let settings = args.decide.validate()?;
    let cfg = args.clickhouse.validate()?;
    let store = Store::new(&cfg);
    store
        .ping()
        .await
        .with_context(|| format!("ClickHouse at {} is not reachable", cfg.display_url()))?;
    let as_of = args.as_of.unwrap_or_else(Utc::now);
    let since = as_of - settings.lookback;
    let mut state = store
        .signal_state(since, args.as_of)
        .await
        .with_context(|| {
            format!(
                "reading the decision engine's tables in database {} (`autorevert migrate` creates them)",
                cfg.tables.database
            )
        })?;
    let lookback_hours = settings.lookback.num_hours();
    let seen = only(&mut state, &args.repo, &args.workflow);
    let decider = Decider::new(settings);
    decider.rebuild(&state, as_of);
    let grid = workflow_grid(&decider, &args.repo, &args.workflow, args.all);
    if args.json {
        let shown = Shown {
            repo: &args.repo,
            workflow: &args.workflow,
            as_of,
            lookback_hours,
            workflows_seen: &seen,
            grid: &grid,
        };
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} on {} as of {} UTC, the last {lookback_hours} h: {}",
        args.workflow,
        args.repo,
        as_of.format("%Y-%m-%d %H:%M:%S"),
        summary(&grid)
    );
    if !seen.is_empty() && !seen.contains(&args.workflow) {
        println!(
            "no job of workflow {:?} in the window; workflows seen: {}",
            args.workflow,
            seen.join(", ")
        );
    }
    print!("{}", render_text(&grid, args.width.unwrap_or_else(columns)));
    Ok(ExitCode::SUCCESS)
}

/// The grid of one workflow's signals: every failing one decided as the App decides it.
fn workflow_grid(decider: &Decider, repo: &str, workflow: &str, all: bool) -> Grid {
    let history = decider.history(repo).unwrap_or_default();
    let decisions: Vec<_> = decider
        .decide_all(repo)
        .into_iter()
        .filter(|(k, _)| k.workflow == workflow)
        .collect();
    let mut grid = Grid::build(&history, &decisions, all);
    grid.signals.retain(|s| s.workflow == workflow);
    let total = history
        .keys()
        .filter(|k| k.workflow == workflow)
        .chain(decisions.iter().map(|(k, _)| k))
        .collect::<std::collections::HashSet<&SignalKey>>()
        .len();
    grid.hidden = total.saturating_sub(grid.signals.len());
    grid.with_pushed_at(|sha| history.commits().pushed_at(sha))
}

/// Keeps only what the grid of one repository's workflow is built from (its decisions
/// depend on nothing else): the engine is rebuilt from a fraction of the window. Returns
/// the workflows the repository's jobs belong to.
fn only(state: &mut SignalState, repo: &str, workflow: &str) -> Vec<String> {
    state.commits.retain(|c| c.repo == repo);
    state.jobs.retain(|j| j.repo() == repo);
    let mut seen: Vec<String> = state
        .jobs
        .iter()
        .map(|j| j.workflow_name().to_string())
        .collect();
    seen.sort();
    seen.dedup();
    state.jobs.retain(|j| j.workflow_name() == workflow);
    state
        .runs
        .retain(|r| r.repo() == repo && r.run().name == workflow);
    seen
}

/// `5 commit(s), 2 signal(s) shown (1 failing); 1 revert, 0 restart`.
fn summary(grid: &Grid) -> String {
    let count = |kind| {
        grid.signals
            .iter()
            .filter(|s| s.decision.as_ref().is_some_and(|d| d.kind == kind))
            .count()
    };
    format!(
        "{} commit(s), {} signal(s) shown ({} failing); decisions: {} revert, {} restart",
        grid.commits.len(),
        grid.signals.len(),
        grid.signals.iter().filter(|s| s.failing).count(),
        count(VerdictKind::Revert),
        count(VerdictKind::Restart)
    )
}

/// The terminal's width as the shell exports it, else 120.
fn columns() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|c| *c >= 40)
        .unwrap_or(120)
}

fn as_of_now(text: &str) -> Result<DateTime<Utc>> {
    parse_as_of(text, Utc::now())
}

/// `--as-of`: RFC 3339, `YYYY-MM-DD HH:MM[:SS]` (UTC), or a time ago (`90m`, `6h`, `2d`);
/// never in the future (pure).
pub fn parse_as_of(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let text = text.trim();
    let at = if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        t.with_timezone(&Utc)
    } else if let Some(t) = ["%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    {
        t.and_utc()
    } else {
        now - ago(text)?
    };
    if at > now {
        bail!("{text:?} is in the future");
    }
    Ok(at)
}

/// `90m`, `6h`, `2d` as a duration.
fn ago(text: &str) -> Result<chrono::Duration> {
    super::time_ago(text).with_context(|| {
        format!(
            "{text:?} is not a time: give RFC 3339 (2026-11-30T12:00:00Z), \
             2026-11-30 12:00 (UTC) or a time ago (90m, 6h, 2d)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_takes_rfc3339_a_utc_minute_or_a_time_ago() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T13:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s| parse_as_of(s, now).map(|t| t.to_rfc3339());
        assert_eq!(
            at("2026-11-30T12:00:00+01:00").unwrap(),
            "2026-11-30T11:00:00+00:00"
        );
        assert_eq!(at("2026-11-30 12:00").unwrap(), "2026-11-30T12:00:00+00:00");
        assert_eq!(
            at(" 2026-11-30 12:00:30 ").unwrap(),
            "2026-11-30T12:00:30+00:00"
        );
        assert_eq!(at("90m").unwrap(), "2026-11-30T11:30:00+00:00");
        assert_eq!(at("2d").unwrap(), "2026-11-28T13:00:00+00:00");
        for bad in ["yesterday", "", "0h", "5w", "5ü", "-3h", "2026-13-01 00:00"] {
            let e = at(bad).unwrap_err().to_string();
            assert!(e.contains("is not a time"), "{bad}: {e}");
        }
        assert!(
            at("2026-12-01T00:00:00Z")
                .unwrap_err()
                .to_string()
                .contains("in the future")
        );
    }
}

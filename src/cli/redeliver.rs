//! `autorevert redeliver`: ask GitHub to deliver webhooks to the App again, the documented
//! way to replay a missed delivery. By id (GitHub's numeric delivery id, from the App's
//! settings → Advanced → Recent Deliveries) or by GUID (`X-GitHub-Delivery`, the `id` in the
//! App's log), or every failed delivery since a time that the App has no record of (what the
//! redelivery sweep does every `REDELIVER_SECS`, on demand). Each is asked for once
//! (`POST /app/hook/deliveries/{id}/attempts`, App JWT); a redelivery keeps its GUID, so the
//! App recognises one it already has.

use crate::background::redeliver::{WINDOW_DAYS, failed_since, recorded};
use crate::config::{ClickHouseArgs, GitHubArgs};
use crate::github::{GitHub, HookDelivery};
use crate::store::Store;
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use std::process::ExitCode;

/// Pages of 100 deliveries searched for a GUID (GitHub keeps three days of them).
const MAX_GUID_PAGES: usize = 50;

pub struct Ask {
    pub deliveries: Vec<String>,
    pub since: Option<String>,
    pub dry_run: bool,
}

pub async fn run(ask: Ask, github: GitHubArgs, clickhouse: ClickHouseArgs) -> Result<ExitCode> {
    let now = Utc::now();
    let since = match &ask.since {
        Some(s) => Some(parse_since(s, now)?),
        None => None,
    };
    if ask.deliveries.is_empty() && since.is_none() {
        bail!("name the deliveries to redeliver (ids or GUIDs), or --since <time>");
    }
    let gh = app_client(&github)?;
    let configured = clickhouse.clickhouse_url.is_some() || clickhouse.clickhouse_host.is_some();
    let store = match configured {
        true => Some(Store::new(&clickhouse.validate()?)),
        false => None,
    };
    let mut failed = 0;
    for which in &ask.deliveries {
        let asked = match find(&gh, which, now).await {
            Ok(d) => ask_for(&gh, &d, ask.dry_run).await,
            Err(e) => Err(e),
        };
        if let Err(e) = asked {
            failed += 1;
            println!("FAIL  {which}: {e:#}");
        }
    }
    if let Some(since) = since {
        failed += sweep_since(&gh, store.as_ref(), since, ask.dry_run).await?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The App's client; redelivery needs the App JWT.
fn app_client(github: &GitHubArgs) -> Result<GitHub> {
    let Some(cfg) = github.validate()? else {
        bail!(
            "no GitHub App credentials: set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY (or \
             GITHUB_APP_PRIVATE_KEY_PATH); redelivery is asked with the App JWT"
        );
    };
    let gh = GitHub::new(&cfg)?;
    if !gh.is_app() {
        bail!(
            "GITHUB_TOKEN cannot ask for redeliveries: GitHub's /app/hook endpoints take the App \
             JWT only; set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY (or _PATH)"
        );
    }
    Ok(gh)
}

/// Every failed delivery since `since` the App has no record of (in ClickHouse, when it is
/// configured), oldest first; returns how many requests failed.
async fn sweep_since(
    gh: &GitHub,
    store: Option<&Store>,
    since: DateTime<Utc>,
    dry_run: bool,
) -> Result<usize> {
    let failed = failed_since(gh, since)
        .await
        .context("listing the App's failed deliveries (GET /app/hook/deliveries)")?;
    if store.is_none() {
        println!(
            "note: no ClickHouse configured, so every failed delivery is asked for, received or not"
        );
    }
    let (mut asked, mut received, mut errors) = (0, 0, 0);
    for d in &failed {
        if recorded(store, &d.guid).await {
            received += 1;
            println!("SKIP  {}: the App recorded it ({})", d.guid, d.event);
            continue;
        }
        match ask_for(gh, d, dry_run).await {
            Ok(()) => asked += 1,
            Err(e) => {
                errors += 1;
                println!("FAIL  {} (delivery {}): {e:#}", d.guid, d.id);
            }
        }
    }
    println!(
        "redeliver: {} failed since {since}: {asked} asked for{}, {received} already recorded, {errors} failed",
        failed.len(),
        if dry_run { " (dry run)" } else { "" }
    );
    Ok(errors)
}

/// The delivery `which` names: a numeric id as it is, a GUID looked up among the App's
/// deliveries of the last three days (its newest attempt).
async fn find(gh: &GitHub, which: &str, now: DateTime<Utc>) -> Result<HookDelivery> {
    let which = which.trim();
    if let Ok(id) = which.parse::<u64>() {
        return Ok(HookDelivery {
            id,
            guid: String::new(),
            delivered_at: now,
            redelivery: false,
            status_code: 0,
            event: String::new(),
        });
    }
    if which.is_empty() || !which.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        bail!("not a delivery id (a number) or GUID (hex digits and dashes)");
    }
    let oldest = now - chrono::Duration::days(WINDOW_DAYS);
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_GUID_PAGES {
        let (page, next) = gh
            .hook_deliveries(cursor.as_deref(), false)
            .await
            .context("listing the App's deliveries (GET /app/hook/deliveries)")?;
        if let Some(d) = page.iter().find(|d| d.guid.eq_ignore_ascii_case(which)) {
            return Ok(d.clone());
        }
        match (next, page.last()) {
            (Some(c), Some(last)) if last.delivered_at >= oldest => cursor = Some(c),
            _ => break,
        }
    }
    bail!(
        "no delivery with this GUID among the App's deliveries of the last {WINDOW_DAYS} days \
         (GitHub keeps them no longer; for an older one, send its payload with `autorevert replay --url`)"
    )
}

/// Asks GitHub to deliver `d` again (once), and says so.
async fn ask_for(gh: &GitHub, d: &HookDelivery, dry_run: bool) -> Result<()> {
    let what = describe(d);
    if dry_run {
        println!("WOULD {what}");
        return Ok(());
    }
    gh.redeliver(d.id).await.map_err(|e| {
        let hint = if format!("{e}").contains(" 404 ") {
            " (no such delivery of this App: ids are per App, and GitHub keeps them 3 days)"
        } else {
            ""
        };
        anyhow::anyhow!("{e:#}{hint}")
    })?;
    println!("OK    asked GitHub to redeliver {what}");
    Ok(())
}

fn describe(d: &HookDelivery) -> String {
    if d.guid.is_empty() {
        return format!("delivery {}", d.id);
    }
    format!(
        "delivery {} (GUID {}, {}, delivered {} with status {})",
        d.id, d.guid, d.event, d.delivered_at, d.status_code
    )
}

/// `--since`: RFC 3339 (`2026-11-30T08:00:00Z`) or a time ago (`90m`, `6h`, `2d`), within
/// GitHub's three days (pure).
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let text = text.trim();
    let at = match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => {
            let ago = super::time_ago(text).with_context(|| {
                format!(
                    "--since {text:?}: give a time (RFC 3339, 2026-11-30T08:00:00Z) or a time \
                     ago (90m, 6h, 2d)"
                )
            })?;
            now - ago
        }
    };
    if at > now {
        bail!("--since {text:?} is in the future");
    }
    if now - at > chrono::Duration::days(WINDOW_DAYS) {
        bail!(
            "--since {text:?} is more than {WINDOW_DAYS} days ago: GitHub keeps deliveries 3 days"
        );
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_a_time_ago_within_three_days() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s| parse_since(s, now).map(|t| t.to_rfc3339());
        assert_eq!(at("90m").unwrap(), "2026-11-30T08:30:00+00:00");
        assert_eq!(at("2d").unwrap(), "2026-11-28T10:00:00+00:00");
        assert_eq!(
            at("2026-11-30T08:00:00Z").unwrap(),
            "2026-11-30T08:00:00+00:00"
        );
        for bad in [
            "4d",
            "yesterday",
            "0h",
            "5w",
            "",
            "5ü",
            "2026-12-01T00:00:00Z",
        ] {
            assert!(at(bad).is_err(), "{bad}");
        }
        assert!(format!("{}", at("4d").unwrap_err()).contains("3 days"));
    }
}

//! The redelivery sweep. GitHub does not redeliver a failed webhook by itself (its docs
//! suggest exactly this kind of job). Each pass lists the App's failed deliveries of the
//! last three days (GitHub's redelivery window) and asks GitHub to redeliver those the App
//! never accepted, at most `max_per_pass` per pass and each delivery at most once.
//!
//! "Never accepted" is judged by our own records (the intake's id set, which includes the
//! delivery log, and the `deliveries` table), not by GitHub's: a delivery GitHub marks
//! failed may have reached us and been handled (for example, answered after its timeout).
//! Which deliveries were redelivered is persisted, so a restart does not repeat them.

use super::Tasks;
use crate::github::{GitHub, HookDelivery};
use crate::intake::webhook::Intake;
use crate::store::Store;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// GitHub keeps deliveries redeliverable for three days.
pub const WINDOW_DAYS: i64 = 3;
const MAX_PAGES: usize = 20;

#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Sweep {
    pub failed_seen: usize,
    pub already_received: usize,
    pub redelivered: usize,
    pub errors: usize,
}

#[derive(Default, Serialize, Deserialize)]
struct State {
    /// guid -> when we asked for its redelivery (ms)
    redelivered: BTreeMap<String, i64>,
}

/// The sweep's state. A file that cannot be read as one is set aside (`.corrupt`) and the
/// sweep starts afresh: at worst a delivery is asked for twice, and GitHub's redelivery
/// keeps its id, so the App recognises it.
fn load(path: &Path) -> Result<State> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    match serde_json::from_slice(&bytes) {
        Ok(state) => Ok(state),
        Err(e) => {
            let aside = path.with_extension("corrupt");
            tracing::error!(path = %path.display(), aside = %aside.display(), error = %e, "the sweep state is unreadable: set aside, starting afresh");
            std::fs::rename(path, &aside)
                .with_context(|| format!("setting {} aside", path.display()))?;
            Ok(State::default())
        }
    }
}

/// Written whole or not at all: a synced temporary file renamed into place.
fn save(path: &Path, state: &State) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec(state)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

pub async fn sweep_once(
    gh: &GitHub,
    intake: &Intake,
    store: Option<&Store>,
    state_path: &Path,
    max_per_pass: usize,
    now: DateTime<Utc>,
) -> Result<Sweep> {
    let mut state = load(state_path)?;
    let oldest = now - chrono::Duration::days(WINDOW_DAYS);
    state
        .redelivered
        .retain(|_, at| *at >= oldest.timestamp_millis());
    let latest = failed_since(gh, oldest).await?;
    let mut sweep = Sweep {
        failed_seen: latest.len(),
        ..Sweep::default()
    };
    for d in latest {
        if state.redelivered.contains_key(&d.guid) {
            continue;
        }
        let received = intake.has_seen(&d.guid) || recorded(store, &d.guid).await;
        if received {
            sweep.already_received += 1;
            continue;
        }
        if sweep.redelivered >= max_per_pass {
            break;
        }
        match gh.redeliver(d.id).await {
            Ok(()) => {
                tracing::info!(guid = d.guid, event = d.event, delivered_at = %d.delivered_at, "asked GitHub to redeliver a failed delivery");
                state
                    .redelivered
                    .insert(d.guid.clone(), now.timestamp_millis());
                sweep.redelivered += 1;
            }
            Err(e) => {
                tracing::warn!(
                    guid = d.guid,
                    error = format!("{e:#}"),
                    "redelivery request failed"
                );
                sweep.errors += 1;
            }
        }
    }
    save(state_path, &state)?;
    Ok(sweep)
}

/// The newest attempt of each delivery GitHub marks failed since `oldest` (at most three
/// days back: GitHub keeps no more), oldest first: they expire first.
pub async fn failed_since(gh: &GitHub, oldest: DateTime<Utc>) -> Result<Vec<HookDelivery>> {
    let mut latest: HashMap<String, HookDelivery> = HashMap::new();
    let mut cursor: Option<String> = None;
    'pages: for _ in 0..MAX_PAGES {
        let (page, next) = gh.failed_deliveries(cursor.as_deref()).await?;
        for d in page {
            if d.delivered_at < oldest {
                break 'pages;
            }
            latest.entry(d.guid.clone()).or_insert(d);
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut all: Vec<HookDelivery> = latest.into_values().collect();
    all.sort_by_key(|d| d.delivered_at);
    Ok(all)
}

/// Whether the App recorded this delivery in ClickHouse (`deliveries`); a store that does
/// not answer counts as no.
pub async fn recorded(store: Option<&Store>, guid: &str) -> bool {
    match store {
        Some(s) => s.delivery(guid).await.is_ok_and(|r| r.is_some()),
        None => false,
    }
}

/// The sweep as a background task: every `every`, at most `max_per_pass` redeliveries.
pub fn start(
    tasks: &mut Tasks,
    gh: GitHub,
    intake: Arc<Intake>,
    store: Store,
    state_path: PathBuf,
    (every, max_per_pass): (Duration, usize),
) {
    tasks.every("redelivery_sweep", every, move || {
        let (gh, intake, store, path) = (
            gh.clone(),
            intake.clone(),
            store.clone(),
            state_path.clone(),
        );
        async move { sweep_once(&gh, &intake, Some(&store), &path, max_per_pass, Utc::now()).await }
    });
}

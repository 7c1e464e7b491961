//! The redelivery sweep. GitHub does not redeliver a failed webhook by itself (its docs
//! suggest exactly this kind of job). Each pass lists the App's failed deliveries of the
//! last three days (GitHub's redelivery window) and asks GitHub to redeliver those the App
//! never accepted, at most `max_per_pass` per pass and each delivery at most once.
//!
//! "Never accepted" is judged by our own records (the intake's id set, which includes the
//! delivery log, and the `deliveries` table), not by GitHub's: a delivery GitHub marks
//! failed may have reached us and been handled (for example, answered after its timeout).
//! Which deliveries were redelivered is persisted, so a restart does not repeat them.

use crate::github::{GitHub, HookDelivery};
use crate::store::Store;
use crate::webhook::Intake;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// GitHub keeps deliveries redeliverable for three days.
const WINDOW_DAYS: i64 = 3;
const MAX_PAGES: usize = 20;

#[derive(Debug, Default, PartialEq)]
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

fn load(path: &Path) -> Result<State> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a sweep state", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn save(path: &Path, state: &State) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(state)?)?;
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
    // Newest attempt of each failed guid within the window.
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
    let mut sweep = Sweep {
        failed_seen: latest.len(),
        ..Sweep::default()
    };
    let mut candidates: Vec<HookDelivery> = latest.into_values().collect();
    candidates.sort_by_key(|d| d.delivered_at); // oldest first: they expire first
    for d in candidates {
        if state.redelivered.contains_key(&d.guid) {
            continue;
        }
        let received = intake.has_seen(&d.guid)
            || match store {
                Some(s) => s
                    .delivery(&d.guid)
                    .await
                    .map(|r| r.is_some())
                    .unwrap_or(false),
                None => false,
            };
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

pub fn spawn(
    gh: GitHub,
    intake: Arc<Intake>,
    store: Option<Store>,
    state_path: PathBuf,
    every: Duration,
    max_per_pass: usize,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match sweep_once(
                &gh,
                &intake,
                store.as_ref(),
                &state_path,
                max_per_pass,
                Utc::now(),
            )
            .await
            {
                Ok(s) => tracing::info!(
                    failed_seen = s.failed_seen,
                    already_received = s.already_received,
                    redelivered = s.redelivered,
                    errors = s.errors,
                    "redelivery sweep done"
                ),
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "redelivery sweep failed; next pass retries"
                ),
            }
        }
    });
}

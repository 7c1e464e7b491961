//! `autorevert replay`: payload files sent to a running App as GitHub sends them, or run
//! through the same engine in-process (nothing sent, nothing written).

use crate::config::{PolicyArgs, parse_secrets};
use crate::intake::signature::sign;
use crate::intake::{Delivery, events};
use crate::pipeline::effects::{MemoryEvidence, NoGitHub};
use crate::pipeline::{Engine, Timing};
use crate::restart::{Command, RestartAction};
use anyhow::{Context, Result};
use secrecy::ExposeSecret;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

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

pub async fn run(
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
    let failed = match url {
        Some(url) => send(files, &url, secret.as_deref()).await?,
        None => in_process(files, policy).await?,
    };
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Sends each file as GitHub would; how many were not answered 2xx.
async fn send(files: Vec<(PathBuf, Payload)>, url: &str, secret: Option<&str>) -> Result<usize> {
    let secrets = parse_secrets(secret).context("replay --url signs deliveries")?;
    let secret = secrets[0].expose_secret().to_string();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut failed = 0;
    for (path, p) in files {
        let resp = client
            .post(url)
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
    Ok(failed)
}

/// The same engine in-process: decisions printed, nothing sent (no GitHub), nothing written
/// (evidence in memory). A dry-run restart adopts the dispatched run that follows it, so
/// the whole path can be followed without GitHub. How many files were rejected.
async fn in_process(files: Vec<(PathBuf, Payload)>, policy: PolicyArgs) -> Result<usize> {
    let mut policy = policy.validate(false)?;
    if policy.action == RestartAction::Run {
        policy.action = RestartAction::Log;
    }
    policy.simulate = true;
    // Jobs already recorded confirm a restart at once; no waiting for ingestion.
    let timing = Timing {
        confirm_window: Duration::ZERO,
        ..Timing::default()
    };
    let engine = Engine::new(
        policy,
        Arc::new(MemoryEvidence::default()),
        Arc::new(NoGitHub),
        timing,
        crate::pipeline::decider::Settings::default(),
    );
    let mut bad = 0;
    for (path, p) in files {
        let event = match events::parse(&p.event, &p.body) {
            Ok(ev) => ev,
            Err(e) => {
                bad += 1;
                println!("{}: rejected (400): {e}", path.display());
                continue;
            }
        };
        let action = event.action().map(|a| a.to_string()).unwrap_or_default();
        let d = Delivery::synthetic(p.delivery.clone(), &p.event, event);
        println!("{} ({}, {action}):", path.display(), p.event);
        let commands = engine.handle(&d).await;
        engine.wait_idle(Duration::from_secs(30)).await;
        for c in commands {
            println!("  {}", c.describe());
            if let Command::Evaluate { restart_id, .. } = &c
                && let Some(r) = engine.restart(restart_id)
            {
                let verdict = r.outcome.map(|o| o.to_string());
                println!("  => {}: {}", verdict.as_deref().unwrap_or("-"), r.reason);
            }
        }
    }
    Ok(bad)
}

//! `GET /healthz`: liveness (it answers 200 whenever the process serves) and a readiness view
//! that says what is catching up or failing: start-up, the backlog, ClickHouse, GitHub (the
//! last call, the last success and error, the rate limit left), the kill switch of every
//! repository, the background tasks, other instances. `attention` lists, in words, what an
//! operator should look at; empty when all is well. GitHub or ClickHouse being down shows
//! there and never fails the liveness answer: the App keeps taking deliveries meanwhile.

use super::routes::Health;
use super::startup::Progress;
use crate::github::GitHub;
use crate::github::health::GitHubStatus;
use crate::pipeline::kill_switch::SwitchView;
use crate::store::{LastCall, Store};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A rate limit below this share of its window is worth a look.
const LOW_RATE_LIMIT: f64 = 0.1;

pub async fn healthz(State(h): State<Health>) -> Response {
    let others = h
        .heartbeat
        .as_ref()
        .map(|hb| hb.others())
        .unwrap_or_default();
    let engine = h.pipeline.engine();
    let startup = h.startup.snapshot();
    let clickhouse = h.store.as_ref().and_then(Store::last_call);
    let github = h.github.as_ref().map(GitHub::status);
    let switches = engine.kill_switches();
    let repos = switches.view(&engine.policy.repos);
    let seen = Seen {
        startup: &startup,
        clickhouse: clickhouse.as_ref(),
        github: github.as_ref(),
        kill_switches: &repos,
        others: &others,
    };
    Json(json!({
        "status": "ok",
        "attention": attention(&seen),
        // Until ready, deliveries are taken into the log but not yet handled.
        "startup": startup,
        "backlog": engine.activity().backlog(),
        // How the last ClickHouse call went (null: none yet).
        "clickhouse": clickhouse,
        // How GitHub has been answering (null: no GitHub credentials configured).
        "github": github,
        "kill_switch": {
            "label": switches.label(),
            "every_secs": switches.ttl().as_secs(),
            "repos": repos,
        },
        "queued": h.pipeline.queued(),
        // Deliveries whose handling panicked (each stays in the delivery log).
        "worker_panics": engine.activity().panics(),
        "restarts_tracked": engine.restarts().len(),
        // Non-empty: another instance writes to the same database (run one replica).
        "other_instances": others,
        "background_tasks": h.tasks.snapshot(),
    }))
    .into_response()
}

/// What `attention` is made from.
pub struct Seen<'a> {
    pub startup: &'a Progress,
    pub clickhouse: Option<&'a LastCall>,
    pub github: Option<&'a GitHubStatus>,
    pub kill_switches: &'a [SwitchView],
    pub others: &'a [String],
}

/// What an operator should look at, in words (pure); empty when all is well.
pub fn attention(s: &Seen) -> Vec<String> {
    let mut out = Vec::new();
    if !s.startup.ready {
        let why = s.startup.last_error.as_deref().unwrap_or("in progress");
        out.push(format!(
            "starting: {} ({why}); deliveries are kept but not decided yet",
            s.startup.phase
        ));
    }
    if let Some(c) = s.clickhouse.filter(|c| !c.ok) {
        let error = c.error.as_deref().unwrap_or("failed");
        out.push(format!(
            "ClickHouse: the last call failed at {}: {error}",
            c.at
        ));
    }
    if let Some(g) = s.github {
        github_attention(g, &mut out);
    }
    for k in s.kill_switches {
        switch_attention(k, &mut out);
    }
    if !s.others.is_empty() {
        out.push(format!(
            "other instances write to this database: {} (run one replica)",
            s.others.join(", ")
        ));
    }
    out
}

fn github_attention(g: &GitHubStatus, out: &mut Vec<String>) {
    if let Some(c) = g.last_call.as_ref().filter(|c| !c.ok) {
        let what = match g.reachable {
            Some(false) => "GitHub unreachable",
            _ => "GitHub refused the last call",
        };
        let status = c.status.map_or("no answer".to_string(), |s| s.to_string());
        let error = c.error.as_deref().unwrap_or_default();
        out.push(format!(
            "{what} ({} at {}, {status}): {error}",
            c.endpoint, c.at
        ));
    }
    for (auth, l) in &g.rate_limit {
        let low = l
            .limit
            .is_some_and(|limit| (l.remaining as f64) < LOW_RATE_LIMIT * limit as f64);
        if low || l.remaining == 0 {
            let reset = l
                .reset_at
                .map(|r| format!(", resets at {r}"))
                .unwrap_or_default();
            out.push(format!(
                "GitHub rate limit ({}) low: {} left{reset}",
                auth.as_str(),
                l.remaining
            ));
        }
    }
}

fn switch_attention(k: &SwitchView, out: &mut Vec<String>) {
    match (k.state, &k.switch, &k.reason) {
        ("on", Some(ks), _) => out.push(format!(
            "kill switch ON for {}: {ks}; restarts are held",
            k.repo
        )),
        ("unknown", _, reason) => out.push(format!(
            "kill switch state unknown for {} (restarts are held, failing closed): {}",
            k.repo,
            reason.as_deref().unwrap_or_default()
        )),
        _ => {}
    }
    if k.stale {
        out.push(format!(
            "kill switch of {}: no lookup finished since {}",
            k.repo,
            k.last_lookup.map(|t| t.to_string()).unwrap_or_default()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::health::{Auth, Call, RateLimit};
    use chrono::Utc;

    fn ready() -> Progress {
        Progress {
            ready: true,
            phase: "ready".into(),
            since: Utc::now(),
            last_error: None,
            restarts_loaded: Some(0),
        }
    }

    fn seen<'a>(p: &'a Progress, g: Option<&'a GitHubStatus>, k: &'a [SwitchView]) -> Seen<'a> {
        Seen {
            startup: p,
            clickhouse: None,
            github: g,
            kill_switches: k,
            others: &[],
        }
    }

    #[test]
    fn all_well_needs_no_attention() {
        let p = ready();
        assert!(attention(&seen(&p, Some(&GitHubStatus::default()), &[])).is_empty());
    }

    #[test]
    fn github_down_a_low_rate_limit_and_a_failing_switch_are_named() {
        let p = ready();
        let mut g = GitHubStatus {
            reachable: Some(false),
            last_call: Some(Call {
                ok: false,
                at: Utc::now(),
                endpoint: "issues",
                status: Some(503),
                error: Some("GET …: gave up after 4 attempts: 503".into()),
            }),
            ..GitHubStatus::default()
        };
        g.rate_limit.insert(
            Auth::Installation,
            RateLimit {
                remaining: 12,
                limit: Some(5000),
                reset_at: None,
                resource: Some("core".into()),
                seen_at: Utc::now(),
            },
        );
        let k = SwitchView {
            repo: "pytorch/pytorch".into(),
            state: "unknown",
            holds_restarts: true,
            since: Some(Utc::now()),
            switch: None,
            reason: Some("the lookup failed: 503".into()),
            last_lookup: Some(Utc::now()),
            last_success: None,
            failing: true,
            stale: false,
        };
        let a = attention(&seen(&p, Some(&g), std::slice::from_ref(&k)));
        assert_eq!(a.len(), 3, "{a:?}");
        assert!(a[0].starts_with("GitHub unreachable (issues at "), "{a:?}");
        assert!(a[1].contains("rate limit (installation) low: 12 left"));
        assert!(a[2].contains("failing closed"));
    }
}

//! How GitHub has been answering, for `/healthz` and `/metrics`. Every request the transport
//! sends is noted here: its outcome (the last call, the last success, the last error), and
//! the rate limit GitHub reports on each answer (`x-ratelimit-*`), per credential. Failed
//! requests are counted in `autorevert_github_errors_total{endpoint, status}`, the rate
//! limit left in `autorevert_github_rate_limit_remaining{auth}`.
//!
//! Only the kind of endpoint is kept (`dispatch`, `runs`, `issues`, ...), never a route or a
//! header, and every error text is scrubbed of anything shaped like a token.

use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Which credential a request was sent with (a rate-limit bucket of its own at GitHub).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// The App JWT (`/app/...`, `/repos/{repo}/installation`).
    App,
    /// An installation token.
    Installation,
    /// `GITHUB_TOKEN`.
    Token,
}

impl Auth {
    pub fn as_str(self) -> &'static str {
        match self {
            Auth::App => "app",
            Auth::Installation => "installation",
            Auth::Token => "token",
        }
    }
}

/// One request as it went.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    /// It did what was asked (a 2xx, or a 404 where absence is an answer).
    pub ok: bool,
    pub at: DateTime<Utc>,
    /// What was asked (`runs`, `dispatch`, `issues`, ...; see `endpoint_kind`).
    pub endpoint: &'static str,
    /// GitHub's HTTP status; None when no answer came (connection refused, timeout).
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// GitHub's rate limit as its last answer for one credential reported it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimit {
    pub remaining: u64,
    pub limit: Option<u64>,
    /// When the window resets, on GitHub's clock.
    pub reset_at: Option<DateTime<Utc>>,
    /// `core`, `search`, ... (`x-ratelimit-resource`).
    pub resource: Option<String>,
    pub seen_at: DateTime<Utc>,
}

/// What `/healthz` shows of GitHub.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GitHubStatus {
    /// Whether the last request got an answer below 500 from GitHub (None: no request yet).
    /// A 4xx is GitHub answering; a 5xx or no answer is GitHub unreachable.
    pub reachable: Option<bool>,
    pub last_call: Option<Call>,
    pub last_ok_at: Option<DateTime<Utc>>,
    pub last_error: Option<Call>,
    /// By credential (`app`, `installation`, `token`).
    pub rate_limit: BTreeMap<Auth, RateLimit>,
}

/// Shared by every client of one `GitHub`.
#[derive(Debug, Default)]
pub struct Health {
    status: Mutex<GitHubStatus>,
}

impl Health {
    /// Notes the rate limit an answer reports (every answer, retried or not).
    pub fn answered(&self, auth: Auth, headers: &HeaderMap) {
        let Some(limit) = rate_limit(headers, Utc::now()) else {
            return;
        };
        metrics::gauge!("autorevert_github_rate_limit_remaining", "auth" => auth.as_str())
            .set(limit.remaining as f64);
        let mut s = self.status.lock().expect("github health lock");
        s.rate_limit.insert(auth, limit);
    }

    /// Notes how a request ended (after the read retry layer): `status` is GitHub's last
    /// answer (None: none came), `error` what went wrong when it did not do what was asked.
    pub fn finished(&self, route: &str, status: Option<StatusCode>, error: Option<String>) {
        let endpoint = endpoint_kind(route);
        let call = Call {
            ok: error.is_none(),
            at: Utc::now(),
            endpoint,
            status: status.map(|s| s.as_u16()),
            error: error.map(|e| scrub(&e)),
        };
        if !call.ok {
            let status = match status {
                Some(s) if s.is_success() => "unreadable".to_string(),
                Some(s) => s.as_u16().to_string(),
                None => "no_answer".to_string(),
            };
            metrics::counter!("autorevert_github_errors_total", "endpoint" => endpoint, "status" => status)
                .increment(1);
        }
        let mut s = self.status.lock().expect("github health lock");
        s.reachable = Some(status.is_some_and(|s| !s.is_server_error()));
        if call.ok {
            s.last_ok_at = Some(call.at);
        } else {
            s.last_error = Some(call.clone());
        }
        s.last_call = Some(call);
    }

    pub fn snapshot(&self) -> GitHubStatus {
        self.status.lock().expect("github health lock").clone()
    }
}

/// The rate limit an answer's headers report, if they do (pure).
pub fn rate_limit(headers: &HeaderMap, now: DateTime<Utc>) -> Option<RateLimit> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let num = |name: &str| text(name).and_then(|v| v.trim().parse::<u64>().ok());
    Some(RateLimit {
        remaining: num("x-ratelimit-remaining")?,
        limit: num("x-ratelimit-limit"),
        reset_at: num("x-ratelimit-reset")
            .and_then(|s| i64::try_from(s).ok())
            .and_then(|s| DateTime::from_timestamp(s, 0)),
        resource: text("x-ratelimit-resource").map(str::to_string),
        seen_at: now,
    })
}

/// The kind of endpoint a route asks, a label with few values (pure): never the route
/// itself, which names users, issues and runs.
pub fn endpoint_kind(route: &str) -> &'static str {
    let path = route.split('?').next().unwrap_or_default();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["app"] => "app",
        ["app", "installations"] => "installations",
        ["app", "installations", _, "access_tokens"] => "access_token",
        ["app", "hook", "deliveries"] => "hook_deliveries",
        ["app", "hook", "deliveries", _, "attempts"] => "redeliver",
        ["app-manifests", ..] => "manifest",
        ["repos", _, _, rest @ ..] => repo_endpoint(rest),
        _ => "other",
    }
}

fn repo_endpoint(rest: &[&str]) -> &'static str {
    match rest {
        ["installation"] => "installation",
        ["actions", "workflows"] => "workflows",
        ["actions", "workflows", _, "dispatches"] => "dispatch",
        ["actions", "workflows", _, "runs"] => "runs",
        ["actions", "runs", _] => "run",
        ["actions", "runs", _, "jobs"] => "jobs",
        ["contents", ..] => "contents",
        ["issues"] => "issues",
        ["issues", _, "events"] => "issue_events",
        ["collaborators", _, "permission"] => "permission",
        ["commits"] => "commits",
        ["commits", _, "check-runs"] | ["check-runs"] | ["check-runs", _] => "check_runs",
        ["git", "ref", ..] => "ref",
        _ => "other",
    }
}

/// Prefixes of GitHub's tokens (installation, personal, OAuth, user, refresh, fine-grained)
/// and of a JWT's base64url header.
const TOKEN_PREFIXES: [&str; 7] = ["ghs_", "ghp_", "gho_", "ghu_", "ghr_", "github_pat_", "eyJ"];

/// `text` with every word shaped like a token replaced by `[redacted]`, at most 300
/// characters (pure). Errors never carry a token by design; this makes sure of it.
pub fn scrub(text: &str) -> String {
    let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(word) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail.find(|c: char| !word(c)).unwrap_or(tail.len());
        let w = &tail[..end];
        if TOKEN_PREFIXES.iter().any(|p| w.starts_with(p)) && w.len() > 12 {
            out.push_str("[redacted]");
        } else {
            out.push_str(w);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    if out.chars().count() > 300 {
        out = out.chars().take(300).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_named_by_kind_never_by_route() {
        let r = "/repos/pytorch/pytorch";
        for (route, kind) in [
            ("/app", "app"),
            ("/app/installations?per_page=100&page=2", "installations"),
            ("/app/installations/7/access_tokens", "access_token"),
            (
                "/app/hook/deliveries?per_page=100&cursor=x",
                "hook_deliveries",
            ),
            ("/app/hook/deliveries/12/attempts", "redeliver"),
            ("/app-manifests/abc/conversions", "manifest"),
            (&format!("{r}/installation"), "installation"),
            (
                &format!("{r}/actions/workflows/trunk.yml/dispatches"),
                "dispatch",
            ),
            (
                &format!("{r}/actions/workflows/trunk.yml/runs?branch=x"),
                "runs",
            ),
            (&format!("{r}/actions/runs/5"), "run"),
            (&format!("{r}/actions/runs/5/jobs?page=1"), "jobs"),
            (&format!("{r}/actions/workflows?per_page=100"), "workflows"),
            (
                &format!("{r}/contents/.github/workflows/t.yml?ref=x"),
                "contents",
            ),
            (&format!("{r}/issues?labels=x"), "issues"),
            (&format!("{r}/issues/5/events?per_page=100"), "issue_events"),
            (&format!("{r}/collaborators/alice/permission"), "permission"),
            (&format!("{r}/commits?per_page=1"), "commits"),
            (&format!("{r}/git/ref/tags/trunk/abc"), "ref"),
            ("/users/alice", "other"),
        ] {
            assert_eq!(endpoint_kind(route), kind, "{route}");
        }
    }

    #[test]
    fn the_rate_limit_is_read_from_github_s_headers() {
        let mut h = HeaderMap::new();
        let now = Utc::now();
        assert_eq!(rate_limit(&h, now), None);
        h.insert("x-ratelimit-remaining", "4987".parse().unwrap());
        h.insert("x-ratelimit-limit", "5000".parse().unwrap());
        h.insert("x-ratelimit-reset", "1750000060".parse().unwrap());
        h.insert("x-ratelimit-resource", "core".parse().unwrap());
        let l = rate_limit(&h, now).unwrap();
        assert_eq!((l.remaining, l.limit), (4987, Some(5000)));
        assert_eq!(l.reset_at.unwrap().timestamp(), 1_750_000_060);
        assert_eq!(l.resource.as_deref(), Some("core"));
    }

    #[test]
    fn tokens_never_reach_an_error_text() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOjQyfQ.c2lnbmF0dXJl";
        let text = format!(
            "POST /x: bad credentials for ghs_abcdefghijklmnop1234 (Bearer {jwt}); ghp_0123456789abcdef; github_pat_11ABCDEFG_xyz0123456789"
        );
        let s = scrub(&text);
        for secret in ["ghs_abc", "ghp_012", "github_pat_11", "eyJhbG"] {
            assert!(!s.contains(secret), "{s}");
        }
        assert!(s.starts_with("POST /x: bad credentials for [redacted] (Bearer [redacted]);"));
        assert_eq!(
            scrub("GitHub answered 503: ghs"),
            "GitHub answered 503: ghs"
        );
        assert!(scrub(&"x ".repeat(400)).chars().count() <= 301);
    }

    #[test]
    fn a_4xx_is_github_answering_a_5xx_or_silence_is_not() {
        let h = Health::default();
        assert!(h.snapshot().reachable.is_none());
        h.finished("/repos/o/r/issues", Some(StatusCode::OK), None);
        let ok = h.snapshot();
        assert_eq!(ok.reachable, Some(true));
        assert!(ok.last_ok_at.is_some() && ok.last_error.is_none());
        let refused = Some("GitHub answered 422".to_string());
        h.finished(
            "/repos/o/r/actions/workflows/t.yml/dispatches",
            Some(StatusCode::UNPROCESSABLE_ENTITY),
            refused,
        );
        let s = h.snapshot();
        assert_eq!(s.reachable, Some(true));
        assert_eq!(s.last_error.unwrap().endpoint, "dispatch");
        h.finished("/app", None, Some("connection refused".into()));
        let down = h.snapshot();
        assert_eq!(down.reachable, Some(false));
        assert_eq!(down.last_call.as_ref().unwrap().status, None);
        assert!(!down.last_call.unwrap().ok);
        h.finished("/app", Some(StatusCode::BAD_GATEWAY), Some("502".into()));
        assert_eq!(h.snapshot().reachable, Some(false));
    }
}

//! Setup mode: GitHub's App-manifest flow, as Probot offers it. With no App credentials and
//! no webhook secret, `serve` serves only these pages and `/healthz`:
//!
//! 1. `GET /setup?token=…` (the one-time token is in the start-up log line) shows a
//!    "Register GitHub App" form that posts the manifest (`app-manifest.yml` with
//!    `PUBLIC_URL` filled in) to GitHub, for a personal account or an organization, with a
//!    random `state`;
//! 2. GitHub sends the browser back to `GET /setup/callback?code=…&state=…`; the state must
//!    be one this server handed out, and the code is exchanged
//!    (`POST /app-manifests/{code}/conversions`);
//! 3. the App id, private key and webhook secret go to `SETUP_CREDENTIALS_FILE` (0600,
//!    atomic), never to the log; the token is spent, and the page says what comes next.
//!
//! `POST /webhook` answers 503 until the App restarts with the credentials.

mod credentials;
mod manifest;
mod page;

use crate::github::app_info::convert_manifest;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::Url;

pub use manifest::{MANIFEST_YAML, manifest};

/// What setup mode needs (see `config::ServeArgs::setup_mode`).
#[derive(Debug, Clone)]
pub struct SetupConfig {
    pub listen: SocketAddr,
    /// This server's address as GitHub reaches it (`PUBLIC_URL`).
    pub public_url: Url,
    /// Where the credentials go (`SETUP_CREDENTIALS_FILE`).
    pub credentials_file: PathBuf,
    /// GitHub's REST API (`GITHUB_API_URL`), for the code exchange.
    pub api_url: Url,
    pub timeout: Duration,
}

/// GitHub gives the whole flow an hour; a state older than that is refused.
const STATE_LIFETIME: Duration = Duration::from_secs(3600);
/// States kept at most (each page view hands out one).
const MAX_STATES: usize = 64;

pub struct Setup {
    cfg: SetupConfig,
    manifest: serde_json::Value,
    /// GitHub's web address (where the form posts).
    web: String,
    /// The one-time token; `None` once an App was registered.
    token: Mutex<Option<String>>,
    /// States handed out, with when.
    states: Mutex<Vec<(String, Instant)>>,
    /// One code exchange at a time.
    exchange: tokio::sync::Mutex<()>,
}

impl Setup {
    pub fn new(cfg: SetupConfig, token: String) -> Setup {
        Setup {
            manifest: manifest(&cfg.public_url),
            web: manifest::web_url(&cfg.api_url),
            cfg,
            token: Mutex::new(Some(token)),
            states: Mutex::new(Vec::new()),
            exchange: tokio::sync::Mutex::new(()),
        }
    }

    /// The setup page's address with the token, as the start-up log line shows it.
    pub fn setup_url(&self) -> String {
        let token = self.token.lock().expect("token lock").clone();
        let base = self.cfg.public_url.as_str().trim_end_matches('/');
        format!("{base}/setup?token={}", token.unwrap_or_default())
    }

    fn done(&self) -> bool {
        self.token.lock().expect("token lock").is_none()
    }

    /// Why a request with this token is refused, if it is.
    fn refusal(&self, given: Option<&str>) -> Option<Response> {
        match (&*self.token.lock().expect("token lock"), given) {
            (None, _) => Some(setup_done()),
            (Some(t), Some(g)) if same(t, g) => None,
            _ => Some(refused(
                "Not allowed",
                "This page needs the setup token: open the setup URL from autorevert's start-up log.",
            )),
        }
    }

    fn new_state(&self) -> String {
        let state = random_hex();
        let mut states = self.states.lock().expect("states lock");
        states.retain(|(_, at)| at.elapsed() < STATE_LIFETIME);
        if states.len() >= MAX_STATES {
            states.remove(0);
        }
        states.push((state.clone(), Instant::now()));
        state
    }

    fn knows_state(&self, given: Option<&str>) -> bool {
        let states = self.states.lock().expect("states lock");
        given.is_some_and(|g| {
            states
                .iter()
                .any(|(s, at)| same(s, g) && at.elapsed() < STATE_LIFETIME)
        })
    }

    fn spend(&self) {
        *self.token.lock().expect("token lock") = None;
        self.states.lock().expect("states lock").clear();
    }
}

/// 256 random bits (two v4 UUIDs, drawn from the OS's generator) as hex.
fn random_hex() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

fn refused(title: &str, text: &str) -> Response {
    html(StatusCode::FORBIDDEN, page::message(title, text))
}

/// The routes of setup mode.
pub fn router(setup: Arc<Setup>) -> Router {
    Router::new()
        .route("/setup", get(register_page))
        .route("/setup/callback", get(callback))
        .route("/healthz", get(healthz))
        .route("/webhook", post(not_set_up))
        .route(
            "/",
            get(|| async { "autorevert: setup mode; open the setup URL from the start-up log\n" }),
        )
        .with_state(setup)
}

async fn healthz(State(s): State<Arc<Setup>>) -> Response {
    Json(json!({ "status": "setup", "setup_done": s.done() })).into_response()
}

async fn not_set_up() -> Response {
    let body = json!({
        "status": "not set up yet",
        "error": "autorevert has no App credentials yet: finish /setup and restart it",
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

#[derive(Deserialize)]
struct PageQuery {
    token: Option<String>,
    org: Option<String>,
}

async fn register_page(State(s): State<Arc<Setup>>, Query(q): Query<PageQuery>) -> Response {
    if let Some(r) = s.refusal(q.token.as_deref()) {
        return r;
    }
    let org = q.org.as_deref().map(str::trim).filter(|o| !o.is_empty());
    if org.is_some_and(|o| !manifest::is_org_name(o)) {
        let text = "An organization name has letters, digits and hyphens (at most 39).";
        return html(
            StatusCode::BAD_REQUEST,
            page::message("Not an organization", text),
        );
    }
    let action = manifest::new_app_url(&s.web, org, &s.new_state());
    let body = page::register(&page::Register {
        token: q.token.as_deref().unwrap_or_default(),
        org,
        action: &action,
        manifest: &s.manifest,
        credentials_file: &s.cfg.credentials_file.display().to_string(),
    });
    html(StatusCode::OK, body)
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

async fn callback(State(s): State<Arc<Setup>>, Query(q): Query<CallbackQuery>) -> Response {
    let _one_at_a_time = s.exchange.lock().await;
    if s.done() {
        return setup_done();
    }
    if !s.knows_state(q.state.as_deref()) {
        return refused(
            "Not allowed",
            "GitHub's answer does not carry a state this server handed out (or it is over an hour old): start again from the setup URL in the log.",
        );
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        let text = "GitHub's answer has no code.";
        return html(StatusCode::BAD_REQUEST, page::message("No code", text));
    };
    let app = match convert_manifest(&s.cfg.api_url, s.cfg.timeout, code).await {
        Ok(app) => app,
        Err(e) => {
            let e = format!("{e:#}");
            tracing::warn!(error = e, "setup: the code exchange failed");
            return html(
                StatusCode::BAD_GATEWAY,
                page::message("GitHub did not hand the App over", &e),
            );
        }
    };
    let file = s.cfg.credentials_file.display().to_string();
    if let Err(e) = credentials::write(&s.cfg.credentials_file, &app) {
        let e = format!("{e:#}");
        tracing::error!(
            app_id = app.id,
            error = e,
            "setup: the credentials could not be written"
        );
        let text = format!(
            "GitHub registered App {} (id {}, {}), but its credentials could not be written: {e}. \
             They are not shown or logged: in the App's settings, generate a new private key and \
             set a new webhook secret, or delete the App and start again.",
            app.name, app.id, app.html_url
        );
        return html(
            StatusCode::INTERNAL_SERVER_ERROR,
            page::message("Not saved", &text),
        );
    }
    s.spend();
    tracing::info!(
        app_id = app.id,
        app = app.name,
        owner = app.owner.as_deref().unwrap_or("?"),
        credentials_file = file,
        "setup: GitHub App registered, credentials written; the setup token is spent. \
         Install the App, set GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY and WEBHOOK_SECRET from the file, restart"
    );
    let done = page::done(&page::Done {
        id: app.id,
        name: &app.name,
        html_url: &app.html_url,
        credentials_file: &file,
    });
    html(StatusCode::OK, done)
}

fn setup_done() -> Response {
    refused(
        "Setup is done",
        "An App was registered and the setup token is spent. Restart autorevert with the credentials.",
    )
}

/// Serves setup mode until SIGTERM or Ctrl-C.
pub async fn run(cfg: SetupConfig) -> anyhow::Result<()> {
    use anyhow::Context;
    credentials::check_target(&cfg.credentials_file)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let setup = Arc::new(Setup::new(cfg.clone(), random_hex()));
    tracing::warn!(
        listen = %listener.local_addr()?,
        setup_url = setup.setup_url(),
        credentials_file = %cfg.credentials_file.display(),
        "setup mode: no GitHub App credentials and no WEBHOOK_SECRET, so only /setup and /healthz \
         are served (POST /webhook answers 503); open setup_url to register the GitHub App"
    );
    axum::serve(listener, router(setup))
        .with_graceful_shutdown(super::shutdown_signal())
        .await?;
    Ok(())
}

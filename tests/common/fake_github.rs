//! A fake GitHub REST API with state, served over HTTP on loopback so that our real octocrab
//! client talks to it exactly as to api.github.com. It checks App JWTs (RS256, signed by the
//! App's key, `iat`/`exp` within GitHub's limits), issues installation tokens that expire,
//! creates runs for dispatches and answers as GitHub's REST API documents; each dispatch
//! answer can be scripted (422, 500 after creating the run, 401 on an expired token, ...).

#![allow(dead_code, clippy::result_large_err)] // an early-return HTTP answer is the point here

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const APP_ID: u64 = 4242;

#[derive(Debug, Clone)]
pub enum DispatchAnswer {
    /// 200 with `workflow_run_id` when asked for run details, else 204.
    Create,
    /// 204 even when run details were asked for (older GitHub).
    CreateNoDetails,
    /// 4xx with GitHub's error body; nothing created.
    Reject(u16, String),
    /// Creates the run, then answers this 5xx (GitHub's documented hazard).
    FailAfterCreate(u16),
    /// Answers this 5xx without creating anything.
    FailBeforeCreate(u16),
    /// The token in use has expired: 401, nothing created.
    ExpireToken,
    /// Creates the run after this delay (a slow GitHub).
    Slow(Duration),
}

#[derive(Debug, Clone)]
pub struct Dispatch {
    pub repo: String,
    pub workflow: String,
    pub body: Value,
    pub token: String,
    pub at: Instant,
}

#[derive(Debug, Clone)]
pub struct FakeRun {
    pub id: u64,
    pub repo: String,
    pub workflow_file: String,
    pub head_sha: String,
    pub head_branch: String,
    pub event: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// (open, labels, issue events as (event, label, actor))
pub type FakeIssue = (bool, Vec<String>, Vec<(String, String, String)>);

pub struct GhState {
    decoding: DecodingKey,
    pub installations: HashMap<u64, Vec<String>>,
    /// token -> (installation, still valid)
    pub tokens: HashMap<String, (u64, bool)>,
    pub tokens_issued: u32,
    /// (method, path with query) of every request, in order.
    pub requests: Vec<(String, String, Instant)>,
    pub dispatches: Vec<Dispatch>,
    pub runs: Vec<FakeRun>,
    pub jobs: HashMap<u64, Vec<Value>>,
    pub answers: VecDeque<DispatchAnswer>,
    pub next_run_id: u64,
    pub next_job_id: u64,
    /// Workflow files by path: contents for the contents API.
    pub files: HashMap<String, String>,
    pub workflows: Vec<(String, String, String)>,
    pub issues: HashMap<u64, FakeIssue>,
    /// The App's webhook delivery log: (id, guid, delivered_at, status_code), any order.
    pub hook_deliveries: Vec<(u64, String, chrono::DateTime<chrono::Utc>, u16)>,
    /// Delivery ids redelivery was asked for.
    pub redeliveries: Vec<u64>,
    /// Rate-limit answers to give the next GETs: (status, headers).
    pub rate_limited: VecDeque<(u16, Vec<(String, String)>)>,
    /// Collaborator permission by login ("admin", "write", "read", "none"), role name.
    pub permissions: HashMap<String, (String, String)>,
    /// Logins whose permission lookup fails, with the status it answers (500, 404, ...).
    pub failing_permissions: HashMap<String, u16>,
    /// GitHub's clock minus the true one: its `Date` headers and the runs it creates.
    pub clock_skew: chrono::Duration,
    /// The App as `GET /app` shows it: (name, slug).
    pub app: (String, String),
    /// An installation's permissions when they are not all the App asks for.
    pub installation_permissions: HashMap<u64, Value>,
    /// An installation's events when they are not all the App subscribes to.
    pub installation_events: HashMap<u64, Value>,
    /// What the App itself asks for (permissions, events), when not all of app-manifest.yml's.
    pub app_grants: Option<(Value, Value)>,
    /// Manifests posted to the new-App page, by the code GitHub handed back; `None` once
    /// the code was exchanged.
    pub manifests: HashMap<String, Option<Value>>,
    /// Commits on each repository's main branch, newest first.
    pub commits: HashMap<String, Vec<String>>,
    /// Tags, as (repository, name such as `trunk/<sha>`).
    pub tags: HashSet<(String, String)>,
    /// The webhook secret GitHub generates for the next App made from a manifest.
    pub generated_secret: String,
    /// Requests counted against each credential's rate limit this hour (an installation
    /// token, `app` for App JWTs, `anonymous`), reported in `x-ratelimit-*` as GitHub does.
    pub rate_used: HashMap<String, u64>,
    /// When the current rate-limit window resets (Unix seconds, GitHub's clock).
    pub rate_reset: i64,
    /// Requests a credential first seen this hour has already spent (elsewhere).
    pub rate_spent_elsewhere: u64,
    /// GitHub is down: every request is answered with this status (502, 503).
    pub down: Option<u16>,
    /// Check runs and how their endpoints answer (see "check runs" below).
    pub checks: FakeChecks,
    /// Workflow files per ref, and scripted answers of the contents API (see its block).
    pub contents: Contents,
    /// Commits with messages, PRs, and comments on issues and PRs (see their block).
    pub reverts: FakeReverts,
}

/// GitHub's primary rate limit per hour: an installation's or an App's, and without
/// authentication.
pub const RATE_LIMIT: u64 = 5000;
pub const ANONYMOUS_RATE_LIMIT: u64 = 60;

impl GhState {
    /// Now, on GitHub's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.clock_skew
    }
}

#[derive(Clone)]
pub struct FakeGitHub {
    pub url: String,
    pub state: Arc<Mutex<GhState>>,
}

type Shared = Arc<Mutex<GhState>>;

fn gh_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
            "status": status.as_u16().to_string(),
        })),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_string)
}

#[derive(Deserialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: Value,
}

/// Checks an App JWT as GitHub does.
fn check_jwt(st: &GhState, headers: &HeaderMap) -> Result<(), Response> {
    let token = bearer(headers)
        .ok_or_else(|| gh_error(StatusCode::UNAUTHORIZED, "Requires authentication"))?;
    let mut v = Validation::new(Algorithm::RS256);
    // `iss` is checked below: GitHub accepts the numeric App id octocrab sends.
    v.set_required_spec_claims(&["exp"]);
    let data = jsonwebtoken::decode::<Claims>(&token, &st.decoding, &v).map_err(|e| {
        gh_error(
            StatusCode::UNAUTHORIZED,
            &format!("A JSON web token could not be decoded: {e}"),
        )
    })?;
    let c = data.claims;
    let now = chrono::Utc::now().timestamp();
    let iss_ok = c.iss == json!(APP_ID) || c.iss == json!(APP_ID.to_string());
    if !iss_ok {
        // GitHub checks the signature against the keys of the App `iss` names.
        return Err(gh_error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        ));
    }
    if c.iat > now + 5 || c.exp - c.iat > 660 || c.exp <= now {
        return Err(gh_error(
            StatusCode::UNAUTHORIZED,
            "'Expiration time' claim ('exp') is too far in the future",
        ));
    }
    Ok(())
}

/// Checks an installation token and that its installation covers `repo`.
fn check_token(st: &GhState, headers: &HeaderMap, repo: &str) -> Result<String, Response> {
    let token = bearer(headers)
        .ok_or_else(|| gh_error(StatusCode::UNAUTHORIZED, "Requires authentication"))?;
    match st.tokens.get(&token) {
        Some((inst, true))
            if st
                .installations
                .get(inst)
                .is_some_and(|r| r.iter().any(|x| x == repo)) =>
        {
            Ok(token)
        }
        Some((_, true)) => Err(gh_error(StatusCode::NOT_FOUND, "Not Found")),
        _ => Err(gh_error(StatusCode::UNAUTHORIZED, "Bad credentials")),
    }
}

/// Every answer carries GitHub's `Date` header, on the fake's clock (see `set_clock_skew`),
/// and the rate limit of the credential the request came with (`x-ratelimit-*`).
async fn log_requests(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let credential = match bearer(req.headers()) {
        Some(t) if t.starts_with("ghs_") => t,
        Some(_) => "app".to_string(),
        None => "anonymous".to_string(),
    };
    let down = st.lock().unwrap().down;
    let mut resp = match down {
        Some(status) => {
            st.lock().unwrap().requests.push((
                req.method().to_string(),
                req.uri().to_string(),
                Instant::now(),
            ));
            gh_error(StatusCode::from_u16(status).unwrap(), "Server Error")
        }
        None => answer(&st, req, next).await,
    };
    let mut s = st.lock().unwrap();
    let now = s.now();
    let date = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    resp.headers_mut()
        .insert(axum::http::header::DATE, date.parse().unwrap());
    if s.rate_reset <= now.timestamp() {
        s.rate_reset = now.timestamp() + 3600;
        s.rate_used.clear();
    }
    let limit = match credential.as_str() {
        "anonymous" => ANONYMOUS_RATE_LIMIT,
        _ => RATE_LIMIT,
    };
    let elsewhere = s.rate_spent_elsewhere;
    let used = s.rate_used.entry(credential).or_insert(elsewhere);
    *used += 1;
    let remaining = limit.saturating_sub(*used);
    let used = *used;
    let reset = s.rate_reset;
    for (name, value) in [
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-used", used.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
        ("x-ratelimit-resource", "core".to_string()),
    ] {
        // A scripted rate-limit answer keeps the headers it was given.
        resp.headers_mut()
            .entry(name)
            .or_insert(value.parse().unwrap());
    }
    resp
}

async fn answer(st: &Shared, req: Request, next: Next) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let limited = {
        let mut s = st.lock().unwrap();
        s.requests
            .push((req.method().to_string(), path.clone(), Instant::now()));
        let is_read = req.method() == axum::http::Method::GET && !path.starts_with("/app/");
        if is_read {
            s.rate_limited.pop_front()
        } else {
            None
        }
    };
    if let Some((status, headers)) = limited {
        let mut resp = gh_error(
            StatusCode::from_u16(status).unwrap(),
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        );
        for (k, v) in headers {
            resp.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        return resp;
    }
    next.run(req).await
}

async fn access_tokens(
    State(st): State<Shared>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Err(r) = check_jwt(&s, &headers) {
        return r;
    }
    if !s.installations.contains_key(&id) {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    s.tokens_issued += 1;
    let token = format!("ghs_test{:04}_{id}", s.tokens_issued);
    s.tokens.insert(token.clone(), (id, true));
    let expires = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    (
        StatusCode::CREATED,
        Json(json!({
            "token": token, "expires_at": expires,
            "permissions": {"actions": "write", "checks": "write", "metadata": "read", "contents": "read"},
            "repository_selection": "all"
        })),
    )
        .into_response()
}

async fn repo_installation(
    State(st): State<Shared>,
    Path((o, r)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let s = st.lock().unwrap();
    if let Err(r) = check_jwt(&s, &headers) {
        return r;
    }
    let repo = format!("{o}/{r}");
    match s
        .installations
        .iter()
        .find(|(_, repos)| repos.contains(&repo))
    {
        Some((id, _)) => Json(installation_json(&s, *id)).into_response(),
        None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn create_run(s: &mut GhState, repo: &str, workflow: &str, git_ref: &str) -> u64 {
    let id = s.next_run_id;
    s.next_run_id += 1;
    let sha = git_ref
        .strip_prefix("trunk/")
        .unwrap_or(git_ref)
        .to_string();
    s.runs.push(FakeRun {
        id,
        repo: repo.into(),
        workflow_file: workflow.into(),
        head_sha: sha,
        head_branch: git_ref.into(),
        event: "workflow_dispatch".into(),
        status: "queued".into(),
        conclusion: None,
        created_at: s.now(),
    });
    id
}

async fn dispatches(
    State(st): State<Shared>,
    Path((o, r, wf)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let repo = format!("{o}/{r}");
    let (answer, token) = {
        let mut s = st.lock().unwrap();
        let token = match check_token(&s, &headers, &repo) {
            Ok(t) => t,
            Err(resp) => return resp,
        };
        let answer = s.answers.pop_front().unwrap_or(DispatchAnswer::Create);
        if let DispatchAnswer::ExpireToken = answer {
            if let Some(t) = s.tokens.get_mut(&token) {
                t.1 = false;
            }
            return gh_error(StatusCode::UNAUTHORIZED, "Bad credentials");
        }
        (answer, token)
    };
    let Ok(body_json) = serde_json::from_slice::<Value>(&body) else {
        return gh_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let Some(git_ref) = body_json
        .get("ref")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return gh_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request.\n\n\"ref\" wasn't supplied.",
        );
    };
    let details = body_json.get("return_run_details") == Some(&Value::Bool(true));
    if let DispatchAnswer::Slow(d) = &answer {
        tokio::time::sleep(*d).await;
    }
    let mut s = st.lock().unwrap();
    s.dispatches.push(Dispatch {
        repo: repo.clone(),
        workflow: wf.clone(),
        body: body_json.clone(),
        token,
        at: Instant::now(),
    });
    match answer {
        DispatchAnswer::Reject(code, msg) => gh_error(StatusCode::from_u16(code).unwrap(), &msg),
        DispatchAnswer::FailBeforeCreate(code) => {
            gh_error(StatusCode::from_u16(code).unwrap(), "Server Error")
        }
        DispatchAnswer::FailAfterCreate(code) => {
            create_run(&mut s, &repo, &wf, &git_ref);
            gh_error(StatusCode::from_u16(code).unwrap(), "Server Error")
        }
        DispatchAnswer::CreateNoDetails => {
            create_run(&mut s, &repo, &wf, &git_ref);
            StatusCode::NO_CONTENT.into_response()
        }
        DispatchAnswer::Create | DispatchAnswer::Slow(_) | DispatchAnswer::ExpireToken => {
            let id = create_run(&mut s, &repo, &wf, &git_ref);
            if details {
                Json(json!({
                    "workflow_run_id": id,
                    "run_url": format!("https://api.github.com/repos/{repo}/actions/runs/{id}"),
                    "html_url": format!("https://github.com/{repo}/actions/runs/{id}"),
                }))
                .into_response()
            } else {
                StatusCode::NO_CONTENT.into_response()
            }
        }
    }
}

fn run_json(r: &FakeRun) -> Value {
    json!({
        "id": r.id, "name": "trunk", "path": format!(".github/workflows/{}", r.workflow_file),
        "head_sha": r.head_sha, "head_branch": r.head_branch, "event": r.event,
        "status": r.status, "conclusion": r.conclusion, "run_attempt": 1, "workflow_id": 1,
        "created_at": r.created_at.to_rfc3339(), "updated_at": r.created_at.to_rfc3339(),
        "html_url": format!("https://github.com/{}/actions/runs/{}", r.repo, r.id),
        "url": format!("https://api.github.com/repos/{}/actions/runs/{}", r.repo, r.id),
    })
}

async fn list_runs(
    State(st): State<Shared>,
    Path((o, r, wf)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let repo = format!("{o}/{r}");
    let s = st.lock().unwrap();
    if let Err(resp) = check_token(&s, &headers, &repo) {
        return resp;
    }
    let runs: Vec<Value> = s
        .runs
        .iter()
        .rev()
        .filter(|x| x.repo == repo && x.workflow_file == wf)
        .filter(|x| q.get("branch").is_none_or(|b| &x.head_branch == b))
        .filter(|x| q.get("event").is_none_or(|e| &x.event == e))
        .filter(|x| q.get("status").is_none_or(|e| &x.status == e))
        .map(run_json)
        .collect();
    Json(json!({"total_count": runs.len(), "workflow_runs": runs})).into_response()
}

async fn get_run(
    State(st): State<Shared>,
    Path((o, r, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    let repo = format!("{o}/{r}");
    let s = st.lock().unwrap();
    if let Err(resp) = check_token(&s, &headers, &repo) {
        return resp;
    }
    match s.runs.iter().find(|x| x.id == id && x.repo == repo) {
        Some(run) => Json(run_json(run)).into_response(),
        None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn list_jobs(
    State(st): State<Shared>,
    Path((o, r, run)): Path<(String, String, u64)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let repo = format!("{o}/{r}");
    let s = st.lock().unwrap();
    if let Err(resp) = check_token(&s, &headers, &repo) {
        return resp;
    }
    let all = s.jobs.get(&run).cloned().unwrap_or_default();
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(30);
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let jobs: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    Json(json!({"total_count": all.len(), "jobs": jobs})).into_response()
}

async fn list_workflows(
    State(st): State<Shared>,
    Path((o, r)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let repo = format!("{o}/{r}");
    let s = st.lock().unwrap();
    if let Err(resp) = check_token(&s, &headers, &repo) {
        return resp;
    }
    let wfs: Vec<Value> = s
        .workflows
        .iter()
        .enumerate()
        .map(|(i, (name, path, state))| json!({"id": i + 1, "name": name, "path": path, "state": state}))
        .collect();
    Json(json!({"total_count": wfs.len(), "workflows": wfs})).into_response()
}

async fn hook_deliveries(
    State(st): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let s = st.lock().unwrap();
    if let Err(r) = check_jwt(&s, &headers) {
        return r;
    }
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(30);
    let start: usize = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut all: Vec<_> = s
        .hook_deliveries
        .iter()
        .filter(|d| match q.get("status").map(String::as_str) {
            Some("failure") => !(200..300).contains(&d.3),
            Some("success") => (200..300).contains(&d.3),
            _ => true,
        })
        .cloned()
        .collect();
    all.sort_by_key(|d| std::cmp::Reverse(d.2)); // newest first
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(per_page)
        .map(|(id, guid, at, code)| {
            json!({"id": id, "guid": guid, "delivered_at": at.to_rfc3339(), "redelivery": false,
                   "status": if (200..300).contains(code) { "OK" } else { "Timeout" },
                   "status_code": code, "event": "workflow_run", "action": "completed"})
        })
        .collect();
    let mut resp = Json(page).into_response();
    if start + per_page < all.len() {
        let status = q
            .get("status")
            .map(|s| format!("&status={s}"))
            .unwrap_or_default();
        let link = format!(
            "<https://api.github.com/app/hook/deliveries?per_page={per_page}{status}&cursor={}>; rel=\"next\"",
            start + per_page
        );
        resp.headers_mut().insert("link", link.parse().unwrap());
    }
    resp
}

async fn redeliver(State(st): State<Shared>, Path(id): Path<u64>, headers: HeaderMap) -> Response {
    let mut s = st.lock().unwrap();
    if let Err(r) = check_jwt(&s, &headers) {
        return r;
    }
    if !s.hook_deliveries.iter().any(|d| d.0 == id) {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    s.redeliveries.push(id);
    (StatusCode::ACCEPTED, Json(json!({}))).into_response()
}

async fn list_issues(
    State(st): State<Shared>,
    Path((o, r)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let s = st.lock().unwrap();
    if let Err(resp) = check_token(&s, &headers, &format!("{o}/{r}")) {
        return resp;
    }
    let want: Vec<&str> = q
        .get("labels")
        .map(|l| l.split(',').collect())
        .unwrap_or_default();
    let open_only = q.get("state").is_none_or(|x| x == "open");
    let mut open: Vec<(&u64, &FakeIssue)> = s
        .issues
        .iter()
        .filter(|(_, (open, labels, _))| {
            (!open_only || *open) && want.iter().all(|w| labels.iter().any(|l| l == w))
        })
        .collect();
    // GitHub's default order: newest first (`sort=created&direction=desc`).
    open.sort_by_key(|(n, _)| std::cmp::Reverse(**n));
    let out: Vec<Value> = open
        .into_iter()
        .map(|(n, (open, labels, _))| {
            json!({"number": n, "state": if *open {"open"} else {"closed"},
                   "labels": labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>()})
        })
        .collect();
    paginated(out, &format!("/repos/{o}/{r}/issues"), &q)
}

/// One page of `all` as GitHub answers a list: `per_page` (default 30, at most 100) from
/// `page` (default 1), with a `Link` header whose `rel="next"` names the next page.
fn paginated(all: Vec<Value>, path: &str, q: &HashMap<String, String>) -> Response {
    let (items, link) = page_of(&all, path, q);
    let mut resp = Json(items).into_response();
    if let Some(link) = link {
        resp.headers_mut().insert("link", link.parse().unwrap());
    }
    resp
}

/// One page of `all` and the `Link` header that names the next and last pages, if any.
fn page_of(all: &[Value], path: &str, q: &HashMap<String, String>) -> (Vec<Value>, Option<String>) {
    let per_page: usize = q
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let items: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    let pages = all.len().div_ceil(per_page).max(1);
    let mut link = None;
    if page < pages {
        let mut query: Vec<(String, String)> = q
            .iter()
            .filter(|(k, _)| *k != "page")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        query.sort();
        let link_to = |n: usize, rel: &str| {
            let mut u = url::Url::parse(&format!("https://api.github.com{path}")).unwrap();
            u.query_pairs_mut()
                .extend_pairs(&query)
                .append_pair("page", &n.to_string());
            format!("<{u}>; rel=\"{rel}\"")
        };
        link = Some(format!(
            "{}, {}",
            link_to(page + 1, "next"),
            link_to(pages, "last")
        ));
    }
    (items, link)
}

async fn issue_events(
    State(st): State<Shared>,
    Path((o, r, n)): Path<(String, String, u64)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let s = st.lock().unwrap();
    if let Err(resp) = check_token(&s, &headers, &format!("{o}/{r}")) {
        return resp;
    }
    match s.issues.get(&n) {
        Some((_, _, events)) => paginated(
            events
                .iter()
                .map(|(e, l, a)| json!({"event": e, "label": {"name": l}, "actor": {"login": a}}))
                .collect(),
            &format!("/repos/{o}/{r}/issues/{n}/events"),
            &q,
        ),
        None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn permission(
    State(st): State<Shared>,
    Path((o, r, user)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let s = st.lock().unwrap();
    if let Err(resp) = check_token(&s, &headers, &format!("{o}/{r}")) {
        return resp;
    }
    if let Some(code) = s.failing_permissions.get(&user) {
        let status = StatusCode::from_u16(*code).unwrap();
        let message = if status == StatusCode::NOT_FOUND {
            "Not Found"
        } else {
            "Server Error"
        };
        return gh_error(status, message);
    }
    let (p, role) = s
        .permissions
        .get(&user)
        .cloned()
        .unwrap_or(("none".into(), "none".into()));
    Json(json!({"permission": p, "role_name": role, "user": {"login": user}})).into_response()
}

// ---- the App itself, its installations, the manifest flow, commits and tags ----

/// The permissions the App asks for (app-manifest.yml), as an installation grants them.
fn all_permissions() -> Value {
    json!({
        "actions": "write", "checks": "write", "contents": "read", "issues": "write",
        "metadata": "read", "pull_requests": "write",
    })
}

/// The events the App subscribes to (app-manifest.yml), as an installation has them.
fn all_events() -> Value {
    json!(["workflow_job", "workflow_run", "push"])
}

fn installation_json(s: &GhState, id: u64) -> Value {
    let repos = s.installations.get(&id).cloned().unwrap_or_default();
    let account = repos
        .first()
        .and_then(|r| r.split('/').next())
        .unwrap_or("octocat")
        .to_string();
    let permissions = s
        .installation_permissions
        .get(&id)
        .cloned()
        .unwrap_or_else(all_permissions);
    let events = s
        .installation_events
        .get(&id)
        .cloned()
        .unwrap_or_else(all_events);
    json!({
        "id": id, "app_id": APP_ID, "app_slug": s.app.1, "target_id": 21003710,
        "target_type": "Organization", "repository_selection": "selected",
        "account": {"login": account, "id": 21003710, "type": "Organization"},
        "access_tokens_url": format!("https://api.github.com/app/installations/{id}/access_tokens"),
        "repositories_url": "https://api.github.com/installation/repositories",
        "html_url": format!("https://github.com/organizations/{account}/settings/installations/{id}"),
        "permissions": permissions, "events": events,
        "created_at": "2026-01-05T10:00:00Z", "updated_at": "2026-01-05T10:00:00Z",
        "single_file_name": null, "suspended_at": null, "suspended_by": null,
    })
}

/// An App object as `GET /app` and the manifest conversion show it.
fn app_json(name: &str, slug: &str, owner: &str, installations: usize) -> Value {
    json!({
        "id": APP_ID, "slug": slug, "node_id": "A_kwDOBQYHCM4AAAtest", "client_id": "Iv23liTestClient",
        "owner": {"login": owner, "id": 21003710, "type": "Organization"},
        "name": name, "description": "Restarts failed trunk workflow runs",
        "external_url": "https://example.invalid/autorevert",
        "html_url": format!("https://github.com/apps/{slug}"),
        "created_at": "2026-01-05T10:00:00Z", "updated_at": "2026-01-05T10:00:00Z",
        "permissions": all_permissions(), "events": all_events(),
        "installations_count": installations,
    })
}

async fn get_app(State(st): State<Shared>, headers: HeaderMap) -> Response {
    let s = st.lock().unwrap();
    if let Err(r) = check_jwt(&s, &headers) {
        return r;
    }
    let mut app = app_json(&s.app.0, &s.app.1, "pytorch", s.installations.len());
    if let Some((permissions, events)) = &s.app_grants {
        app["permissions"] = permissions.clone();
        app["events"] = events.clone();
    }
    Json(app).into_response()
}

async fn list_installations(
    State(st): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let s = st.lock().unwrap();
    if let Err(r) = check_jwt(&s, &headers) {
        return r;
    }
    let mut ids: Vec<u64> = s.installations.keys().copied().collect();
    ids.sort();
    let list: Vec<Value> = ids.iter().map(|id| installation_json(&s, *id)).collect();
    paginated(list, "/app/installations", &q)
}

/// GitHub's new-App page receiving the manifest form: GitHub registers the App (here: keeps
/// the manifest under a new code) and sends the browser to `redirect_url?code=…&state=…`.
fn new_app(st: &Shared, owner: &str, query: &HashMap<String, String>, body: &[u8]) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let Some(manifest) = form
        .get("manifest")
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
    else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid GitHub App configuration",
        )
            .into_response();
    };
    let Some(redirect) = manifest["redirect_url"].as_str().map(str::to_string) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, "redirect_url is required").into_response();
    };
    let code = uuid::Uuid::new_v4().simple().to_string(); // GitHub's codes are hex too
    let mut m = manifest;
    m["owner"] = json!(owner);
    st.lock().unwrap().manifests.insert(code.clone(), Some(m));
    let state = url::form_urlencoded::byte_serialize(
        query.get("state").map(String::as_bytes).unwrap_or_default(),
    )
    .collect::<String>();
    let location = format!("{redirect}?code={code}&state={state}");
    (StatusCode::FOUND, [("location", location)]).into_response()
}

async fn new_app_form(
    State(st): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    new_app(&st, "octocat", &q, &body)
}

async fn new_org_app_form(
    State(st): State<Shared>,
    Path(org): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    new_app(&st, &org, &q, &body)
}

/// `POST /app-manifests/{code}/conversions`: once per code, no authentication; 201 with the
/// App, its private key (the test key, so the fake accepts its JWTs) and webhook secret.
async fn conversions(State(st): State<Shared>, Path(code): Path<String>) -> Response {
    let mut s = st.lock().unwrap();
    let Some(manifest) = s.manifests.get_mut(&code).and_then(Option::take) else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let name = manifest["name"].as_str().unwrap_or("app").to_string();
    let mut app = app_json(
        &name,
        &name,
        manifest["owner"].as_str().unwrap_or("octocat"),
        0,
    );
    s.app = (name.clone(), name);
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/test-app.private-key.pem"
    ))
    .unwrap();
    app["client_secret"] = json!("1f2e3d4c5b6a79880796a5b4c3d2e1f0testtest");
    app["webhook_secret"] = json!(s.generated_secret);
    app["pem"] = json!(pem);
    (StatusCode::CREATED, Json(app)).into_response()
}

async fn list_commits(
    State(st): State<Shared>,
    Path((o, r)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let repo = format!("{o}/{r}");
    let s = st.lock().unwrap();
    if let Err(resp) = check_token(&s, &headers, &repo) {
        return resp;
    }
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(30);
    let list: Vec<Value> = s
        .commits
        .get(&repo)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .take(per_page)
        .map(|sha| {
            json!({"sha": sha, "node_id": "C_test",
                   "commit": {"message": "a commit", "author": {"name": "dev", "date": "2026-01-05T10:00:00Z"}},
                   "url": format!("https://api.github.com/repos/{repo}/commits/{sha}"),
                   "html_url": format!("https://github.com/{repo}/commit/{sha}")})
        })
        .collect();
    Json(list).into_response()
}

async fn git_ref(
    State(st): State<Shared>,
    Path((o, r, git_ref)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let repo = format!("{o}/{r}");
    let s = st.lock().unwrap();
    if let Err(resp) = check_token(&s, &headers, &repo) {
        return resp;
    }
    let tag = git_ref
        .strip_prefix("tags/")
        .unwrap_or_default()
        .to_string();
    if !s.tags.contains(&(repo.clone(), tag.clone())) {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let sha = tag.rsplit('/').next().unwrap_or_default();
    Json(json!({
        "ref": format!("refs/tags/{tag}"), "node_id": "REF_test",
        "url": format!("https://api.github.com/repos/{repo}/git/refs/tags/{tag}"),
        "object": {"sha": sha, "type": "commit",
                   "url": format!("https://api.github.com/repos/{repo}/git/commits/{sha}")},
    }))
    .into_response()
}

impl FakeGitHub {
    /// A commit lands on the repository's main branch (the newest), with its `trunk/<sha>`
    /// tag when `tagged`.
    pub fn push_commit(&self, repo: &str, sha: &str, tagged: bool) {
        let mut s = self.state.lock().unwrap();
        s.commits
            .entry(repo.into())
            .or_default()
            .insert(0, sha.into());
        if tagged {
            s.tags.insert((repo.into(), format!("trunk/{sha}")));
        }
    }

    /// The installation grants these permissions instead of all the App asks for.
    pub fn set_installation_permissions(&self, installation: u64, permissions: Value) {
        let mut s = self.state.lock().unwrap();
        s.installation_permissions.insert(installation, permissions);
    }

    /// The installation is subscribed to these events instead of all the App's.
    pub fn set_installation_events(&self, installation: u64, events: Value) {
        let mut s = self.state.lock().unwrap();
        s.installation_events.insert(installation, events);
    }

    /// The App itself asks for these permissions and events (an App registered from an
    /// older manifest).
    pub fn set_app_grants(&self, permissions: Value, events: Value) {
        let mut s = self.state.lock().unwrap();
        s.app_grants = Some((permissions, events));
    }

    /// `n` more installations of the App, on other accounts, with ids below every other
    /// (listed first: GitHub lists installations by id).
    pub fn add_installations(&self, n: u64) {
        let mut s = self.state.lock().unwrap();
        for i in 1..=n {
            s.installations.insert(i, vec![format!("org-{i}/project")]);
        }
    }

    /// GitHub answers every request with `status` (Some(503): an outage) or serves again.
    pub fn set_down(&self, status: Option<u16>) {
        self.state.lock().unwrap().down = status;
    }

    /// Spends `n` requests of every credential's rate limit this hour, those seen so far
    /// and those seen later (tokens issued later, too).
    pub fn spend_rate_limit(&self, n: u64) {
        let mut s = self.state.lock().unwrap();
        for used in s.rate_used.values_mut() {
            *used += n;
        }
        s.rate_spent_elsewhere += n;
    }

    /// The webhook secret GitHub generated for the App made from a manifest.
    pub fn generated_secret(&self) -> String {
        self.state.lock().unwrap().generated_secret.clone()
    }
}

impl FakeGitHub {
    /// An open issue carrying `label`, applied by `by`, who has `permission` (role name).
    pub fn open_kill_switch(
        &self,
        number: u64,
        label: &str,
        by: &str,
        permission: &str,
        role: &str,
    ) {
        let mut s = self.state.lock().unwrap();
        s.issues.insert(
            number,
            (
                true,
                vec![label.into()],
                vec![("labeled".into(), label.into(), by.into())],
            ),
        );
        s.permissions
            .insert(by.into(), (permission.into(), role.into()));
    }

    /// `login`'s permission lookup answers `status` (500: GitHub failing, 404: ...) from now on.
    pub fn fail_permission(&self, login: &str, status: u16) {
        let mut s = self.state.lock().unwrap();
        s.failing_permissions.insert(login.into(), status);
    }

    /// GitHub's clock runs `skew` from the true one (negative: behind) from now on: its
    /// `Date` headers and the runs it creates say so. The App's clock, being the true one,
    /// is then `-skew` off GitHub's. App JWTs are still checked on the true clock: GitHub
    /// refuses a JWT issued in its future, a hazard of its own not modelled here.
    pub fn set_clock_skew(&self, skew: chrono::Duration) {
        self.state.lock().unwrap().clock_skew = skew;
    }

    /// A run that exists on GitHub (whether or not a webhook told the App about it).
    pub fn add_run(&self, run: FakeRun) {
        self.state.lock().unwrap().runs.push(run);
    }

    /// Finishes a run on GitHub without sending any webhook.
    pub fn complete_run(&self, id: u64, conclusion: &str) {
        let mut s = self.state.lock().unwrap();
        if let Some(r) = s.runs.iter_mut().find(|r| r.id == id) {
            r.status = "completed".into();
            r.conclusion = Some(conclusion.into());
        }
    }

    pub fn close_issue(&self, number: u64) {
        if let Some(i) = self.state.lock().unwrap().issues.get_mut(&number) {
            i.0 = false;
        }
    }

    /// Starts on a free loopback port with one installation covering `repos`.
    pub async fn start(installation: u64, repos: &[&str]) -> FakeGitHub {
        let public = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/keys/test-app.public-key.pem"
        ))
        .unwrap();
        let state = Arc::new(Mutex::new(GhState {
            decoding: DecodingKey::from_rsa_pem(&public).unwrap(),
            installations: HashMap::from([(
                installation,
                repos.iter().map(|r| r.to_string()).collect(),
            )]),
            tokens: HashMap::new(),
            tokens_issued: 0,
            requests: vec![],
            dispatches: vec![],
            runs: vec![],
            jobs: HashMap::new(),
            answers: VecDeque::new(),
            next_run_id: 9_100_000_001,
            next_job_id: 70_000_000_001,
            files: HashMap::new(),
            workflows: vec![(
                "trunk".into(),
                ".github/workflows/trunk.yml".into(),
                "active".into(),
            )],
            issues: HashMap::new(),
            permissions: HashMap::new(),
            failing_permissions: HashMap::new(),
            clock_skew: chrono::Duration::zero(),
            hook_deliveries: vec![],
            contents: Contents::default(),
            redeliveries: vec![],
            rate_limited: VecDeque::new(),
            app: (
                "pytorch-autorevert-restarter".into(),
                "pytorch-autorevert-restarter".into(),
            ),
            installation_permissions: HashMap::new(),
            installation_events: HashMap::new(),
            app_grants: None,
            manifests: HashMap::new(),
            commits: HashMap::new(),
            tags: HashSet::new(),
            generated_secret: format!("whsec{}", uuid::Uuid::new_v4().simple()),
            rate_used: HashMap::new(),
            rate_reset: 0,
            rate_spent_elsewhere: 0,
            down: None,
            checks: FakeChecks::default(),
            reverts: FakeReverts::default(),
        }));
        let app = Router::new()
            .route("/app/installations/{id}/access_tokens", post(access_tokens))
            .route("/repos/{o}/{r}/installation", get(repo_installation))
            .route(
                "/repos/{o}/{r}/actions/workflows/{wf}/dispatches",
                post(dispatches),
            )
            .route("/repos/{o}/{r}/actions/workflows/{wf}/runs", get(list_runs))
            .route("/repos/{o}/{r}/actions/runs/{run}/jobs", get(list_jobs))
            .route("/repos/{o}/{r}/actions/runs/{run}", get(get_run))
            .route("/repos/{o}/{r}/actions/workflows", get(list_workflows))
            .route("/repos/{o}/{r}/contents/{*path}", get(contents))
            .route("/repos/{o}/{r}/issues", get(list_issues))
            .route("/app/hook/deliveries", get(hook_deliveries))
            .route("/app/hook/deliveries/{id}/attempts", post(redeliver))
            .route("/repos/{o}/{r}/issues/{n}/events", get(issue_events))
            .route(
                "/repos/{o}/{r}/collaborators/{user}/permission",
                get(permission),
            )
            .route("/app", get(get_app))
            .route("/app/installations", get(list_installations))
            .route("/settings/apps/new", post(new_app_form))
            .route(
                "/organizations/{org}/settings/apps/new",
                post(new_org_app_form),
            )
            .route("/app-manifests/{code}/conversions", post(conversions))
            .route("/repos/{o}/{r}/commits", get(list_commits))
            .route("/repos/{o}/{r}/git/ref/{*git_ref}", get(git_ref))
            .merge(check_run_routes())
            .merge(revert_routes())
            .fallback(|| async { gh_error(StatusCode::NOT_FOUND, "Not Found") })
            .layer(middleware::from_fn_with_state(state.clone(), log_requests))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeGitHub { url, state }
    }

    pub fn script(&self, answers: impl IntoIterator<Item = DispatchAnswer>) {
        self.state.lock().unwrap().answers.extend(answers);
    }

    pub fn dispatches(&self) -> Vec<Dispatch> {
        self.state.lock().unwrap().dispatches.clone()
    }

    /// Requests whose method and path (with query) contain `needle`.
    pub fn requests_matching(&self, method: &str, needle: &str) -> Vec<(String, Instant)> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(m, p, _)| m == method && p.contains(needle))
            .map(|(_, p, t)| (p.clone(), *t))
            .collect()
    }

    pub fn tokens_issued(&self) -> u32 {
        self.state.lock().unwrap().tokens_issued
    }

    /// A token as a user would hold one (GITHUB_TOKEN), valid for `installation`'s repos.
    pub fn add_token(&self, token: &str, installation: u64) {
        self.state
            .lock()
            .unwrap()
            .tokens
            .insert(token.into(), (installation, true));
    }

    pub fn add_file(&self, path: &str, text: &str) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.into(), text.into());
    }

    pub fn set_jobs(&self, run_id: u64, jobs: Vec<Value>) {
        self.state.lock().unwrap().jobs.insert(run_id, jobs);
    }
}

// ---- webhooks from the fake's own state ----
//
// A run the fake knows (a push run a test added, or the run a dispatch created) changes
// state here first, and its deliveries are then generated from that state: a test says
// "GitHub completes the restart with these job conclusions" and the bodies follow, with
// the ids, tag, trigger and timestamps GitHub would put in them.

impl FakeRun {
    /// A `trunk` run of pytorch/pytorch on `main`, started by a push of `sha`; queued.
    pub fn push(id: u64, sha: &str) -> FakeRun {
        FakeRun {
            id,
            repo: super::REPO.into(),
            workflow_file: "trunk.yml".into(),
            head_sha: sha.into(),
            head_branch: "main".into(),
            event: "push".into(),
            status: "queued".into(),
            conclusion: None,
            created_at: chrono::Utc::now(),
        }
    }
}

fn now_secs() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The `status` GitHub sends with each action (`requested` runs are `queued`).
fn status_for(action: &str) -> &str {
    match action {
        "requested" => "queued",
        other => other,
    }
}

impl FakeGitHub {
    /// GitHub creates a `trunk` run on `main` for a push of `sha` (queued); returns its id,
    /// the next one GitHub hands out.
    pub fn push_run(&self, sha: &str) -> u64 {
        let mut s = self.state.lock().unwrap();
        let id = s.next_run_id;
        s.next_run_id += 1;
        let created_at = s.now();
        s.runs.push(FakeRun {
            created_at,
            ..FakeRun::push(id, sha)
        });
        id
    }

    /// The next run GitHub creates (a dispatch, `push_run`) gets this id.
    pub fn set_next_run_id(&self, id: u64) {
        self.state.lock().unwrap().next_run_id = id;
    }

    /// The run as GitHub has it now; panics when there is no such run.
    pub fn run(&self, id: u64) -> FakeRun {
        let s = self.state.lock().unwrap();
        s.runs
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .unwrap_or_else(|| panic!("the fake GitHub has no run {id}"))
    }

    /// The runs dispatches created on `trunk/<sha>`, oldest first.
    pub fn dispatched_runs(&self, sha: &str) -> Vec<FakeRun> {
        let tag = format!("trunk/{sha}");
        let s = self.state.lock().unwrap();
        s.runs
            .iter()
            .filter(|r| r.event == "workflow_dispatch" && r.head_branch == tag)
            .cloned()
            .collect()
    }

    /// GitHub starts the run (`in_progress`).
    pub fn start_run(&self, id: u64) {
        let mut s = self.state.lock().unwrap();
        let run = s.runs.iter_mut().find(|r| r.id == id);
        run.unwrap_or_else(|| panic!("the fake GitHub has no run {id}"))
            .status = "in_progress".into();
    }

    /// GitHub queues jobs named `names` in the run (REST job objects, in this order);
    /// returns their ids.
    pub fn queue_jobs(&self, run_id: u64, names: &[&str]) -> Vec<u64> {
        let run = self.run(run_id);
        let mut s = self.state.lock().unwrap();
        let mut ids = vec![];
        for name in names {
            let id = s.next_job_id;
            s.next_job_id += 1;
            let mut j = super::rest_job(id, run_id, &run.head_sha, name, "success");
            j["head_branch"] = json!(run.head_branch);
            j["workflow_name"] = json!(workflow_name(&s, &run.workflow_file));
            j["status"] = json!("queued");
            j["conclusion"] = Value::Null;
            j["created_at"] = json!(now_secs());
            j["started_at"] = json!(now_secs()); // GitHub's queued jobs carry one too
            j["completed_at"] = Value::Null;
            j["html_url"] = json!(format!(
                "https://github.com/{}/actions/runs/{run_id}/job/{id}",
                run.repo
            ));
            j["url"] = json!(format!(
                "https://api.github.com/repos/{}/actions/jobs/{id}",
                run.repo
            ));
            j["run_url"] = json!(format!(
                "https://api.github.com/repos/{}/actions/runs/{run_id}",
                run.repo
            ));
            s.jobs.entry(run_id).or_default().push(j);
            ids.push(id);
        }
        ids
    }

    /// Each named job of the run completes with its conclusion; returns their ids. Panics
    /// on a name the run does not have.
    pub fn complete_jobs(&self, run_id: u64, jobs: &[(&str, &str)]) -> Vec<u64> {
        let mut s = self.state.lock().unwrap();
        let all = s.jobs.entry(run_id).or_default();
        let mut ids = vec![];
        for (name, conclusion) in jobs {
            let j = all
                .iter_mut()
                .find(|j| j["name"] == json!(name))
                .unwrap_or_else(|| panic!("run {run_id} has no job {name:?} (queue it first)"));
            j["status"] = json!("completed");
            j["conclusion"] = json!(conclusion);
            j["completed_at"] = json!(now_secs());
            ids.push(j["id"].as_u64().unwrap());
        }
        ids
    }

    /// The run's jobs as the REST API lists them.
    pub fn jobs_of(&self, run_id: u64) -> Vec<Value> {
        let s = self.state.lock().unwrap();
        s.jobs.get(&run_id).cloned().unwrap_or_default()
    }

    /// The `workflow_run` delivery GitHub sends for the run as it is now, with `action`
    /// (`requested`, `in_progress`, `completed`). Panics when the action does not match the
    /// run's state (e.g. `completed` for a queued run: change the fake first).
    pub fn run_event(&self, run_id: u64, action: &str) -> Vec<u8> {
        let run = self.run(run_id);
        assert_eq!(
            run.status,
            status_for(action),
            "run_event({run_id}, {action:?}): GitHub has this run as {}; change the fake \
             first (start_run, complete_run)",
            run.status
        );
        let name = workflow_name(&self.state.lock().unwrap(), &run.workflow_file);
        super::RunEvent::new(action, &run.head_sha)
            .run(run.id)
            .workflow(&name, &run.workflow_file)
            .event(&run.event)
            .branch(&run.head_branch)
            .status(&run.status)
            .conclusion(run.conclusion.as_deref())
            .repo(&run.repo)
            .created_at(run.created_at)
            .body()
    }

    /// The `workflow_job` deliveries, one per job of the run whose state matches `action`
    /// (`queued`, `in_progress`, `completed`), in the run's job order. Panics when no job
    /// of the run is in that state.
    pub fn job_events(&self, run_id: u64, action: &str) -> Vec<Vec<u8>> {
        let ids: Vec<u64> = self
            .jobs_of(run_id)
            .iter()
            .filter(|j| j["status"] == json!(status_for(action)))
            .map(|j| j["id"].as_u64().unwrap())
            .collect();
        assert!(
            !ids.is_empty(),
            "job_events({run_id}, {action:?}): no job of this run is {action} on GitHub"
        );
        ids.into_iter()
            .map(|id| self.job_event(run_id, id, action))
            .collect()
    }

    /// The `workflow_job` delivery GitHub sends for one job of the run as it is now, with
    /// `action`. Panics when the action does not match the job's state.
    pub fn job_event(&self, run_id: u64, job_id: u64, action: &str) -> Vec<u8> {
        let run = self.run(run_id);
        let j = self
            .jobs_of(run_id)
            .into_iter()
            .find(|j| j["id"] == json!(job_id))
            .unwrap_or_else(|| panic!("run {run_id} has no job {job_id}"));
        assert_eq!(
            j["status"],
            json!(status_for(action)),
            "job_event({run_id}, {job_id}, {action:?}): GitHub has this job as {}; change \
             the fake first (queue_jobs, complete_jobs)",
            j["status"]
        );
        let times = (
            j["created_at"].clone(),
            j["started_at"].clone(),
            j["completed_at"].clone(),
        );
        super::JobEvent::new(action, &run.head_sha, j["name"].as_str().unwrap())
            .id(job_id)
            .run(run_id)
            .workflow(j["workflow_name"].as_str().unwrap_or("trunk"))
            .branch(&run.head_branch)
            .status(j["status"].as_str().unwrap())
            .conclusion(j["conclusion"].as_str())
            .repo(&run.repo)
            .edit(move |p| {
                let w = &mut p["workflow_job"];
                (w["created_at"], w["started_at"], w["completed_at"]) = times;
            })
            .body()
    }
}

/// The display name of a workflow file, as the fake lists it (`trunk.yml` -> `trunk`).
fn workflow_name(s: &GhState, file: &str) -> String {
    s.workflows
        .iter()
        .find(|(_, path, _)| path.rsplit('/').next() == Some(file))
        .map(|(name, _, _)| name.clone())
        .unwrap_or_else(|| file.trim_end_matches(".yml").to_string())
}

// ---- check runs (permission `checks: write`) ----
//
// Created with `POST /repos/{o}/{r}/check-runs`, listed per commit with
// `GET /repos/{o}/{r}/commits/{ref}/check-runs` (`check_name`, `status`, `filter=latest`
// by default: the newest per name; `all`), updated with
// `PATCH /repos/{o}/{r}/check-runs/{id}`, validated as GitHub documents them. Failures are
// injected per call (`CheckRunAnswer`) or for every call while `down` is set.

/// How the next check-run call (list, create or update) answers.
#[derive(Debug, Clone)]
pub enum CheckRunAnswer {
    /// As GitHub does.
    Normal,
    /// This status, nothing done.
    Fail(u16),
    /// Creates (or updates), then answers this status (an unknown outcome for the App).
    ActThenFail(u16),
    /// Creates (or updates) at once, then holds the answer this long.
    ActThenHold(Duration),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakeCheckRun {
    pub id: u64,
    pub repo: String,
    pub head_sha: String,
    pub name: String,
    pub external_id: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub title: String,
    pub summary: String,
    pub details_url: Option<String>,
    /// PATCHes applied to it.
    pub updates: u32,
}

#[derive(Debug, Default)]
pub struct FakeChecks {
    pub runs: Vec<FakeCheckRun>,
    pub answers: VecDeque<CheckRunAnswer>,
    /// Every check-run call answers this status while set.
    pub down: Option<u16>,
}

fn check_run_routes() -> Router<Shared> {
    Router::new()
        .route("/repos/{o}/{r}/check-runs", post(create_check_run))
        .route(
            "/repos/{o}/{r}/check-runs/{id}",
            axum::routing::patch(update_check_run),
        )
        .route(
            "/repos/{o}/{r}/commits/{sha}/check-runs",
            get(list_check_runs),
        )
}

fn check_run_json(c: &FakeCheckRun) -> Value {
    json!({
        "id": c.id, "name": c.name, "head_sha": c.head_sha, "external_id": c.external_id,
        "node_id": format!("CR_{}", c.id), "status": c.status, "conclusion": c.conclusion,
        "url": format!("https://api.github.com/repos/{}/check-runs/{}", c.repo, c.id),
        "html_url": format!("https://github.com/{}/runs/{}", c.repo, c.id),
        "details_url": c.details_url, "started_at": now_secs(),
        "completed_at": (c.status == "completed").then(now_secs),
        "output": {"title": c.title, "summary": c.summary, "text": null,
                   "annotations_count": 0,
                   "annotations_url": format!("https://api.github.com/repos/{}/check-runs/{}/annotations", c.repo, c.id)},
        "check_suite": {"id": 5_000_000 + c.id}, "app": {"id": APP_ID, "slug": "pytorch-autorevert-restarter"},
        "pull_requests": [],
    })
}

/// Token, installation permission and injected failure, as GitHub checks them first; the
/// answer to give after acting, if one was scripted.
fn check_run_gate(
    s: &mut GhState,
    headers: &HeaderMap,
    repo: &str,
    writes: bool,
) -> Result<Option<CheckRunAnswer>, Response> {
    let token = check_token(s, headers, repo)?;
    let installation = s.tokens.get(&token).map(|t| t.0).unwrap_or_default();
    let perms = s
        .installation_permissions
        .get(&installation)
        .cloned()
        .unwrap_or_else(all_permissions);
    let level = perms["checks"].as_str().unwrap_or("none");
    if (writes && level != "write") || (!writes && level == "none") {
        return Err(gh_error(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        ));
    }
    if let Some(code) = s.checks.down {
        return Err(gh_error(
            StatusCode::from_u16(code).unwrap(),
            "Server Error",
        ));
    }
    match s.checks.answers.pop_front() {
        Some(CheckRunAnswer::Fail(code)) => Err(gh_error(
            StatusCode::from_u16(code).unwrap(),
            "Server Error",
        )),
        other => Ok(other),
    }
}

/// `status`, `conclusion` and `output` as GitHub validates them; the fields they set.
fn check_run_fields(body: &Value, c: &mut FakeCheckRun) -> Result<(), Response> {
    let invalid = |m: &str| Err(gh_error(StatusCode::UNPROCESSABLE_ENTITY, m));
    if let Some(status) = body.get("status") {
        match status.as_str() {
            Some(st @ ("queued" | "in_progress" | "completed")) => c.status = st.into(),
            _ => return invalid("Invalid request.\n\nstatus is not a valid value."),
        }
    }
    if let Some(conclusion) = body.get("conclusion").and_then(Value::as_str) {
        c.conclusion = Some(conclusion.into());
        c.status = "completed".into();
    }
    if c.status == "completed" && c.conclusion.is_none() {
        return invalid("Invalid request.\n\nconclusion is required when status is completed.");
    }
    if let Some(output) = body.get("output") {
        let (Some(title), Some(summary)) = (output["title"].as_str(), output["summary"].as_str())
        else {
            return invalid("Invalid request.\n\n\"title\", \"summary\" weren't supplied.");
        };
        if summary.chars().count() > 65_535 {
            return invalid("Invalid request.\n\nOnly 65535 characters are allowed in summary.");
        }
        (c.title, c.summary) = (title.into(), summary.into());
    }
    if let Some(url) = body.get("details_url").and_then(Value::as_str) {
        c.details_url = Some(url.into());
    }
    Ok(())
}

/// The answer after acting: as scripted (a lost or late answer), else `ok`.
async fn check_run_answer(scripted: Option<CheckRunAnswer>, ok: Response) -> Response {
    match scripted {
        Some(CheckRunAnswer::ActThenFail(code)) => {
            gh_error(StatusCode::from_u16(code).unwrap(), "Server Error")
        }
        Some(CheckRunAnswer::ActThenHold(d)) => {
            tokio::time::sleep(d).await;
            ok
        }
        _ => ok,
    }
}

async fn create_check_run(
    State(st): State<Shared>,
    Path((o, r)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let repo = format!("{o}/{r}");
    let (scripted, created) = {
        let mut s = st.lock().unwrap();
        let scripted = match check_run_gate(&mut s, &headers, &repo, true) {
            Ok(a) => a,
            Err(resp) => return resp,
        };
        let Ok(body) = serde_json::from_slice::<Value>(&body) else {
            return gh_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
        };
        let (Some(name), Some(sha)) = (body["name"].as_str(), body["head_sha"].as_str()) else {
            return gh_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid request.\n\n\"name\", \"head_sha\" weren't supplied.",
            );
        };
        let mut c = FakeCheckRun {
            id: 30_000_000_001 + s.checks.runs.len() as u64,
            repo: repo.clone(),
            head_sha: sha.into(),
            name: name.into(),
            external_id: body["external_id"].as_str().unwrap_or("").into(),
            status: "queued".into(),
            conclusion: None,
            title: String::new(),
            summary: String::new(),
            details_url: None,
            updates: 0,
        };
        if let Err(resp) = check_run_fields(&body, &mut c) {
            return resp;
        }
        s.checks.runs.push(c.clone());
        (scripted, c)
    };
    let ok = (StatusCode::CREATED, Json(check_run_json(&created))).into_response();
    check_run_answer(scripted, ok).await
}

async fn update_check_run(
    State(st): State<Shared>,
    Path((o, r, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let repo = format!("{o}/{r}");
    let (scripted, updated) = {
        let mut s = st.lock().unwrap();
        let scripted = match check_run_gate(&mut s, &headers, &repo, true) {
            Ok(a) => a,
            Err(resp) => return resp,
        };
        let Ok(body) = serde_json::from_slice::<Value>(&body) else {
            return gh_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
        };
        let Some(c) = s
            .checks
            .runs
            .iter_mut()
            .find(|c| c.id == id && c.repo == repo)
        else {
            return gh_error(StatusCode::NOT_FOUND, "Not Found");
        };
        let mut next = c.clone();
        if let Err(resp) = check_run_fields(&body, &mut next) {
            return resp;
        }
        next.updates += 1;
        *c = next.clone();
        (scripted, next)
    };
    let ok = Json(check_run_json(&updated)).into_response();
    check_run_answer(scripted, ok).await
}

async fn list_check_runs(
    State(st): State<Shared>,
    Path((o, r, sha)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let repo = format!("{o}/{r}");
    let (scripted, resp) = {
        let mut s = st.lock().unwrap();
        match check_run_gate(&mut s, &headers, &repo, false) {
            Ok(scripted) => (scripted, list_of(&s, &repo, &sha, &q)),
            Err(resp) => return resp,
        }
    };
    check_run_answer(scripted, resp).await
}

/// One page of the check runs on `sha`, filtered as the query asks.
fn list_of(s: &GhState, repo: &str, sha: &str, q: &HashMap<String, String>) -> Response {
    let mut runs: Vec<&FakeCheckRun> = s
        .checks
        .runs
        .iter()
        .filter(|c| c.repo == repo && c.head_sha == sha)
        .filter(|c| q.get("check_name").is_none_or(|n| &c.name == n))
        .filter(|c| q.get("status").is_none_or(|x| &c.status == x))
        .collect();
    runs.sort_by_key(|c| std::cmp::Reverse(c.id));
    if q.get("filter").map(String::as_str) != Some("all") {
        // `latest` (the default): only the newest check run of each name.
        let mut seen = HashSet::new();
        runs.retain(|c| seen.insert(c.name.clone()));
    }
    let all: Vec<Value> = runs.into_iter().map(check_run_json).collect();
    let path = format!("/repos/{repo}/commits/{sha}/check-runs");
    let (items, link) = page_of(&all, &path, q);
    let mut resp = Json(json!({"total_count": all.len(), "check_runs": items})).into_response();
    if let Some(link) = link {
        resp.headers_mut().insert("link", link.parse().unwrap());
    }
    resp
}

impl FakeGitHub {
    /// The check runs GitHub has on `sha`, oldest first.
    pub fn check_runs(&self, sha: &str) -> Vec<FakeCheckRun> {
        let s = self.state.lock().unwrap();
        let runs = s.checks.runs.iter().filter(|c| c.head_sha == sha);
        runs.cloned().collect()
    }

    /// The next check-run calls answer so, in order.
    pub fn script_check_runs(&self, answers: impl IntoIterator<Item = CheckRunAnswer>) {
        self.state.lock().unwrap().checks.answers.extend(answers);
    }

    /// Every check-run call answers `status` (Some) or works again (None).
    pub fn check_runs_down(&self, status: Option<u16>) {
        self.state.lock().unwrap().checks.down = status;
    }
}

// ---- workflow files: the contents API ----
//
// `GET /repos/{o}/{r}/contents/{path}?ref=<ref>` answers as GitHub documents it for a file:
// `type: file`, its git blob `sha`, `size`, `encoding: base64` and the base64 text wrapped
// in lines of 60 characters, as GitHub sends it. `files` (`add_file`) holds a file at every
// ref; `add_file_at` gives it other text at one ref (so two commits can have two blobs).
// Answers can be scripted (`fail_contents`: 404, 500, ...); a path it does not hold is 404.

#[derive(Default)]
pub struct Contents {
    /// (path, ref) -> text at that ref, over `files`.
    pub at_ref: HashMap<(String, String), String>,
    /// Statuses the next contents requests are answered with, in order.
    pub failures: VecDeque<u16>,
}

/// A blob id for `text`. GitHub's is git's SHA-1 of `blob <len>\0<text>`; the fake takes
/// the first 40 hex digits of SHA-256 of the same bytes (the App only compares blob ids).
fn blob_sha(text: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(format!("blob {}\0", text.len()));
    h.update(text.as_bytes());
    hex::encode(h.finalize())[..40].to_string()
}

async fn contents(
    State(st): State<Shared>,
    Path((o, r, path)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    use base64::Engine;
    let repo = format!("{o}/{r}");
    let mut s = st.lock().unwrap();
    if let Err(resp) = check_token(&s, &headers, &repo) {
        return resp;
    }
    if let Some(status) = s.contents.failures.pop_front() {
        let message = if status == 404 {
            "Not Found"
        } else {
            "Server Error"
        };
        return gh_error(StatusCode::from_u16(status).unwrap(), message);
    }
    let at_ref = q
        .get("ref")
        .and_then(|git_ref| s.contents.at_ref.get(&(path.clone(), git_ref.clone())));
    let Some(text) = at_ref.or_else(|| s.files.get(&path)).cloned() else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(&text);
    let wrapped: String = encoded
        .as_bytes()
        .chunks(60)
        .map(|line| format!("{}\n", String::from_utf8_lossy(line)))
        .collect();
    let name = path.rsplit('/').next().unwrap_or(&path).to_string();
    Json(json!({
        "type": "file", "encoding": "base64", "size": text.len(), "name": name, "path": path,
        "content": wrapped, "sha": blob_sha(&text),
        "url": format!("https://api.github.com/repos/{repo}/contents/{path}"),
    }))
    .into_response()
}

impl FakeGitHub {
    /// `path` holds `text` at `git_ref` (at other refs, what `add_file` gave it, if anything).
    pub fn add_file_at(&self, path: &str, git_ref: &str, text: &str) {
        let mut s = self.state.lock().unwrap();
        s.contents
            .at_ref
            .insert((path.into(), git_ref.into()), text.into());
    }

    /// The next contents requests are answered with these statuses, one each.
    pub fn fail_contents(&self, statuses: impl IntoIterator<Item = u16>) {
        self.state
            .lock()
            .unwrap()
            .contents
            .failures
            .extend(statuses);
    }

    /// The contents requests GitHub received for `path`, with their query.
    pub fn contents_requests(&self, path: &str) -> Vec<String> {
        self.requests_matching("GET", &format!("/contents/{path}"))
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }
}

// ---- commits, PRs and comments (acting on a revert decision) ----
//
// `GET /repos/{o}/{r}/commits/{sha}` (the commit and its message; 422 for a sha GitHub does
// not know), `GET /repos/{o}/{r}/commits/{sha}/pulls` (the PRs associated with it),
// `GET /repos/{o}/{r}/pulls/{n}` (state, merged, labels, base), and an issue's comments:
// `GET /repos/{o}/{r}/issues/{n}/comments` (oldest first, `per_page`/`page`, `Link`
// header) and `POST` to create one (permission `issues: write` or `pull_requests: write`;
// PRs are issues here). The App's comments are written by `{slug}[bot]`, a `Bot`. Comment
// POSTs can fail (`CommentAnswer`): with nothing stored, or after storing (the lost answer).

/// How the next comment POST answers.
#[derive(Debug, Clone)]
pub enum CommentAnswer {
    /// As GitHub does.
    Normal,
    /// This status, nothing stored.
    Fail(u16),
    /// Stores the comment, then answers this status (the answer is lost to the App).
    StoreThenFail(u16),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakePull {
    pub number: u64,
    pub open: bool,
    pub merged: bool,
    pub labels: Vec<String>,
    /// The branch it was opened against (`main`, `release/2.9`).
    pub base: String,
}

impl FakePull {
    /// A PR against `main` that PyTorch's merge bot landed: closed, not merged on GitHub.
    pub fn landed(number: u64) -> FakePull {
        FakePull {
            number,
            open: false,
            merged: false,
            labels: vec!["Merged".into()],
            base: "main".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakeComment {
    pub id: u64,
    pub repo: String,
    pub issue: u64,
    pub body: String,
    pub login: String,
    /// `Bot` or `User`.
    pub kind: String,
}

#[derive(Debug, Default)]
pub struct FakeReverts {
    /// (repo, sha) -> (message, numbers of the PRs GitHub associates with it).
    pub commits: HashMap<(String, String), (String, Vec<u64>)>,
    pub pulls: HashMap<(String, u64), FakePull>,
    pub comments: Vec<FakeComment>,
    pub answers: VecDeque<CommentAnswer>,
}

fn revert_routes() -> Router<Shared> {
    Router::new()
        .route("/repos/{o}/{r}/commits/{sha}", get(get_commit))
        .route("/repos/{o}/{r}/commits/{sha}/pulls", get(commit_pulls))
        .route("/repos/{o}/{r}/pulls/{n}", get(get_pull))
        .route(
            "/repos/{o}/{r}/issues/{n}/comments",
            get(list_comments).post(create_comment),
        )
}

fn pull_json(repo: &str, p: &FakePull) -> Value {
    let merged_at = p.merged.then(now_secs);
    let closed_at = (!p.open).then(now_secs);
    json!({
        "id": 2_000_000_000u64 + p.number, "number": p.number, "node_id": format!("PR_{}", p.number),
        "url": format!("https://api.github.com/repos/{repo}/pulls/{}", p.number),
        "html_url": format!("https://github.com/{repo}/pull/{}", p.number),
        "state": if p.open { "open" } else { "closed" }, "locked": false, "draft": false,
        "title": format!("PR {}", p.number), "user": {"login": "dev", "type": "User"},
        "labels": p.labels.iter().enumerate()
            .map(|(i, l)| json!({"id": i + 1, "name": l, "color": "ededed", "default": false}))
            .collect::<Vec<_>>(),
        "merged": p.merged, "merged_at": merged_at, "closed_at": closed_at,
        "merge_commit_sha": null, "created_at": "2026-11-29T10:00:00Z", "updated_at": now_secs(),
        "head": {"ref": format!("gh/dev/{}/head", p.number), "sha": "0".repeat(40)},
        "base": {"ref": p.base, "sha": "1".repeat(40),
                 "repo": {"full_name": repo, "default_branch": "main"}},
        "author_association": "CONTRIBUTOR",
    })
}

fn comment_json(s: &GhState, c: &FakeComment) -> Value {
    let kind = if s.reverts.pulls.contains_key(&(c.repo.clone(), c.issue)) {
        "pull"
    } else {
        "issues"
    };
    let mut v = json!({
        "id": c.id, "node_id": format!("IC_{}", c.id), "body": c.body,
        "url": format!("https://api.github.com/repos/{}/issues/comments/{}", c.repo, c.id),
        "html_url": format!("https://github.com/{}/{kind}/{}#issuecomment-{}", c.repo, c.issue, c.id),
        "issue_url": format!("https://api.github.com/repos/{}/issues/{}", c.repo, c.issue),
        "user": {"login": c.login, "type": c.kind},
        "created_at": now_secs(), "updated_at": now_secs(), "author_association": "NONE",
    });
    if c.kind == "Bot" {
        v["performed_via_github_app"] = json!({"id": APP_ID, "slug": s.app.1});
    }
    v
}

/// The state, locked, and the repository `{o}/{r}`, once the request's token covers it.
fn authorized<'a>(
    st: &'a Shared,
    o: &str,
    r: &str,
    headers: &HeaderMap,
) -> Result<(std::sync::MutexGuard<'a, GhState>, String), Response> {
    let repo = format!("{o}/{r}");
    let s = st.lock().unwrap();
    check_token(&s, headers, &repo)?;
    Ok((s, repo))
}

fn no_commit(sha: &str) -> Response {
    gh_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        &format!("No commit found for SHA: {sha}"),
    )
}

async fn get_commit(
    State(st): State<Shared>,
    Path((o, r, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (s, repo) = match authorized(&st, &o, &r, &headers) {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let Some((message, _)) = s.reverts.commits.get(&(repo.clone(), sha.clone())) else {
        return no_commit(&sha);
    };
    Json(json!({
        "sha": sha, "node_id": "C_test",
        "commit": {"message": message, "author": {"name": "dev", "date": "2026-11-30T10:00:00Z"},
                   "committer": {"name": "pytorchmergebot", "date": "2026-11-30T10:00:00Z"}},
        "url": format!("https://api.github.com/repos/{repo}/commits/{sha}"),
        "html_url": format!("https://github.com/{repo}/commit/{sha}"),
        "parents": [], "stats": {"total": 2, "additions": 1, "deletions": 1},
        "files": [{"filename": "torch/foo.py", "status": "modified", "additions": 1, "deletions": 1, "changes": 2}],
    }))
    .into_response()
}

async fn commit_pulls(
    State(st): State<Shared>,
    Path((o, r, sha)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (s, repo) = match authorized(&st, &o, &r, &headers) {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let Some((_, numbers)) = s.reverts.commits.get(&(repo.clone(), sha.clone())) else {
        return no_commit(&sha);
    };
    let all: Vec<Value> = numbers
        .iter()
        .filter_map(|n| s.reverts.pulls.get(&(repo.clone(), *n)))
        .map(|p| pull_json(&repo, p))
        .collect();
    paginated(all, &format!("/repos/{repo}/commits/{sha}/pulls"), &q)
}

async fn get_pull(
    State(st): State<Shared>,
    Path((o, r, n)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    let (s, repo) = match authorized(&st, &o, &r, &headers) {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    match s.reverts.pulls.get(&(repo.clone(), n)) {
        Some(p) => Json(pull_json(&repo, p)).into_response(),
        None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// Issue or PR `n` exists in `repo` (kill-switch issues and notify issues are held in
/// `issues`, for the one repository the tests use).
fn issue_exists(s: &GhState, repo: &str, n: u64) -> bool {
    s.issues.contains_key(&n) || s.reverts.pulls.contains_key(&(repo.to_string(), n))
}

async fn list_comments(
    State(st): State<Shared>,
    Path((o, r, n)): Path<(String, String, u64)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (s, repo) = match authorized(&st, &o, &r, &headers) {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    if !issue_exists(&s, &repo, n) {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let all: Vec<Value> = s
        .reverts
        .comments
        .iter()
        .filter(|c| c.repo == repo && c.issue == n)
        .map(|c| comment_json(&s, c))
        .collect();
    paginated(all, &format!("/repos/{repo}/issues/{n}/comments"), &q)
}

/// The installation behind the request may write comments (`issues` or `pull_requests`).
fn may_comment(s: &GhState, headers: &HeaderMap) -> bool {
    let installation = bearer(headers)
        .and_then(|t| s.tokens.get(&t).map(|t| t.0))
        .unwrap_or_default();
    let perms = s
        .installation_permissions
        .get(&installation)
        .cloned()
        .unwrap_or_else(all_permissions);
    perms["issues"] == "write" || perms["pull_requests"] == "write"
}

async fn create_comment(
    State(st): State<Shared>,
    Path((o, r, n)): Path<(String, String, u64)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (mut s, repo) = match authorized(&st, &o, &r, &headers) {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    if !may_comment(&s, &headers) {
        return gh_error(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        );
    }
    if !issue_exists(&s, &repo, n) {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let text = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| b["body"].as_str().map(str::to_string));
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return gh_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request.\n\n\"body\" wasn't supplied.",
        );
    };
    let answer = s
        .reverts
        .answers
        .pop_front()
        .unwrap_or(CommentAnswer::Normal);
    if let CommentAnswer::Fail(code) = answer {
        return gh_error(StatusCode::from_u16(code).unwrap(), "Server Error");
    }
    let comment = FakeComment {
        id: 4_000_000_001 + s.reverts.comments.len() as u64,
        repo,
        issue: n,
        body: text,
        login: format!("{}[bot]", s.app.1),
        kind: "Bot".into(),
    };
    s.reverts.comments.push(comment.clone());
    match answer {
        CommentAnswer::StoreThenFail(code) => {
            gh_error(StatusCode::from_u16(code).unwrap(), "Server Error")
        }
        _ => (StatusCode::CREATED, Json(comment_json(&s, &comment))).into_response(),
    }
}

impl FakeGitHub {
    /// A commit GitHub knows, with its message and the PRs it associates with it.
    pub fn add_commit(&self, repo: &str, sha: &str, message: &str, pulls: &[u64]) {
        let mut s = self.state.lock().unwrap();
        s.reverts
            .commits
            .insert((repo.into(), sha.into()), (message.into(), pulls.to_vec()));
    }

    pub fn add_pull(&self, repo: &str, pull: FakePull) {
        let mut s = self.state.lock().unwrap();
        s.reverts.pulls.insert((repo.into(), pull.number), pull);
    }

    /// An open issue with no labels (a notify issue).
    pub fn add_issue(&self, number: u64) {
        let mut s = self.state.lock().unwrap();
        s.issues.insert(number, (true, vec![], vec![]));
    }

    /// A comment someone else wrote (`kind`: `User` or `Bot`).
    pub fn add_comment(&self, repo: &str, issue: u64, login: &str, kind: &str, body: &str) {
        let mut s = self.state.lock().unwrap();
        let id = 4_000_000_001 + s.reverts.comments.len() as u64;
        s.reverts.comments.push(FakeComment {
            id,
            repo: repo.into(),
            issue,
            body: body.into(),
            login: login.into(),
            kind: kind.into(),
        });
    }

    /// The comments on issue (or PR) `issue`, oldest first.
    pub fn comments(&self, repo: &str, issue: u64) -> Vec<FakeComment> {
        let s = self.state.lock().unwrap();
        let on = s.reverts.comments.iter();
        on.filter(|c| c.repo == repo && c.issue == issue)
            .cloned()
            .collect()
    }

    /// The next comment POSTs answer so, in order.
    pub fn script_comments(&self, answers: impl IntoIterator<Item = CommentAnswer>) {
        self.state.lock().unwrap().reverts.answers.extend(answers);
    }

    /// The installation may write comments (and everything else the App asks for).
    pub fn allow_comments(&self, installation: u64) {
        let mut perms = all_permissions();
        perms["issues"] = json!("write");
        perms["pull_requests"] = json!("write");
        self.set_installation_permissions(installation, perms);
    }

    /// The App's real client (octocrab), authenticated as the test App, talking to this fake.
    pub fn client(&self) -> autorevert::github::GitHub {
        use autorevert::github::{GitHub, GitHubAuth, GitHubConfig};
        let key = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/keys/test-app.private-key.pem"
        ))
        .unwrap();
        GitHub::new(&GitHubConfig {
            api_url: url::Url::parse(&self.url).unwrap(),
            auth: GitHubAuth::App {
                app_id: APP_ID,
                key: jsonwebtoken::EncodingKey::from_rsa_pem(&key).unwrap(),
            },
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }
}

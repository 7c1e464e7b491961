//! Requests to GitHub's REST API. octocrab is built without its `retry` feature, so nothing
//! retries by itself; `Client::retried` is the one retry layer, for reads and idempotent
//! PATCHes only (5xx, transport errors, rate limits). No POST is ever retried here.

use super::clock::Clock;
use super::health::{Auth, Health};
use anyhow::{Context, Result, anyhow, bail};
use chrono::Utc;
use http::StatusCode;
use octocrab::Octocrab;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// GitHub's error body: `{"message": "...", "documentation_url": "..."}`.
pub(super) fn github_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.chars().take(300).collect())
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// How long to wait before retrying a read, from GitHub's rate-limit headers. The reset
/// time is GitHub's: it is compared with `github_now`, now on GitHub's clock.
fn rate_limit_wait(
    headers: &http::HeaderMap,
    attempt: u32,
    github_now: chrono::DateTime<Utc>,
) -> Duration {
    let num = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    if let Some(secs) = num("retry-after") {
        return Duration::from_secs(secs.clamp(0, 120) as u64);
    }
    if num("x-ratelimit-remaining") == Some(0)
        && let Some(reset) = num("x-ratelimit-reset")
    {
        let wait = reset - github_now.timestamp();
        return Duration::from_secs(wait.clamp(1, 120) as u64);
    }
    Duration::from_millis(500 * 2u64.pow(attempt))
}

/// A read (or an idempotent update) GitHub refused with a 4xx (not a rate limit): it is not
/// retried.
#[derive(Debug, thiserror::Error)]
#[error("{method} {route}: GitHub answered {status}: {message}")]
pub(super) struct Refused {
    method: &'static str,
    route: String,
    pub status: StatusCode,
    message: String,
}

/// An octocrab client (the App's own, or an installation's) that notes GitHub's clock from
/// every answer's `Date` header, and how each request went (`health`: `/healthz`, `/metrics`).
#[derive(Clone)]
pub(super) struct Client {
    octo: Arc<Octocrab>,
    clock: Arc<Clock>,
    health: Arc<Health>,
    auth: Auth,
}

/// A read that did not give what was asked: GitHub's last status (None: no answer) and why.
struct Failed {
    status: Option<StatusCode>,
    error: anyhow::Error,
}

/// The value of `param` in the `rel="next"` link of GitHub's `Link` header, if any.
fn next_param(headers: &http::HeaderMap, param: &str) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',')
        .find(|part| part.contains("rel=\"next\""))
        .and_then(|part| part.split(['<', '>']).nth(1))
        .and_then(|url| url::Url::parse(url).ok())
        .and_then(|url| {
            url.query_pairs()
                .find(|(k, _)| k == param)
                .map(|(_, v)| v.into_owned())
        })
}

impl Client {
    pub fn new(octo: Arc<Octocrab>, clock: Arc<Clock>, health: Arc<Health>, auth: Auth) -> Client {
        Client {
            octo,
            clock,
            health,
            auth,
        }
    }

    /// GET with the one retry layer for reads: 5xx, transport errors and rate limits
    /// (403/429 with rate-limit headers) are retried up to 3 times.
    pub async fn get_json<T: DeserializeOwned>(&self, route: &str) -> Result<T> {
        self.get_page(route, "page").await.map(|(v, _)| v)
    }

    /// `get_json`, with GitHub's 404 as `None` (a ref or an installation that may not exist).
    pub async fn get_optional<T: DeserializeOwned>(&self, route: &str) -> Result<Option<T>> {
        match self.noted(route, None, "page", true).await {
            Ok((v, _)) => Ok(Some(v)),
            Err(e)
                if e.downcast_ref::<Refused>().map(|r| r.status) == Some(StatusCode::NOT_FOUND) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Every page of a list, following `Link: rel="next"` (`route` has no `page`); more than
    /// `max_pages` is an error: the list was not read whole.
    pub async fn get_all<T: DeserializeOwned>(
        &self,
        route: &str,
        max_pages: u32,
    ) -> Result<Vec<T>> {
        let mut all = Vec::new();
        let mut page = "1".to_string();
        for _ in 0..max_pages {
            let route = format!("{route}&page={}", url_escape(&page));
            let (items, next): (Vec<T>, _) = self.get_page(&route, "page").await?;
            all.extend(items);
            match next {
                Some(n) => page = n,
                None => return Ok(all),
            }
        }
        bail!("GET {route}: more than {max_pages} pages; not read to the end")
    }

    /// `get_json`, also giving `param` (`cursor`, `page`) of the next page's link.
    pub async fn get_page<T: DeserializeOwned>(
        &self,
        route: &str,
        param: &str,
    ) -> Result<(T, Option<String>)> {
        self.noted(route, None, param, false).await
    }

    /// PATCH, retried by the same rule as reads: an update that sets absolute values can be
    /// applied twice without harm (no POST ever goes through here).
    pub async fn patch_json<T: DeserializeOwned>(
        &self,
        route: &str,
        body: &serde_json::Value,
    ) -> Result<T> {
        self.noted(route, Some(body), "page", false)
            .await
            .map(|(v, _)| v)
    }

    /// A GET or PATCH through the retry layer, its outcome noted; with `absent_ok`, a 404
    /// counts as an answer.
    async fn noted<T: DeserializeOwned>(
        &self,
        route: &str,
        body: Option<&serde_json::Value>,
        param: &str,
        absent_ok: bool,
    ) -> Result<(T, Option<String>)> {
        match self.retried(route, body, param).await {
            Ok(v) => {
                self.health.finished(route, Some(StatusCode::OK), None);
                Ok(v)
            }
            Err(Failed { status, error }) => {
                let absent = absent_ok && status == Some(StatusCode::NOT_FOUND);
                let noted = (!absent).then(|| format!("{error:#}"));
                self.health.finished(route, status, noted);
                Err(error)
            }
        }
    }

    /// The one retry layer: a GET (`body` None) or an idempotent PATCH, retried on 5xx,
    /// transport errors and rate limits (403/429 with rate-limit headers), up to 3 times.
    async fn retried<T: DeserializeOwned>(
        &self,
        route: &str,
        body: Option<&serde_json::Value>,
        param: &str,
    ) -> std::result::Result<(T, Option<String>), Failed> {
        let method = if body.is_some() { "PATCH" } else { "GET" };
        let mut attempt = 0;
        loop {
            let sent = match body {
                None => self.octo._get(route).await,
                Some(b) => self.octo._patch(route, Some(b)).await,
            };
            let (status, headers, text) = match sent {
                Ok(r) => {
                    self.clock.observe(r.headers(), Utc::now());
                    self.health.answered(self.auth, r.headers());
                    let status = r.status();
                    let headers = r.headers().clone();
                    let text = self.octo.body_to_string(r).await.unwrap_or_default();
                    (Some(status), headers, text)
                }
                Err(e) => (None, http::HeaderMap::new(), error_chain(&e)),
            };
            let limited = matches!(
                status,
                Some(StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS)
            ) && (headers.contains_key("retry-after")
                || headers
                    .get("x-ratelimit-remaining")
                    .is_some_and(|v| v.as_bytes() == b"0"));
            let failed = |error: anyhow::Error| Failed { status, error };
            match status {
                Some(s) if s.is_success() => {
                    let value = serde_json::from_str(&text)
                        .with_context(|| format!("{method} {route}: unexpected answer from GitHub"))
                        .map_err(failed)?;
                    return Ok((value, next_param(&headers, param)));
                }
                Some(s) if s.is_client_error() && !limited => {
                    return Err(failed(
                        Refused {
                            method,
                            route: route.to_string(),
                            status: s,
                            message: github_message(&text),
                        }
                        .into(),
                    ));
                }
                _ if attempt >= 3 => {
                    return Err(failed(anyhow!(
                        "{method} {route}: gave up after {} attempts: {}",
                        attempt + 1,
                        status.map(|s| s.to_string()).unwrap_or(text)
                    )));
                }
                _ => {
                    let github_now = Utc::now() + self.clock.offset();
                    let wait = rate_limit_wait(&headers, attempt, github_now);
                    tracing::warn!(
                        method,
                        route,
                        ?status,
                        wait_ms = wait.as_millis() as u64,
                        "retrying GitHub call"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    /// One POST, never retried; GitHub's clock is noted from its answer. Gives the status
    /// and the body (which may be lost after the status came).
    pub async fn post(
        &self,
        route: &str,
        body: Option<&serde_json::Value>,
    ) -> octocrab::Result<(StatusCode, octocrab::Result<String>)> {
        let resp = match self.octo._post(route, body).await {
            Ok(resp) => resp,
            Err(e) => {
                let error = format!("POST {route}: {}", error_chain(&e));
                self.health.finished(route, None, Some(error));
                return Err(e);
            }
        };
        self.clock.observe(resp.headers(), Utc::now());
        self.health.answered(self.auth, resp.headers());
        let status = resp.status();
        let text = self.octo.body_to_string(resp).await;
        let error = match (&text, status.is_success()) {
            (_, false) => Some(format!(
                "POST {route}: GitHub answered {status}: {}",
                text.as_deref().map(github_message).unwrap_or_default()
            )),
            (Err(e), true) => Some(format!("POST {route}: the answer was lost: {e}")),
            (Ok(_), true) => None,
        };
        self.health.finished(route, Some(status), error);
        Ok((status, text))
    }
}

pub(super) fn url_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(super) fn base64_decode(s: &str) -> Result<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s)?;
    String::from_utf8(bytes).context("workflow file is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_message_is_extracted() {
        assert_eq!(
            github_message(r#"{"message":"No ref found for: trunk/x","status":"422"}"#),
            "No ref found for: trunk/x"
        );
        assert_eq!(github_message("oops"), "oops");
    }

    #[test]
    fn a_rate_limit_reset_is_read_on_github_s_clock() {
        let mut h = http::HeaderMap::new();
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        h.insert("x-ratelimit-reset", "1750000060".parse().unwrap());
        let github_now = chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap();
        assert_eq!(rate_limit_wait(&h, 0, github_now), Duration::from_secs(60));
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(rate_limit_wait(&h, 0, github_now), Duration::from_secs(7));
    }

    #[test]
    fn base64_roundtrip() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), "hello");
    }
}

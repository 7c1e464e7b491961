//! Requests to GitHub's REST API. octocrab is built without its `retry` feature, so nothing
//! retries by itself; `get_page` is the one retry layer, for reads only (5xx, transport
//! errors, rate limits). No POST is ever retried here.

use anyhow::{Context, Result, anyhow};
use http::StatusCode;
use octocrab::Octocrab;
use serde::de::DeserializeOwned;
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

/// How long to wait before retrying a read, from GitHub's rate-limit headers.
fn rate_limit_wait(headers: &http::HeaderMap, attempt: u32) -> Duration {
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
        let wait = reset - chrono::Utc::now().timestamp();
        return Duration::from_secs(wait.clamp(1, 120) as u64);
    }
    Duration::from_millis(500 * 2u64.pow(attempt))
}

/// A read GitHub refused with a 4xx (not a rate limit): it is not retried.
#[derive(Debug, thiserror::Error)]
#[error("GET {route}: GitHub answered {status}: {message}")]
pub(super) struct Refused {
    route: String,
    pub status: StatusCode,
    message: String,
}

/// `get_json`, with GitHub's 404 as `None` (a ref or an installation that may not exist).
pub(super) async fn get_optional<T: DeserializeOwned>(
    client: &Octocrab,
    route: &str,
) -> Result<Option<T>> {
    match get_json(client, route).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.downcast_ref::<Refused>().map(|r| r.status) == Some(StatusCode::NOT_FOUND) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// GET with the one retry layer for reads: 5xx, transport errors and rate limits
/// (403/429 with rate-limit headers) are retried up to 3 times.
pub(super) async fn get_json<T: DeserializeOwned>(client: &Octocrab, route: &str) -> Result<T> {
    get_page(client, route).await.map(|(v, _)| v)
}

/// The `cursor` of the `rel="next"` link in GitHub's `Link` header, if any.
fn next_cursor(headers: &http::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',')
        .find(|part| part.contains("rel=\"next\""))
        .and_then(|part| part.split(['<', '>']).nth(1))
        .and_then(|url| url::Url::parse(url).ok())
        .and_then(|url| {
            url.query_pairs()
                .find(|(k, _)| k == "cursor")
                .map(|(_, v)| v.into_owned())
        })
}

/// `get_json`, also giving the next page's cursor.
pub(super) async fn get_page<T: DeserializeOwned>(
    client: &Octocrab,
    route: &str,
) -> Result<(T, Option<String>)> {
    let mut attempt = 0;
    loop {
        let resp = client._get(route).await;
        let (status, headers, text) = match resp {
            Ok(r) => {
                let status = r.status();
                let headers = r.headers().clone();
                let text = client.body_to_string(r).await.unwrap_or_default();
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
        match status {
            Some(s) if s.is_success() => {
                let value = serde_json::from_str(&text)
                    .with_context(|| format!("GET {route}: unexpected answer from GitHub"))?;
                return Ok((value, next_cursor(&headers)));
            }
            Some(s) if s.is_client_error() && !limited => {
                return Err(Refused {
                    route: route.to_string(),
                    status: s,
                    message: github_message(&text),
                }
                .into());
            }
            _ if attempt >= 3 => {
                return Err(anyhow!(
                    "GET {route}: gave up after {} attempts: {}",
                    attempt + 1,
                    status.map(|s| s.to_string()).unwrap_or(text)
                ));
            }
            _ => {
                let wait = rate_limit_wait(&headers, attempt);
                tracing::warn!(
                    route,
                    ?status,
                    wait_ms = wait.as_millis() as u64,
                    "retrying GitHub read"
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
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
    fn base64_roundtrip() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), "hello");
    }
}

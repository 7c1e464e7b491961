//! The App's own webhook deliveries (`/app/hook/deliveries`, App JWT): which failed, and
//! asking GitHub to deliver one again (the redelivery sweep).

use super::GitHub;
use super::transport::{error_chain, github_message, url_escape};
use anyhow::{Result, anyhow, bail};
use serde::Deserialize;

/// One attempt of the App's webhook delivery log (`GET /app/hook/deliveries`).
#[derive(Debug, Clone, Deserialize)]
pub struct HookDelivery {
    pub id: u64,
    pub guid: String,
    pub delivered_at: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub redelivery: bool,
    #[serde(default)]
    pub status_code: u16,
    #[serde(default)]
    pub event: String,
}

impl GitHub {
    /// The App's failed webhook deliveries, newest first (App JWT), one page at a time.
    pub async fn failed_deliveries(
        &self,
        cursor: Option<&str>,
    ) -> Result<(Vec<HookDelivery>, Option<String>)> {
        self.hook_deliveries(cursor, true).await
    }

    /// The App's webhook deliveries (every attempt; `failed_only`: those GitHub marks
    /// failed), newest first (App JWT), one page at a time.
    pub async fn hook_deliveries(
        &self,
        cursor: Option<&str>,
        failed_only: bool,
    ) -> Result<(Vec<HookDelivery>, Option<String>)> {
        let mut route = "/app/hook/deliveries?per_page=100".to_string();
        if failed_only {
            route.push_str("&status=failure");
        }
        if let Some(c) = cursor {
            route.push_str(&format!("&cursor={}", url_escape(c)));
        }
        self.app_client().get_page(&route, "cursor").await
    }

    /// Asks GitHub to deliver a delivery again (`POST …/attempts`, App JWT). Sent once: a
    /// redelivery that fails is seen by the next sweep.
    pub async fn redeliver(&self, delivery_id: u64) -> Result<()> {
        let route = format!("/app/hook/deliveries/{delivery_id}/attempts");
        let (status, text) = self
            .app_client()
            .post(&route, None)
            .await
            .map_err(|e| anyhow!("POST {route}: {}", error_chain(&e)))?;
        if status.is_success() {
            return Ok(());
        }
        let text = text.unwrap_or_default();
        bail!(
            "POST {route}: GitHub answered {status}: {}",
            github_message(&text)
        )
    }
}

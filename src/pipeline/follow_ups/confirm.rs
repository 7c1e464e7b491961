//! Confirming a restart in ClickHouse with PyTorch's query, retrying with backoff while
//! ingestion catches up, for at most the confirmation window.

use crate::pipeline::effects::Evidence;
use crate::pipeline::restarts::Restarts;
use crate::restart::Transition;
use std::sync::Arc;
use std::time::Duration;

/// What confirming uses: the ledger, the evidence, and its timing.
#[derive(Clone)]
pub struct Confirm {
    pub restarts: Arc<Restarts>,
    pub evidence: Arc<dyn Evidence>,
    /// How long the jobs may take to become visible before the restart is unconfirmed.
    pub window: Duration,
    /// First wait between queries; it doubles, up to a minute.
    pub backoff: Duration,
}

impl Confirm {
    pub async fn run(&self, restart_id: &str) {
        let Some(r) = self.restarts.get(restart_id) else {
            return;
        };
        let started = tokio::time::Instant::now();
        self.evidence.flush().await; // the job rows that triggered this are in the mirror
        let mut wait = self.backoff;
        let mut last_error = None;
        let mut queries = 0u32;
        loop {
            queries += 1;
            match self.evidence.restart_visible(&r.key).await {
                Ok(true) => {
                    let t = Transition::Confirmed { queries };
                    self.restarts.on_transition(restart_id, t).await;
                    return;
                }
                Ok(false) => {}
                Err(e) => last_error = Some(format!("{e:#}")),
            }
            if started.elapsed() + wait > self.window {
                let reason = format!(
                    "restart jobs not visible in ClickHouse after {} s ({queries} queries){}",
                    self.window.as_secs(),
                    last_error
                        .map(|e| format!("; last error: {e}"))
                        .unwrap_or_default()
                );
                let t = Transition::WindowExpired { reason };
                self.restarts.on_transition(restart_id, t).await;
                return;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(60));
        }
    }
}

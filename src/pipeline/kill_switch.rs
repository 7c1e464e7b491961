//! The kill switch as the pipeline consults it: looked up at most every `ttl` per
//! repository. A failed lookup leaves restarts on (as PyTorch's autorevert does) and says
//! so in the log.

use super::effects::Actions;
use crate::github::KillSwitch;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub struct KillSwitches {
    /// Label of the kill-switch issue; None: no kill switch.
    label: Option<String>,
    ttl: Duration,
    /// Per repository: (when looked up, what was found).
    seen: Mutex<HashMap<String, (Instant, Option<KillSwitch>)>>,
}

impl KillSwitches {
    pub fn new(label: Option<String>, ttl: Duration) -> KillSwitches {
        KillSwitches {
            label,
            ttl,
            seen: Mutex::default(),
        }
    }

    /// The kill switch of `repo`, if one is on.
    pub async fn check(
        &self,
        github: &dyn Actions,
        repo: &str,
        installation: Option<u64>,
    ) -> Option<KillSwitch> {
        let label = self.label.as_deref()?;
        let previous = self.seen.lock().expect("lock").get(repo).cloned();
        if let Some((at, v)) = &previous
            && at.elapsed() < self.ttl
        {
            return v.clone();
        }
        let now = match github.kill_switch(repo, label, installation).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(
                    repo,
                    error = format!("{e:#}"),
                    "kill-switch lookup failed; restarts stay on"
                );
                None
            }
        };
        let before = previous.and_then(|(_, v)| v);
        if before != now {
            match &now {
                Some(ks) => tracing::warn!(repo, %ks, "kill switch ON: restarts are held"),
                None => tracing::info!(repo, "kill switch off: restarts resume"),
            }
        }
        self.seen
            .lock()
            .expect("lock")
            .insert(repo.to_string(), (Instant::now(), now.clone()));
        now
    }
}

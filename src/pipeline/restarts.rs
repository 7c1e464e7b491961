//! The restart ledger as the pipeline shares it, and `on_transition`: the one place every
//! change of a restart passes through. A transition is applied under the ledger's lock,
//! then its new version is persisted and the change logged (and, for a verdict, its
//! per-job rows recorded). A metric, a check run or a status-page row is added here once.

use super::effects::Evidence;
use crate::restart::{Change, Command, Ledger, Restart, RestartKey, Transition};
use crate::store::recorder::Entry;
use crate::store::rows::{EventRow, RestartRow, VerdictRow};
use chrono::Utc;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

/// Called with every new version of a restart once it is persisted and logged.
pub type OnChange = Box<dyn Fn(&Restart) + Send + Sync>;

pub struct Restarts {
    ledger: Mutex<Ledger>,
    evidence: Arc<dyn Evidence>,
    /// Side work that follows a restart's state (its check run): set once by the engine.
    on_change: OnceLock<OnChange>,
}

impl Restarts {
    pub fn new(evidence: Arc<dyn Evidence>) -> Restarts {
        Restarts {
            ledger: Mutex::default(),
            evidence,
            on_change: OnceLock::new(),
        }
    }

    /// Sets what runs after every transition (once; a second call is ignored).
    pub fn on_change(&self, f: OnChange) {
        let _ = self.on_change.set(f);
    }

    /// The ledger, also after a panic elsewhere poisoned its lock: each change to it is
    /// one assignment, so it is never left half-changed.
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts restarts loaded at start-up into the ledger.
    pub fn load(&self, restarts: impl IntoIterator<Item = Restart>) {
        let mut ledger = self.ledger();
        for r in restarts {
            ledger.put(r);
        }
    }

    /// Decides under the ledger's lock and claims the new restarts before it is released,
    /// so the next delivery for the same commit already sees them: two deliveries of the
    /// same failure can never both dispatch.
    pub fn decide_and_claim(&self, decide: impl FnOnce(&Ledger) -> Vec<Command>) -> Vec<Command> {
        let mut ledger = self.ledger();
        let commands = decide(&ledger);
        for c in &commands {
            if let Command::Dispatch { restart } = c {
                ledger.put((**restart).clone());
            }
        }
        commands
    }

    /// Reads the ledger (for a pure rule that needs it).
    pub fn read<T>(&self, f: impl FnOnce(&Ledger) -> T) -> T {
        f(&self.ledger())
    }

    /// A copy of one restart as the ledger has it now.
    pub fn get(&self, restart_id: &str) -> Option<Restart> {
        self.ledger().get(restart_id).cloned()
    }

    pub fn of(&self, key: &RestartKey) -> Vec<Restart> {
        self.ledger().restarts(key).to_vec()
    }

    pub fn all(&self) -> Vec<Restart> {
        self.ledger().all().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.ledger().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs already belonging to a restart of this commit (not to be adopted again).
    pub fn taken_runs(&self, key: &RestartKey) -> HashSet<u64> {
        self.ledger()
            .restarts(key)
            .iter()
            .filter_map(|x| x.restart_run_id)
            .collect()
    }

    /// Applies a transition, persists the new version and logs what changed.
    pub async fn on_transition(&self, restart_id: &str, t: Transition) -> Option<Restart> {
        self.on_transition_if(restart_id, |_| true, t).await
    }

    /// `on_transition`, only if the restart as the ledger has it now passes `guard`; None
    /// when it did not (or the restart is unknown).
    pub async fn on_transition_if(
        &self,
        restart_id: &str,
        guard: impl FnOnce(&Restart) -> bool,
        t: Transition,
    ) -> Option<Restart> {
        let applied = self.ledger().apply_if(restart_id, guard, &t, Utc::now());
        let (updated, change) = applied?;
        measure(&t, &updated);
        self.persist(&updated).await;
        if let Transition::Judged { judgement, .. } = &t {
            for j in &judgement.jobs {
                self.evidence
                    .record(Entry::Verdict(VerdictRow::new(&updated, j)))
                    .await;
            }
        }
        self.log(EventRow::for_change(&updated, &change)).await;
        if let Some(f) = self.on_change.get() {
            f(&updated);
        }
        Some(updated)
    }

    /// Records a restart's current version (its first, when it is claimed).
    pub async fn persist(&self, r: &Restart) {
        self.evidence
            .record(Entry::Restart(RestartRow::from(r)))
            .await;
    }

    /// Logs an event about a restart that changes nothing in it.
    pub async fn note(&self, r: &Restart, change: Change) {
        self.log(EventRow::for_change(r, &change)).await
    }

    /// Logs an event (and counts it: `autorevert_restart_events_total` by kind).
    pub async fn log(&self, row: EventRow) {
        metrics::counter!("autorevert_restart_events_total", "kind" => row.kind.clone())
            .increment(1);
        tracing::info!(
            kind = row.kind,
            repo = row.repo,
            sha = row.head_sha,
            "{}",
            row.message
        );
        self.evidence.record(Entry::Event(row)).await;
    }
}

/// The latencies a transition completes: request → dispatch answered, dispatch → jobs
/// visible in ClickHouse; each verdict; each scope, and the jobs a judged restart ran.
fn measure(t: &Transition, r: &Restart) {
    let seconds = |from: chrono::DateTime<Utc>, to: chrono::DateTime<Utc>| {
        (to - from).num_milliseconds().max(0) as f64 / 1000.0
    };
    match t {
        Transition::Dispatch { found: false, .. } => {
            if let Some(at) = r.times.dispatched_at {
                let s = seconds(r.times.requested_at, at);
                metrics::histogram!("autorevert_dispatch_latency_seconds").record(s);
            }
        }
        Transition::Confirmed { .. } => {
            if let Some(ms) = r.times.confirm_latency_ms() {
                let s = ms as f64 / 1000.0;
                metrics::histogram!("autorevert_confirmation_latency_seconds").record(s);
            }
        }
        Transition::Judged { judgement, .. } => {
            let verdict = judgement.verdict.as_str();
            metrics::counter!("autorevert_verdicts_total", "verdict" => verdict).increment(1);
            // What targeted restarts save: jobs run again against jobs of the originals.
            let restarted = u64::from(judgement.jobs_restarted);
            metrics::counter!("autorevert_jobs_restarted_total").increment(restarted);
            let original = u64::from(judgement.jobs_original);
            metrics::counter!("autorevert_jobs_original_total").increment(original);
        }
        Transition::Scoped { scope } => {
            let kind = scope.kind.as_str();
            metrics::counter!("autorevert_restart_scopes_total", "kind" => kind).increment(1);
        }
        _ => {}
    }
}

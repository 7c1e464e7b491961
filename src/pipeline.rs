//! The pipeline: accepted deliveries -> decisions -> effects.
//!
//! Deliveries are spread over a few workers by (repository, head_sha), so all events of one
//! commit are handled one at a time, in arrival order, while different commits proceed in
//! parallel. A decision is taken and its restart claimed in the ledger under one lock, so
//! two deliveries of the same failure can never both dispatch.
//!
//! Slow follow-ups (confirming in ClickHouse, settling an unknown dispatch) run as their own
//! tasks so they never hold a worker.

use crate::decide::{Command, Policy, decide, hold_for_kill_switch, may_dispatch};
use crate::events::{Event, Job};
use crate::github::{DispatchRequest, DispatchResult, GitHub, KillSwitch};
use crate::ledger::{Ledger, Restart, RestartKey, Status};
use crate::outcome::{JobState, failing_base_names, judge};
use crate::recorder::{Entry, Recorder};
use crate::spool::Spool;
use crate::store::{
    DeliveryRow, EventRow, JobResultRow, MirrorJobRow, MirrorRunRow, RestartRow, Store,
};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// One verified, parsed delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub event_name: String,
    pub event: Event,
    pub received_at: DateTime<Utc>,
    pub body_bytes: u32,
    /// Its place in the delivery log, to acknowledge once handled (None: not logged).
    pub seq: Option<u64>,
    /// Handed back by the delivery log at start-up: whatever it dispatches may already
    /// have been sent before the crash, so runs are looked up before any POST.
    pub replayed: bool,
}

#[derive(Debug, Clone)]
pub struct Timing {
    pub confirm_window: Duration,
    pub confirm_backoff: Duration,
    pub dispatch_lookup_delay: Duration,
    pub kill_switch_ttl: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            confirm_window: Duration::from_secs(1800),
            confirm_backoff: Duration::from_millis(500),
            dispatch_lookup_delay: Duration::from_secs(5),
            kill_switch_ttl: Duration::from_secs(60),
        }
    }
}

/// Everything the workers share.
pub struct Engine {
    pub policy: Policy,
    ledger: Mutex<Ledger>,
    store: Option<Store>,
    recorder: Option<Recorder>,
    spool: Option<Spool>,
    github: Option<GitHub>,
    timing: Timing,
    confirming: Mutex<HashSet<String>>,
    /// Kill-switch lookups per repository: (when, what).
    kill_switches: Mutex<HashMap<String, (tokio::time::Instant, Option<KillSwitch>)>>,
    /// Job states when there is no store (in-process replay): (repo, run) -> job id -> state.
    replay_jobs: Mutex<HashMap<(String, u64), BTreeMap<u64, JobState>>>,
    /// Deliveries queued or being handled, plus background follow-ups in flight.
    in_flight: AtomicUsize,
    idle: Notify,
}

impl Engine {
    pub fn new(
        policy: Policy,
        store: Option<Store>,
        github: Option<GitHub>,
        spool: Option<Spool>,
        timing: Timing,
    ) -> Engine {
        // At most one INSERT per table per second, or per 5,000 rows under load: ClickHouse
        // wants few, large inserts. Readers that need fresh rows flush first.
        let recorder = store.clone().map(|s| {
            Recorder::start(
                s,
                spool.clone(),
                Duration::from_secs(1),
                5000,
                crate::recorder::MAX_BUFFERED_ROWS,
            )
        });
        Engine {
            policy,
            spool,
            ledger: Mutex::new(Ledger::default()),
            recorder,
            store,
            github,
            timing,
            confirming: Mutex::new(HashSet::new()),
            replay_jobs: Mutex::new(HashMap::new()),
            kill_switches: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
        }
    }

    /// Loads the ledger from ClickHouse and resumes restarts that were mid-dispatch when the
    /// process stopped (their run is looked up before anything is sent again).
    pub async fn resume(self: &Arc<Self>) -> anyhow::Result<usize> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let restarts = store.load_restarts(30).await?;
        let n = restarts.len();
        let mut unsettled = Vec::new();
        {
            let mut ledger = self.ledger.lock().expect("ledger lock");
            for r in restarts {
                if matches!(r.status, Status::Dispatching | Status::DispatchUnknown)
                    && r.restart_run_id.is_none()
                {
                    // Died mid-dispatch (never answered): list the runs first and send once
                    // more only if none appeared. An unknown outcome already had its one
                    // resend: look only.
                    unsettled.push((
                        r.restart_id.clone(),
                        r.status == Status::Dispatching
                            || r.dispatch_attempts < MAX_DISPATCH_ATTEMPTS,
                    ));
                }
                ledger.put(r);
            }
        }
        for (id, may_resend) in unsettled {
            self.spawn_follow_up(settle_unknown(self.clone(), id, may_resend));
        }
        Ok(n)
    }

    /// Settles a restart whose dispatch outcome is unknown (the reconciler's entry): list the
    /// runs first, adopt one if found, else send again within `MAX_DISPATCH_ATTEMPTS`.
    pub fn settle(self: &Arc<Self>, restart_id: &str) {
        self.spawn_follow_up(settle_unknown(self.clone(), restart_id.to_string(), true));
    }

    /// Whether a commit whose dispatches GitHub refused is due another try (backoff passed).
    pub fn retry_due(&self, key: &RestartKey) -> bool {
        let ledger = self.ledger.lock().expect("lock");
        crate::decide::retry_due(ledger.restarts(key), &ledger, &self.policy, Utc::now())
    }

    pub fn github(&self) -> Option<&GitHub> {
        self.github.as_ref()
    }

    /// A copy of one restart as the ledger has it now.
    pub fn restart(&self, restart_id: &str) -> Option<Restart> {
        self.ledger
            .lock()
            .expect("ledger lock")
            .get(restart_id)
            .cloned()
    }

    pub fn restarts(&self, key: &RestartKey) -> Vec<Restart> {
        self.ledger
            .lock()
            .expect("ledger lock")
            .restarts(key)
            .to_vec()
    }

    pub fn all_restarts(&self) -> Vec<Restart> {
        self.ledger
            .lock()
            .expect("ledger lock")
            .all()
            .cloned()
            .collect()
    }

    /// Waits until no delivery or follow-up is in flight (tests, replay, shutdown).
    /// Recorded rows are flushed to ClickHouse before it returns.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let idle = loop {
            let notified = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                break true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break self.in_flight.load(Ordering::SeqCst) == 0;
            }
        };
        self.flush().await;
        idle
    }

    /// Writes what the recorder holds (before reading what it recorded).
    pub async fn flush(&self) -> bool {
        match &self.recorder {
            Some(r) => r.flush().await,
            None => true,
        }
    }

    async fn record(&self, e: Entry) {
        if let Some(r) = &self.recorder {
            r.add(e).await;
        }
    }

    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    fn end(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    fn spawn_follow_up(self: &Arc<Self>, fut: impl Future<Output = ()> + Send + 'static) {
        self.begin();
        let me = self.clone();
        tokio::spawn(async move {
            fut.await;
            me.end();
        });
    }

    /// Decides and carries out one delivery; returns what was decided.
    /// The kill switch of a repository, looked up at most every `kill_switch_ttl`. A failed
    /// lookup leaves restarts on (as PyTorch's autorevert does) and says so in the log.
    pub async fn kill_switch(&self, repo: &str, installation: Option<u64>) -> Option<KillSwitch> {
        let (Some(label), Some(gh)) = (&self.policy.kill_switch_label, &self.github) else {
            return None;
        };
        let previous = self.kill_switches.lock().expect("lock").get(repo).cloned();
        if let Some((at, v)) = &previous
            && at.elapsed() < self.timing.kill_switch_ttl
        {
            return v.clone();
        }
        let now = match gh.kill_switch(repo, label, installation).await {
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
        self.kill_switches
            .lock()
            .expect("lock")
            .insert(repo.to_string(), (tokio::time::Instant::now(), now.clone()));
        now
    }

    pub async fn handle(self: &Arc<Self>, d: &Delivery) -> Vec<Command> {
        let switch = match &d.event {
            crate::events::Event::WorkflowRun(e) if may_dispatch(&d.event) => {
                self.kill_switch(&e.repo, e.installation_id).await
            }
            _ => None,
        };
        let commands = {
            let mut ledger = self.ledger.lock().expect("ledger lock");
            let mut commands = decide(&d.event, &d.id, &ledger, &self.policy, Utc::now());
            if let Some(ks) = &switch {
                commands = hold_for_kill_switch(commands, &ks.to_string());
            }
            // Claim new restarts before the lock is released: the next delivery for the
            // same commit already sees them.
            for c in &commands {
                if let Command::Dispatch { restart } = c {
                    ledger.put((**restart).clone());
                }
            }
            commands
        };
        // Writes of evidence first (job states, mirror rows), then what reads them.
        let (writes, rest): (Vec<&Command>, Vec<&Command>) = commands.iter().partition(|c| {
            matches!(
                c,
                Command::RecordJob { .. } | Command::MirrorRun { .. } | Command::MirrorJob { .. }
            )
        });
        for c in writes.into_iter().chain(rest) {
            self.execute(c, d).await;
        }
        self.record_delivery(d, &commands).await;
        commands
    }

    /// Marks a handled delivery done in the delivery log, behind its recorded rows.
    pub async fn acknowledge(&self, seq: Option<u64>) {
        let Some(seq) = seq else { return };
        match (&self.recorder, &self.spool) {
            (Some(r), _) => r.add(Entry::Ack(seq)).await,
            (None, Some(spool)) => spool.ack(seq),
            (None, None) => {}
        }
    }

    async fn execute(self: &Arc<Self>, c: &Command, d: &Delivery) {
        match c {
            Command::Ignore { .. } => {}
            Command::Skip {
                key,
                original_run_id,
                reason,
            } => {
                tracing::info!(%key, original_run_id, reason, "restart skipped");
                self.log(EventRow::for_key(key, "skipped", &d.id, reason.clone()))
                    .await;
            }
            Command::Dispatch { restart } => self.dispatch((**restart).clone(), d.replayed).await,
            Command::RecordJob { repo, job } if self.store.is_none() => {
                self.replay_jobs
                    .lock()
                    .expect("replay jobs lock")
                    .entry((repo.clone(), job.run_id))
                    .or_default()
                    .insert(job.id, job_state(job));
            }
            Command::RecordJob { repo, job } => {
                self.record(Entry::Job(JobResultRow::new(repo, job))).await
            }
            Command::MirrorRun { repo, run } => {
                self.record(Entry::MirrorRun(MirrorRunRow::new(repo, run)))
                    .await
            }
            Command::MirrorJob { repo, job } => {
                self.record(Entry::MirrorJob(MirrorJobRow::new(repo, job)))
                    .await
            }
            Command::AttachRun {
                restart_id,
                run_id,
                run_url,
            } => {
                let updated = self
                    .update(restart_id, |r| {
                        r.restart_run_id = Some(*run_id);
                        if !run_url.is_empty() {
                            r.run_url = run_url.clone();
                        }
                        if matches!(r.status, Status::Dispatching | Status::DispatchUnknown) {
                            r.status = Status::Dispatched;
                            r.dispatched_at.get_or_insert(r.requested_at);
                        }
                    })
                    .await;
                if let Some(r) = updated {
                    self.log(EventRow::for_restart(
                        &r,
                        "run_attached",
                        format!("run {run_id} belongs to this restart"),
                    ))
                    .await;
                }
            }
            Command::Confirm { restart_id } => {
                let fresh = self
                    .confirming
                    .lock()
                    .expect("confirming lock")
                    .insert(restart_id.clone());
                if fresh {
                    self.spawn_follow_up(confirm(self.clone(), restart_id.clone()));
                }
            }
            Command::Evaluate {
                restart_id,
                run_conclusion,
            } => self.evaluate(restart_id, run_conclusion).await,
        }
    }

    /// Updates a restart in the ledger and persists the new version.
    async fn update(&self, restart_id: &str, f: impl FnOnce(&mut Restart)) -> Option<Restart> {
        let updated = self
            .ledger
            .lock()
            .expect("ledger lock")
            .update(restart_id, f)?;
        self.persist(&updated).await;
        Some(updated)
    }

    /// Records a restart's new version (batched; see `recorder`).
    async fn persist(&self, r: &Restart) {
        self.record(Entry::Restart(RestartRow::from(r))).await;
    }

    async fn log(&self, row: EventRow) {
        tracing::info!(
            kind = row.kind,
            repo = row.repo,
            sha = row.head_sha,
            "{}",
            row.message
        );
        self.record(Entry::Event(row)).await;
    }

    async fn record_delivery(&self, d: &Delivery, commands: &[Command]) {
        if self.recorder.is_none() {
            return;
        }
        let (repo, sha) = d.event.commit_key().unwrap_or(("", ""));
        let installation_id = match &d.event {
            Event::WorkflowRun(e) => e.installation_id,
            Event::WorkflowJob(e) => e.installation_id,
            _ => None,
        };
        let decision = commands
            .iter()
            .filter(|c| !matches!(c, Command::MirrorRun { .. } | Command::MirrorJob { .. }))
            .map(Command::describe)
            .collect::<Vec<_>>()
            .join("; ");
        let row = DeliveryRow {
            delivery_id: d.id.clone(),
            event: d.event_name.clone(),
            action: d.event.action().to_string(),
            repo: repo.to_string(),
            head_sha: sha.to_string(),
            installation_id,
            received_at: d.received_at,
            processed_at: Utc::now(),
            decision,
            body_bytes: d.body_bytes,
        };
        self.record(Entry::Delivery(row)).await;
    }

    /// Sends a claimed restart. Its intent is durable already: the delivery that caused it
    /// stays in the delivery log until the restart's rows are written, and is replayed after
    /// a crash, when `replayed` makes the dispatch list runs before it POSTs.
    async fn dispatch(self: &Arc<Self>, r: Restart, replayed: bool) {
        let req = dispatch_request(&r);
        self.persist(&r).await;
        if r.dry_run {
            self.log(
                EventRow::for_restart(
                    &r,
                    "dispatch_dry_run",
                    format!("would POST {} ref={}", req.route(), req.git_ref),
                )
                .with_details(&req.body(true)),
            )
            .await;
            return;
        }
        if replayed {
            // This delivery was handled before a crash: the POST may have gone out already.
            self.log(EventRow::for_restart(
                &r,
                "dispatch_replayed",
                "handled again after a restart of the App: looking for the run before sending",
            ))
            .await;
            self.spawn_follow_up(settle_unknown(self.clone(), r.restart_id.clone(), true));
            return;
        }
        let Some(gh) = &self.github else {
            let u = self
                .update(&r.restart_id, |x| {
                    x.status = Status::DispatchFailed;
                    x.reason = "no GitHub credentials are configured".into();
                })
                .await;
            if let Some(u) = u {
                self.log(EventRow::for_restart(
                    &u,
                    "dispatch_failed",
                    u.reason.clone(),
                ))
                .await;
            }
            return;
        };
        let result = send_dispatch(gh, &r).await;
        let unsettled = matches!(
            result,
            DispatchResult::Unknown { .. } | DispatchResult::NotSent { .. }
        );
        self.apply_dispatch_result(&r.restart_id, result, "dispatched")
            .await;
        if unsettled {
            self.spawn_follow_up(settle_unknown(self.clone(), r.restart_id.clone(), true));
        }
    }

    async fn apply_dispatch_result(&self, restart_id: &str, result: DispatchResult, ok_kind: &str) {
        let now = Utc::now();
        let (kind, updated) = match result {
            DispatchResult::Created { run_id, html_url } => (
                ok_kind,
                self.update(restart_id, |x| {
                    x.status = Status::Dispatched;
                    x.dispatched_at = Some(now);
                    x.restart_run_id = Some(run_id);
                    x.run_url = html_url;
                    x.reason = format!("dispatched run {run_id}");
                })
                .await,
            ),
            DispatchResult::Accepted => (
                ok_kind,
                self.update(restart_id, |x| {
                    x.status = Status::Dispatched;
                    x.dispatched_at = Some(now);
                    x.reason = "dispatched (GitHub returned no run id)".into();
                })
                .await,
            ),
            DispatchResult::Rejected { status, message } => (
                "dispatch_failed",
                self.update(restart_id, |x| {
                    x.status = Status::DispatchFailed;
                    x.reason = if status == 0 {
                        message
                    } else {
                        format!("GitHub answered {status}: {message}")
                    };
                })
                .await,
            ),
            DispatchResult::Unknown { reason } => (
                "dispatch_unknown",
                self.update(restart_id, |x| {
                    x.status = Status::DispatchUnknown;
                    x.reason = format!("{reason}; the run will be looked up before any resend");
                })
                .await,
            ),
            // Settled like an unknown outcome (runs looked up, then sent), by the follow-up
            // and by every reconciler pass until GitHub answers; the POST that never went
            // out does not count against the attempts.
            DispatchResult::NotSent { reason } => (
                "dispatch_not_sent",
                self.update(restart_id, |x| {
                    x.status = Status::DispatchUnknown;
                    x.dispatch_attempts = x.dispatch_attempts.saturating_sub(1);
                    x.reason = format!(
                        "not sent: {reason}; it will be sent once GitHub answers (runs are looked up first)"
                    );
                })
                .await,
            ),
        };
        if let Some(u) = updated {
            self.log(EventRow::for_restart(&u, kind, u.reason.clone()))
                .await;
        }
    }

    /// Job states of a run: what the webhooks told us, completed from the REST API when the
    /// webhooks left gaps (missed deliveries, jobs not finished when the run completed).
    async fn jobs_of(&self, r: &Restart, run_id: u64, need_failures: bool) -> Vec<JobState> {
        let Some(store) = &self.store else {
            let jobs = self.replay_jobs.lock().expect("replay jobs lock");
            return jobs
                .get(&(r.key.repo.clone(), run_id))
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default();
        };
        self.flush().await; // job events recorded moments ago are part of the evidence
        let known = store
            .job_states(&r.key.repo, run_id)
            .await
            .unwrap_or_else(|e| {
                tracing::error!(
                    error = format!("{e:#}"),
                    run_id,
                    "reading job states failed"
                );
                vec![]
            });
        let gap = known.is_empty()
            || known.iter().any(|j| j.status != "completed")
            || (need_failures && failing_base_names(&known).is_empty());
        let Some(gh) = &self.github else { return known };
        if !gap {
            return known;
        }
        match gh.run_jobs(&r.key.repo, run_id, r.installation_id).await {
            Ok(jobs) if !jobs.is_empty() => {
                let states = jobs.iter().map(job_state).collect();
                for j in jobs {
                    self.record(Entry::Job(JobResultRow::new(&r.key.repo, &j)))
                        .await;
                }
                states
            }
            Ok(_) => known,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    run_id,
                    "listing jobs from GitHub failed"
                );
                known
            }
        }
    }

    async fn evaluate(&self, restart_id: &str, run_conclusion: &str) {
        let Some(r) = self.restart(restart_id) else {
            return;
        };
        let Some(run_id) = r.restart_run_id else {
            return;
        };
        let original = self.jobs_of(&r, r.original_run_id, true).await;
        let restarted = self.jobs_of(&r, run_id, false).await;
        let j = judge(&original, &restarted);
        let now = Utc::now();
        let verdict = j.verdict;
        let reason = format!("run {run_id} concluded {run_conclusion}; {}", j.reason);
        let Some(u) = self
            .update(restart_id, |x| {
                x.status = Status::Completed;
                x.completed_at = Some(now);
                x.outcome = Some(verdict);
                x.reason = reason.clone();
            })
            .await
        else {
            return;
        };
        if let Some(store) = &self.store
            && let Err(e) = store.record_verdicts(&u, &j.jobs).await
        {
            tracing::error!(
                error = format!("{e:#}"),
                "recording per-job verdicts failed"
            );
        }
        self.log(
            EventRow::for_restart(&u, "outcome", format!("{verdict}: {reason}")).with_details(&j),
        )
        .await;
    }
}

/// The dispatch a restart stands for.
fn dispatch_request(r: &Restart) -> DispatchRequest {
    DispatchRequest {
        repo: r.key.repo.clone(),
        workflow_file: r.workflow_file.clone(),
        git_ref: r.trunk_ref(),
        inputs: None,
    }
}

/// Sends a restart's dispatch once. An error before the POST (no installation token:
/// GitHub down, say) means nothing was sent: the restart waits for GitHub, it is not lost.
async fn send_dispatch(gh: &GitHub, r: &Restart) -> DispatchResult {
    gh.dispatch(&dispatch_request(r), r.installation_id)
        .await
        .unwrap_or_else(|e| DispatchResult::NotSent {
            reason: format!("{e:#}"),
        })
}

fn job_state(j: &Job) -> JobState {
    JobState {
        name: j.name.clone(),
        status: j.status.clone(),
        conclusion: j.conclusion.clone(),
    }
}

/// Confirms a restart in ClickHouse with PyTorch's query, retrying with backoff while
/// ingestion catches up, for at most the confirmation window.
async fn confirm(engine: Arc<Engine>, restart_id: String) {
    let Some(store) = engine.store.clone() else {
        engine.confirming.lock().expect("lock").remove(&restart_id);
        return;
    };
    let Some(r) = engine.restart(&restart_id) else {
        return;
    };
    let started = tokio::time::Instant::now();
    engine.flush().await; // the job rows that triggered this are in the mirror
    let mut wait = engine.timing.confirm_backoff;
    let mut last_error = None;
    let mut tries = 0u32;
    loop {
        tries += 1;
        match store.restart_visible(&r.key).await {
            Ok(true) => {
                let now = Utc::now();
                let since = r.dispatched_at.unwrap_or(r.requested_at);
                let latency = (now - since).num_milliseconds().max(0) as u64;
                if let Some(u) = engine
                    .update(&restart_id, |x| {
                        x.confirmed_at = Some(now);
                        x.confirm_latency_ms = Some(latency);
                        if x.status != Status::Completed {
                            x.status = Status::Confirmed;
                        }
                    })
                    .await
                {
                    engine
                        .log(EventRow::for_restart(
                            &u,
                            "confirmed",
                            format!("restart jobs visible in ClickHouse {latency} ms after dispatch ({tries} queries)"),
                        ))
                        .await;
                }
                break;
            }
            Ok(false) => {}
            Err(e) => last_error = Some(format!("{e:#}")),
        }
        if started.elapsed() + wait > engine.timing.confirm_window {
            let reason = format!(
                "restart jobs not visible in ClickHouse after {} s ({tries} queries){}",
                engine.timing.confirm_window.as_secs(),
                last_error
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            );
            if let Some(u) = engine
                .update(&restart_id, |x| {
                    if x.status != Status::Completed {
                        x.status = Status::Unconfirmed;
                    }
                })
                .await
            {
                engine
                    .log(EventRow::for_restart(&u, "unconfirmed", reason))
                    .await;
            }
            break;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(60));
    }
    engine.confirming.lock().expect("lock").remove(&restart_id);
}

/// A restart's dispatch POST is sent at most this many times in all, each resend only
/// after listing the runs on `trunk/<sha>` found none.
pub const MAX_DISPATCH_ATTEMPTS: u32 = 3;

/// Settles a dispatch whose outcome is unknown: list the workflow's dispatched runs on
/// `trunk/{sha}` first; adopt a run that appeared since the restart was requested; only if
/// there is none, send the POST once more (`resend`), and look again if that too is unknown.
async fn settle_unknown(engine: Arc<Engine>, restart_id: String, resend: bool) {
    let Some(gh) = engine.github.clone() else {
        return;
    };
    let mut may_resend = resend;
    loop {
        tokio::time::sleep(engine.timing.dispatch_lookup_delay).await;
        let Some(r) = engine.restart(&restart_id) else {
            return;
        };
        if r.restart_run_id.is_some() || !r.status.awaits_run() {
            return; // a webhook already told us
        }
        let taken: HashSet<u64> = engine
            .ledger
            .lock()
            .expect("lock")
            .restarts(&r.key)
            .iter()
            .filter_map(|x| x.restart_run_id)
            .collect();
        let since = r.requested_at - chrono::Duration::seconds(120);
        match gh
            .dispatched_runs(
                &r.key.repo,
                &r.workflow_file,
                &r.trunk_ref(),
                r.installation_id,
            )
            .await
        {
            Ok(runs) => {
                if let Some(run) = runs
                    .iter()
                    .filter(|run| run.created_at >= since && !taken.contains(&run.id))
                    .min_by_key(|run| run.created_at)
                {
                    engine
                        .apply_dispatch_result(
                            &restart_id,
                            DispatchResult::Created {
                                run_id: run.id,
                                html_url: run.html_url.clone(),
                            },
                            "run_found",
                        )
                        .await;
                    return;
                }
            }
            Err(e) => {
                let reason = format!("could not list runs on {}: {e:#}", r.trunk_ref());
                if let Some(u) = engine
                    .update(&restart_id, |x| x.reason = reason.clone())
                    .await
                {
                    engine
                        .log(EventRow::for_restart(&u, "lookup_failed", reason))
                        .await;
                }
                return; // never resend without a successful lookup
            }
        }
        if !may_resend || r.dispatch_attempts >= MAX_DISPATCH_ATTEMPTS {
            let u = engine
                .update(&restart_id, |x| {
                    x.status = Status::DispatchUnknown;
                    x.reason = format!(
                        "no run found on {} after an unknown dispatch outcome",
                        x.trunk_ref()
                    );
                })
                .await;
            if let Some(u) = u {
                engine
                    .log(EventRow::for_restart(
                        &u,
                        "dispatch_unknown",
                        u.reason.clone(),
                    ))
                    .await;
            }
            return;
        }
        may_resend = false;
        // Counted (and persisted) before the POST goes out.
        let Some(r) = engine
            .update(&restart_id, |x| x.dispatch_attempts += 1)
            .await
        else {
            return;
        };
        engine
            .log(EventRow::for_restart(
                &r,
                "dispatch_resent",
                format!(
                    "no run found after an unknown outcome; sending again (POST {} of at most {MAX_DISPATCH_ATTEMPTS})",
                    r.dispatch_attempts
                ),
            ))
            .await;
        let result = send_dispatch(&gh, &r).await;
        let unknown = matches!(result, DispatchResult::Unknown { .. });
        engine
            .apply_dispatch_result(&restart_id, result, "dispatched")
            .await;
        if !unknown {
            return;
        }
    }
}

/// Why a delivery could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum EnqueueError {
    /// The worker's queue stayed full for the whole wait: answer 503 with `Retry-After`.
    Full,
    /// Shutting down.
    Closed,
}

/// A reserved place in a worker's queue.
pub struct Slot {
    permit: Option<mpsc::OwnedPermit<Delivery>>,
    engine: Arc<Engine>,
}

impl Slot {
    pub fn send(mut self, d: Delivery) {
        if let Some(p) = self.permit.take() {
            p.send(d);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.permit.is_some() {
            self.engine.end(); // reserved but never used
        }
    }
}

/// The workers and their bounded queues.
pub struct Pipeline {
    engine: Arc<Engine>,
    /// Emptied at shutdown, which closes the queues.
    senders: std::sync::RwLock<Vec<mpsc::Sender<Delivery>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Pipeline {
    pub fn start(engine: Arc<Engine>, workers: usize, capacity: usize) -> Pipeline {
        let per_worker = capacity.div_ceil(workers).max(1);
        let mut senders = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, mut rx) = mpsc::channel::<Delivery>(per_worker);
            let engine = engine.clone();
            senders.push(tx);
            handles.push(tokio::spawn(async move {
                while let Some(d) = rx.recv().await {
                    let decided = engine.handle(&d).await;
                    // Behind the delivery's rows: done in the log once they are written.
                    engine.acknowledge(d.seq).await;
                    tracing::debug!(delivery = d.id, event = d.event_name, decisions = ?decided.iter().map(Command::describe).collect::<Vec<_>>());
                    engine.end();
                }
            }));
        }
        Pipeline {
            engine,
            senders: std::sync::RwLock::new(senders),
            workers: Mutex::new(handles),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The queue of the worker that handles this event's commit.
    fn sender_for(&self, event: &Event) -> Result<mpsc::Sender<Delivery>, EnqueueError> {
        let senders = self.senders.read().expect("senders lock");
        if senders.is_empty() {
            return Err(EnqueueError::Closed);
        }
        let shard = match event.commit_key() {
            Some(key) => {
                let mut h = DefaultHasher::new();
                key.hash(&mut h);
                (h.finish() % senders.len() as u64) as usize
            }
            None => 0,
        };
        Ok(senders[shard].clone())
    }

    /// Reserves a place in the queue, waiting up to `wait` for one (then the intake answers
    /// 503), so that a delivery is written to the delivery log only if it can be queued.
    /// A burst slows the answers down instead of turning into 503s, which GitHub does not
    /// redeliver by itself.
    pub async fn reserve(&self, event: &Event, wait: Duration) -> Result<Slot, EnqueueError> {
        let permit = match self.sender_for(event)?.try_reserve_owned() {
            Ok(p) => p,
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(EnqueueError::Closed),
            Err(mpsc::error::TrySendError::Full(sender)) => {
                match tokio::time::timeout(wait, sender.reserve_owned()).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(EnqueueError::Closed),
                    Err(_) => return Err(EnqueueError::Full),
                }
            }
        };
        self.engine.begin();
        Ok(Slot {
            permit: Some(permit),
            engine: self.engine.clone(),
        })
    }

    /// Queues a delivery, waiting for room (recovery at start-up).
    pub async fn enqueue(&self, d: Delivery) -> Result<(), EnqueueError> {
        let sender = self.sender_for(&d.event)?;
        self.engine.begin();
        sender.send(d).await.map_err(|_| {
            self.engine.end();
            EnqueueError::Closed
        })
    }

    /// Deliveries waiting in the queues.
    pub fn queued(&self) -> usize {
        self.senders
            .read()
            .expect("senders lock")
            .iter()
            .map(|s| s.max_capacity() - s.capacity())
            .sum()
    }

    /// Stops taking deliveries, lets the workers finish what is queued, and waits for
    /// follow-ups up to `grace`.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.senders.write().expect("senders lock").clear();
        let workers: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.workers.lock().expect("workers lock"));
        let deadline = tokio::time::Instant::now() + grace;
        for w in workers {
            // A worker still retrying (ClickHouse down) is left behind: its delivery stays
            // unacknowledged in the delivery log and is handled at the next start.
            let _ = tokio::time::timeout_at(deadline, w).await;
        }
        self.engine
            .wait_idle(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
    }
}

//! The engine: one delivery in, its decision taken under the ledger's lock, its commands
//! carried out. Writes of evidence come first, then what reads them; slow steps go to
//! follow-ups.

use super::decider::{Ask, Decider};
use super::effects::{Actions, Evidence};
use super::follow_ups::check_run::CheckRuns;
use super::follow_ups::confirm::Confirm;
use super::follow_ups::evaluate::Evaluate;
use super::follow_ups::revert::Reverts;
use super::follow_ups::scope::Scoping;
use super::follow_ups::settle::Settle;
use super::follow_ups::{Activity, FollowUps, Kind, dispatch};
use super::kill_switch::KillSwitches;
use super::restarts::Restarts;
use crate::intake::{Delivery, Event};
use crate::restart::{
    Command, Policy, Restart, RestartKey, Status, decide, decide_asked, hold_for_kill_switch,
    may_dispatch, retry_due, seed_versions,
};
use crate::store::mirror::{MirrorJobRow, MirrorRunRow};
use crate::store::recorder::Entry;
use crate::store::rows::{DeliveryRow, EventRow, JobResultRow};
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;

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
    restarts: Arc<Restarts>,
    evidence: Arc<dyn Evidence>,
    activity: Arc<Activity>,
    follow_ups: FollowUps,
    kill_switches: Arc<KillSwitches>,
    settle: Settle,
    scoping: Scoping,
    confirm: Confirm,
    evaluate: Evaluate,
    check_runs: Arc<CheckRuns>,
    decider: Arc<Decider>,
    reverts: Reverts,
}

impl Engine {
    pub fn new(
        policy: Policy,
        evidence: Arc<dyn Evidence>,
        github: Arc<dyn Actions>,
        timing: Timing,
        decide: super::decider::Settings,
    ) -> Engine {
        let restarts = Arc::new(Restarts::new(evidence.clone()));
        let activity = Arc::new(Activity::default());
        let follow_ups = FollowUps::new(activity.clone());
        // Every transition may put the check run behind: it follows from `on_transition`.
        let check_runs = Arc::new(CheckRuns {
            restarts: Arc::downgrade(&restarts),
            evidence: evidence.clone(),
            github: github.clone(),
            follow_ups: follow_ups.clone(),
            lookup_delay: timing.dispatch_lookup_delay,
        });
        let on_change = check_runs.clone();
        restarts.on_change(Box::new(move |r: &Restart| {
            on_change.changed(r);
        }));
        let kill_switches = Arc::new(KillSwitches::new(
            policy.kill_switch_label.clone(),
            timing.kill_switch_ttl,
            github.clone(),
        ));
        let acting = decide.acting.clone();
        let decider = Arc::new(Decider::new(decide));
        Engine {
            reverts: Reverts::new(
                acting,
                evidence.clone(),
                github.clone(),
                decider.clone(),
                kill_switches.clone(),
                follow_ups.clone(),
            ),
            decider,
            check_runs,
            kill_switches,
            policy,
            follow_ups,
            activity,
            settle: Settle {
                restarts: restarts.clone(),
                github: github.clone(),
                lookup_delay: timing.dispatch_lookup_delay,
            },
            scoping: Scoping {
                evidence: evidence.clone(),
                github: github.clone(),
            },
            confirm: Confirm {
                restarts: restarts.clone(),
                evidence: evidence.clone(),
                window: timing.confirm_window,
                backoff: timing.confirm_backoff,
            },
            evaluate: Evaluate {
                restarts: restarts.clone(),
                evidence: evidence.clone(),
                github,
            },
            restarts,
            evidence,
        }
    }

    /// Loads the ledger and resumes restarts that were mid-dispatch when the process
    /// stopped (their run is looked up before anything is sent again).
    pub async fn resume(&self) -> anyhow::Result<usize> {
        let loaded = self.evidence.restarts(30).await?;
        let n = loaded.len();
        // Row versions come from the wall clock: on a clock now behind the one that wrote
        // the ledger, they must still rise above what it holds.
        if let Some(highest) = loaded.iter().map(|r| r.version).max() {
            seed_versions(highest);
        }
        // Died mid-dispatch (never answered): list the runs first and send once more only if
        // none appeared. An unknown outcome already had its one resend: look only.
        let unsettled: Vec<(String, bool)> = loaded
            .iter()
            .filter(|r| {
                matches!(r.status, Status::Dispatching | Status::DispatchUnknown)
                    && r.restart_run_id.is_none()
            })
            .map(|r| {
                let may_resend = r.status == Status::Dispatching
                    || r.dispatch_attempts < crate::restart::MAX_DISPATCH_ATTEMPTS;
                (r.restart_id.clone(), may_resend)
            })
            .collect();
        self.restarts.load(loaded);
        self.rebuild_decisions().await?;
        for (id, may_resend) in unsettled {
            self.settle.spawn(&self.follow_ups, &id, may_resend);
        }
        // A check run left behind by the last run (a crash between the dispatch and its
        // check run, GitHub failing the last call) is brought up to date.
        self.resync_check_runs();
        Ok(n)
    }

    /// The decision engine's history from what ClickHouse kept of the window.
    async fn rebuild_decisions(&self) -> anyhow::Result<()> {
        if !self.decider.settings().enabled {
            return Ok(());
        }
        let now = Utc::now();
        let state = self
            .evidence
            .signal_state(now - self.decider.settings().lookback)
            .await?;
        let (commits, jobs) = self.decider.rebuild(&state, now);
        // Once per commit, ever: what was done about culprits is kept for a year.
        let acted = self
            .evidence
            .revert_actions(now - chrono::Duration::days(365))
            .await?;
        tracing::info!(
            commits,
            jobs,
            acted = acted.len(),
            "decision engine history rebuilt"
        );
        self.reverts.load(acted);
        Ok(())
    }

    pub fn decider(&self) -> &Decider {
        &self.decider
    }

    /// What was done about culprits.
    pub fn reverts(&self) -> &Reverts {
        &self.reverts
    }

    /// Starts the check-run follow-up of every restart whose check run is behind; how many.
    pub fn resync_check_runs(&self) -> usize {
        let all = self.restarts.all();
        all.iter().filter(|r| self.check_runs.changed(r)).count()
    }

    /// Settles a restart whose dispatch outcome is unknown (the reconciler's entry).
    pub fn settle(&self, restart_id: &str) {
        self.settle.spawn(&self.follow_ups, restart_id, true);
    }

    /// Whether a commit whose dispatches GitHub refused is due another try (backoff passed).
    pub fn retry_due(&self, key: &RestartKey) -> bool {
        self.restarts
            .read(|l| retry_due(l.restarts(key), l, &self.policy, Utc::now()))
    }

    pub fn restarts(&self) -> &Arc<Restarts> {
        &self.restarts
    }

    pub fn restart(&self, restart_id: &str) -> Option<Restart> {
        self.restarts.get(restart_id)
    }

    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// The kill switches as last looked up (the status page, `/healthz`).
    pub fn kill_switches(&self) -> &KillSwitches {
        &self.kill_switches
    }

    /// Waits until no delivery or follow-up is in flight (tests, replay, shutdown), then
    /// writes what the recorder holds.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let idle = self.activity.wait_idle(timeout).await;
        self.evidence.flush().await;
        idle
    }

    /// Decides and carries out one delivery; returns what was decided.
    pub async fn handle(&self, d: &Delivery) -> Vec<Command> {
        // The kill switch's last known state (looked up off this path, see kill_switch.rs);
        // on, or unknown, holds whatever restart is decided.
        let held = match &d.event {
            Event::WorkflowRun(e) if may_dispatch(&d.event) => self
                .kill_switches
                .state(&e.repo, e.installation_id)
                .await
                .hold_reason(),
            _ => None,
        };
        let commands = self.restarts.decide_and_claim(|ledger| {
            let commands = decide(&d.event, &d.id, ledger, &self.policy, Utc::now());
            match &held {
                Some(reason) => hold_for_kill_switch(commands, reason),
                None => commands,
            }
        });
        let (writes, rest): (Vec<&Command>, Vec<&Command>) =
            commands.iter().partition(|c| c.writes_evidence());
        for c in writes.into_iter().chain(rest) {
            self.execute(c, d).await;
        }
        let mut commands = commands;
        commands.extend(self.decide_signals(d).await);
        commands.extend(self.pair_restarts(&commands, d).await);
        let row = DeliveryRow::of(d, &commands, Utc::now());
        self.evidence.record(Entry::Delivery(row)).await;
        commands
    }

    /// The decision engine's part: the signals this delivery changed are decided again,
    /// the restarts they ask for claimed and carried out; what it did.
    async fn decide_signals(&self, d: &Delivery) -> Vec<Command> {
        let decided = self
            .decider
            .on_event(&d.event, &d.id, &self.policy, Utc::now());
        for row in decided.rows {
            self.evidence.record(row).await;
        }
        let mut done = Vec::new();
        for ask in decided.asks {
            done.extend(self.ask(ask, d).await);
        }
        for b in decided.blamed {
            self.reverts.consider(b);
        }
        done
    }

    /// A failed run's restart goes with a restart of its commit's parent, for the jobs that
    /// failed (the decision rules count a reproduction only beside a green parent run).
    async fn pair_restarts(&self, commands: &[Command], d: &Delivery) -> Vec<Command> {
        if self.decider.settings().rules.pairing_window_secs.is_none() {
            return Vec::new();
        }
        let mut done = Vec::new();
        for c in commands {
            let Command::Dispatch { restart } = c else {
                continue;
            };
            if !restart.asked_jobs.is_empty() {
                continue; // the engine's own: it asks for the pair itself
            }
            if let Some(ask) = self.decider.parent_of_restart(&restart.key) {
                done.extend(self.ask(ask, d).await);
            }
        }
        done
    }

    /// One restart the engine asks for, through the ledger like any other: the cap,
    /// pacing, `RESTART_ACTION` and the kill switch apply.
    async fn ask(&self, ask: Ask, d: &Delivery) -> Vec<Command> {
        let key = &ask.asked.key;
        let held = self
            .kill_switches
            .state(&key.repo, ask.asked.installation_id)
            .await
            .hold_reason();
        let commands = self.restarts.decide_and_claim(|ledger| {
            let c = decide_asked(ask.asked.clone(), &d.id, ledger, &self.policy, Utc::now());
            match &held {
                Some(reason) => hold_for_kill_switch(c, reason),
                None => c,
            }
        });
        // A refusal is logged once per decision, not at every event that repeats it.
        let commands: Vec<Command> = commands
            .into_iter()
            .filter(|c| ask.new || !matches!(c, Command::Skip { .. }))
            .collect();
        for c in &commands {
            self.execute(c, d).await;
        }
        commands
    }

    /// A restart in PyTorch's action log (`PYTORCH_EVENTS_TABLE`), so that the Lambda's
    /// restart caps count it; written when it is decided (a dispatch GitHub refuses later
    /// still counts: the Lambda then restarts less, never more).
    async fn tell_pytorch(&self, r: &Restart) {
        let Some(table) = &self.decider.settings().acting.pytorch_events else {
            return;
        };
        let row = crate::store::pytorch_events::PytorchEventRow::restart(
            &r.key.repo,
            &r.key.head_sha,
            vec![r.key.workflow.clone()],
            r.asked_jobs.clone(),
            r.dry_run,
            r.reason.clone(),
        );
        super::effects::tell_pytorch(&*self.evidence, table, row, &r.restart_id).await;
    }

    /// Marks a handled delivery done in the delivery log, behind its recorded rows.
    pub async fn acknowledge(&self, seq: Option<u64>) {
        if let Some(seq) = seq {
            self.evidence.record(Entry::Ack(seq)).await;
        }
    }

    async fn execute(&self, c: &Command, d: &Delivery) {
        let record = |e: Entry| self.evidence.record(e);
        match c {
            Command::Ignore { .. } => {}
            Command::Skip {
                key,
                original_run_id,
                reason,
            } => {
                tracing::info!(%key, original_run_id, reason, "restart skipped");
                self.restarts
                    .log(EventRow::skipped(key, &d.id, reason.clone()))
                    .await;
            }
            Command::Dispatch { restart } => {
                self.tell_pytorch(restart).await;
                let r = (**restart).clone();
                let (settle, scoping) = (&self.settle, &self.scoping);
                dispatch::dispatch(settle, scoping, &self.follow_ups, r, d.replayed).await
            }
            Command::RecordJob { repo, job } => {
                record(Entry::Job(JobResultRow::new(repo, job))).await
            }
            Command::MirrorRun { repo, run } => {
                record(Entry::MirrorRun(MirrorRunRow::new(repo, run))).await
            }
            Command::MirrorJob { repo, job } => {
                record(Entry::MirrorJob(MirrorJobRow::new(repo, job))).await
            }
            Command::AttachRun {
                restart_id,
                run_id,
                run_url,
            } => {
                let t = crate::restart::Transition::RunAttached {
                    run_id: *run_id,
                    run_url: run_url.clone(),
                };
                self.restarts.on_transition(restart_id, t).await;
            }
            Command::Confirm { restart_id } => {
                let (confirm, id) = (self.confirm.clone(), restart_id.clone());
                self.follow_ups.spawn(
                    Kind::Confirm,
                    restart_id,
                    async move { confirm.run(&id).await },
                );
            }
            Command::Evaluate {
                restart_id,
                run_conclusion,
            } => {
                let (evaluate, id, rc) = (
                    self.evaluate.clone(),
                    restart_id.clone(),
                    run_conclusion.clone(),
                );
                self.follow_ups
                    .spawn(Kind::Evaluate, restart_id, async move {
                        evaluate.run(&id, &rc).await
                    });
            }
        }
    }
}

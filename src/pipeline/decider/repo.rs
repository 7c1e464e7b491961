//! One repository's decision state: its history, the last decision of each signal, and
//! what a restart of one of its commits needs (the workflow file, the commit's own run).

use super::{Ask, Decided};
use crate::decisions::{Decision, DecisionConfig, Revert, decide, plan};
use crate::intake::Event;
use crate::intake::events::{Job, PushEvent, Run};
use crate::intake::states::Trigger;
use crate::restart::{Asked, Policy, RestartKey, is_restart_branch};
use crate::signals::{History, SignalKey};
use crate::store::recorder::Entry;
use crate::store::signal_state::{DecisionRow, MainCommitRow, RunResultRow};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};

/// A commit the engine would revert, with the signals that point at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Blamed {
    pub repo: String,
    pub sha: String,
    pub installation_id: Option<u64>,
    /// When its push landed on main (the age guard).
    pub pushed_at: Option<DateTime<Utc>>,
    pub signals: Vec<(SignalKey, Revert)>,
    /// Whether a decision behind it is new with this event.
    pub new: bool,
}

#[derive(Default)]
pub(super) struct RepoState {
    pub(super) history: History,
    pub(super) last: HashMap<SignalKey, Decision>,
    /// workflow name -> workflow file (`trunk.yml`), from its runs.
    files: HashMap<String, String>,
    /// (workflow, sha) -> the commit's own (push) run.
    push_runs: HashMap<(String, String), u64>,
    installation: Option<u64>,
}

impl RepoState {
    /// Records what the event says; the signals to decide again.
    pub(super) fn observe(
        &mut self,
        event: &Event,
        delivery_id: &str,
        policy: &Policy,
        now: DateTime<Utc>,
        lookback: chrono::Duration,
    ) -> (Vec<Entry>, Vec<SignalKey>) {
        if let Some(id) = event.installation_id() {
            self.installation = Some(id);
        }
        match event {
            Event::Push(e) if e.branch() == Some(policy.main_branch.as_str()) => {
                self.push(e, delivery_id, now, lookback)
            }
            Event::WorkflowRun(e)
                if tracked(
                    policy,
                    &e.run.name,
                    e.run.head_branch.as_deref(),
                    &e.run.head_sha,
                ) =>
            {
                if !self.record_run(&e.run) {
                    return (Vec::new(), Vec::new());
                }
                let keys = self
                    .history
                    .failing_keys()
                    .filter(|k| k.workflow == e.run.name)
                    .cloned()
                    .collect();
                (vec![Entry::Run(RunResultRow::new(&e.repo, &e.run))], keys)
            }
            Event::WorkflowJob(e)
                if tracked(
                    policy,
                    &e.job.workflow_name,
                    e.job.head_branch.as_deref(),
                    &e.job.head_sha,
                ) =>
            {
                (Vec::new(), self.record_job(&e.job))
            }
            _ => (Vec::new(), Vec::new()),
        }
    }

    fn push(
        &mut self,
        e: &PushEvent,
        delivery_id: &str,
        now: DateTime<Utc>,
        lookback: chrono::Duration,
    ) -> (Vec<Entry>, Vec<SignalKey>) {
        let landed = e.landed();
        let at = e.pushed_at.unwrap_or(now);
        if self.history.push_after(&e.before, &landed, at) == 0 {
            return (Vec::new(), Vec::new());
        }
        self.history.forget_before(now - lookback);
        let rows = landed
            .iter()
            .enumerate()
            .map(|(i, sha)| {
                Entry::MainCommit(MainCommitRow {
                    repo: e.repo.clone(),
                    sha: sha.clone(),
                    pushed_at: at,
                    seq: i as u32,
                    parent: if i == 0 {
                        e.before.clone()
                    } else {
                        landed[i - 1].clone()
                    },
                    delivery_id: delivery_id.to_string(),
                })
            })
            .collect();
        (rows, self.history.failing_keys().cloned().collect())
    }

    /// Keeps a run; true when it changed what is known.
    pub(super) fn record_run(&mut self, run: &Run) -> bool {
        let file = crate::intake::events::workflow_file(&run.path);
        if !file.is_empty() {
            self.files.insert(run.name.clone(), file.to_string());
        }
        if run.event != Trigger::WorkflowDispatch {
            self.push_runs
                .entry((run.name.clone(), run.head_sha.clone()))
                .or_insert(run.id);
        }
        self.history.record_run(run)
    }

    fn record_job(&mut self, job: &Job) -> Vec<SignalKey> {
        match self.history.record_job(job) {
            Some(key) if self.history.is_failing(&key) => vec![key],
            _ => Vec::new(),
        }
    }

    /// The parent of a restarted commit, asked for with the jobs that failed on it.
    pub(super) fn parent_ask(&self, key: &RestartKey) -> Option<Ask> {
        let parent = self.history.commits().parent(&key.head_sha)?.to_string();
        let mut jobs: Vec<String> = self
            .history
            .failing_keys()
            .filter(|k| k.workflow == key.workflow)
            .filter(|k| {
                let signal = self.history.signal(k);
                let on = signal.commits.iter().find(|c| c.sha == key.head_sha);
                on.is_some_and(|c| c.has_failure())
            })
            .map(|k| k.job.clone())
            .collect();
        jobs.sort();
        if jobs.is_empty() {
            return None;
        }
        let file = self.files.get(&key.workflow)?.clone();
        let original = (key.workflow.clone(), parent.clone());
        Some(Ask {
            asked: Asked {
                key: RestartKey {
                    head_sha: parent.clone(),
                    ..key.clone()
                },
                workflow_file: file,
                original_run_id: self.push_runs.get(&original).copied().unwrap_or(0),
                installation_id: self.installation,
                reason: format!(
                    "the parent of {}, restarted beside it for {}",
                    &key.head_sha[..key.head_sha.len().min(10)],
                    jobs.join(", ")
                ),
                jobs,
            },
            new: true,
        })
    }

    /// The decision of every failing signal, as the last one known (after a rebuild):
    /// nothing is recorded or acted on here; the next event acts as usual.
    pub(super) fn seed_decisions(&mut self, rules: &DecisionConfig) {
        let keys: Vec<SignalKey> = self.history.failing_keys().cloned().collect();
        for key in keys {
            let d = decide(&self.history.signal(&key), rules);
            self.last.insert(key, d);
        }
    }

    /// Decides the signals; rows for the decisions that changed, asks and culprits.
    pub(super) fn decide(
        &mut self,
        repo: &str,
        keys: &[SignalKey],
        rules: &DecisionConfig,
        now: DateTime<Utc>,
    ) -> Decided {
        let mut out = Decided::default();
        let mut decided: Vec<(SignalKey, Decision, bool)> = Vec::new();
        for key in keys {
            let d = decide(&self.history.signal(key), rules);
            let new = self.last.get(key) != Some(&d);
            if new {
                out.rows
                    .push(Entry::Decision(decision_row(repo, key, &d, now)));
                self.last.insert(key.clone(), d.clone());
            }
            decided.push((key.clone(), d, new));
        }
        out.asks = self.asks(repo, &decided);
        out.blamed = self.blamed(repo, &decided);
        out
    }

    /// One restart per (workflow, commit), for the jobs of every signal that asks for it.
    fn asks(&self, repo: &str, decided: &[(SignalKey, Decision, bool)]) -> Vec<Ask> {
        let p = plan(decided.iter().map(|(k, d, _)| (k, d)));
        p.restarts
            .into_iter()
            .filter_map(|((workflow, sha), jobs)| {
                let Some(file) = self.files.get(&workflow) else {
                    tracing::warn!(%workflow, %sha, "no workflow file known yet; restart not asked");
                    return None;
                };
                let new = decided.iter().any(|(k, d, new)| {
                    *new && k.workflow == workflow && jobs.contains(&k.job) && asks_for(d, &sha)
                });
                let jobs: Vec<String> = jobs.into_iter().collect();
                Some(Ask {
                    asked: Asked {
                        key: RestartKey {
                            repo: repo.to_string(),
                            workflow: workflow.clone(),
                            head_sha: sha.clone(),
                        },
                        workflow_file: file.clone(),
                        original_run_id: self.push_runs.get(&(workflow, sha)).copied().unwrap_or(0),
                        installation_id: self.installation,
                        reason: format!("asked by the decision engine for {}", jobs.join(", ")),
                        jobs,
                    },
                    new,
                })
            })
            .collect()
    }

    fn blamed(&self, repo: &str, decided: &[(SignalKey, Decision, bool)]) -> Vec<Blamed> {
        let mut by_sha: BTreeMap<String, Blamed> = BTreeMap::new();
        for (key, d, new) in decided {
            let Decision::Revert(r) = d else { continue };
            let c = by_sha.entry(r.suspect.clone()).or_insert_with(|| Blamed {
                repo: repo.to_string(),
                sha: r.suspect.clone(),
                installation_id: self.installation,
                pushed_at: self.history.commits().pushed_at(&r.suspect),
                signals: Vec::new(),
                new: false,
            });
            c.signals.push((key.clone(), r.clone()));
            c.new |= *new;
        }
        by_sha.into_values().collect()
    }
}

/// Events of a watched workflow on main or on a restart's `trunk/<sha>`.
fn tracked(policy: &Policy, workflow: &str, branch: Option<&str>, sha: &str) -> bool {
    policy.watched(workflow)
        && (branch == Some(policy.main_branch.as_str()) || is_restart_branch(branch, sha))
}

fn asks_for(d: &Decision, sha: &str) -> bool {
    matches!(d, Decision::Restart(r) if r.commits.iter().any(|c| c.sha == sha))
}

fn decision_row(repo: &str, key: &SignalKey, d: &Decision, now: DateTime<Utc>) -> DecisionRow {
    let (reason, suspect, baseline, restarts) = match d {
        Decision::Revert(r) => (
            "revert".into(),
            r.suspect.clone(),
            r.baseline.clone(),
            vec![],
        ),
        Decision::Restart(r) => (
            "restart".into(),
            String::new(),
            String::new(),
            r.commits
                .iter()
                .map(|c| {
                    let why: Vec<&str> = c.reasons.iter().map(|r| r.as_str()).collect();
                    format!("{}:{}", c.sha, why.join(","))
                })
                .collect(),
        ),
        Decision::Ineligible(i) => (
            i.reason.as_str().to_string(),
            String::new(),
            String::new(),
            vec![],
        ),
    };
    DecisionRow {
        ts: now,
        repo: repo.to_string(),
        workflow: key.workflow.clone(),
        job: key.job.clone(),
        label: match d {
            Decision::Revert(_) => "revert",
            Decision::Restart(_) => "restart",
            Decision::Ineligible(_) => "ineligible",
        }
        .to_string(),
        reason,
        suspect,
        baseline,
        restarts,
        detail: serde_json::to_string(d).unwrap_or_default(),
    }
}

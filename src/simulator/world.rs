//! One seed under one policy: main's commits landing, the runs they and the policy's
//! restarts start (each job's outcome follows from the ground truth: broken, in an
//! outage, or flaky), the events those runs emit, delivered to the policy after its lag.

use super::log::SeedLog;
use super::policy::{Action, Observation, Policy, at};
use super::rng::{Rng, hash_str};
use super::truth::{SimConfig, Truth};
use super::workflow::{JobSpec, Workflow};
use crate::intake::events::{Job, Run};
use crate::intake::states::{Conclusion, RunStatus, Trigger};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// What a policy did on one seed.
#[derive(Debug, Clone, Default)]
pub struct SeedOutcome {
    /// (sha, decided at).
    pub reverts: Vec<(String, i64)>,
    pub restart_runs: u64,
    pub restart_jobs: u64,
    pub restart_job_secs: f64,
    pub events_seen: u64,
    pub ignored_actions: u64,
}

enum Ev {
    Land(Vec<String>, Landing),
    Deliver(Observation),
    Tick,
}

enum Landing {
    Push,
    Revert(String),
    Fix(usize),
}

struct World<'a> {
    cfg: &'a SimConfig,
    wf: &'a Workflow,
    truth: &'a Truth,
    now: i64,
    seq: u64,
    queue: BinaryHeap<Reverse<(i64, u64)>>,
    items: HashMap<u64, Ev>,
    main: HashMap<String, usize>,
    breaking_at: Vec<Option<usize>>,
    fixed_at: Vec<Option<usize>>,
    runs_of: HashMap<String, u64>,
    next_id: u64,
    lag: (f64, f64),
    lag_rng: Rng,
    out: SeedOutcome,
}

/// Runs one seed under one policy; `log` receives what the policy saw and decided.
pub fn simulate(
    cfg: &SimConfig,
    wf: &Workflow,
    truth: &Truth,
    policy: &mut dyn Policy,
    mut log: Option<&mut SeedLog>,
) -> anyhow::Result<SeedOutcome> {
    let mut w = World {
        cfg,
        wf,
        truth,
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        items: HashMap::new(),
        main: HashMap::new(),
        breaking_at: vec![None; truth.breakages.len()],
        fixed_at: vec![None; truth.breakages.len()],
        runs_of: HashMap::new(),
        next_id: 1,
        lag: policy.lag(),
        lag_rng: Rng::new(truth.seed, 0x6c6167),
        out: SeedOutcome::default(),
    };
    for p in &truth.pushes {
        w.schedule(p.at, Ev::Land(p.commits.clone(), Landing::Push));
    }
    for (i, b) in truth.breakages.iter().enumerate() {
        let sha = super::rng::hash_sha(truth.seed ^ 0xf1f1, i as u64);
        w.schedule(b.human_fix_at, Ev::Land(vec![sha], Landing::Fix(i)));
    }
    let end = ((cfg.hours + cfg.tail_hours) * 3600.0) as i64;
    if let Some(every) = policy.tick_every() {
        let mut t = every;
        while t <= end {
            w.schedule(t, Ev::Tick);
            t += every.max(1);
        }
    }
    while let Some(Reverse((t, id))) = w.queue.pop() {
        if t > end {
            break;
        }
        w.now = t;
        let ev = w.items.remove(&id).expect("scheduled");
        let actions = match ev {
            Ev::Land(commits, landing) => {
                w.land(commits, landing);
                continue;
            }
            Ev::Deliver(o) => {
                w.out.events_seen += 1;
                if let Some(l) = log.as_deref_mut() {
                    l.seen(t, &o)?;
                }
                policy.observe(t, &o)?
            }
            Ev::Tick => policy.tick(t)?,
        };
        let decisions = policy.take_decisions();
        if let Some(l) = log.as_deref_mut() {
            l.decisions(&decisions)?;
            l.actions(t, &actions)?;
        }
        for a in actions {
            if let Some(run_id) = w.act(&a) {
                policy.dispatched(&a, run_id);
            }
        }
    }
    Ok(w.out)
}

impl World<'_> {
    fn schedule(&mut self, t: i64, ev: Ev) {
        self.seq += 1;
        self.items.insert(self.seq, ev);
        self.queue.push(Reverse((t, self.seq)));
    }

    /// An event happens at `t`; the policy sees it after its lag.
    fn emit(&mut self, t: i64, o: Observation) {
        let lag = self.lag_rng.uniform(self.lag.0, self.lag.1) as i64;
        self.schedule(t + lag, Ev::Deliver(o));
    }

    fn land(&mut self, commits: Vec<String>, landing: Landing) {
        if let Landing::Fix(b) = landing
            && self.fixed_at[b].is_some()
        {
            return; // reverted already: no fix needed
        }
        let first = self.main.len();
        for sha in &commits {
            let idx = self.main.len();
            self.main.insert(sha.clone(), idx);
            for (b, br) in self.truth.breakages.iter().enumerate() {
                if br.sha == *sha {
                    self.breaking_at[b] = Some(idx);
                }
            }
        }
        match landing {
            Landing::Fix(b) => self.fixed_at[b] = Some(first),
            Landing::Revert(suspect) => {
                for (b, br) in self.truth.breakages.iter().enumerate() {
                    if br.sha == suspect && self.fixed_at[b].is_none() {
                        self.fixed_at[b] = Some(first);
                    }
                }
            }
            Landing::Push => {}
        }
        let head = commits.last().cloned();
        self.emit(
            self.now,
            Observation::Push {
                at: self.now,
                commits,
            },
        );
        if let Some(head) = head {
            self.start_run(&head, None, false);
        }
    }

    /// Carries out an action; a restart answers with its run's id.
    fn act(&mut self, a: &Action) -> Option<u64> {
        match a {
            Action::Restart {
                workflow,
                sha,
                jobs,
            } => {
                if *workflow != self.wf.name || !self.main.contains_key(sha) {
                    self.out.ignored_actions += 1;
                    return None;
                }
                self.out.restart_runs += 1;
                Some(self.start_run(sha, jobs.as_deref(), true))
            }
            Action::Revert { sha } => {
                if !self.main.contains_key(sha) || self.out.reverts.iter().any(|(s, _)| s == sha) {
                    self.out.ignored_actions += 1;
                    return None;
                }
                self.out.reverts.push((sha.clone(), self.now));
                let revert = super::rng::hash_sha(hash_str(sha), 0x5e7e);
                let when = self.now + (self.cfg.revert_land_mins * 60.0) as i64;
                self.schedule(when, Ev::Land(vec![revert], Landing::Revert(sha.clone())));
                None
            }
        }
    }

    /// Whether the commit at `idx` carries a breakage of this job.
    fn broken(&self, idx: usize, job: &str) -> bool {
        self.truth.breakages.iter().enumerate().any(|(b, br)| {
            br.job == job
                && self.breaking_at[b].is_some_and(|i| i <= idx)
                && self.fixed_at[b].is_none_or(|f| f > idx)
        })
    }

    fn in_outage(&self, runner: &str, t: i64) -> bool {
        self.truth
            .outages
            .iter()
            .any(|o| o.runner == runner && o.start <= t && t < o.end)
    }

    fn start_run(&mut self, sha: &str, selection: Option<&[String]>, restart: bool) -> u64 {
        let ordinal = self.runs_of.entry(sha.to_string()).or_insert(0);
        *ordinal += 1;
        let mut rng = Rng::new(self.truth.seed ^ hash_str(sha), *ordinal);
        let run_id = self.id();
        let created = self.now + if restart { 15 } else { 5 };
        let idx = self.main[sha];
        let mut run = self.run(run_id, sha, created, restart);
        self.emit(created, Observation::Run(Box::new(run.clone())));
        let mut builds: HashMap<usize, (i64, bool)> = HashMap::new();
        let mut last = created;
        let mut any_failed = false;
        let wf = self.wf;
        for j in wf.select(selection) {
            let spec = &wf.jobs[j];
            let draw = Draw::new(&mut rng, spec, self.cfg.flake_rate);
            let ready = match (spec.build, builds.get(&spec.platform)) {
                (false, Some(&(end, false))) => {
                    let job = self.job(
                        spec,
                        run_id,
                        sha,
                        (created, None, Some(end)),
                        Some(Conclusion::Skipped),
                    );
                    self.emit(end, Observation::Job(Box::new(job)));
                    continue;
                }
                (false, Some(&(end, true))) => end,
                _ => created,
            };
            let start = ready + draw.queue;
            let nominal = spec.minutes * 60.0 * draw.factor;
            let (ok, secs) = if self.in_outage(spec.runner, start) {
                (false, draw.outage_secs)
            } else if self.broken(idx, &spec.name) {
                (false, nominal * draw.fraction.max(0.5))
            } else if draw.flake {
                (false, nominal * draw.fraction)
            } else {
                (true, nominal)
            };
            let end = start + secs as i64;
            if spec.build {
                builds.insert(spec.platform, (end, ok));
            }
            if restart {
                self.out.restart_jobs += 1;
                self.out.restart_job_secs += secs;
            }
            any_failed |= !ok;
            last = last.max(end);
            let conclusion = if ok {
                Conclusion::Success
            } else {
                Conclusion::Failure
            };
            let job = self.job(spec, run_id, sha, (created, Some(start), None), None);
            let done = self.job_done(job.clone(), end, conclusion);
            self.emit(start, Observation::Job(Box::new(job)));
            self.emit(end, Observation::Job(Box::new(done)));
        }
        run.status = RunStatus::Completed;
        run.conclusion = Some(if any_failed {
            Conclusion::Failure
        } else {
            Conclusion::Success
        });
        run.updated_at = Some(at(last));
        self.emit(last, Observation::Run(Box::new(run)));
        run_id
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn run(&self, id: u64, sha: &str, created: i64, restart: bool) -> Run {
        Run {
            id,
            name: self.wf.name.clone(),
            path: format!(".github/workflows/{}.yml", self.wf.name),
            head_sha: sha.to_string(),
            head_branch: Some(if restart {
                format!("trunk/{sha}")
            } else {
                "main".into()
            }),
            event: if restart {
                Trigger::WorkflowDispatch
            } else {
                Trigger::Push
            },
            status: RunStatus::Requested,
            conclusion: None,
            run_attempt: 1,
            workflow_id: 1,
            created_at: at(created),
            updated_at: None,
            html_url: String::new(),
            url: String::new(),
        }
    }

    /// A job: created, started (in progress) or, with a conclusion, completed at `times.2`.
    fn job(
        &mut self,
        spec: &JobSpec,
        run_id: u64,
        sha: &str,
        times: (i64, Option<i64>, Option<i64>),
        conclusion: Option<Conclusion>,
    ) -> Job {
        Job {
            id: self.id(),
            run_id,
            run_attempt: 1,
            name: spec.name.clone(),
            workflow_name: self.wf.name.clone(),
            head_sha: sha.to_string(),
            head_branch: None,
            status: if conclusion.is_some() {
                RunStatus::Completed
            } else {
                RunStatus::InProgress
            },
            conclusion,
            created_at: Some(at(times.0)),
            started_at: times.1.map(at),
            completed_at: times.2.map(at),
            labels: vec![spec.runner.to_string()],
            ..Default::default()
        }
    }

    fn job_done(&self, mut job: Job, end: i64, conclusion: Conclusion) -> Job {
        job.status = RunStatus::Completed;
        job.conclusion = Some(conclusion);
        job.completed_at = Some(at(end));
        job
    }
}

/// A job's random draws, always taken in the same order so that streams stay aligned.
struct Draw {
    queue: i64,
    factor: f64,
    flake: bool,
    fraction: f64,
    outage_secs: f64,
}

impl Draw {
    fn new(rng: &mut Rng, spec: &JobSpec, flake_rate: f64) -> Draw {
        let gpu = spec.runner.contains("gpu");
        Draw {
            queue: (rng.uniform(0.5, if gpu { 15.0 } else { 5.0 }) * 60.0) as i64,
            factor: rng.uniform(0.85, 1.25),
            flake: rng.chance(flake_rate),
            fraction: rng.uniform(0.2, 1.0),
            outage_secs: rng.uniform(60.0, 240.0),
        }
    }
}

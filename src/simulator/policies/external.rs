//! `--policy-cmd CMD`: any program as a policy. At each of its ticks the simulator writes
//! one JSON line on its stdin, the state it may see:
//!
//! `{"now": "<RFC 3339>", "signals": [{"workflow", "job", "commits": [{"sha", "events":
//! [{"status", "started_at", "ended_at", "run_id", "attempt", "job_name", "job_id",
//! "failed_jobs"?, "run_created_at"?, "rerun"?}]}]}]}`
//!
//! (failing signals only; every commit of the window, newest first), and reads back one
//! JSON line of actions: `{"restarts": [{"workflow", "sha", "jobs": [..]?}], "reverts":
//! [{"sha"}]}` (both optional; `jobs` absent: the whole workflow).

use super::judge::Judge;
use crate::decisions::DecisionConfig;
use crate::signals::SignalCommit;
use crate::simulator::policy::{Action, DecisionRecord, Observation, Policy, at};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

#[derive(Serialize)]
struct SignalState<'a> {
    workflow: &'a str,
    job: &'a str,
    commits: &'a [SignalCommit],
}

#[derive(Deserialize)]
struct RestartWanted {
    workflow: String,
    sha: String,
    #[serde(default)]
    jobs: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RevertWanted {
    sha: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    #[serde(default)]
    restarts: Vec<RestartWanted>,
    #[serde(default)]
    reverts: Vec<RevertWanted>,
}

pub struct External {
    judge: Judge,
    command: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    tick_secs: i64,
}

impl External {
    /// Starts `sh -c CMD` (one process per seed, so a stateful policy starts afresh).
    pub fn start(command: &str, tick_secs: i64, window_hours: f64) -> Result<External> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the policy command {command:?}"))?;
        let stdin = child.stdin.take().context("policy command: no stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("policy command: no stdout")?);
        Ok(External {
            judge: Judge::new(DecisionConfig::pytorch(), window_hours),
            command: command.to_string(),
            child,
            stdin,
            stdout,
            tick_secs,
        })
    }

    fn ask(&mut self, now: i64) -> Result<Answer> {
        let h = &self.judge.history;
        let signals: Vec<_> = h.failing_keys().map(|k| (k.clone(), h.signal(k))).collect();
        let state: Vec<SignalState> = signals
            .iter()
            .map(|(k, s)| SignalState {
                workflow: &k.workflow,
                job: &k.job,
                commits: &s.commits,
            })
            .collect();
        let line = serde_json::to_string(&serde_json::json!({"now": at(now), "signals": state}))?;
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .with_context(|| format!("the policy command {:?} stopped reading", self.command))?;
        let mut answer = String::new();
        let n = self
            .stdout
            .read_line(&mut answer)
            .with_context(|| format!("reading from the policy command {:?}", self.command))?;
        if n == 0 {
            bail!(
                "the policy command {:?} exited without answering",
                self.command
            );
        }
        serde_json::from_str(answer.trim()).with_context(|| {
            let shown: String = answer.trim().chars().take(200).collect();
            format!(
                "the policy command {:?} answered something that is not an actions line: {shown:?}",
                self.command
            )
        })
    }
}

impl Drop for External {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Policy for External {
    fn name(&self) -> &str {
        "external"
    }

    fn lag(&self) -> (f64, f64) {
        (1.0, 3.0)
    }

    fn tick_every(&self) -> Option<i64> {
        Some(self.tick_secs)
    }

    fn observe(&mut self, now: i64, o: &Observation) -> Result<Vec<Action>> {
        self.judge.observe(now, o);
        Ok(vec![])
    }

    fn tick(&mut self, now: i64) -> Result<Vec<Action>> {
        let answer = self.ask(now)?;
        let restarts = answer.restarts.into_iter().map(|r| Action::Restart {
            workflow: r.workflow,
            sha: r.sha,
            jobs: r.jobs,
        });
        let reverts = answer
            .reverts
            .into_iter()
            .map(|r| Action::Revert { sha: r.sha });
        Ok(restarts.chain(reverts).collect())
    }

    fn take_decisions(&mut self) -> Vec<DecisionRecord> {
        vec![]
    }
}

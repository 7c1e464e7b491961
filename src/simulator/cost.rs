//! The engine's cost at PyTorch's scale: a window of `commits` commits, `workflows`
//! workflows and about `signals` signals, every signal with a job on every commit. Per
//! event the engine records the job, builds that one signal and decides it; a push
//! re-decides every failing signal.

use crate::decisions::{DecisionConfig, decide};
use crate::intake::events::Job;
use crate::intake::states::{Conclusion, RunStatus};
use crate::signals::{History, SignalKey};
use crate::simulator::policy::at;
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub commits: usize,
    pub workflows: usize,
    pub signals: usize,
    pub failing_signals: usize,
    pub jobs_recorded: usize,
    /// One event: record the job, build its signal, decide it (median, p99, max).
    pub per_event_micros: (f64, f64, f64),
    /// Every failing signal built and decided (what a push does).
    pub all_failing_millis: f64,
    /// Every signal built and decided.
    pub all_signals_millis: f64,
}

fn job(id: u64, workflow: usize, signal: usize, sha: &str, failed: bool, minute: i64) -> Job {
    Job {
        id,
        run_id: id / 1000 + 1,
        run_attempt: 1,
        name: format!("platform-{signal} / test (config{signal}, 1, 2, linux.2xlarge)"),
        workflow_name: format!("workflow-{workflow}"),
        head_sha: sha.to_string(),
        head_branch: Some("main".into()),
        status: RunStatus::Completed,
        conclusion: Some(if failed {
            Conclusion::Failure
        } else {
            Conclusion::Success
        }),
        created_at: Some(at(minute * 60)),
        started_at: Some(at(minute * 60 + 60)),
        completed_at: Some(at(minute * 60 + 3600)),
        ..Default::default()
    }
}

/// Builds the window and times the engine on it.
pub fn measure(commits: usize, workflows: usize, signals: usize) -> Cost {
    let per_workflow = signals.div_ceil(workflows.max(1));
    let mut h = History::new();
    let mut id = 0u64;
    for c in 0..commits {
        let sha = format!("{c:040x}");
        h.push(&[sha.as_str()], at(c as i64 * 360));
        for w in 0..workflows {
            for s in 0..per_workflow {
                id += 1;
                // One signal in ten broke at the middle of the window; one in fifty flakes.
                let broken = s.is_multiple_of(10) && c >= commits / 2;
                let flaky = s % 50 == 7 && c.is_multiple_of(13);
                h.record_job(&job(id, w, s, &sha, broken || flaky, c as i64 * 6));
            }
        }
    }
    let cfg = DecisionConfig::default();
    let failing: Vec<SignalKey> = h.failing_keys().cloned().collect();
    let newest = format!("{:040x}", commits - 1);
    let mut times = Vec::new();
    for i in 0..2000u64 {
        let s = (i as usize * 7) % per_workflow;
        let w = i as usize % workflows;
        let j = job(
            id + 1 + i,
            w,
            s,
            &newest,
            s.is_multiple_of(10),
            commits as i64 * 6,
        );
        let t = Instant::now();
        if let Some(k) = h.record_job(&j) {
            std::hint::black_box(decide(&h.signal(&k), &cfg));
        }
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((q * times.len() as f64) as usize).min(times.len() - 1)];
    let t = Instant::now();
    for k in &failing {
        std::hint::black_box(decide(&h.signal(k), &cfg));
    }
    let all_failing_millis = t.elapsed().as_secs_f64() * 1e3;
    let keys: Vec<SignalKey> = h.keys().cloned().collect();
    let t = Instant::now();
    for k in &keys {
        std::hint::black_box(decide(&h.signal(k), &cfg));
    }
    Cost {
        commits,
        workflows,
        signals: keys.len(),
        failing_signals: failing.len(),
        jobs_recorded: id as usize,
        per_event_micros: (pick(0.5), pick(0.99), times[times.len() - 1]),
        all_failing_millis,
        all_signals_millis: t.elapsed().as_secs_f64() * 1e3,
    }
}

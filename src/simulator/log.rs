//! `--out DIR`: per seed, the ground truth and, per policy, the events it saw, the
//! decisions it made (when a signal's decision changed) and its actions, as JSON lines.
//! The format is documented in bench/README.md.

use super::policy::{Action, DecisionRecord, Observation};
use super::truth::Truth;
use anyhow::{Context, Result};
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes one seed's ground truth: one line per push, breakage and outage.
pub fn write_truth(dir: &Path, truth: &Truth) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("truth.jsonl");
    let mut w = BufWriter::new(
        File::create(&path).with_context(|| format!("creating {}", path.display()))?,
    );
    for p in &truth.pushes {
        line(
            &mut w,
            &serde_json::json!({"kind": "push", "at": p.at, "commits": p.commits}),
        )?;
    }
    for b in &truth.breakages {
        line(
            &mut w,
            &serde_json::json!({"kind": "breakage", "breakage": b}),
        )?;
    }
    for o in &truth.outages {
        line(&mut w, &serde_json::json!({"kind": "outage", "outage": o}))?;
    }
    w.flush()?;
    Ok(())
}

fn line(w: &mut impl Write, v: &impl Serialize) -> Result<()> {
    serde_json::to_writer(&mut *w, v)?;
    w.write_all(b"\n")?;
    Ok(())
}

/// One policy's view of one seed.
pub struct SeedLog {
    events: BufWriter<File>,
    decisions: BufWriter<File>,
    path: PathBuf,
}

impl SeedLog {
    pub fn create(dir: &Path, policy: &str) -> Result<SeedLog> {
        let open = |suffix: &str| -> Result<BufWriter<File>> {
            let p = dir.join(format!("{policy}.{suffix}.jsonl"));
            Ok(BufWriter::new(
                File::create(&p).with_context(|| format!("creating {}", p.display()))?,
            ))
        };
        Ok(SeedLog {
            events: open("events")?,
            decisions: open("decisions")?,
            path: dir.to_path_buf(),
        })
    }

    pub fn seen(&mut self, t: i64, o: &Observation) -> Result<()> {
        let v = match o {
            Observation::Push { at, commits } => {
                serde_json::json!({"seen_at": t, "kind": "push", "at": at, "commits": commits})
            }
            Observation::Job(j) => serde_json::json!({
                "seen_at": t, "kind": "job", "sha": j.head_sha, "run_id": j.run_id,
                "attempt": j.run_attempt, "job_id": j.id, "name": j.name, "status": j.status,
                "conclusion": j.conclusion, "started_at": j.started_at, "completed_at": j.completed_at,
            }),
            Observation::Run(r) => serde_json::json!({
                "seen_at": t, "kind": "run", "sha": r.head_sha, "run_id": r.id, "event": r.event,
                "status": r.status, "conclusion": r.conclusion, "created_at": r.created_at,
            }),
        };
        line(&mut self.events, &v)
    }

    pub fn decisions(&mut self, d: &[DecisionRecord]) -> Result<()> {
        for r in d {
            line(
                &mut self.decisions,
                &serde_json::json!({"kind": "decision", "record": r}),
            )?;
        }
        Ok(())
    }

    pub fn actions(&mut self, t: i64, a: &[Action]) -> Result<()> {
        for x in a {
            line(
                &mut self.decisions,
                &serde_json::json!({"kind": "action", "at": t, "action": x}),
            )?;
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        self.events
            .flush()
            .and(self.decisions.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

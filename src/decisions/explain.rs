//! A decision as the signals grid shows it (`signals::grid::Explained`): the grid sits in
//! the layer below, so the decisions explain themselves to it.

use super::rules::{Decision, Revert};
use crate::signals::grid::{Explained, Verdict, VerdictKind};

fn revert_reason(r: &Revert) -> String {
    let mut why = format!(
        "{} failure and {} success event(s)",
        r.failure_events, r.success_events
    );
    if !r.newer_failing.is_empty() {
        why.push_str(&format!(
            "; {} newer commit(s) fail too",
            r.newer_failing.len()
        ));
    }
    why
}

impl Explained for Decision {
    fn verdict(&self) -> Verdict {
        match self {
            Decision::Revert(r) => Verdict {
                kind: VerdictKind::Revert,
                label: self.label().to_string(),
                reason: revert_reason(r),
                suspect: Some(r.suspect.clone()),
                baseline: Some(r.baseline.clone()),
                restart: Vec::new(),
            },
            Decision::Restart(r) => Verdict {
                kind: VerdictKind::Restart,
                label: self.label().to_string(),
                reason: r
                    .commits
                    .iter()
                    .map(|c| {
                        let why: Vec<&str> = c.reasons.iter().map(|r| r.as_str()).collect();
                        format!("{}: {}", c.sha.get(..7).unwrap_or(&c.sha), why.join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                suspect: None,
                baseline: None,
                restart: r.commits.iter().map(|c| c.sha.clone()).collect(),
            },
            Decision::Ineligible(i) => Verdict {
                kind: VerdictKind::Ineligible,
                label: self.label().to_string(),
                reason: i.detail.clone(),
                suspect: None,
                baseline: None,
                restart: Vec::new(),
            },
        }
    }
}

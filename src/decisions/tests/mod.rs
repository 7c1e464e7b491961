//! The rules on hand-written grids. A grid lists commits newest first; a cell is its
//! events, `F20` a failure started at minute 20, `S` a success, `P` pending.

use super::*;
use crate::signals::{Outcome, Signal, SignalCommit, SignalEvent, SignalKey, Track};
use chrono::{Duration, TimeZone, Utc};
use proptest::prelude::*;

/// `F20`: a failure started at minute 20 on shard 1; `F20/3`: on shard 3 (`F20/2,3`:
/// shards 2 and 3); a trailing `r` marks a restart run (`F20/3r`), the runs that pair.
fn event(token: &str, run: u64) -> SignalEvent {
    let (token, rerun) = match token.strip_suffix('r') {
        Some(t) => (t, true),
        None => (token, false),
    };
    let (token, shards) = token.split_once('/').unwrap_or((token, "1"));
    let (status, min) = token.split_at(1);
    let status = match status {
        "F" => Outcome::Failure,
        "S" => Outcome::Success,
        "P" => Outcome::Pending,
        other => panic!("bad token {other}"),
    };
    let shard = |n: &str| format!("linux / test (default, {n}, 3)");
    let failed_jobs: Vec<String> = match status {
        Outcome::Failure => shards.split(',').map(shard).collect(),
        _ => Vec::new(),
    };
    SignalEvent {
        status,
        started_at: Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap()
            + Duration::minutes(min.parse().unwrap()),
        run_id: run,
        attempt: 1,
        job_name: failed_jobs.first().cloned().unwrap_or_else(|| shard("1")),
        job_id: run * 10,
        failed_jobs,
        rerun,
        ..SignalEvent::default()
    }
}

/// Commits are named c<n> from the oldest (c1) up.
fn grid(cells: &[&str]) -> Signal {
    let n = cells.len();
    let commits = cells
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            let events = cell
                .split_whitespace()
                .enumerate()
                .map(|(j, t)| event(t, (i * 10 + j) as u64 + 1))
                .collect();
            SignalCommit::new(format!("c{}", n - i), events)
        })
        .collect();
    Signal {
        key: SignalKey::new("trunk", "linux / test (default)"),
        track: Track::Job,
        commits,
    }
}

fn engine(cells: &[&str]) -> Decision {
    decide(&grid(cells), &DecisionConfig::default())
}

/// The engine, restarting on a first failure as PyTorch does.
fn eager(cells: &[&str]) -> Decision {
    let cfg = DecisionConfig {
        restart_on_first_failure: true,
        ..DecisionConfig::default()
    };
    decide(&grid(cells), &cfg)
}

/// The engine with session 6's outage guard on (a failure after the newest green).
fn after_green(cells: &[&str]) -> Decision {
    let cfg = DecisionConfig {
        require_failure_after_green: true,
        ..DecisionConfig::default()
    };
    decide(&grid(cells), &cfg)
}

fn pytorch(cells: &[&str]) -> Decision {
    decide(&grid(cells), &DecisionConfig::pytorch())
}

fn reason(d: &Decision) -> IneligibleReason {
    match d {
        Decision::Ineligible(i) => i.reason,
        other => panic!("expected ineligible, got {other:?}"),
    }
}

/// (sha, reasons) of a restart, newest first.
fn restarts(d: &Decision) -> Vec<(String, Vec<RestartReason>)> {
    match d {
        Decision::Restart(r) => r
            .commits
            .iter()
            .map(|c| (c.sha.clone(), c.reasons.clone()))
            .collect(),
        other => panic!("expected restart, got {other:?}"),
    }
}

fn shas(d: &Decision) -> Vec<String> {
    restarts(d).into_iter().map(|(s, _)| s).collect()
}

use IneligibleReason as I;
use RestartReason as R;

#[test]
fn ineligible_reasons_each_on_its_grid() {
    assert_eq!(reason(&engine(&["S10", "S5"])), I::NoFailures);
    assert_eq!(reason(&engine(&["S40", "F30", "S5"])), I::Fixed);
    assert_eq!(reason(&engine(&["F50", "F45 S46"])), I::NoPartition);
    assert_eq!(reason(&engine(&["F50", "F45 S46", "S10"])), I::Flaky);
    // Nothing to restart (the baseline is running) and no success yet after the failure.
    assert_eq!(
        reason(&pytorch(&["F30", "F20 F25", "S10 P35"])),
        I::InfraNotConfirmed
    );
    // The suspect is running: it is not restarted, and three failures are not there yet.
    assert_eq!(
        reason(&pytorch(&["F20 P40", "S10 S30"])),
        I::InsufficientFailures
    );
    // Three failures, but only one on the suspect of a job-track signal.
    assert_eq!(
        reason(&pytorch(&["F25 F26", "F20 P40", "S10 S30"])),
        I::InsufficientFailures
    );
    let three = DecisionConfig {
        min_success_events: 3,
        ..DecisionConfig::pytorch()
    };
    let d = decide(&grid(&["F25", "F20 F22", "S10 S30 P40"]), &three);
    assert_eq!(reason(&d), I::InsufficientSuccesses);
    assert_eq!(
        reason(&pytorch(&["F30 F31", "F20 F40", "P25", "S10 S35"])),
        I::PendingGap
    );
    // The engine's guard: all of PyTorch's checks pass, but no failure started after the
    // newest green baseline, and a newer commit is still running (it may give one).
    let grid_ = ["F21 P50", "F20 F22r", "S10 S23r"];
    assert_eq!(reason(&after_green(&grid_)), I::NoFailureAfterGreen);
    assert!(matches!(pytorch(&grid_), Decision::Revert(_)));
    assert!(matches!(engine(&grid_), Decision::Revert(_)));
    // The engine holds restarts on a first failure: one failure on the newest finished
    // commit waits for the next commit (a running one above does not count).
    let patient = DecisionConfig::default();
    let d = decide(&grid(&["P50", "F20", "S10"]), &patient);
    assert_eq!(reason(&d), I::FirstFailure);
    assert!(matches!(
        decide(&grid(&["F30", "F20", "S10"]), &patient),
        Decision::Restart(_)
    ));
}

#[test]
fn born_red_has_no_baseline() {
    assert_eq!(reason(&engine(&["F30", "F20", ""])), I::NoSuccesses);
    assert_eq!(reason(&engine(&["F30", "F20 F21", "P5"])), I::NoSuccesses);
}

#[test]
fn fixed_looks_at_the_newest_finished_commit_only() {
    // Pending and empty commits above do not count; a success at the top does.
    assert_eq!(reason(&engine(&["P60", "", "S50", "F40", "S10"])), I::Fixed);
    assert!(matches!(
        eager(&["P60", "", "F50", "S10"]),
        Decision::Restart(_)
    ));
}

#[test]
fn flaky_is_any_commit_that_both_passed_and_failed() {
    // PyTorch: anywhere in the window, before any restart.
    assert_eq!(reason(&pytorch(&["F50", "F40", "S10", "S5 F6"])), I::Flaky);
    assert_eq!(reason(&pytorch(&["F20", "S10", "S5 F6"])), I::Flaky);
    // The engine: on the failing side only; an older flake below the baseline does not
    // blind the signal.
    assert_eq!(reason(&engine(&["F20 F25", "F15 S16", "S10"])), I::Flaky);
    assert!(matches!(
        eager(&["F20", "S10", "S5 F6"]),
        Decision::Restart(_)
    ));
}

#[test]
fn the_first_failure_asks_for_the_suspect_again_and_its_parent() {
    // c2 failed once, its parent c1 passed once: restart both.
    let d = eager(&["F20", "S10"]);
    assert_eq!(
        restarts(&d),
        vec![
            ("c2".into(), vec![R::FewFailures, R::SameRevisionRepro]),
            (
                "c1".into(),
                vec![R::PairedBaseline, R::NeedsLaterSuccess, R::FewSuccesses]
            ),
        ]
    );
}

#[test]
fn each_restart_reason() {
    // The failure is older than every success: the suspect must fail again later.
    let d = eager(&["F5", "S10 S12"]);
    assert_eq!(
        restarts(&d),
        vec![
            (
                "c2".into(),
                vec![R::NeedsLaterFailure, R::FewFailures, R::SameRevisionRepro]
            ),
            ("c1".into(), vec![R::PairedBaseline]),
        ]
    );
    // Enough failures and a sandwich, but the suspect failed once: reproduce it.
    assert_eq!(
        restarts(&pytorch(&["F25 F26", "F20", "S10 S30"])),
        vec![("c2".into(), vec![R::SameRevisionRepro])]
    );
    // Everything else is there and settled, but no failure outlived the green baseline.
    assert_eq!(
        restarts(&after_green(&["F21", "F20 F22r", "S10 S23r"])),
        vec![
            ("c2".into(), vec![R::FailureAfterGreen]),
            ("c1".into(), vec![R::PairedBaseline]),
        ]
    );
    // One success on the baseline, and none after the failure.
    let d = pytorch(&["F20 F40 F41", "S10"]);
    assert_eq!(
        restarts(&d),
        vec![("c1".into(), vec![R::NeedsLaterSuccess, R::FewSuccesses])]
    );
}

#[test]
fn untested_commits_between_the_sides_are_restarted_all_or_bisected() {
    let cells = ["F30", "F20", "", "", "", "S10 S15"];
    let d = engine(&cells);
    assert_eq!(
        restarts(&d),
        vec![
            ("c5".into(), vec![R::FewFailures]),
            ("c4".into(), vec![R::Gap, R::PairedBaseline]),
            ("c3".into(), vec![R::Gap]),
            ("c2".into(), vec![R::Gap]),
            ("c1".into(), vec![R::NeedsLaterSuccess]),
        ]
    );
    let one = DecisionConfig {
        bisection_limit: Some(1),
        ..DecisionConfig::default()
    };
    assert_eq!(shas(&decide(&grid(&cells), &one)), ["c5", "c4", "c3", "c1"]);
    // A running gap commit is covered: it uses the budget and splits the gap.
    let cells = ["F30", "F20", "", "P25", "", "", "", "S10 S15"];
    let two = DecisionConfig {
        bisection_limit: Some(2),
        ..DecisionConfig::default()
    };
    assert_eq!(shas(&decide(&grid(&cells), &two)), ["c7", "c6", "c3", "c1"]);
}

#[test]
fn a_commit_with_a_pending_event_is_never_restarted() {
    let d = eager(&["F20 P40", "S10"]);
    assert_eq!(shas(&d), ["c1"]);
    let d = pytorch(&["F20", "S10 P30"]);
    assert_eq!(shas(&d), ["c2"]);
    // The engine pairs the suspect with its parent: it waits for the parent's running
    // restart, but not for its running push run (which cannot pair): the parent is
    // restarted alongside the suspect.
    assert!(matches!(
        eager(&["F20", "S10 P30r"]),
        Decision::Ineligible(_)
    ));
    assert_eq!(
        restarts(&eager(&["F20", "S10 P30"])),
        vec![
            ("c2".into(), vec![R::FewFailures, R::SameRevisionRepro]),
            ("c1".into(), vec![R::PairedBaseline]),
        ]
    );
}

#[test]
fn the_sandwich_reverts_with_its_evidence() {
    let d = engine(&["F25 F35", "F20 F32r", "S10 S31r"]);
    let Decision::Revert(r) = d else {
        panic!("expected a revert, got {d:?}")
    };
    assert_eq!((r.suspect.as_str(), r.baseline.as_str()), ("c2", "c1"));
    assert_eq!(r.newer_failing, ["c3"]);
    assert_eq!((r.failure_events, r.success_events), (4, 2));
    assert_eq!((r.run_id, r.job_id), (11, 110));
    // Not sandwiched: the second success started before the failure, and the baseline
    // is running, so it waits.
    assert_eq!(
        reason(&pytorch(&["F25 F35", "F20 F32", "S10 S15 P40"])),
        I::InfraNotConfirmed
    );
}

#[test]
fn decisions_group_into_one_revert_per_commit_and_restarts_per_workflow_and_commit() {
    let a = grid(&["F25 F35", "F20 F32r", "S10 S31r"]);
    let mut b = a.clone();
    b.key = SignalKey::new("trunk", "linux / build");
    let mut c = grid(&["F30", "F20", "S10"]);
    c.key = SignalKey::new("trunk", "win / test (default)");
    let cfg = DecisionConfig::default();
    let decided: Vec<_> = [a, b, c]
        .into_iter()
        .map(|s| (s.key.clone(), decide(&s, &cfg)))
        .collect();
    let p = plan(decided.iter().map(|(k, d)| (k, d)));
    assert_eq!(p.reverts.len(), 1);
    assert_eq!(p.reverts["c2"].len(), 2);
    let jobs = &p.restarts[&("trunk".to_string(), "c2".to_string())];
    assert_eq!(jobs.iter().collect::<Vec<_>>(), ["win / test (default)"]);
    assert_eq!(p.restarts.len(), 2);
}

#[test]
fn reasons_have_stable_snake_case_names() {
    assert_eq!(I::NoFailureAfterGreen.as_str(), "no_failure_after_green");
    assert_eq!(R::SameRevisionRepro.as_str(), "same_revision_repro");
    let d = engine(&["S10", "S5"]);
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["decision"], "ineligible");
    assert_eq!(json["reason"], "no_failures");
    assert_eq!(d.label(), "no_failures");
}

#[test]
fn config_validation_names_the_setting() {
    assert!(DecisionConfig::default().validate().is_ok());
    let bad = DecisionConfig {
        min_success_events: 0,
        ..DecisionConfig::default()
    };
    assert!(bad.validate().unwrap_err().contains("min_success_events"));
}

fn any_cell() -> impl Strategy<Value = String> {
    prop::collection::vec((0..3usize, 0..90u32, 1..4u32, any::<bool>()), 0..4).prop_map(|evs| {
        evs.iter()
            .map(|(s, m, shard, rerun)| {
                let r = if *rerun { "r" } else { "" };
                format!("{}{m}/{shard}{r}", ["F", "S", "P"][*s])
            })
            .collect::<Vec<_>>()
            .join(" ")
    })
}

proptest! {
    /// On any grid: no panic; a restart never names a commit with a pending event; a
    /// revert names a failing suspect whose parent side passed, with the thresholds met.
    #[test]
    fn decisions_hold_their_invariants(cells in prop::collection::vec(any_cell(), 0..12)) {
        let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
        let s = grid(&cells);
        let cfg = DecisionConfig::default();
        match decide(&s, &cfg) {
            Decision::Restart(r) => {
                prop_assert!(!r.commits.is_empty());
                for c in &r.commits {
                    // Only a suspect's parent is restarted while its push run runs.
                    let commit = s.commits.iter().find(|x| x.sha == c.sha).unwrap();
                    let running_restart = commit
                        .events
                        .iter()
                        .any(|e| e.status == Outcome::Pending && e.rerun);
                    prop_assert!(!running_restart, "{c:?}");
                    prop_assert!(
                        !commit.has_pending() || c.reasons == [R::PairedBaseline],
                        "{c:?}"
                    );
                }
            }
            Decision::Revert(r) => {
                let suspect = s.commits.iter().find(|x| x.sha == r.suspect).unwrap();
                prop_assert!(suspect.count(Outcome::Failure) >= cfg.suspect_failures);
                prop_assert!(r.failure_events >= cfg.min_failure_events);
                prop_assert!(r.success_events >= cfg.min_success_events);
            }
            Decision::Ineligible(_) => {}
        }
    }
}

mod repro;

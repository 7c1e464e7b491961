//! The decider without I/O: events in, rows, asks and culprits out.

use super::*;
use crate::intake::events::{Job, PushEvent, Run, WorkflowJobEvent, WorkflowRunEvent};
use crate::intake::states::{Action, Conclusion, RunStatus, Trigger};
use crate::restart::RestartAction;

const REPO: &str = "pytorch/pytorch";
const JOB: &str = "linux-jammy / test (default, 1, 1, linux.4xlarge)";

fn policy() -> Policy {
    Policy {
        repos: vec![REPO.into()],
        workflows: vec!["trunk".into()],
        main_branch: "main".into(),
        max_restarts: 1,
        action: RestartAction::Run,
        ingest: false,
        min_spacing: chrono::Duration::zero(),
        backoff_base: chrono::Duration::zero(),
        backoff_max: chrono::Duration::zero(),
        max_restarts_per_hour: 100,
        kill_switch_label: None,
        simulate: false,
    }
}

fn at(min: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_780_000_000, 0).expect("time")
        + chrono::Duration::minutes(min)
}

fn sha(i: u32) -> String {
    format!("{i:040x}")
}

fn push(i: u32) -> Event {
    Event::Push(PushEvent {
        repo: REPO.into(),
        installation_id: Some(9),
        git_ref: "refs/heads/main".into(),
        before: sha(i.saturating_sub(1)),
        after: sha(i),
        commits: vec![sha(i)],
        forced: false,
        deleted: false,
        pushed_at: Some(at(i64::from(i) * 10)),
    })
}

/// A run of `trunk` on commit `i` (a restart when `restart`), id `run`.
fn run(i: u32, run: u64, restart: bool, status: RunStatus) -> Event {
    Event::WorkflowRun(WorkflowRunEvent {
        action: Action::Completed,
        repo: REPO.into(),
        installation_id: Some(9),
        run: Run {
            id: run,
            name: "trunk".into(),
            path: ".github/workflows/trunk.yml".into(),
            head_sha: sha(i),
            head_branch: Some(branch(i, restart)),
            event: if restart {
                Trigger::WorkflowDispatch
            } else {
                Trigger::Push
            },
            status,
            conclusion: None,
            run_attempt: 1,
            workflow_id: 1,
            // The App's restarts of a commit and its parent are created together (a pair).
            created_at: if restart {
                at(100)
            } else {
                at(i64::from(i) * 10)
            },
            updated_at: None,
            html_url: String::new(),
            url: String::new(),
        },
    })
}

fn branch(i: u32, restart: bool) -> String {
    if restart {
        format!("trunk/{}", sha(i))
    } else {
        "main".into()
    }
}

/// The job of run `run` on commit `i`, ended at minute `end` with `conclusion`.
fn job(i: u32, run: u64, restart: bool, end: i64, conclusion: Conclusion) -> Event {
    Event::WorkflowJob(WorkflowJobEvent {
        action: Action::Completed,
        repo: REPO.into(),
        installation_id: Some(9),
        job: Job {
            id: run * 10,
            run_id: run,
            run_attempt: 1,
            name: JOB.into(),
            workflow_name: "trunk".into(),
            head_sha: sha(i),
            head_branch: Some(branch(i, restart)),
            status: RunStatus::Completed,
            conclusion: Some(conclusion),
            created_at: Some(at(end - 30)),
            started_at: Some(at(end - 30)),
            completed_at: Some(at(end)),
            ..Job::default()
        },
    })
}

fn feed(d: &Decider, events: &[Event]) -> Decided {
    let mut last = Decided::default();
    for e in events {
        last = d.on_event(e, "d", &policy(), at(200));
    }
    last
}

/// Commits 1..=4 on main: 1 and 2 pass, 3 and 4 fail the same job.
fn breakage_events() -> Vec<Event> {
    let mut events = Vec::new();
    for i in 1..=4 {
        events.push(push(i));
        events.push(run(i, u64::from(i), false, RunStatus::InProgress));
    }
    for i in 1..=4 {
        let c = if i >= 3 {
            Conclusion::Failure
        } else {
            Conclusion::Success
        };
        events.push(job(i, u64::from(i), false, i64::from(i) * 10 + 40, c));
    }
    events
}

fn breakage(d: &Decider) -> Decided {
    feed(d, &breakage_events())
}

#[test]
fn a_breakage_asks_for_the_suspect_and_its_parent_with_the_failing_job() {
    let d = Decider::new(Settings::default());
    let decided = breakage(&d);
    let asked: Vec<&str> = decided
        .asks
        .iter()
        .map(|a| a.asked.key.head_sha.as_str())
        .collect();
    assert!(asked.contains(&sha(3).as_str()), "suspect asked: {asked:?}");
    let suspect = decided.asks.iter().find(|a| a.asked.key.head_sha == sha(3));
    let suspect = suspect.expect("suspect asked");
    assert_eq!(
        suspect.asked.jobs,
        vec!["linux-jammy / test (default)".to_string()]
    );
    assert_eq!(suspect.asked.workflow_file, "trunk.yml");
    assert_eq!(suspect.asked.original_run_id, 3);
    assert_eq!(suspect.asked.installation_id, Some(9));
    assert!(suspect.new, "the decision is new");
    let rows = decided
        .rows
        .iter()
        .filter(|r| matches!(r, Entry::Decision(_)))
        .count();
    assert_eq!(rows, 1, "the changed decision is recorded once");
}

#[test]
fn the_same_decision_again_records_nothing_and_is_not_new() {
    let d = Decider::new(Settings::default());
    breakage(&d);
    let again = d.on_event(
        &job(4, 4, false, 80, Conclusion::Failure),
        "d",
        &policy(),
        at(200),
    );
    assert!(again.rows.is_empty(), "nothing changed: no row");
    assert!(again.asks.iter().all(|a| !a.new));
}

#[test]
fn reproduced_on_the_suspect_and_green_on_the_parent_is_a_culprit() {
    let d = Decider::new(Settings::default());
    breakage(&d);
    // The restarts: the parent (2) passes, then the suspect (3) fails again.
    let decided = feed(
        &d,
        &[
            run(2, 102, true, RunStatus::InProgress),
            run(3, 103, true, RunStatus::InProgress),
            job(2, 102, true, 120, Conclusion::Success),
            job(3, 103, true, 125, Conclusion::Failure),
        ],
    );
    let culprit = decided.blamed.first().expect("a culprit");
    assert_eq!(culprit.sha, sha(3));
    assert_eq!(culprit.pushed_at, Some(at(30)));
    assert_eq!(culprit.signals[0].0.job, "linux-jammy / test (default)");
    assert!(culprit.new);
}

#[test]
fn other_branches_workflows_and_repositories_are_not_kept() {
    let d = Decider::new(Settings::default());
    let mut e = push(1);
    if let Event::Push(p) = &mut e {
        p.git_ref = "refs/heads/feature".into();
    }
    let decided = d.on_event(&e, "d", &policy(), at(0));
    assert!(decided.rows.is_empty());
    assert_eq!(d.history(REPO).map(|h| h.commits().len()), Some(0));
    let off = Decider::new(Settings {
        enabled: false,
        ..Settings::default()
    });
    off.on_event(&push(1), "d", &policy(), at(0));
    assert!(off.history(REPO).is_none(), "off keeps nothing");
}

#[test]
fn a_rebuilt_decider_decides_as_the_live_one() {
    let live = Decider::new(Settings::default());
    let decided = breakage(&live);
    let mut state = SignalState::default();
    for row in decided.rows {
        if let Entry::MainCommit(c) = row {
            state.commits.push(c);
        }
    }
    assert!(
        state.commits.is_empty(),
        "the last event was a job: no commit rows"
    );
    // Rows of every event, as ClickHouse would have them.
    let fresh = Decider::new(Settings::default());
    let mut state = SignalState::default();
    for e in (1..=4).map(push) {
        for row in fresh.on_event(&e, "d", &policy(), at(200)).rows {
            if let Entry::MainCommit(c) = row {
                state.commits.push(c);
            }
        }
    }
    let rebuilt = Decider::new(Settings::default());
    let (commits, _) = rebuilt.rebuild(&state, at(200));
    assert_eq!(commits, 4);
    let order: Vec<String> = rebuilt
        .history(REPO)
        .expect("history")
        .commits()
        .newest_first()
        .map(str::to_string)
        .collect();
    assert_eq!(order, (1..=4).rev().map(sha).collect::<Vec<_>>());
}

/// Rows of every event of `events`, as ClickHouse would keep them.
fn state_of(events: &[Event]) -> SignalState {
    let d = Decider::new(Settings::default());
    let mut state = SignalState::default();
    for e in events {
        for row in d.on_event(e, "d", &policy(), at(200)).rows {
            match row {
                Entry::MainCommit(c) => state.commits.push(c),
                Entry::Run(r) => state.runs.push(r),
                _ => {}
            }
        }
        if let Event::WorkflowJob(j) = e {
            state
                .jobs
                .push(crate::store::rows::JobResultRow::new(&j.repo, &j.job));
        }
    }
    state
}

#[test]
fn a_rebuilt_decider_knows_its_decisions_without_recording_them_again() {
    let events = breakage_events();
    let live = Decider::new(Settings::default());
    feed(&live, &events);
    let rebuilt = Decider::new(Settings::default());
    rebuilt.rebuild(&state_of(&events), at(200));
    assert!(!rebuilt.decisions(REPO).is_empty(), "known at start-up");
    assert_eq!(rebuilt.decisions(REPO), live.decisions(REPO));
    let again = rebuilt.on_event(events.last().expect("an event"), "d", &policy(), at(200));
    assert!(
        again.rows.is_empty(),
        "the same decision is not recorded again"
    );
}

#[test]
fn pushes_in_one_second_or_out_of_order_land_in_the_order_of_their_parents() {
    let same_second = |i: u32| {
        let mut e = push(i);
        if let Event::Push(p) = &mut e {
            p.pushed_at = Some(at(0));
        }
        e
    };
    let d = Decider::new(Settings::default());
    let mut rows = Vec::new();
    for i in [1, 3, 2] {
        rows.extend(d.on_event(&same_second(i), "d", &policy(), at(1)).rows);
    }
    let order = |d: &Decider| -> Vec<String> {
        let h = d.history(REPO).expect("history");
        h.commits().newest_first().map(str::to_string).collect()
    };
    assert_eq!(order(&d), vec![sha(3), sha(2), sha(1)]);
    // Rebuilt from the rows in any order of the same second: the same order.
    let mut state = SignalState::default();
    for row in rows.into_iter().rev() {
        if let Entry::MainCommit(c) = row {
            state.commits.push(c);
        }
    }
    let rebuilt = Decider::new(Settings::default());
    rebuilt.rebuild(&state, at(1));
    assert_eq!(order(&rebuilt), vec![sha(3), sha(2), sha(1)]);
}

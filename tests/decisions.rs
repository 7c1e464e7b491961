//! The decision function alone: no network, no clock, no database.

use autorevert::intake::events::{Event, Run, WorkflowRunEvent};
use autorevert::restart::{Command, Policy, RestartAction, decide};
use autorevert::restart::{Ledger, Status};
use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use std::collections::HashMap;

fn policy(cap: u32, action: RestartAction) -> Policy {
    Policy {
        repos: vec!["pytorch/pytorch".into()],
        workflows: vec!["trunk".into(), "pull".into()],
        main_branch: "main".into(),
        max_restarts: cap,
        action,
        ingest: false,
        min_spacing: chrono::Duration::zero(),
        backoff_base: chrono::Duration::zero(),
        backoff_max: chrono::Duration::zero(),
        max_restarts_per_hour: 10_000,
        kill_switch_label: None,
        simulate: false,
    }
}

#[derive(Debug, Clone)]
struct Spec {
    commit: u8,
    workflow: u8,
    run: u64,
    conclusion: &'static str,
    event: &'static str,
    branch_main: bool,
}

fn run_event(s: &Spec) -> Event {
    let sha = format!("{:040x}", s.commit);
    let name = if s.workflow == 0 { "trunk" } else { "pull" };
    let branch = if s.branch_main {
        "main".to_string()
    } else {
        format!("trunk/{sha}")
    };
    Event::WorkflowRun(WorkflowRunEvent {
        action: "completed".into(),
        repo: "pytorch/pytorch".into(),
        installation_id: Some(1),
        run: Run {
            id: s.run,
            name: name.into(),
            path: format!(".github/workflows/{name}.yml"),
            head_sha: sha,
            head_branch: Some(branch),
            event: s.event.into(),
            status: "completed".into(),
            conclusion: Some(s.conclusion.into()),
            run_attempt: 1,
            workflow_id: 1,
            created_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            updated_at: None,
            html_url: String::new(),
            url: String::new(),
        },
    })
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u8..4,
        0u8..2,
        1u64..6,
        prop::sample::select(vec!["failure", "timed_out", "success", "cancelled"]),
        prop::sample::select(vec!["push", "push", "workflow_dispatch", "pull_request"]),
        prop::bool::weighted(0.8),
    )
        .prop_map(
            |(commit, workflow, run, conclusion, event, branch_main)| Spec {
                commit,
                workflow,
                run,
                conclusion,
                event,
                branch_main,
            },
        )
}

proptest! {
    /// Whatever arrives, in whatever order and however often: at most `cap` dispatches per
    /// (repository, workflow, sha), and only for failed push runs on main.
    #[test]
    fn never_more_dispatches_than_the_cap(specs in prop::collection::vec(spec(), 1..60), cap in 1u32..4) {
        let policy = policy(cap, RestartAction::Run);
        let mut ledger = Ledger::default();
        let mut per_key: HashMap<(u8, u8), u32> = HashMap::new();
        for (i, s) in specs.iter().enumerate() {
            let ev = run_event(s);
            for c in decide(&ev, &format!("d{i}"), &ledger, &policy, Utc::now()) {
                if let Command::Dispatch { restart } = c {
                    prop_assert!(s.event == "push" && s.branch_main);
                    prop_assert!(s.conclusion == "failure" || s.conclusion == "timed_out");
                    prop_assert_eq!(restart.status, Status::Dispatching);
                    *per_key.entry((s.commit, s.workflow)).or_default() += 1;
                    ledger.put(*restart);
                }
            }
        }
        for (k, n) in per_key {
            prop_assert!(n <= cap, "{:?} dispatched {} times with cap {}", k, n, cap);
        }
    }
}

#[test]
fn log_mode_claims_a_dry_run_and_skip_mode_claims_nothing() {
    let s = Spec {
        commit: 1,
        workflow: 0,
        run: 1,
        conclusion: "failure",
        event: "push",
        branch_main: true,
    };
    let ledger = Ledger::default();
    let out = decide(
        &run_event(&s),
        "d",
        &ledger,
        &policy(1, RestartAction::Log),
        Utc::now(),
    );
    match &out[..] {
        [Command::Dispatch { restart }] => {
            assert!(restart.dry_run);
            assert_eq!(restart.status, Status::DryRun);
        }
        other => panic!("{other:?}"),
    }
    let out = decide(
        &run_event(&s),
        "d",
        &ledger,
        &policy(1, RestartAction::Skip),
        Utc::now(),
    );
    assert!(matches!(&out[..], [Command::Skip { reason, .. }] if reason.contains("skip")));
}

#[test]
fn restart_id_is_deterministic_and_dispatch_goes_to_the_workflow_file() {
    let s = Spec {
        commit: 7,
        workflow: 1,
        run: 3,
        conclusion: "timed_out",
        event: "push",
        branch_main: true,
    };
    let out = decide(
        &run_event(&s),
        "d",
        &Ledger::default(),
        &policy(1, RestartAction::Run),
        Utc::now(),
    );
    let Command::Dispatch { restart } = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(restart.workflow_file, "pull.yml");
    assert_eq!(
        restart.restart_id,
        format!("pytorch/pytorch/pull/{:040x}/1", 7)
    );
    assert_eq!(restart.trunk_ref(), format!("trunk/{:040x}", 7));
}

proptest! {
    /// Arbitrary bytes under any event name: parsing answers Ok or Err, never panics.
    #[test]
    fn parsing_never_panics(body in prop::collection::vec(any::<u8>(), 0..2048),
                            event in prop::sample::select(vec!["workflow_run", "workflow_job", "ping", "issues"])) {
        let _ = autorevert::intake::events::parse(event, &body);
    }

    /// Mutated real payloads (a byte flipped, a cut) parse or fail cleanly.
    #[test]
    fn mutated_fixtures_never_panic(cut in 0usize..25_000, flip in 0usize..25_000, byte in any::<u8>()) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/seed-2d3615f/04.workflow_run.completed.original-failure.json");
        let mut body = std::fs::read(path).unwrap();
        if !body.is_empty() {
            let i = flip % body.len();
            body[i] = byte;
        }
        body.truncate(cut.min(body.len()));
        let _ = autorevert::intake::events::parse("workflow_run", &body);
    }

    /// Any header value and body: verification answers true or false, never panics, and a
    /// signature made with another secret never verifies.
    #[test]
    fn signature_check_never_panics(header in ".{0,100}", body in prop::collection::vec(any::<u8>(), 0..512)) {
        let secrets = [secrecy::SecretString::from("s".to_string())];
        let _ = autorevert::intake::signature::verify_signature(&secrets, Some(&header), &body);
        let other = autorevert::intake::signature::sign("not-s", &body);
        prop_assert!(!autorevert::intake::signature::verify_signature(&secrets, Some(&other), &body));
    }
}

fn at(minutes: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).unwrap() + chrono::Duration::minutes(minutes)
}

fn failing(commit: u8, run: u64) -> Event {
    run_event(&Spec {
        commit,
        workflow: 0,
        run,
        conclusion: "failure",
        event: "push",
        branch_main: true,
    })
}

/// Decides at `minute`, claiming a dispatch (with `status`) as the pipeline would.
fn step(
    ledger: &mut Ledger,
    policy: &Policy,
    ev: &Event,
    minute: i64,
    status: Status,
) -> Vec<Command> {
    let out = decide(ev, "d", ledger, policy, at(minute));
    for c in &out {
        if let Command::Dispatch { restart } = c {
            let mut r = (**restart).clone();
            r.times.requested_at = at(minute);
            r.status = status;
            ledger.put(r);
        }
    }
    out
}

fn is_dispatch(out: &[Command]) -> bool {
    matches!(out, [Command::Dispatch { .. }])
}

/// Whether the failure of `(commit, run)` at `minute` is dispatched (and claimed as `status`).
fn dispatches(
    l: &mut Ledger,
    p: &Policy,
    (commit, run): (u8, u64),
    minute: i64,
    status: Status,
) -> bool {
    is_dispatch(&step(l, p, &failing(commit, run), minute, status))
}

fn skip_reason(out: &[Command]) -> String {
    match out {
        [Command::Skip { reason, .. }] => reason.clone(),
        other => panic!("expected a skip, got {other:?}"),
    }
}

#[test]
fn minimum_spacing_between_restarts_of_one_commit() {
    let mut p = policy(5, RestartAction::Run);
    p.min_spacing = chrono::Duration::minutes(20);
    let mut l = Ledger::default();
    assert!(dispatches(&mut l, &p, (1, 1), 0, Status::Dispatched));
    assert!(
        skip_reason(&step(&mut l, &p, &failing(1, 2), 10, Status::Dispatched))
            .contains("minimum spacing is 20 min")
    );
    assert!(dispatches(&mut l, &p, (1, 3), 21, Status::Dispatched));
    // Another commit is not held by this one's spacing.
    assert!(dispatches(&mut l, &p, (2, 4), 22, Status::Dispatched));
}

#[test]
fn backoff_after_failed_dispatches_doubles_up_to_the_max() {
    let mut p = policy(5, RestartAction::Run);
    p.min_spacing = chrono::Duration::minutes(20);
    p.backoff_base = chrono::Duration::minutes(20);
    p.backoff_max = chrono::Duration::minutes(60);
    let mut l = Ledger::default();
    assert!(dispatches(&mut l, &p, (1, 1), 0, Status::DispatchFailed));
    assert!(
        skip_reason(&step(
            &mut l,
            &p,
            &failing(1, 1),
            19,
            Status::DispatchFailed
        ))
        .contains("1 failed dispatch")
    );
    assert!(dispatches(&mut l, &p, (1, 1), 20, Status::DispatchFailed));
    // Two failures: 40 min.
    assert!(!dispatches(&mut l, &p, (1, 1), 59, Status::DispatchFailed));
    assert!(dispatches(&mut l, &p, (1, 1), 60, Status::DispatchFailed));
    // Three failures: 80 min capped at 60.
    assert!(!dispatches(&mut l, &p, (1, 1), 119, Status::DispatchFailed));
    assert!(dispatches(&mut l, &p, (1, 1), 120, Status::Dispatched));
}

#[test]
fn global_hourly_budget_holds_new_restarts() {
    let mut p = policy(1, RestartAction::Run);
    p.max_restarts_per_hour = 2;
    let mut l = Ledger::default();
    assert!(dispatches(&mut l, &p, (1, 1), 0, Status::Dispatched));
    assert!(dispatches(&mut l, &p, (2, 2), 1, Status::Dispatched));
    assert!(
        skip_reason(&step(&mut l, &p, &failing(3, 3), 2, Status::Dispatched))
            .contains("global budget")
    );
    // An hour later the budget is back.
    assert!(dispatches(&mut l, &p, (3, 3), 61, Status::Dispatched));
}

#[test]
fn refused_dispatches_do_not_use_up_the_cap_but_are_bounded() {
    let mut p = policy(1, RestartAction::Run);
    p.backoff_base = chrono::Duration::minutes(20);
    p.backoff_max = chrono::Duration::minutes(60);
    let mut l = Ledger::default();
    let key = |l: &Ledger| l.all().next().expect("a restart was claimed").key.clone();
    // Refused at 0; retried after 20, 40 (-> 60) and 60 (-> 120) minutes.
    for minute in [0, 20, 60, 120] {
        let k = (minute > 0).then(|| key(&l));
        if let Some(k) = &k {
            assert!(!autorevert::restart::retry_due(
                l.restarts(k),
                &l,
                &p,
                at(minute - 1)
            ));
            assert!(autorevert::restart::retry_due(
                l.restarts(k),
                &l,
                &p,
                at(minute)
            ));
        }
        assert!(
            dispatches(&mut l, &p, (1, 1), minute, Status::DispatchFailed),
            "minute {minute}"
        );
    }
    let k = key(&l);
    assert!(!autorevert::restart::retry_due(
        l.restarts(&k),
        &l,
        &p,
        at(600)
    ));
    let why = skip_reason(&step(
        &mut l,
        &p,
        &failing(1, 1),
        600,
        Status::DispatchFailed,
    ));
    assert!(why.contains("gave up after 4 refused dispatches"), "{why}");
    // A restart that was dispatched does use up the cap.
    assert!(dispatches(&mut l, &p, (2, 2), 0, Status::Dispatched));
    let why = skip_reason(&step(&mut l, &p, &failing(2, 2), 600, Status::Dispatched));
    assert!(why.contains("cap 1"), "{why}");
}

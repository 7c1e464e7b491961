//! The reproduction rules (pairing, the same shard) on hand-written grids.

use super::*;

/// The engine with the session-6 outage guard off: pairing alone guards the grids below.
fn paired_only(cells: &[&str]) -> Decision {
    let cfg = DecisionConfig {
        require_failure_after_green: false,
        ..DecisionConfig::default()
    };
    decide(&grid(cells), &cfg)
}

#[test]
fn an_outage_that_fails_the_paired_parent_reverts_nothing() {
    // Seed 5's pattern: the parent passed before the outage, the suspect's restart and a
    // newer commit failed inside it. PyTorch reverts; the engine wants the pair.
    let cells = ["F40/1,2,3", "F20/1,2,3 F60/1,2,3r", "S10 S25"];
    assert!(matches!(pytorch(&cells), Decision::Revert(_)));
    assert_eq!(
        restarts(&paired_only(&cells)),
        vec![
            ("c2".into(), vec![R::SameRevisionRepro]),
            ("c1".into(), vec![R::PairedBaseline]),
        ]
    );
    // The pair ran inside the outage: the parent failed too. No revert, ever.
    let cells = [
        "F40/1,2,3",
        "F20/1,2,3 F60/1,2,3r",
        "S10 S25 F61/1,2,3r",
        "S5",
    ];
    for d in [paired_only(&cells), engine(&cells)] {
        assert!(!matches!(d, Decision::Revert(_)), "{d:?}");
    }
    // The parent's paired restart is still running: wait for it.
    let cells = ["F40/1,2,3", "F20/1,2,3 F60/1,2,3r", "S10 S25 P61r"];
    assert_eq!(reason(&paired_only(&cells)), I::UnpairedRepro);
    // A parent success restarted too late (an hour apart) does not pair either.
    let cells = ["F40/1", "F20/1 F60/1r", "S10 S15 S120r"];
    assert!(!matches!(paired_only(&cells), Decision::Revert(_)));
}

#[test]
fn flakes_on_different_shards_of_a_merged_signal_do_not_add_up() {
    // Seed 40's pattern: four failures, each on another shard, all paired. PyTorch
    // reverts (merged view); the engine asks the suspect to fail the same way again.
    let cells = ["F40/3", "F30/2", "F20/1 F60/2r", "S10 S61r"];
    assert!(matches!(pytorch(&cells), Decision::Revert(_)));
    let d = paired_only(&cells);
    assert_eq!(
        restarts(&d),
        vec![
            ("c2".into(), vec![R::SameRevisionRepro]),
            ("c1".into(), vec![R::PairedBaseline]),
        ]
    );
    // The suspect still running: ineligible, and the detail names the shard it tracks.
    let d = paired_only(&["F40/3", "F30/2", "F20/1 F60/2r P90r", "S10 S61r P91r"]);
    let Decision::Ineligible(i) = d else {
        panic!("expected ineligible, got {d:?}")
    };
    assert_eq!(i.reason, I::InsufficientFailures);
    assert!(i.detail.contains("(default, 2, 3)"), "{}", i.detail);
    // Any shard counts when `same_way_repro` is off.
    let any = DecisionConfig {
        same_way_repro: false,
        require_failure_after_green: false,
        ..DecisionConfig::default()
    };
    assert!(matches!(decide(&grid(&cells), &any), Decision::Revert(_)));
}

#[test]
fn the_same_shard_reproduced_beside_a_green_parent_reverts() {
    // The suspect failed shard 3 on its push run and again in a restart created a
    // minute from its parent's restart, which passed.
    let cells = ["F40/3", "F20/3 F60/3r", "S10 S61r"];
    let d = paired_only(&cells);
    let Decision::Revert(r) = &d else {
        panic!("expected a revert, got {d:?}")
    };
    assert_eq!((r.suspect.as_str(), r.baseline.as_str()), ("c2", "c1"));
    // A failure that also broke another shard still shares shard 3.
    assert!(matches!(
        paired_only(&["F40/3", "F20/1,3 F60/3r", "S10 S61r"]),
        Decision::Revert(_)
    ));
    // Pairing goes by the runs' creation when known, not the jobs' start: the suspect's
    // test started 20 minutes after its parent's, but both runs were created together.
    let mut s = grid(&["F40/3", "F20/3 F80/3r", "S10 S61r"]);
    let created = s.commits[1].events[1].started_at - Duration::minutes(19);
    s.commits[1].events[1].run_created_at = Some(created);
    s.commits[2].events[1].run_created_at = Some(created);
    let cfg = DecisionConfig {
        require_failure_after_green: false,
        ..DecisionConfig::default()
    };
    assert!(matches!(decide(&s, &cfg), Decision::Revert(_)));
    // Without the suspect's run, its test's start is 19 minutes from the parent's run.
    s.commits[1].events[1].run_created_at = None;
    assert_eq!(
        restarts(&decide(&s, &cfg)),
        vec![
            ("c2".into(), vec![R::SameRevisionRepro]),
            ("c1".into(), vec![R::PairedBaseline]),
        ]
    );
}

#[test]
fn pairing_restarts_the_parent_below_a_gap_too() {
    // The suspect has a gap commit below it: its parent is restarted with it (and is
    // bisected anyway), so that the restart can count once the gap is resolved.
    let d = eager(&["F30", "F20", "", "S10 S15"]);
    assert_eq!(
        restarts(&d),
        vec![
            ("c3".into(), vec![R::FewFailures]),
            ("c2".into(), vec![R::Gap, R::PairedBaseline]),
            ("c1".into(), vec![R::NeedsLaterSuccess]),
        ]
    );
}

#[test]
fn pairing_settings_are_validated() {
    let zero = DecisionConfig {
        pairing_window_secs: Some(0),
        ..DecisionConfig::default()
    };
    assert!(zero.validate().unwrap_err().contains("pairing_window_secs"));
    let pytorch = DecisionConfig::pytorch();
    assert_eq!(
        (pytorch.pairing_window_secs, pytorch.same_way_repro),
        (None, false)
    );
}

#[test]
fn a_shard_that_flaked_twice_on_the_suspect_but_not_above_it_is_no_reproduction() {
    // Seed 13's pattern (session 7): the commit below the real breakage flaked on shard 1
    // in its push run and again in its paired restart; the commits above fail shard 5.
    let cells = ["F50/5", "F40/5", "F20/1 F60/1r", "S10 S61r"];
    assert!(matches!(pytorch(&cells), Decision::Revert(_)));
    let d = paired_only(&cells);
    assert!(!matches!(d, Decision::Revert(_)), "{d:?}");
    assert_eq!(
        restarts(&d),
        vec![
            ("c2".into(), vec![R::SameRevisionRepro]),
            ("c1".into(), vec![R::PairedBaseline]),
        ]
    );
    // The shard the newer commits fail, reproduced on the suspect: a revert.
    assert!(matches!(
        paired_only(&["F50/5", "F40/5", "F20/1,5 F60/5r", "S10 S61r"]),
        Decision::Revert(_)
    ));
}

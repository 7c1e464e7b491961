//! A day of trunk as the App records it for the decision engine (`main_commits`,
//! `run_results`, `job_results`, written with the App's own row types): a commit breaks a
//! test job, and the suspect and its parent are restarted side by side.

use super::{REPO, TEST_1};
use autorevert::intake::events::{Job, Run};
use autorevert::store::Store;
use autorevert::store::batch::{Batch, Entry};
use autorevert::store::rows::JobResultRow;
use autorevert::store::signal_state::{MainCommitRow, RevertActionRow, RunResultRow};
use chrono::{DateTime, Duration, Utc};

/// The signal `TEST_1` merges into (shards merged, config kept).
pub const SIGNAL: &str = "linux-jammy-py3.10-gcc11 / test (default)";

/// A commit whose short sha (7 characters) is its own: `201aaaa…`.
pub fn landed(n: u32) -> String {
    format!("{n:03}{}", "a".repeat(37))
}

/// A completed run of trunk on `sha` (a push on main, or a restart on `trunk/<sha>`).
fn trunk_run(id: u64, sha: &str, restart: bool, at: DateTime<Utc>, conclusion: &str) -> Run {
    Run {
        id,
        name: "trunk".into(),
        path: ".github/workflows/trunk.yml".into(),
        head_sha: sha.into(),
        head_branch: Some(if restart {
            format!("trunk/{sha}")
        } else {
            "main".into()
        }),
        event: if restart { "workflow_dispatch" } else { "push" }.into(),
        status: "completed".into(),
        conclusion: Some(conclusion.into()),
        run_attempt: 1,
        workflow_id: 1,
        created_at: at,
        updated_at: Some(at + Duration::minutes(40)),
        html_url: String::new(),
        url: String::new(),
    }
}

/// Its `TEST_1` job, started a minute after the run and done 30 minutes later.
fn trunk_job(run: &Run, conclusion: &str) -> Job {
    Job {
        id: run.id * 10,
        run_id: run.id,
        run_attempt: 1,
        name: TEST_1.into(),
        workflow_name: "trunk".into(),
        head_sha: run.head_sha.clone(),
        head_branch: run.head_branch.clone(),
        status: "completed".into(),
        conclusion: Some(conclusion.into()),
        created_at: Some(run.created_at),
        started_at: Some(run.created_at + Duration::minutes(1)),
        completed_at: Some(run.created_at + Duration::minutes(31)),
        ..Default::default()
    }
}

/// Five commits landed half an hour apart from `t0` (a, b pass; c broke `TEST_1`, d and e
/// fail too), then the suspect c and its parent b ran again side by side: c failed the
/// same job again, b passed. What the App records in ClickHouse as it sees it happen.
pub async fn broken_trunk(store: &Store, t0: DateTime<Utc>) -> Vec<String> {
    let shas: Vec<String> = (201..=205).map(landed).collect();
    let mut b = Batch::default();
    let mut ran = |run: Run, conclusion: &str| {
        b.push(Entry::Job(JobResultRow::new(
            REPO,
            &trunk_job(&run, conclusion),
        )));
        b.push(Entry::Run(RunResultRow::new(REPO, &run)));
    };
    for (i, s) in shas.iter().enumerate() {
        let at = t0 + Duration::minutes(30 * i as i64);
        let conclusion = if i < 2 { "success" } else { "failure" };
        ran(
            trunk_run(
                7_000 + i as u64,
                s,
                false,
                at + Duration::minutes(1),
                conclusion,
            ),
            conclusion,
        );
    }
    let paired = t0 + Duration::hours(3);
    ran(
        trunk_run(7_101, &shas[1], true, paired, "success"),
        "success",
    );
    ran(
        trunk_run(
            7_102,
            &shas[2],
            true,
            paired + Duration::minutes(1),
            "failure",
        ),
        "failure",
    );
    for (i, s) in shas.iter().enumerate() {
        b.push(Entry::MainCommit(MainCommitRow {
            repo: REPO.into(),
            sha: s.clone(),
            pushed_at: t0 + Duration::minutes(30 * i as i64),
            seq: 0,
            parent: if i == 0 {
                String::new()
            } else {
                shas[i - 1].clone()
            },
            delivery_id: String::new(),
        }));
    }
    store.write(&mut b).await.expect("writing the history");
    shas
}

/// The comment of the revert `posted_revert` records.
pub fn revert_comment_url() -> String {
    format!("https://github.com/{REPO}/pull/4242#issuecomment-77")
}

/// What the App records once its revert comment on PR #4242 is posted for `sha`.
pub fn posted_revert(sha: &str, at: DateTime<Utc>) -> RevertActionRow {
    RevertActionRow {
        repo: REPO.into(),
        sha: sha.into(),
        action: "revert".into(),
        target: 4242,
        reason: String::new(),
        signals: vec![format!("trunk:{SIGNAL}")],
        state: "posted".into(),
        comment_id: Some(77),
        comment_url: revert_comment_url(),
        detail: "revert PR #4242".into(),
        decided_at: at,
        updated_at: at,
        version: 1,
    }
}

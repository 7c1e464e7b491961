//! Restarting only what failed (issue 14): the workflow file read at `trunk/<sha>` through the
//! fake GitHub's contents API, the failing tests read from the test ClickHouse (PyTorch's
//! `tests.all_test_runs` and the job table's classification, filled here as PyTorch's
//! pipelines fill them), the dispatch's inputs, the scope in the ledger, and the verdict on
//! the jobs asked for. Every test goes through `Scenario` (strict: no unclaimed dispatch,
//! no error logged).

mod common;

use autorevert::restart::{ScopeKind, Verdict};
use autorevert::store::Tables;
use common::binary::Binary;
use common::fake_github::{DispatchAnswer, FakeGitHub};
use common::*;
use serde_json::json;
use std::collections::HashMap;

const TRUNK: &str = ".github/workflows/trunk.yml";
const GPU_TEST: &str =
    "linux-jammy-cuda12.8-py3.10-gcc11 / test (default, 1, 5, linux.g5.4xlarge.nvidia.gpu)";
const GPU_BUILD: &str = "linux-jammy-cuda12.8-py3.10-gcc11 / build";
const GPU: &str = "linux-jammy-cuda12.8-py3.10-gcc11";
const CPU: &str = "linux-jammy-py3.10-gcc11";
const WIN_BUILD: &str = "win-vs2022-cpu-py3 / build";

/// The head of PyTorch's trunk.yml: both inputs declared.
const TRUNK_BOTH: &str = r#"name: trunk

on:
  push:
    branches:
      - main
      - release/*
    tags:
      - ciflow/trunk/*
  workflow_dispatch:
    inputs:
      jobs-to-include:
        description: "Space-separated list of job display names to run (empty = all)"
        required: false
        default: ""
        type: string
      tests-to-include:
        description: "Space-separated tests to include (passed to test runner; empty = default)"
        required: false
        default: ""
        type: string
  schedule:
    - cron: 29 8 * * *  # about 1:29am PDT

jobs:
  job-filter:
    uses: ./.github/workflows/job-filter.yml
    with:
      jobs-to-include: ${{ github.event.inputs.jobs-to-include }}
"#;

/// The five jobs of the runs here: two display names with a build and a test each, and one
/// more build.
fn jobs(gpu_test: &str, cpu_test: &str, cpu_build: &str) -> Vec<(&'static str, String)> {
    vec![
        (GPU_BUILD, "success".into()),
        (GPU_TEST, gpu_test.into()),
        (BUILD, cpu_build.into()),
        (TEST_1, cpu_test.into()),
        (WIN_BUILD, "success".into()),
    ]
}

/// Runs SQL on the test ClickHouse; its answer.
async fn ch(sql: String) -> String {
    let resp = http_client()
        .post(format!("{}/", clickhouse_url().trim_end_matches('/')))
        .body(sql.clone())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "{sql}\n-> {status}: {text}");
    text
}

/// What PyTorch's pipelines record about a failed job: the log classifier's rule (a new
/// version of the job's row in `t.job`) and its failing tests in `tests`, as (file, name).
async fn record_failure(t: &Tables, tests: &str, job_id: u64, rule: &str, failed: &[(&str, &str)]) {
    if !rule.is_empty() {
        ch(format!(
            "INSERT INTO {job} (id, run_id, dynamoKey, name, head_sha, head_branch, status,
                 conclusion, workflow_name, url, torchci_classification)
             SELECT id, run_id, dynamoKey, name, head_sha, head_branch, status, conclusion,
                 workflow_name, url,
                 CAST(tuple(CAST([] AS Array(String)), CAST([] AS Array(String)), id,
                            'FAILED (rule matched)', toInt64(7), '{rule}')
                      AS Tuple(captures Array(String), context Array(String), job_id Int64,
                               line String, line_num Int64, rule String))
             FROM {job} FINAL WHERE id = {job_id}",
            job = t.job
        ))
        .await;
    }
    let insert = format!(
        "INSERT INTO {tests} (job_id, workflow_id, workflow_run_attempt, file, classname, name,
             failure_count, error_count, skipped_count, rerun_count) VALUES"
    );
    for (file, name) in failed {
        ch(format!(
            "{insert} ({job_id}, 1, 1, '{file}', 'TestSuite', '{name}', 1, 0, 0, 0)"
        ))
        .await;
    }
    // A test of the same job that passed: never part of the filter.
    ch(format!(
        "{insert} ({job_id}, 1, 1, 'test_passing.py', 'TestOk', 'test_ok', 0, 0, 0, 0)"
    ))
    .await;
}

/// How one failed job failed: its rule and failing tests.
type Failure<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// A push of `sha` runs trunk and its jobs end as `jobs` say; before the run completes,
/// PyTorch's pipelines have recorded how the named jobs failed. Returns the run's id.
async fn push_fails_with(
    s: &Scenario,
    sha: &str,
    jobs: &[(&str, String)],
    failures: &[Failure<'_>],
) -> u64 {
    let gh = &s.github;
    let run = gh.push_run(sha);
    let names: Vec<&str> = jobs.iter().map(|(n, _)| *n).collect();
    s.github_queues(run, &names).await;
    gh.start_run(run);
    s.deliver_ok("workflow_run", &gh.run_event(run, "in_progress"))
        .await;
    let ends: Vec<(&str, &str)> = jobs.iter().map(|(n, c)| (*n, c.as_str())).collect();
    for id in gh.complete_jobs(run, &ends) {
        s.deliver_ok("workflow_job", &gh.job_event(run, id, "completed"))
            .await;
    }
    s.settle().await;
    let ids: HashMap<String, u64> = gh
        .jobs_of(run)
        .iter()
        .map(|j| {
            (
                j["name"].as_str().unwrap().to_string(),
                j["id"].as_u64().unwrap(),
            )
        })
        .collect();
    let t = s.store.tables();
    for (job, rule, tests) in failures {
        record_failure(t, &t.tests, ids[*job], rule, tests).await;
    }
    gh.complete_run(run, "failure");
    s.deliver_ok("workflow_run", &gh.run_event(run, "completed"))
        .await;
    run
}

/// The restart run: the jobs asked for end as given, the others are skipped (job-filter).
fn restart_jobs<'a>(asked: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all: Vec<(&str, &str)> = asked.to_vec();
    for name in [GPU_BUILD, GPU_TEST, BUILD, TEST_1, WIN_BUILD] {
        if !asked.iter().any(|(n, _)| *n == name) {
            all.push((name, "skipped"));
        }
    }
    all
}

#[tokio::test]
async fn failing_tests_of_known_modules_restart_their_jobs_and_modules_only() {
    let mut s = Scenario::start().await;
    s.github.add_file(TRUNK, TRUNK_BOTH);
    let sha = sha(1401);
    let tests: &[(&str, &str)] = &[
        ("test_ops.py", "test_dtypes_add_cuda"),
        ("distributed/test_c10d_nccl.py", "test_allreduce"),
        ("test_ops.py", "test_dtypes_mul_cuda"),
    ];
    let failures: &[Failure] = &[(GPU_TEST, "pytest failure", tests)];
    let original =
        push_fails_with(&s, &sha, &jobs("failure", "success", "success"), failures).await;

    let d = s.expect_dispatches(1).await;
    assert_eq!(
        d[0].body,
        json!({
            "ref": format!("trunk/{sha}"),
            "inputs": {
                "jobs-to-include": GPU,
                "tests-to-include": "distributed/test_c10d_nccl test_ops",
            },
            "return_run_details": true,
        })
    );
    assert_eq!(
        s.github.contents_requests(TRUNK),
        [format!("/repos/{REPO}/contents/{TRUNK}?ref=trunk%2F{sha}")]
    );
    let r = s.restart(&sha).await;
    let scope = r.scope.clone().expect("the scope is in the ledger");
    assert_eq!(scope.kind, ScopeKind::JobsTests, "{}", scope.reason);
    assert!(
        scope.reason.contains("every failing job failed on tests"),
        "{}",
        scope.reason
    );
    assert!(scope.source.contains("all_test_runs"), "{}", scope.source);
    assert!(
        scope.source.contains(&format!("{TRUNK}@")),
        "{}",
        scope.source
    );
    assert_eq!((scope.jobs_original, scope.jobs_asked), (5, 2));
    assert!(s.event_kinds(&sha).await.contains(&"scoped".to_string()));

    // GitHub runs the two jobs of that display name; job-filter skips the other three.
    let restart = s.restart_run(&sha);
    let ran = restart_jobs(&[(GPU_BUILD, "success"), (GPU_TEST, "failure")]);
    s.github_runs(restart, &ran, "failure").await;
    let r = s.restart(&sha).await;
    assert_eq!(r.outcome, Some(Verdict::Reproduced), "{}", r.reason);
    assert_eq!(r.original_run_id, original);
    assert_eq!(r.scope.unwrap().jobs_restarted, Some(2));
    s.finish().await;
}

#[tokio::test]
async fn a_job_that_failed_on_infra_gets_the_job_filter_only() {
    let mut s = Scenario::start().await;
    s.github.add_file(TRUNK, TRUNK_BOTH);
    let sha = sha(1402);
    let failures: &[Failure] = &[(GPU_TEST, "GHA error", &[])];
    push_fails_with(&s, &sha, &jobs("failure", "success", "success"), failures).await;

    let d = s.expect_dispatches(1).await;
    assert_eq!(d[0].body["inputs"], json!({"jobs-to-include": GPU}));
    let scope = s.restart(&sha).await.scope.unwrap();
    assert_eq!(scope.kind, ScopeKind::Jobs);
    assert!(
        scope
            .reason
            .contains(r#"failed on "GHA error", not on tests"#),
        "{}",
        scope.reason
    );

    // The job passes this time, and the jobs not asked for are no evidence either way.
    let restart = s.restart_run(&sha);
    let ran = restart_jobs(&[(GPU_BUILD, "success"), (GPU_TEST, "success")]);
    s.github_runs(restart, &ran, "success").await;
    let r = s.restart(&sha).await;
    assert_eq!(r.outcome, Some(Verdict::NotReproduced), "{}", r.reason);
    s.finish().await;
}

#[tokio::test]
async fn one_failure_that_is_not_a_test_failure_drops_the_test_filter() {
    let mut s = Scenario::start().await;
    s.github.add_file(TRUNK, TRUNK_BOTH);
    let sha = sha(1403);
    // The GPU shard failed on a test; the CPU build failed with no test at all.
    let failures: &[Failure] = &[
        (GPU_TEST, "pytest failure", &[("test_ops.py", "test_a")]),
        (BUILD, "sccache error", &[]),
    ];
    push_fails_with(&s, &sha, &jobs("failure", "skipped", "failure"), failures).await;

    let d = s.expect_dispatches(1).await;
    assert_eq!(
        d[0].body["inputs"],
        json!({"jobs-to-include": format!("{GPU} {CPU}")}),
        "no tests-to-include: the build must run whole"
    );
    let scope = s.restart(&sha).await.scope.unwrap();
    assert_eq!(scope.kind, ScopeKind::Jobs);
    assert!(
        scope.reason.contains("test filter dropped"),
        "{}",
        scope.reason
    );
    assert!(scope.reason.contains("sccache error"), "{}", scope.reason);
    assert_eq!(
        (scope.jobs_original, scope.jobs_asked),
        (4, 3),
        "the CPU test was skipped"
    );
    s.finish().await;
}

#[tokio::test]
async fn a_workflow_without_inputs_is_restarted_whole() {
    let mut s = Scenario::start().await;
    let file = "name: trunk\non:\n  push:\n    branches: [main]\n  workflow_dispatch:\n";
    s.github.add_file(TRUNK, file);
    let sha = sha(1404);
    let failures: &[Failure] = &[(GPU_TEST, "pytest failure", &[("test_ops.py", "t")])];
    push_fails_with(&s, &sha, &jobs("failure", "success", "success"), failures).await;

    let d = s.expect_dispatches(1).await;
    assert_eq!(
        d[0].body,
        json!({"ref": format!("trunk/{sha}"), "return_run_details": true})
    );
    let scope = s.restart(&sha).await.scope.unwrap();
    assert_eq!(scope.kind, ScopeKind::Full);
    assert!(
        scope.reason.contains("declares neither"),
        "{}",
        scope.reason
    );
    assert!(scope.source.contains("not read"), "{}", scope.source);

    // The job counts are filled in when the restart is judged: every job ran again.
    let restart = s.restart_run(&sha);
    let all = jobs("failure", "success", "success");
    let ran: Vec<(&str, &str)> = all.iter().map(|(n, c)| (*n, c.as_str())).collect();
    s.github_runs(restart, &ran, "failure").await;
    let r = s.restart(&sha).await;
    assert_eq!(r.outcome, Some(Verdict::Reproduced), "{}", r.reason);
    let scope = r.scope.unwrap();
    assert_eq!(
        (scope.jobs_original, scope.jobs_asked, scope.jobs_restarted),
        (5, 5, Some(5))
    );
    s.finish().await;
}

#[tokio::test]
async fn on_as_a_string_or_a_list_is_read_and_means_no_inputs() {
    let mut s = Scenario::start().await;
    let files = [
        (sha(1405), "name: trunk\non: workflow_dispatch\njobs: {}\n"),
        (
            sha(1406),
            "name: trunk\non: [push, workflow_dispatch]\njobs: {}\n",
        ),
    ];
    for (sha, text) in &files {
        s.github.add_file_at(TRUNK, &format!("trunk/{sha}"), text);
        push_fails_with(&s, sha, &jobs("failure", "success", "success"), &[]).await;
    }
    let d = s.expect_dispatches(2).await;
    for (i, (sha, _)) in files.iter().enumerate() {
        assert_eq!(d[i].body.get("inputs"), None, "{}", d[i].body);
        let scope = s.restart(sha).await.scope.unwrap();
        assert_eq!(scope.kind, ScopeKind::Full);
        assert!(
            scope.reason.contains("declares neither"),
            "{sha}: {}",
            scope.reason
        );
    }
    s.finish().await;
}

#[tokio::test]
async fn a_workflow_file_that_cannot_be_read_means_a_full_restart_and_says_why() {
    let mut s = Scenario::start().await;
    s.github.add_file(TRUNK, TRUNK_BOTH);
    let bomb = "a: &a [x, x]\nb: &b [*a, *a]\non:\n  workflow_dispatch:\n    inputs: {x: *b}\n";
    let cases = [
        (sha(1407), vec![404], "404"),
        // A 500 is a read: retried by the one retry layer, then given up.
        (sha(1408), vec![500, 500, 500, 500], "500"),
        (sha(1409), vec![], "alias"),
    ];
    s.github
        .add_file_at(TRUNK, &format!("trunk/{}", cases[2].0), bomb);
    for (sha, answers, _) in &cases {
        s.github.fail_contents(answers.clone());
        let failures: &[Failure] = &[(GPU_TEST, "pytest failure", &[("test_ops.py", "t")])];
        push_fails_with(&s, sha, &jobs("failure", "success", "success"), failures).await;
        let d = s.expect_dispatches(1).await;
        assert_eq!(d[0].body.get("inputs"), None, "{}", d[0].body);
    }
    for (sha, _, why) in &cases {
        let scope = s.restart(sha).await.scope.unwrap();
        assert_eq!(scope.kind, ScopeKind::Full);
        assert!(
            scope.reason.contains("workflow file not read"),
            "{}",
            scope.reason
        );
        assert!(
            scope.reason.contains(why),
            "{sha}: {} lacks {why}",
            scope.reason
        );
    }
    assert_eq!(s.github.contents_requests(TRUNK).len(), 1 + 4 + 1);
    s.finish().await;
}

#[tokio::test]
async fn a_resend_after_an_unknown_outcome_asks_for_the_same_jobs_and_tests() {
    let mut s = Scenario::start().await;
    s.github.add_file(TRUNK, TRUNK_BOTH);
    // GitHub answers 503 without creating anything; the runs are listed, then it is sent again.
    s.github.script([DispatchAnswer::FailBeforeCreate(503)]);
    let sha = sha(1410);
    let failures: &[Failure] = &[(GPU_TEST, "Python unittest failure", &[("test_nn.py", "t")])];
    push_fails_with(&s, &sha, &jobs("failure", "success", "success"), failures).await;

    let d = s.expect_dispatches(2).await;
    assert_eq!(d[0].body, d[1].body);
    assert_eq!(
        d[1].body["inputs"],
        json!({"jobs-to-include": GPU, "tests-to-include": "test_nn"})
    );
    let r = s.restart(&sha).await;
    assert_eq!(r.dispatch_attempts, 2);
    assert_eq!(s.github.contents_requests(TRUNK).len(), 1, "decided once");
    s.finish().await;
}

/// Polls `check` every 100 ms for up to 20 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("not within 20 s: {what}");
}

// Multi-threaded: the fake GitHub keeps serving while the test waits on the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reads_the_failing_tests_from_the_table_it_is_configured_with() {
    let store = fresh_store().await;
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    github.add_file(TRUNK, TRUNK_BOTH);
    let t = store.tables().clone();
    let elsewhere = format!("{}.test_runs_elsewhere", t.database);
    let mut bin = Binary::new(&store, &github);
    bin.env
        .push(("CLICKHOUSE_TESTS_TABLE".into(), elsewhere.clone()));
    let mut child = bin.start();
    bin.wait_up().await;

    let sha = sha(1420);
    let run = github.push_run(&sha);
    github.queue_jobs(run, &[GPU_BUILD, GPU_TEST]);
    github.start_run(run);
    let ids = github.complete_jobs(run, &[(GPU_BUILD, "success"), (GPU_TEST, "failure")]);
    for id in &ids {
        let body = github.job_event(run, *id, "completed");
        let status = bin
            .deliver_event("workflow_job", &format!("job-{id}"), body)
            .await;
        assert_eq!(status, 202);
    }
    let failed = ids[1];
    let mirrored = format!(
        "SELECT count() FROM {} WHERE id = {failed} AND conclusion = 'failure'",
        t.job
    );
    eventually("the failed job is in the mirror", async || {
        ch(mirrored.clone()).await.trim() != "0"
    })
    .await;
    // Rows in the default tests table are not read: only the configured one counts.
    record_failure(&t, &t.tests, failed, "", &[("test_wrong.py", "t")]).await;
    record_failure(
        &t,
        &elsewhere,
        failed,
        "pytest failure",
        &[("test_ops.py", "t")],
    )
    .await;
    github.complete_run(run, "failure");
    let status = bin
        .deliver("run-completed", github.run_event(run, "completed"))
        .await;
    assert_eq!(status, 202);
    eventually("the dispatch", async || !github.dispatches().is_empty()).await;
    let d = github.dispatches();
    assert_eq!(
        d[0].body["inputs"],
        json!({"jobs-to-include": GPU, "tests-to-include": "test_ops"})
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // A name that is no table's stops `serve` at start-up, with one line that names it.
    let log = temp_dir().join("serve.log");
    let mut bad = Binary::new(&store, &github);
    bad.env.push((
        "CLICKHOUSE_TESTS_TABLE".into(),
        "tests.all-test-runs".into(),
    ));
    bad.log_to = Some(log.clone());
    let mut child = bad.start();
    let mut exited = None;
    for _ in 0..100 {
        exited = child.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let Some(status) = exited else {
        child.kill().unwrap();
        panic!("serve started with a bad CLICKHOUSE_TESTS_TABLE");
    };
    assert!(!status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("CLICKHOUSE_TESTS_TABLE"), "{text}");
}

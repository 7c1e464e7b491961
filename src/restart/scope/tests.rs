use super::*;
use crate::intake::states::RunStatus;

const GPU_TEST: &str =
    "linux-jammy-cuda12.8-py3.10-gcc11 / test (default, 1, 5, linux.g5.4xlarge.nvidia.gpu)";
const GPU_BUILD: &str = "linux-jammy-cuda12.8-py3.10-gcc11 / build";
const CPU_TEST: &str = "linux-jammy-py3.10-gcc11 / test (default, 2, 2, linux.4xlarge)";
const CPU_BUILD: &str = "linux-jammy-py3.10-gcc11 / build";
const WIN_BUILD: &str = "win-vs2022-cpu-py3 / build";

fn job(id: u64, name: &str, conclusion: &str) -> JobState {
    JobState {
        id,
        name: name.into(),
        status: RunStatus::Completed,
        conclusion: Some(conclusion.into()),
    }
}

/// A trunk-like run: two display names with a build and a test each, and a skipped job.
fn run(gpu_test: &str, cpu_test: &str, cpu_build: &str) -> Vec<JobState> {
    vec![
        job(1, GPU_BUILD, "success"),
        job(2, GPU_TEST, gpu_test),
        job(3, CPU_BUILD, cpu_build),
        job(4, CPU_TEST, cpu_test),
        job(5, WIN_BUILD, "skipped"),
    ]
}

fn both() -> Result<Declared, String> {
    Ok(Declared {
        inputs: Some(vec![JOBS_INPUT.into(), TESTS_INPUT.into()]),
        file: ".github/workflows/trunk.yml@b10b".into(),
    })
}

fn declares(inputs: &[&str]) -> Result<Declared, String> {
    Ok(Declared {
        inputs: Some(inputs.iter().map(|s| s.to_string()).collect()),
        file: "trunk.yml@b".into(),
    })
}

fn failure(job_id: u64, file: &str, name: &str) -> TestFailure {
    TestFailure {
        job_id,
        file: file.into(),
        classname: "TestX".into(),
        name: name.into(),
    }
}

fn evidence(rules: &[(u64, &str)], failures: Vec<TestFailure>) -> Result<TestEvidence, String> {
    Ok(TestEvidence {
        rules: rules.iter().map(|(id, r)| (*id, r.to_string())).collect(),
        failures,
        source: "tests.all_test_runs".into(),
    })
}

#[test]
fn display_names_are_the_base_name_before_the_slash() {
    assert_eq!(display_name(GPU_TEST), "linux-jammy-cuda12.8-py3.10-gcc11");
    assert_eq!(display_name(GPU_BUILD), "linux-jammy-cuda12.8-py3.10-gcc11");
    assert_eq!(display_name("inductor-build"), "inductor-build");
    assert_eq!(display_name("  lint  "), "lint");
    assert_eq!(
        test_module("distributed/test_c10d.py").unwrap(),
        "distributed/test_c10d"
    );
    assert_eq!(test_module("test_torch").unwrap(), "test_torch");
    assert_eq!(test_module(" "), None);
    assert_eq!(test_module(".py"), None);
}

#[test]
fn tests_of_known_modules_give_both_filters() {
    let jobs = run("failure", "failure", "success");
    let tests = evidence(
        &[(2, "pytest failure"), (4, "Python unittest failure")],
        vec![
            failure(2, "test_ops.py", "test_a"),
            failure(2, "test_ops.py", "test_b"),
            failure(4, "distributed/test_c10d.py", "test_c"),
        ],
    );
    assert_eq!(test_lookup(&both(), &jobs), Some(vec![2, 4]));
    let s = plan(&both(), &jobs, "job_results", Some(&tests));
    assert_eq!(s.kind, ScopeKind::JobsTests, "{}", s.reason);
    assert_eq!(
        s.jobs,
        [
            "linux-jammy-cuda12.8-py3.10-gcc11",
            "linux-jammy-py3.10-gcc11"
        ]
    );
    assert_eq!(s.tests, ["distributed/test_c10d", "test_ops"]);
    assert_eq!((s.jobs_original, s.jobs_asked), (4, 4));
    assert_eq!(
        s.inputs().unwrap(),
        serde_json::json!({
            "jobs-to-include": "linux-jammy-cuda12.8-py3.10-gcc11 linux-jammy-py3.10-gcc11",
            "tests-to-include": "distributed/test_c10d test_ops",
        })
    );
    assert!(s.source.contains("tests.all_test_runs") && s.source.contains("trunk.yml@b10b"));
}

#[test]
fn an_infra_failure_keeps_the_job_filter_only() {
    let jobs = run("failure", "success", "success");
    let tests = evidence(&[(2, "GHA error")], vec![]);
    let s = plan(&both(), &jobs, "job_results", Some(&tests));
    assert_eq!(s.kind, ScopeKind::Jobs);
    assert_eq!(s.jobs, ["linux-jammy-cuda12.8-py3.10-gcc11"]);
    assert!(s.tests.is_empty());
    assert!(s.reason.contains("not on tests"), "{}", s.reason);
    // The build and the test of that display name run; the other two are skipped.
    assert_eq!((s.jobs_original, s.jobs_asked), (4, 2));
    assert!(s.asks_for(GPU_BUILD) && !s.asks_for(CPU_TEST));
}

#[test]
fn one_non_test_failure_drops_the_test_filter_for_all() {
    // The GPU test failed on tests; the CPU build failed (no tests at all).
    let jobs = run("failure", "success", "failure");
    let tests = evidence(
        &[(2, "pytest failure"), (3, "")],
        vec![failure(2, "test_ops.py", "test_a")],
    );
    let s = plan(&both(), &jobs, "job_results", Some(&tests));
    assert_eq!(s.kind, ScopeKind::Jobs);
    assert_eq!(s.jobs.len(), 2);
    assert!(s.tests.is_empty(), "{:?}", s.tests);
    assert!(s.reason.contains("not classified"), "{}", s.reason);
}

#[test]
fn a_failing_test_without_a_file_drops_the_test_filter() {
    let jobs = run("failure", "success", "success");
    let tests = evidence(
        &[(2, "pytest failure")],
        vec![
            failure(2, "test_ops.py", "test_a"),
            failure(2, "", "test_b"),
        ],
    );
    let s = plan(&both(), &jobs, "job_results", Some(&tests));
    assert_eq!(s.kind, ScopeKind::Jobs);
    assert!(s.reason.contains("has no file"), "{}", s.reason);
    let none = evidence(&[(2, "pytest failure")], vec![]);
    let s = plan(&both(), &jobs, "job_results", Some(&none));
    assert!(s.reason.contains("no failing test"), "{}", s.reason);
    let unread: Result<TestEvidence, String> = Err("timeout".into());
    let s = plan(&both(), &jobs, "job_results", Some(&unread));
    assert!(s.reason.contains("timeout"), "{}", s.reason);
}

#[test]
fn full_restarts_say_why() {
    let jobs = run("failure", "success", "success");
    let cases = [
        (Err("GET ...: 404".to_string()), "not read: GET"),
        (declares(&[]), "declares neither"),
        (
            Ok(Declared {
                inputs: None,
                file: "f".into(),
            }),
            "declares neither",
        ),
        (declares(&["other"]), "declares neither"),
    ];
    for (declared, why) in cases {
        let s = plan(&declared, &jobs, "job_results", None);
        assert_eq!(s.kind, ScopeKind::Full);
        assert!(s.inputs().is_none());
        assert!(s.reason.contains(why), "{} lacks {why}", s.reason);
        assert_eq!(test_lookup(&declared, &jobs), None);
    }
    let passed = run("success", "success", "success");
    let s = plan(&both(), &passed, "job_results", None);
    assert_eq!((s.kind, s.jobs_asked), (ScopeKind::Full, 4));
    assert!(s.reason.contains("no failing job"), "{}", s.reason);
}

#[test]
fn one_declared_input_is_used_alone() {
    let jobs = run("failure", "success", "success");
    let s = plan(&declares(&[JOBS_INPUT]), &jobs, "github", None);
    assert_eq!(s.kind, ScopeKind::Jobs);
    assert!(s.reason.contains("no tests-to-include"), "{}", s.reason);
    let tests = evidence(
        &[(2, "pytest failure")],
        vec![failure(2, "test_ops.py", "t")],
    );
    let s = plan(&declares(&[TESTS_INPUT]), &jobs, "github", Some(&tests));
    assert_eq!(s.kind, ScopeKind::Tests);
    assert_eq!(
        s.inputs().unwrap(),
        serde_json::json!({"tests-to-include": "test_ops"})
    );
    assert!(s.asks_for(CPU_BUILD), "a test filter alone narrows no job");
}

#[test]
fn excluded_jobs_are_not_asked_for() {
    let mut jobs = run("success", "success", "success");
    jobs.push(job(6, "linux / test (mem_leak_check, 1, 1, r)", "failure"));
    let s = plan(&both(), &jobs, "job_results", None);
    assert_eq!(s.kind, ScopeKind::Full);
    assert!(failing_jobs(&jobs).is_empty());
}

#[test]
fn scope_kinds_round_trip() {
    for k in [
        ScopeKind::Full,
        ScopeKind::Jobs,
        ScopeKind::Tests,
        ScopeKind::JobsTests,
    ] {
        assert_eq!(ScopeKind::parse(k.as_str()), Some(k));
    }
    assert_eq!(ScopeKind::JobsTests.as_str(), "jobs+tests");
    assert_eq!(ScopeKind::parse("partial"), None);
}

//! `autorevert doctor` as an operator runs it: the real binary against the fake GitHub and
//! the test ClickHouse, healthy and broken.

mod common;

use common::fake_github::{APP_ID, FakeGitHub};
use common::*;
use std::process::Command;

struct Doctor {
    code: Option<i32>,
    out: String,
}

impl Doctor {
    /// The line of the check named `what` (panics when there is none).
    fn line(&self, what: &str) -> &str {
        self.out
            .lines()
            .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(what)))
            .unwrap_or_else(|| panic!("no check {what:?} in:\n{}", self.out))
    }

    /// The `why:` lines under the check named `what` (what each missing grant is for).
    fn why(&self, what: &str) -> Vec<&str> {
        let line = self.line(what);
        self.out
            .lines()
            .skip_while(|l| *l != line)
            .skip(2)
            .take_while(|l| l.starts_with("      why: "))
            .collect()
    }

    /// The `fix:` (or `note:`) line under the check named `what`.
    fn fix(&self, what: &str) -> &str {
        let line = self.line(what);
        let mut lines = self.out.lines().skip_while(|l| *l != line).skip(1);
        lines.next().map(str::trim).unwrap_or_default()
    }
}

/// The environment of a configured App: the fake GitHub, the store's database.
fn env(github: &FakeGitHub, store: &autorevert::store::Store) -> Vec<(String, String)> {
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/test-app.private-key.pem"
    );
    vec![
        ("GITHUB_APP_ID".into(), APP_ID.to_string()),
        ("GITHUB_APP_PRIVATE_KEY_PATH".into(), key.into()),
        ("GITHUB_API_URL".into(), github.url.clone()),
        ("WEBHOOK_SECRET".into(), SECRET.into()),
        ("AUTOREVERT_REPOS".into(), REPO.into()),
        ("CLICKHOUSE_URL".into(), clickhouse_url()),
        (
            "CLICKHOUSE_DATABASE".into(),
            store.tables().database.clone(),
        ),
    ]
}

fn with(mut env: Vec<(String, String)>, key: &str, value: &str) -> Vec<(String, String)> {
    env.retain(|(k, _)| k != key);
    env.push((key.into(), value.into()));
    env
}

async fn doctor(env: Vec<(String, String)>) -> Doctor {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_autorevert"))
            .arg("doctor")
            .env_clear()
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let d = Doctor {
        code: out.status.code(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
    };
    let err = String::from_utf8_lossy(&out.stderr);
    println!("{}{err}", d.out);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_setup_passes_every_check() {
    let store = fresh_store().await;
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    github.push_commit(REPO, &sha(1), true);
    let d = doctor(env(&github, &store)).await;
    assert_eq!(d.code, Some(0));
    for check in [
        "settings",
        "webhook secret",
        "private key",
        "GET /app (App JWT)",
        "clock",
        "GET /app/installations",
        "installation on pytorch/pytorch",
        "trunk/<sha> tag on pytorch/pytorch",
        "ClickHouse",
        "schema",
    ] {
        assert!(d.line(check).starts_with("OK "), "{check}:\n{}", d.out);
    }
    assert!(
        d.line("GET /app (App JWT)")
            .contains("\"pytorch-autorevert-restarter\"")
    );
    let installation = d.line("installation on");
    for granted in [
        "issues: write",
        "checks: write",
        "pull_requests: write",
        "events workflow_run, workflow_job, push",
    ] {
        assert!(installation.contains(granted), "{granted}: {installation}");
    }
    assert!(
        d.line("trunk/<sha> tag")
            .contains(&format!("trunk/{} exists", sha(1)))
    );
    assert!(d.out.contains("10 OK, 0 warning(s), 0 failed"), "{}", d.out);

    // A newest commit without its tag: a warning that explains the convention, no failure.
    github.push_commit(REPO, &sha(2), false);
    let d = doctor(env(&github, &store)).await;
    assert_eq!(d.code, Some(0));
    let tag = d.line("trunk/<sha> tag on pytorch/pytorch");
    assert!(tag.starts_with("WARN") && tag.contains(&sha(2)), "{tag}");
    assert!(
        d.fix("trunk/<sha> tag")
            .contains("pushes a tag trunk/<sha> for every commit on main")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_app_id_and_a_database_without_the_schema_fail_with_their_fixes() {
    let store = fresh_store().await;
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let empty_db = format!("t_{}", uuid::Uuid::new_v4().simple());
    let env = with(env(&github, &store), "GITHUB_APP_ID", "999");
    let d = doctor(with(env, "CLICKHOUSE_DATABASE", &empty_db)).await;
    assert_eq!(d.code, Some(1));
    let app = d.line("GET /app (App JWT)");
    assert!(app.starts_with("FAIL") && app.contains("401"), "{app}");
    assert!(
        d.fix("GET /app")
            .contains("GITHUB_APP_ID is not the App ID"),
        "{}",
        d.out
    );
    assert!(d.line("installations").starts_with("SKIP"));
    let schema = d.line("schema");
    assert!(
        schema.starts_with("FAIL") && schema.contains("001 "),
        "{schema}"
    );
    assert!(d.fix("schema").contains("autorevert migrate"), "{}", d.out);
    assert!(d.line("ClickHouse").starts_with("OK"));
    assert!(d.out.contains("2 failed"), "{}", d.out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_without_the_app_and_a_missing_permission_fail_with_their_fixes() {
    let store = fresh_store().await;
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    github.push_commit(REPO, &sha(1), true);
    github.set_installation_permissions(
        INSTALLATION,
        serde_json::json!({"actions": "write", "contents": "read", "metadata": "read"}),
    );
    let repos = format!("{REPO},pytorch/vision");
    let d = doctor(with(env(&github, &store), "AUTOREVERT_REPOS", &repos)).await;
    assert_eq!(d.code, Some(1));
    let perms = d.line("installation on pytorch/pytorch");
    assert!(
        perms.starts_with("FAIL")
            && perms
                .contains("lacks permission checks: write, issues: write, pull_requests: write"),
        "{perms}"
    );
    assert!(
        d.fix("installation on pytorch/pytorch")
            .contains("has not accepted them yet"),
        "{}",
        d.out
    );
    let vision = d.line("installation on pytorch/vision");
    assert!(
        vision.starts_with("FAIL") && vision.contains("not installed"),
        "{vision}"
    );
    let install = "https://github.com/apps/pytorch-autorevert-restarter/installations/new";
    assert!(
        d.fix("installation on pytorch/vision").contains(install),
        "{}",
        d.out
    );
    assert!(d.line("GET /app/installations").starts_with("OK"));
    assert!(d.out.contains("2 failed"), "{}", d.out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installations_are_read_past_the_first_page() {
    let store = fresh_store().await;
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    github.push_commit(REPO, &sha(1), true);
    // 149 installations elsewhere, listed before pytorch's (by id): it is on page 2.
    github.add_installations(149);
    let d = doctor(env(&github, &store)).await;
    assert_eq!(d.code, Some(0), "{}", d.out);
    let line = d.line("GET /app/installations");
    assert!(line.starts_with("OK"), "{line}");
    assert!(line.contains("150 installations"), "{line}");
    assert!(
        line.contains(&format!(
            "pytorch (installation {INSTALLATION}, selected repositories)"
        )),
        "{line}"
    );
    let pages = github.requests_matching("GET", "/app/installations");
    assert!(
        pages.iter().any(|(p, _)| p.contains("page=2")),
        "page 2 was read: {pages:?}"
    );
    assert!(d.line("installation on pytorch/pytorch").starts_with("OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_off_from_github_s_is_named_with_its_fix() {
    let store = fresh_store().await;
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    github.push_commit(REPO, &sha(1), true);

    // GitHub's Date says 20 s later than ours: a warning, no failure.
    github.set_clock_skew(chrono::Duration::seconds(20));
    let d = doctor(env(&github, &store)).await;
    let clock = d.line("clock");
    assert!(
        clock.starts_with("WARN") && clock.contains("s behind GitHub's"),
        "{clock}"
    );
    assert_eq!(d.code, Some(0));

    // Ours three minutes fast: the App JWT would be refused; doctor fails and says why.
    github.set_clock_skew(chrono::Duration::minutes(-3));
    let d = doctor(env(&github, &store)).await;
    let clock = d.line("clock");
    assert!(
        clock.starts_with("FAIL") && clock.contains("ahead of GitHub's"),
        "{clock}"
    );
    let secs: f64 = clock
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap();
    assert!((178.0..=182.0).contains(&secs), "{clock}");
    assert!(d.fix("clock").contains("NTP"), "{}", d.out);
    assert_eq!(d.code, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_from_the_older_manifest_is_told_what_the_decision_engine_needs_and_why() {
    let store = fresh_store().await;
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    github.push_commit(REPO, &sha(1), true);
    // Registered from the manifest before the decision engine: no comments, no pushes.
    let old_permissions = serde_json::json!({
        "actions": "write", "checks": "write", "contents": "read", "issues": "read",
        "metadata": "read",
    });
    let old_events = serde_json::json!(["workflow_run", "workflow_job"]);
    github.set_app_grants(old_permissions.clone(), old_events.clone());
    github.set_installation_permissions(INSTALLATION, old_permissions);
    github.set_installation_events(INSTALLATION, old_events);
    let d = doctor(env(&github, &store)).await;
    assert_eq!(d.code, Some(1));
    let what = "installation on pytorch/pytorch";
    let line = d.line(what);
    assert!(
        line.starts_with("FAIL")
            && line.contains("lacks permission issues: write, pull_requests: write")
            && line.contains("not subscribed to push"),
        "{line}"
    );
    let fix = d.fix(what);
    assert!(
        fix.contains(
            "the App itself does not ask for issues: write, pull_requests: write, the push event"
        ) && fix.contains("app-manifest.yml")
            && fix.contains("Review request"),
        "{fix}"
    );
    let why = d.why(what).join("\n");
    assert_eq!(d.why(what).len(), 3, "{}", d.out);
    assert!(
        why.contains("issues: write — ") && why.contains("notify comments"),
        "{why}"
    );
    assert!(
        why.contains("pull_requests: write — ") && why.contains("@pytorchbot revert"),
        "{why}"
    );
    assert!(
        why.contains("the push event — ") && why.contains("order of main's commits"),
        "{why}"
    );
    assert!(d.out.contains("1 failed"), "{}", d.out);

    // The App now asks for them; the installation has not accepted yet.
    github.set_app_grants(
        serde_json::json!({
            "actions": "write", "checks": "write", "contents": "read", "issues": "write",
            "metadata": "read", "pull_requests": "write",
        }),
        serde_json::json!(["workflow_run", "workflow_job", "push"]),
    );
    let d = doctor(env(&github, &store)).await;
    assert_eq!(d.code, Some(1));
    let fix = d.fix(what);
    assert!(
        fix.contains("has not accepted them yet") && fix.contains("the owner of pytorch accepts"),
        "{fix}"
    );
    assert!(!fix.contains("does not ask for"), "{fix}");

    // Accepted: healthy again.
    github.set_installation_permissions(
        INSTALLATION,
        serde_json::json!({
            "actions": "write", "checks": "write", "contents": "read", "issues": "write",
            "metadata": "read", "pull_requests": "write",
        }),
    );
    github.set_installation_events(
        INSTALLATION,
        serde_json::json!(["workflow_run", "workflow_job", "push"]),
    );
    let d = doctor(env(&github, &store)).await;
    assert_eq!(d.code, Some(0), "{}", d.out);
    assert!(d.line(what).starts_with("OK"));
}

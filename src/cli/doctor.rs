//! `autorevert doctor`: the configuration checked end to end, one line per check, with a
//! fix under each failure. The App's key and id (`GET /app`), its installations and their
//! permissions on every `AUTOREVERT_REPOS` repository, the `trunk/<sha>` tag convention,
//! ClickHouse and the schema. Exit 1 when a check failed; a warning does not fail.

use crate::config::{ClickHouseArgs, GitHubArgs, PolicyArgs, parse_secrets};
use crate::github::app_info::{
    AppInfo, Installation, NEEDED_EVENTS, NEEDED_PERMISSIONS, needed_for,
};
use crate::github::{GitHub, GitHubAuth};
use crate::store::Store;
use anyhow::Result;
use std::process::ExitCode;

/// Printed as it goes, counted for the last line.
#[derive(Default)]
struct Report {
    passed: usize,
    warned: usize,
    failed: usize,
}

impl Report {
    fn ok(&mut self, what: &str, detail: &str) {
        self.passed += 1;
        println!("OK    {what}: {detail}");
    }

    fn fail(&mut self, what: &str, detail: &str, fix: &str) {
        self.failed += 1;
        println!("FAIL  {what}: {detail}\n      fix: {fix}");
    }

    fn warn(&mut self, what: &str, detail: &str, note: &str) {
        self.warned += 1;
        println!("WARN  {what}: {detail}\n      note: {note}");
    }

    fn skip(&mut self, what: &str, why: &str) {
        println!("SKIP  {what}: {why}");
    }
}

pub async fn run(
    github: GitHubArgs,
    clickhouse: ClickHouseArgs,
    policy: PolicyArgs,
    webhook_secret: Option<String>,
) -> Result<ExitCode> {
    let mut r = Report::default();
    let repos = settings(&mut r, &policy, webhook_secret.as_deref());
    let gh = app_client(&mut r, &github);
    let app = match &gh {
        Some(gh) => {
            let app = app_check(&mut r, gh).await;
            clock_check(&mut r, gh);
            app
        }
        None => None,
    };
    match (&gh, &app) {
        (Some(gh), Some(app)) => {
            installations(&mut r, gh, app, &repos).await;
            for repo in &repos {
                if repo_installation(&mut r, gh, app, repo).await {
                    trunk_tag(&mut r, gh, repo, &policy.main_branch).await;
                }
            }
        }
        _ => r.skip(
            "installations",
            "they need the App's credentials to work (above)",
        ),
    }
    clickhouse_checks(&mut r, &clickhouse).await;
    println!(
        "doctor: {} OK, {} warning(s), {} failed",
        r.passed, r.warned, r.failed
    );
    Ok(if r.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The App's own settings; returns the repositories to check.
fn settings(r: &mut Report, policy: &PolicyArgs, secret: Option<&str>) -> Vec<String> {
    let repos = match policy.validate(false) {
        Ok(p) => {
            let detail = format!(
                "repositories {}; workflows {}; restart action {}",
                p.repos.join(", "),
                p.workflows.join(", "),
                p.action
            );
            r.ok("settings", &detail);
            p.repos
        }
        Err(e) => {
            r.fail("settings", &format!("{e:#}"), "correct the variable named");
            Vec::new()
        }
    };
    match parse_secrets(secret) {
        Ok(s) => r.ok("webhook secret", &format!("set ({} secret(s))", s.len())),
        Err(e) => r.fail(
            "webhook secret",
            &format!("{e:#}"),
            "set WEBHOOK_SECRET to the App's webhook secret (the setup's credentials file \
             holds it; or set a new one in the App's settings, General → Webhook secret)",
        ),
    }
    repos
}

const REGISTER: &str = "set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY (or \
    GITHUB_APP_PRIVATE_KEY_PATH) from the App's settings page; no App yet? start \
    `autorevert serve` without credentials and open the /setup URL it logs";

/// The App's credentials: the key parses and a client is made.
fn app_client(r: &mut Report, github: &GitHubArgs) -> Option<GitHub> {
    let cfg = match github.validate() {
        Ok(Some(cfg)) => cfg,
        Ok(None) => {
            r.fail("App credentials", "none set", REGISTER);
            return None;
        }
        Err(e) => {
            let fix = "use the .pem file GitHub generated for the App (App settings → Private \
                       keys → Generate a private key) as GITHUB_APP_PRIVATE_KEY_PATH";
            r.fail("private key", &format!("{e:#}"), fix);
            return None;
        }
    };
    let GitHubAuth::App { app_id, .. } = &cfg.auth else {
        let detail =
            "only GITHUB_TOKEN is set: it serves the CLI, the App needs App authentication";
        r.fail("App credentials", detail, REGISTER);
        return None;
    };
    let detail = format!("an RSA key in PEM form, for App id {app_id}");
    r.ok("private key", &detail);
    match GitHub::new(&cfg) {
        Ok(gh) => Some(gh),
        Err(e) => {
            let fix = "GITHUB_API_URL must be GitHub's REST API (https://api.github.com)";
            r.fail("GitHub client", &format!("{e:#}"), fix);
            None
        }
    }
}

/// `GET /app` with the App JWT: the id and key belong together.
async fn app_check(r: &mut Report, gh: &GitHub) -> Option<AppInfo> {
    match gh.app().await {
        Ok(app) => {
            let owner = app.owner.as_ref().map_or("?", |o| o.login.as_str());
            let detail = format!(
                "App \"{}\" (id {}, owner {owner}), {}",
                app.name, app.id, app.html_url
            );
            r.ok("GET /app (App JWT)", &detail);
            Some(app)
        }
        Err(e) => {
            let fix = "GitHub refuses the App JWT (401) when GITHUB_APP_ID is not the App ID \
                       shown on the App's settings page, when the private key is not one of \
                       that App's keys (or was deleted), or when this machine's clock is off; \
                       any other error: check GITHUB_API_URL and that GitHub is reachable";
            r.fail("GET /app (App JWT)", &format!("{e:#}"), fix);
            None
        }
    }
}

/// The App JWT is signed with this machine's clock: octocrab dates it from 60 s before now
/// to 9 min after, and GitHub refuses one that is not yet valid or that lasts over 10 min by
/// its own clock. So a clock more than about a minute off, either way, locks the App out.
fn clock_check(r: &mut Report, gh: &GitHub) {
    let Some(offset) = gh.observed_clock_offset() else {
        r.skip(
            "clock",
            "GitHub's answer carried no Date header to compare with",
        );
        return;
    };
    let secs = offset.num_milliseconds() as f64 / 1000.0;
    let side = if secs > 0.0 { "behind" } else { "ahead of" };
    let detail = format!(
        "this machine's clock is {:.0} s {side} GitHub's",
        secs.abs()
    );
    let fix = "the App JWT is dated by this clock and GitHub refuses it when the clock is \
               about a minute off: keep the clock synchronised (NTP: chrony or \
               systemd-timesyncd; in a container, the host's clock)";
    match secs.abs() {
        s if s >= 45.0 => r.fail("clock", &detail, fix),
        s if s >= 10.0 => r.warn("clock", &detail, fix),
        _ => r.ok("clock", &detail),
    }
}

async fn installations(r: &mut Report, gh: &GitHub, app: &AppInfo, repos: &[String]) {
    let what = "GET /app/installations";
    match gh.installations().await {
        Ok(list) if list.is_empty() => {
            let fix = format!("install the App: {}", app.install_url());
            r.fail(what, "the App is installed nowhere", &fix);
        }
        Ok(list) => r.ok(what, &installations_detail(&list, repos)),
        Err(e) => r.fail(what, &format!("{e:#}"), "see GET /app above"),
    }
}

/// Every installation when there are few; otherwise how many, and those on the accounts
/// that own `repos` (every page was read, so one on page 2 is found too).
fn installations_detail(list: &[Installation], repos: &[String]) -> String {
    let each = |i: &Installation| {
        let on = i.repository_selection.as_deref().unwrap_or("?");
        format!(
            "{} (installation {}, {on} repositories)",
            i.account_login(),
            i.id
        )
    };
    if list.len() <= 5 {
        let all: Vec<String> = list.iter().map(each).collect();
        return format!("{}: {}", list.len(), all.join(", "));
    }
    let mut owners: Vec<&str> = repos.iter().filter_map(|r| r.split('/').next()).collect();
    owners.dedup();
    let found: Vec<String> = owners
        .iter()
        .map(|o| {
            match list
                .iter()
                .find(|i| i.account_login().eq_ignore_ascii_case(o))
            {
                Some(i) => each(i),
                None => format!("none on {o}"),
            }
        })
        .collect();
    format!(
        "{} installations; for the repositories: {}",
        list.len(),
        found.join(", ")
    )
}

/// The installation covering `repo`, with what the App needs; true when it can be used.
async fn repo_installation(r: &mut Report, gh: &GitHub, app: &AppInfo, repo: &str) -> bool {
    let what = format!("installation on {repo}");
    let inst = match gh.repo_installation(repo).await {
        Ok(Some(inst)) => inst,
        Ok(None) => {
            let fix = format!(
                "install the App on {repo}: {} (an installation on selected repositories \
                 must include {repo})",
                app.install_url()
            );
            let detail = format!("the App is not installed on {repo}");
            r.fail(&what, &detail, &fix);
            return false;
        }
        Err(e) => {
            r.fail(&what, &format!("{e:#}"), "see GET /app above");
            return false;
        }
    };
    let problems = installation_problems(&inst);
    if problems.is_empty() {
        let detail = format!(
            "installation {} ({}): {}; events {}",
            inst.id,
            inst.account_login(),
            NEEDED_PERMISSIONS
                .map(|(p, l)| format!("{p}: {l}"))
                .join(", "),
            NEEDED_EVENTS.join(", ")
        );
        r.ok(&what, &detail);
        return true;
    }
    let detail = format!("installation {}: {}", inst.id, problems.join("; "));
    r.fail(&what, &detail, &grant_fix(app, &inst));
    for line in missing_why(&inst) {
        println!("      why: {line}");
    }
    false
}

fn installation_problems(inst: &Installation) -> Vec<String> {
    let mut out = Vec::new();
    if inst.suspended_at.is_some() {
        out.push("suspended".to_string());
    }
    let perms = inst.missing_permissions();
    if !perms.is_empty() {
        out.push(format!("lacks permission {}", perms.join(", ")));
    }
    let events = inst.missing_events();
    if !events.is_empty() {
        out.push(format!("not subscribed to {}", events.join(", ")));
    }
    out
}

/// What the installation lacks, each with what the App needs it for.
fn missing_why(inst: &Installation) -> Vec<String> {
    let perms = inst.missing_permissions().into_iter().map(|p| {
        let name = p.split(':').next().unwrap_or_default();
        format!("{p} — {}", needed_for(name))
    });
    let events = inst
        .missing_events()
        .into_iter()
        .map(|e| format!("the {e} event — {}", needed_for(e)));
    perms.chain(events).collect()
}

/// How to grant what an installation lacks: the App itself asks for it first (its
/// settings), then the installation's owner accepts. An App registered from an older
/// manifest lacks the newer permissions itself; once it asks for them, every installation
/// keeps the old ones until its owner accepts the request.
fn grant_fix(app: &AppInfo, inst: &Installation) -> String {
    let mut app_lacks = app.missing_permissions();
    app_lacks.extend(
        app.missing_events()
            .iter()
            .map(|e| format!("the {e} event")),
    );
    let owner = inst.account_login();
    let accept = format!(
        "the owner of {owner} accepts the new permissions (Settings → GitHub Apps → {} → \
             Review request)",
        app.name
    );
    let unsuspend = format!(
        "the owner of {owner} unsuspends the App (Settings → GitHub Apps → {} → Unsuspend)",
        app.name
    );
    if inst.missing_permissions().is_empty() && inst.missing_events().is_empty() {
        return unsuspend;
    }
    let unsuspend = match inst.suspended_at {
        Some(_) => format!("; {unsuspend}"),
        None => String::new(),
    };
    if app_lacks.is_empty() {
        return format!(
            "the App asks for them, installation {} has not accepted them yet: {accept}{unsuspend}",
            inst.id
        );
    }
    format!(
        "the App itself does not ask for {}: in its settings ({}, Permissions & events) grant \
             what is missing, as app-manifest.yml lists it; then {accept}{unsuspend}",
        app_lacks.join(", "),
        app.html_url
    )
}

const TAG_NOTE: &str = "PyTorch's trunk-tagging workflow pushes a tag trunk/<sha> for every \
    commit on main, and the App dispatches each restart on that tag: without it GitHub refuses \
    the dispatch (422 \"No ref found\"). A commit pushed in the last minutes may not be tagged \
    yet; a repository without such a workflow gets no restarts";

/// The newest commit on `branch` has its `trunk/<sha>` tag (a warning when not).
async fn trunk_tag(r: &mut Report, gh: &GitHub, repo: &str, branch: &str) {
    let what = format!("trunk/<sha> tag on {repo}");
    let fix = format!(
        "the installation needs contents: read on {repo}; AUTOREVERT_MAIN_BRANCH ({branch}) \
         must name the branch"
    );
    let sha = match gh.latest_commit(repo, branch).await {
        Ok(Some(sha)) => sha,
        Ok(None) => return r.warn(&what, &format!("no commit on {branch}"), TAG_NOTE),
        Err(e) => return r.fail(&what, &format!("{e:#}"), &fix),
    };
    match gh.trunk_tag_exists(repo, &sha).await {
        Ok(true) => r.ok(
            &what,
            &format!("trunk/{sha} exists (the newest commit on {branch})"),
        ),
        Ok(false) => r.warn(
            &what,
            &format!("no tag trunk/{sha} for the newest commit on {branch}"),
            TAG_NOTE,
        ),
        Err(e) => r.fail(&what, &format!("{e:#}"), &fix),
    }
}

async fn clickhouse_checks(r: &mut Report, clickhouse: &ClickHouseArgs) {
    let cfg = match clickhouse.validate() {
        Ok(cfg) => cfg,
        Err(e) => {
            let fix = "set CLICKHOUSE_URL, or CLICKHOUSE_HOST with CLICKHOUSE_USER and \
                       CLICKHOUSE_PASSWORD (PyTorch's variables)";
            r.fail("ClickHouse", &format!("{e:#}"), fix);
            return r.skip("schema", "needs ClickHouse");
        }
    };
    let store = Store::new(&cfg);
    let at = cfg.display_url();
    if let Err(e) = store.ping().await {
        let fix = "check CLICKHOUSE_URL (or HOST and PORT), the user and password, and that \
                   this machine reaches the server";
        r.fail("ClickHouse", &format!("{e:#} (at {at})"), fix);
        return r.skip("schema", "needs ClickHouse");
    }
    r.ok("ClickHouse", &format!("answers at {at}"));
    let db = &cfg.tables.database;
    match store.missing_migrations().await {
        Ok(missing) if missing.is_empty() => r.ok("schema", &format!("database {db} is current")),
        Ok(missing) => {
            let detail = format!(
                "database {db} lacks {} schema step(s): {}",
                missing.len(),
                missing.join("; ")
            );
            let fix = format!(
                "run `autorevert migrate` with the same CLICKHOUSE_* settings (`serve` also \
                 migrates at start-up); the user needs CREATE and ALTER on {db}"
            );
            r.fail("schema", &detail, &fix);
        }
        Err(e) => r.fail(
            "schema",
            &format!("{e:#}"),
            "check the user's SELECT grants",
        ),
    }
}

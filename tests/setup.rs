//! Setup mode through the real binary: GitHub's App-manifest flow against the fake GitHub,
//! from the one-time token in the start-up log to the credentials file and a restart with
//! them. And `autorevert healthcheck`, the container's health check.

mod common;

use common::binary::Binary;
use common::fake_github::{APP_ID, FakeGitHub};
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `autorevert serve` with exactly this environment and its log (stderr) kept; killed when
/// dropped.
struct Served {
    child: Child,
    log: Arc<Mutex<String>>,
    url: String,
}

impl Served {
    fn start(port: u16, env: &[(String, String)]) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_autorevert"))
            .arg("serve")
            .env_clear()
            .env("RUST_LOG", "info")
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Served {
            child,
            log,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The first log line containing `needle` (waits up to 15 s for it).
    async fn line_with(&self, needle: &str) -> String {
        for _ in 0..300 {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no log line with {needle:?}:\n{}", self.log());
    }

    async fn get(&self, path_and_query: &str) -> (u16, String) {
        let resp = no_redirects()
            .get(format!("{}{path_and_query}", self.url))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn no_redirects() -> reqwest::Client {
    let _ = http_client(); // installs the TLS provider reqwest needs
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The text of the first `attr="…"` after `after` in the page, unescaped.
fn attribute(page: &str, after: &str, attr: &str) -> String {
    let from = page
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in:\n{page}"));
    let rest = &page[from..];
    let start = rest.find(&format!("{attr}=\"")).unwrap() + attr.len() + 2;
    let end = start + rest[start..].find('"').unwrap();
    unescape(&rest[start..end])
}

/// The register page's form: where it posts, and the manifest (JSON text) it posts.
fn manifest_form(page: &str) -> (String, String) {
    (
        attribute(page, "<form method=\"post\"", "action"),
        attribute(page, "name=\"manifest\"", "value"),
    )
}

/// `KEY=value` lines of the credentials file.
fn env_lines(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn setup_env(github: &FakeGitHub, public: &str, creds: &std::path::Path) -> Vec<(String, String)> {
    vec![
        ("PUBLIC_URL".into(), public.into()),
        ("SETUP_CREDENTIALS_FILE".into(), creds.display().to_string()),
        ("GITHUB_API_URL".into(), github.url.clone()),
        ("SPOOL_DIR".into(), temp_dir().display().to_string()),
    ]
}

/// Setup mode: the token is needed, the page posts the manifest with this server's
/// addresses, and GitHub's answer is checked (state) before the code is exchanged.
async fn register_through_the_page(app: &Served, github: &FakeGitHub, token: &str) -> String {
    assert_eq!(app.get("/setup").await.0, 403, "no token");
    assert_eq!(
        app.get("/setup?token=0123abcd").await.0,
        403,
        "a wrong token"
    );
    let (status, page) = app.get(&format!("/setup?token={token}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Register GitHub App"), "{page}");
    let (action, manifest) = manifest_form(&page);
    let personal = format!("{}/settings/apps/new?state=", github.url);
    assert!(action.starts_with(&personal), "{action}");
    let m: Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(m["url"], app.url.as_str());
    assert_eq!(m["hook_attributes"]["url"], format!("{}/webhook", app.url));
    assert_eq!(m["redirect_url"], format!("{}/setup/callback", app.url));
    assert_eq!(m["default_permissions"]["actions"], "write");
    assert_eq!(
        m["default_events"],
        serde_json::json!(["workflow_run", "workflow_job", "push"])
    );

    let (status, org_page) = app.get(&format!("/setup?token={token}&org=pytorch")).await;
    assert_eq!(status, 200);
    let org = format!(
        "{}/organizations/pytorch/settings/apps/new?state=",
        github.url
    );
    assert!(manifest_form(&org_page).0.starts_with(&org));
    let bad_org = app.get(&format!("/setup?token={token}&org=../x")).await.0;
    assert_eq!(bad_org, 400);

    // The operator's browser posts the form; GitHub registers the App and sends it back.
    let resp = no_redirects()
        .post(&action)
        .form(&[("manifest", manifest.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    resp.headers()["location"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_registers_itself_through_githubs_manifest_flow() {
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let creds = temp_dir().join("github-app.env");
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let app = Served::start(port, &setup_env(&github, &public, &creds));
    let line = app.line_with("setup?token=").await;
    assert!(line.contains("setup mode"), "{line}");
    let token: String = line[line.find("setup?token=").unwrap() + 12..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    assert_eq!(token.len(), 64, "{line}");
    assert_eq!(app.get("/healthz").await.0, 200);
    let hook = no_redirects()
        .post(format!("{}/webhook", app.url))
        .body("{}")
        .send()
        .await;
    let hook = hook.unwrap();
    assert_eq!(hook.status().as_u16(), 503);
    assert!(hook.text().await.unwrap().contains("not set up yet"));

    let back = register_through_the_page(&app, &github, &token).await;
    assert!(
        back.starts_with(&format!("{public}/setup/callback?code=")),
        "{back}"
    );
    let path = &back[public.len()..];
    let forged = format!("{}&state=forged", &path[..path.find("&state=").unwrap()]);
    assert_eq!(
        app.get(&forged).await.0,
        403,
        "a state this server never handed out"
    );
    assert!(
        github
            .requests_matching("POST", "/app-manifests/")
            .is_empty()
    );

    let (status, done) = app.get(path).await;
    assert_eq!(status, 200, "{done}");
    assert!(done.contains(&format!("<code>{APP_ID}</code>")), "{done}");
    assert!(done.contains("/installations/new"), "{done}");
    assert!(done.contains("autorevert doctor"), "{done}");
    assert_eq!(github.requests_matching("POST", "/app-manifests/").len(), 1);

    // The credentials: in the file (0600), never in the log.
    let text = std::fs::read_to_string(&creds).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&creds).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let vars = env_lines(&text);
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/test-app.private-key.pem"
    ))
    .unwrap();
    assert_eq!(vars["GITHUB_APP_ID"], APP_ID.to_string());
    assert_eq!(
        vars["GITHUB_APP_PRIVATE_KEY"].replace("\\n", "\n").trim(),
        pem.trim()
    );
    assert_eq!(vars["WEBHOOK_SECRET"], github.generated_secret());
    let log = app.line_with("GitHub App registered").await + &app.log();
    assert!(!log.contains(&github.generated_secret()), "{log}");
    for key_line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !log.contains(key_line),
            "the log holds the private key:\n{log}"
        );
    }
    assert!(!done.contains(&github.generated_secret()) && !done.contains("PRIVATE KEY-----"));

    // The token is spent: no second App through this server.
    assert_eq!(app.get(&format!("/setup?token={token}")).await.0, 403);
    assert_eq!(app.get(path).await.0, 403);
    assert_eq!(github.requests_matching("POST", "/app-manifests/").len(), 1);
    drop(app);

    restarted_with_the_credentials(&github, &vars, &token, path).await;
}

/// A restart with the file's variables: the App proper, its webhook verifies the new
/// secret, and the setup routes are gone.
async fn restarted_with_the_credentials(
    github: &FakeGitHub,
    vars: &HashMap<String, String>,
    token: &str,
    callback: &str,
) {
    let store = fresh_store().await;
    let t = store.tables().clone();
    let mut env: Vec<(String, String)> = vars.clone().into_iter().collect();
    env.extend([
        ("GITHUB_API_URL".to_string(), github.url.clone()),
        ("CLICKHOUSE_URL".into(), clickhouse_url()),
        ("CLICKHOUSE_DATABASE".into(), t.database.clone()),
        ("CLICKHOUSE_JOB_TABLE".into(), t.job.clone()),
        ("CLICKHOUSE_RUN_TABLE".into(), t.run.clone()),
        ("CLICKHOUSE_JOB_BY_SHA_TABLE".into(), t.job_by_sha.clone()),
        ("SPOOL_DIR".into(), temp_dir().display().to_string()),
        ("RECONCILE_SECS".into(), "0".into()),
        ("REDELIVER_SECS".into(), "0".into()),
    ]);
    let app = Served::start(free_port(), &env);
    app.line_with("autorevert is serving").await;
    assert!(!app.log().contains("setup mode"), "{}", app.log());
    assert_eq!(app.get(&format!("/setup?token={token}")).await.0, 404);
    assert_eq!(app.get(callback).await.0, 404);
    let ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#.to_vec();
    let send = |secret: &str| {
        no_redirects()
            .post(format!("{}/webhook", app.url))
            .header("x-github-event", "ping")
            .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
            .header(
                "x-hub-signature-256",
                autorevert::intake::signature::sign(secret, &ping),
            )
            .body(ping.clone())
            .send()
    };
    assert_eq!(
        send(&github.generated_secret())
            .await
            .unwrap()
            .status()
            .as_u16(),
        202
    );
    assert_eq!(send(SECRET).await.unwrap().status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_mode_needs_its_settings_and_never_overwrites_credentials() {
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let creds = temp_dir().join("github-app.env");
    let run = |env: Vec<(String, String)>| {
        Command::new(env!("CARGO_BIN_EXE_autorevert"))
            .arg("serve")
            .env_clear()
            .env("LISTEN_ADDR", format!("127.0.0.1:{}", free_port()))
            .envs(env)
            .output()
            .unwrap()
    };
    let mut env = setup_env(&github, "http://127.0.0.1:1", &creds);
    env.retain(|(k, _)| k != "PUBLIC_URL");
    let out = run(env);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PUBLIC_URL"));
    std::fs::write(&creds, "GITHUB_APP_ID=1\n").unwrap();
    let out = run(setup_env(&github, "http://127.0.0.1:1", &creds));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&creds).unwrap(),
        "GITHUB_APP_ID=1\n"
    );
}

fn healthcheck(listen: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autorevert"))
        .arg("healthcheck")
        .env_clear()
        .env("LISTEN_ADDR", listen)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_passes_against_a_running_app_and_fails_when_nothing_listens() {
    let store = fresh_store().await;
    let github = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    let bin = Binary::new(&store, &github);
    let mut child = bin.start();
    bin.wait_up().await;
    let port = bin.url().rsplit(':').next().unwrap().to_string();
    // The image listens on 0.0.0.0; the check asks loopback.
    let listen = format!("0.0.0.0:{port}");
    let up = tokio::task::spawn_blocking({
        let listen = listen.clone();
        move || healthcheck(&listen)
    })
    .await
    .unwrap();
    assert!(up.status.success(), "{up:?}");
    assert!(String::from_utf8_lossy(&up.stdout).contains("healthy"));
    child.kill().unwrap();
    child.wait().unwrap();
    let down = tokio::task::spawn_blocking(move || healthcheck(&listen))
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy"));
}

/// No Docker daemon here: what the image needs is checked in the files.
#[test]
fn the_image_carries_the_manifest_and_checks_its_health() {
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let build_stage = dockerfile.split("\nFROM ").nth(1).unwrap();
    assert!(
        build_stage.contains("COPY app-manifest.yml"),
        "the binary embeds app-manifest.yml, so the build stage must copy it"
    );
    let check = dockerfile
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK"))
        .expect("a HEALTHCHECK");
    assert!(check.contains("\"healthcheck\""), "{check}");
}

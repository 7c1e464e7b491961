//! The real `autorevert serve` binary, started as a process against the fake GitHub and the
//! test ClickHouse: what a configured behaviour must be tested through.

use super::{SECRET, clickhouse_url, fake_github, http_client, temp_dir};
use std::time::Duration;

/// A `serve` process on a free port, with its own delivery log.
pub struct Binary {
    port: u16,
    spool: std::path::PathBuf,
    store: autorevert::store::Store,
    github_url: String,
    /// Settings on top of the defaults above (later ones win).
    pub env: Vec<(String, String)>,
    /// Where the App's log (stderr) goes; None: nowhere.
    pub log_to: Option<std::path::PathBuf>,
    /// The process's descriptor limit (soft, hard), set with `prlimit` before it starts.
    pub nofile: Option<(u64, u64)>,
}

impl Binary {
    pub fn new(store: &autorevert::store::Store, github: &fake_github::FakeGitHub) -> Binary {
        Binary::with_spool(store, github, temp_dir())
    }

    /// With its delivery log in `spool` (a directory of the test's choosing).
    pub fn with_spool(
        store: &autorevert::store::Store,
        github: &fake_github::FakeGitHub,
        spool: std::path::PathBuf,
    ) -> Binary {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        Binary {
            port,
            spool,
            store: store.clone(),
            github_url: github.url.clone(),
            env: Vec::new(),
            log_to: None,
            nofile: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn start(&self) -> std::process::Child {
        let key = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/keys/test-app.private-key.pem"
        );
        let t = self.store.tables().clone();
        // Worktrees that share one target directory overwrite each other's
        // target/debug/autorevert; AUTOREVERT_TEST_BIN names a copy of this one's.
        let bin = std::env::var("AUTOREVERT_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_autorevert").to_string());
        let mut cmd = match self.nofile {
            Some((soft, hard)) => {
                let mut c = std::process::Command::new("prlimit");
                c.arg(format!("--nofile={soft}:{hard}")).arg("--").arg(&bin);
                c
            }
            None => std::process::Command::new(&bin),
        };
        cmd.arg("serve")
            .env_clear()
            .env("WEBHOOK_SECRET", SECRET)
            .env("LISTEN_ADDR", format!("127.0.0.1:{}", self.port))
            .env("SPOOL_DIR", &self.spool)
            .env("GITHUB_APP_ID", fake_github::APP_ID.to_string())
            .env("GITHUB_APP_PRIVATE_KEY_PATH", key)
            .env("GITHUB_API_URL", &self.github_url)
            .env("CLICKHOUSE_URL", clickhouse_url())
            .env("CLICKHOUSE_DATABASE", &t.database)
            .env("CLICKHOUSE_JOB_TABLE", &t.job)
            .env("CLICKHOUSE_RUN_TABLE", &t.run)
            .env("CLICKHOUSE_JOB_BY_SHA_TABLE", &t.job_by_sha)
            .env("CLICKHOUSE_TESTS_TABLE", &t.tests)
            .env("DISPATCH_LOOKUP_DELAY_MS", "100")
            .env("RECONCILE_SECS", "0")
            .env("REDELIVER_SECS", "0")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .stderr(match &self.log_to {
                Some(path) => std::fs::File::create(path).unwrap().into(),
                None => std::process::Stdio::null(),
            })
            .spawn()
            .unwrap()
    }

    /// `GET /healthz` as JSON.
    pub async fn health(&self) -> serde_json::Value {
        let resp = http_client()
            .get(format!("{}/healthz", self.url()))
            .send()
            .await
            .unwrap();
        serde_json::from_str(&resp.text().await.unwrap()).unwrap()
    }

    pub async fn wait_up(&self) {
        let client = http_client();
        for _ in 0..300 {
            if client
                .get(format!("{}/healthz", self.url()))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the App did not start");
    }

    pub async fn deliver(&self, id: &str, body: Vec<u8>) -> u16 {
        self.deliver_event("workflow_run", id, body).await
    }

    /// Delivers `body` as GitHub's `event` (signed), with delivery id `id`; the status.
    pub async fn deliver_event(&self, event: &str, id: &str, body: Vec<u8>) -> u16 {
        http_client()
            .post(format!("{}/webhook", self.url()))
            .header("x-github-event", event)
            .header("x-github-delivery", id)
            .header(
                "x-hub-signature-256",
                autorevert::intake::signature::sign(SECRET, &body),
            )
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

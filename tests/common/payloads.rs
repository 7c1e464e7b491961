//! Webhook bodies, built from GitHub's real example payloads in `fixtures/github` with the
//! fields a test cares about patched in. Builders name what they set; everything else keeps
//! a sensible default (trunk of pytorch/pytorch, a push on `main`, attempt 1):
//!
//! ```ignore
//! RunEvent::failure(&sha).run(7).conclusion("timed_out").body();
//! RunEvent::requested(&sha).restart().run(9).body(); // workflow_dispatch on trunk/<sha>
//! JobEvent::completed(&sha, TEST_1, "failure").run(7).id(70).body();
//! ```
//!
//! `FakeGitHub::run_event` / `job_events` build the same bodies from the fake's own state.

use super::{INSTALLATION, REPO};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/github/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Makes an example payload look like a delivery to our App: the repository it names and
/// the `installation` GitHub adds to App deliveries.
pub fn as_app_delivery(p: &mut Value, repo: &str) {
    p["repository"]["full_name"] = json!(repo);
    p["installation"] =
        json!({"id": INSTALLATION, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDgxMjM0NTY="});
}

/// The `status` GitHub sends with each action (`requested` runs are `queued`).
fn status_of(action: &str) -> &str {
    match action {
        "requested" => "queued",
        other => other,
    }
}

type Edit = Box<dyn FnOnce(&mut Value)>;

/// A string field GitHub may send as null: `"failure"`, `&some_string`, or an `Option`.
pub trait OptStr {
    fn opt(self) -> Option<String>;
}

impl OptStr for &str {
    fn opt(self) -> Option<String> {
        Some(self.into())
    }
}

impl OptStr for &String {
    fn opt(self) -> Option<String> {
        Some(self.clone())
    }
}

impl OptStr for String {
    fn opt(self) -> Option<String> {
        Some(self)
    }
}

impl OptStr for Option<&str> {
    fn opt(self) -> Option<String> {
        self.map(str::to_string)
    }
}

impl OptStr for Option<String> {
    fn opt(self) -> Option<String> {
        self
    }
}

/// A `workflow_run` delivery. Defaults: run 1 of `trunk` on pytorch/pytorch, a push on
/// `main`, attempt 1, no conclusion, the status GitHub sends with the action.
#[must_use]
pub struct RunEvent {
    action: String,
    id: u64,
    sha: String,
    workflow: String,
    file: String,
    event: String,
    branch: Option<String>,
    status: Option<String>,
    conclusion: Option<String>,
    attempt: u32,
    repo: String,
    created_at: Option<DateTime<Utc>>,
    edits: Vec<Edit>,
}

impl RunEvent {
    pub fn new(action: &str, sha: &str) -> RunEvent {
        RunEvent {
            action: action.into(),
            id: 1,
            sha: sha.into(),
            workflow: "trunk".into(),
            file: "trunk.yml".into(),
            event: "push".into(),
            branch: Some("main".into()),
            status: None,
            conclusion: None,
            attempt: 1,
            repo: REPO.into(),
            created_at: None,
            edits: vec![],
        }
    }

    /// A failed trunk push run on `main`: what the App restarts.
    pub fn failure(sha: &str) -> RunEvent {
        RunEvent::completed(sha, "failure")
    }

    pub fn completed(sha: &str, conclusion: &str) -> RunEvent {
        RunEvent::new("completed", sha).conclusion(conclusion)
    }

    pub fn requested(sha: &str) -> RunEvent {
        RunEvent::new("requested", sha)
    }

    /// A restart's run: `workflow_dispatch` on the tag `trunk/<sha>`.
    pub fn restart(self) -> RunEvent {
        let tag = format!("trunk/{}", self.sha);
        self.event("workflow_dispatch").branch(&tag)
    }

    pub fn run(mut self, id: u64) -> RunEvent {
        self.id = id;
        self
    }

    pub fn action(mut self, action: &str) -> RunEvent {
        self.action = action.into();
        self
    }

    /// `"failure"`, or `None` for a run that has not concluded.
    pub fn conclusion(mut self, c: impl OptStr) -> RunEvent {
        self.conclusion = c.opt();
        self
    }

    /// Overrides the status GitHub sends with the action.
    pub fn status(mut self, status: &str) -> RunEvent {
        self.status = Some(status.into());
        self
    }

    /// `head_branch`; `None` is GitHub's null (a deleted branch).
    pub fn branch(mut self, b: impl OptStr) -> RunEvent {
        self.branch = b.opt();
        self
    }

    /// What triggered the run: `push`, `workflow_dispatch`, `pull_request`, `schedule`...
    pub fn event(mut self, event: &str) -> RunEvent {
        self.event = event.into();
        self
    }

    /// The workflow's display name and file (`.github/workflows/<file>`).
    pub fn workflow(mut self, name: &str, file: &str) -> RunEvent {
        self.workflow = name.into();
        self.file = file.into();
        self
    }

    pub fn attempt(mut self, n: u32) -> RunEvent {
        self.attempt = n;
        self
    }

    pub fn repo(mut self, repo: &str) -> RunEvent {
        self.repo = repo.into();
        self
    }

    pub fn created_at(mut self, at: DateTime<Utc>) -> RunEvent {
        self.created_at = Some(at);
        self
    }

    /// Any other change to the finished JSON (applied last, in order).
    pub fn edit(mut self, f: impl FnOnce(&mut Value) + 'static) -> RunEvent {
        self.edits.push(Box::new(f));
        self
    }

    pub fn json(self) -> Value {
        let name = if self.action == "requested" {
            "workflow_run.requested.json"
        } else {
            "workflow_run.completed.json"
        };
        let mut p = fixture(name);
        as_app_delivery(&mut p, &self.repo);
        p["action"] = json!(self.action);
        let (repo, id) = (&self.repo, self.id);
        let r = &mut p["workflow_run"];
        r["id"] = json!(id);
        r["name"] = json!(self.workflow);
        r["path"] = json!(format!(".github/workflows/{}", self.file));
        r["head_sha"] = json!(self.sha);
        r["head_branch"] = json!(self.branch);
        r["event"] = json!(self.event);
        r["status"] = json!(
            self.status
                .as_deref()
                .unwrap_or_else(|| status_of(&self.action))
        );
        r["conclusion"] = json!(self.conclusion);
        r["run_attempt"] = json!(self.attempt);
        r["html_url"] = json!(format!("https://github.com/{repo}/actions/runs/{id}"));
        r["url"] = json!(format!(
            "https://api.github.com/repos/{repo}/actions/runs/{id}"
        ));
        if let Some(at) = self.created_at {
            r["created_at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            r["run_started_at"] = r["created_at"].clone();
        }
        for edit in self.edits {
            edit(&mut p);
        }
        p
    }

    pub fn body(self) -> Vec<u8> {
        serde_json::to_vec(&self.json()).unwrap()
    }
}

/// A `workflow_job` delivery. Defaults: job 1 of run 1 of `trunk` on pytorch/pytorch, on
/// `main`, attempt 1, the status GitHub sends with the action.
#[must_use]
pub struct JobEvent {
    action: String,
    id: u64,
    run_id: u64,
    sha: String,
    name: String,
    workflow: String,
    branch: Option<String>,
    status: Option<String>,
    conclusion: Option<String>,
    attempt: u32,
    repo: String,
    edits: Vec<Edit>,
}

impl JobEvent {
    pub fn new(action: &str, sha: &str, name: &str) -> JobEvent {
        JobEvent {
            action: action.into(),
            id: 1,
            run_id: 1,
            sha: sha.into(),
            name: name.into(),
            workflow: "trunk".into(),
            branch: Some("main".into()),
            status: None,
            conclusion: None,
            attempt: 1,
            repo: REPO.into(),
            edits: vec![],
        }
    }

    pub fn queued(sha: &str, name: &str) -> JobEvent {
        JobEvent::new("queued", sha, name)
    }

    pub fn completed(sha: &str, name: &str, conclusion: &str) -> JobEvent {
        JobEvent::new("completed", sha, name).conclusion(conclusion)
    }

    /// A job of a restart's run: on the tag `trunk/<sha>`.
    pub fn restart(self) -> JobEvent {
        let tag = format!("trunk/{}", self.sha);
        self.branch(&tag)
    }

    pub fn id(mut self, id: u64) -> JobEvent {
        self.id = id;
        self
    }

    pub fn run(mut self, run_id: u64) -> JobEvent {
        self.run_id = run_id;
        self
    }

    pub fn action(mut self, action: &str) -> JobEvent {
        self.action = action.into();
        self
    }

    pub fn conclusion(mut self, c: impl OptStr) -> JobEvent {
        self.conclusion = c.opt();
        self
    }

    pub fn status(mut self, status: &str) -> JobEvent {
        self.status = Some(status.into());
        self
    }

    pub fn branch(mut self, b: impl OptStr) -> JobEvent {
        self.branch = b.opt();
        self
    }

    /// The display name of the job's workflow (`workflow_name`).
    pub fn workflow(mut self, name: &str) -> JobEvent {
        self.workflow = name.into();
        self
    }

    pub fn attempt(mut self, n: u32) -> JobEvent {
        self.attempt = n;
        self
    }

    pub fn repo(mut self, repo: &str) -> JobEvent {
        self.repo = repo.into();
        self
    }

    pub fn edit(mut self, f: impl FnOnce(&mut Value) + 'static) -> JobEvent {
        self.edits.push(Box::new(f));
        self
    }

    pub fn json(self) -> Value {
        let name = match (self.action.as_str(), self.conclusion.as_deref()) {
            ("queued", _) => "workflow_job.queued.json",
            ("in_progress", _) => "workflow_job.in_progress.json",
            (_, Some("success")) => "workflow_job.completed.success.json",
            _ => "workflow_job.completed.failure.json",
        };
        let mut p = fixture(name);
        as_app_delivery(&mut p, &self.repo);
        p["action"] = json!(self.action);
        let (repo, id, run_id) = (&self.repo, self.id, self.run_id);
        let j = &mut p["workflow_job"];
        j["id"] = json!(id);
        j["run_id"] = json!(run_id);
        j["run_attempt"] = json!(self.attempt);
        j["head_sha"] = json!(self.sha);
        j["head_branch"] = json!(self.branch);
        j["name"] = json!(self.name);
        j["workflow_name"] = json!(self.workflow);
        j["status"] = json!(
            self.status
                .as_deref()
                .unwrap_or_else(|| status_of(&self.action))
        );
        j["conclusion"] = json!(self.conclusion);
        j["url"] = json!(format!(
            "https://api.github.com/repos/{repo}/actions/jobs/{id}"
        ));
        j["run_url"] = json!(format!(
            "https://api.github.com/repos/{repo}/actions/runs/{run_id}"
        ));
        j["html_url"] = json!(format!(
            "https://github.com/{repo}/actions/runs/{run_id}/job/{id}"
        ));
        for edit in self.edits {
            edit(&mut p);
        }
        p
    }

    pub fn body(self) -> Vec<u8> {
        serde_json::to_vec(&self.json()).unwrap()
    }
}

/// A REST job object (GET .../runs/{id}/jobs), from the real pytorch/pytorch response.
pub fn rest_job(id: u64, run_id: u64, sha: &str, name: &str, conclusion: &str) -> Value {
    let mut j = fixture("pytorch.list-jobs-for-run.response.json")["jobs"][0].clone();
    j["id"] = json!(id);
    j["run_id"] = json!(run_id);
    j["head_sha"] = json!(sha);
    j["name"] = json!(name);
    j["status"] = json!("completed");
    j["conclusion"] = json!(conclusion);
    j
}

/// A `push` of `commits` (oldest first) to `main` of pytorch/pytorch, from GitHub's example
/// push payload; `before` is the commit main pointed at.
pub fn push_body(before: &str, commits: &[&str]) -> Vec<u8> {
    let mut p = fixture("push.with-new-branch.json");
    as_app_delivery(&mut p, REPO);
    let template = p["commits"][0].clone();
    let after = commits.last().copied().unwrap_or(before);
    p["ref"] = json!("refs/heads/main");
    p["before"] = json!(before);
    p["after"] = json!(after);
    p["created"] = json!(false);
    p["repository"]["pushed_at"] = json!(Utc::now().timestamp());
    p["commits"] = Value::Array(
        commits
            .iter()
            .map(|sha| {
                let mut c = template.clone();
                c["id"] = json!(sha);
                c["tree_id"] = json!(sha);
                c
            })
            .collect(),
    );
    p["head_commit"] = p["commits"]
        .as_array()
        .and_then(|c| c.last())
        .cloned()
        .unwrap_or(Value::Null);
    serde_json::to_vec(&p).unwrap()
}

//! Our own narrow view of GitHub's webhook payloads. GitHub's JSON stops here: everything
//! past this module works on these types, never on `serde_json::Value`.
//!
//! Only the fields the App needs are read; unknown fields are ignored, nullable fields are
//! `Option`, and enum-like strings are enums that keep a value GitHub adds tomorrow as
//! data (`states`), not a parse failure.

use super::states::{Action, Conclusion, RunStatus, Trigger};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What one webhook delivery means to us. It is also what the delivery log keeps
/// (as JSON), so it must round-trip through serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    WorkflowRun(WorkflowRunEvent),
    WorkflowJob(WorkflowJobEvent),
    Push(PushEvent),
    Ping {
        zen: String,
    },
    /// An event type we do not subscribe to or act on (answered 202, recorded as ignored).
    Other {
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRunEvent {
    pub action: Action,
    pub repo: String,
    pub installation_id: Option<u64>,
    pub run: Run,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowJobEvent {
    pub action: Action,
    pub repo: String,
    pub installation_id: Option<u64>,
    pub job: Job,
}

/// A `push`: commits landing on a branch, oldest first (the order of main's commits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushEvent {
    pub repo: String,
    pub installation_id: Option<u64>,
    /// The full ref pushed (`refs/heads/main`, `refs/tags/...`).
    pub git_ref: String,
    pub before: String,
    pub after: String,
    /// The pushed commits' shas, oldest first (a ghstack push lands several).
    pub commits: Vec<String>,
    pub forced: bool,
    pub deleted: bool,
    /// When GitHub took the push (`repository.pushed_at`), if the payload says.
    pub pushed_at: Option<DateTime<Utc>>,
}

impl PushEvent {
    /// The branch pushed, if the ref is a branch.
    pub fn branch(&self) -> Option<&str> {
        self.git_ref.strip_prefix("refs/heads/")
    }

    /// The commits that landed, oldest first: the listed ones, or the new head alone when
    /// GitHub listed none (an empty list on a push that moved the branch).
    pub fn landed(&self) -> Vec<String> {
        if self.deleted || self.after.bytes().all(|b| b == b'0') {
            return Vec::new();
        }
        if self.commits.is_empty() {
            return vec![self.after.clone()];
        }
        self.commits.clone()
    }
}

/// A workflow run as the App sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: u64,
    /// Display name of the workflow (`trunk`); GitHub's schema allows null.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub name: String,
    /// `.github/workflows/trunk.yml`: the dispatch goes to this file's base name.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub path: String,
    pub head_sha: String,
    pub head_branch: Option<String>,
    #[serde(default)]
    pub event: Trigger,
    #[serde(default)]
    pub status: RunStatus,
    pub conclusion: Option<Conclusion>,
    #[serde(default = "one")]
    pub run_attempt: u32,
    #[serde(default)]
    pub workflow_id: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub html_url: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub url: String,
}

/// One job of a workflow run; also the row written to the `workflow_job` mirror.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub run_id: u64,
    #[serde(default = "one")]
    pub run_attempt: u32,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub workflow_name: String,
    pub head_sha: String,
    pub head_branch: Option<String>,
    #[serde(default)]
    pub status: RunStatus,
    pub conclusion: Option<Conclusion>,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub url: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub html_url: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub run_url: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub check_run_url: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub node_id: String,
    pub runner_id: Option<i64>,
    pub runner_name: Option<String>,
    pub runner_group_id: Option<i64>,
    pub runner_group_name: Option<String>,
    #[serde(default)]
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub name: String,
    #[serde(default)]
    pub number: i64,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub status: String,
    pub conclusion: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

fn one() -> u32 {
    1
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

// ---- wire shapes (private): only the envelope fields we read ----

#[derive(Deserialize)]
struct RepoRef {
    full_name: String,
}

#[derive(Deserialize)]
struct InstallationRef {
    id: u64,
}

/// A `workflow_run` or `workflow_job` delivery: its envelope and the run or job.
#[derive(Deserialize)]
struct Payload<T> {
    action: Action,
    repository: RepoRef,
    installation: Option<InstallationRef>,
    #[serde(rename = "workflow_run", alias = "workflow_job")]
    subject: T,
}

impl<T: serde::de::DeserializeOwned> Payload<T> {
    fn parse(body: &[u8]) -> Result<(Action, String, Option<u64>, T), serde_json::Error> {
        let p: Payload<T> = serde_json::from_slice(body)?;
        let installation = p.installation.map(|i| i.id);
        Ok((p.action, p.repository.full_name, installation, p.subject))
    }
}

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    #[serde(default)]
    commits: Vec<PushCommit>,
    #[serde(default)]
    forced: bool,
    #[serde(default)]
    deleted: bool,
    repository: PushRepo,
    installation: Option<InstallationRef>,
}

#[derive(Deserialize)]
struct PushCommit {
    id: String,
}

/// A push payload's repository: `pushed_at` is a Unix timestamp there.
#[derive(Deserialize)]
struct PushRepo {
    full_name: String,
    pushed_at: Option<serde_json::Value>,
}

impl PushPayload {
    fn into_event(self) -> PushEvent {
        let pushed_at = match self.repository.pushed_at {
            Some(serde_json::Value::Number(n)) => n
                .as_i64()
                .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0)),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        PushEvent {
            repo: self.repository.full_name,
            installation_id: self.installation.map(|i| i.id),
            git_ref: self.git_ref,
            before: self.before,
            after: self.after,
            commits: self.commits.into_iter().map(|c| c.id).collect(),
            forced: self.forced,
            deleted: self.deleted,
            pushed_at,
        }
    }
}

#[derive(Deserialize)]
struct PingPayload {
    #[serde(default)]
    zen: String,
}

/// Why a body is not the JSON its event needs (answered 400).
#[derive(Debug, thiserror::Error)]
#[error("body is not a valid `{event}` payload: {source}")]
pub struct ParseError {
    pub event: String,
    #[source]
    pub source: serde_json::Error,
}

/// Parses a delivery body according to its `X-GitHub-Event` name.
pub fn parse(event_name: &str, body: &[u8]) -> Result<Event, ParseError> {
    let err = |source| ParseError {
        event: event_name.to_string(),
        source,
    };
    Ok(match event_name {
        "workflow_run" => {
            let (action, repo, installation_id, run) = Payload::parse(body).map_err(err)?;
            Event::WorkflowRun(WorkflowRunEvent {
                action,
                repo,
                installation_id,
                run,
            })
        }
        "workflow_job" => {
            let (action, repo, installation_id, job) = Payload::parse(body).map_err(err)?;
            Event::WorkflowJob(WorkflowJobEvent {
                action,
                repo,
                installation_id,
                job,
            })
        }
        "push" => {
            let p: PushPayload = serde_json::from_slice(body).map_err(err)?;
            Event::Push(p.into_event())
        }
        "ping" => {
            let p: PingPayload = serde_json::from_slice(body).map_err(err)?;
            Event::Ping { zen: p.zen }
        }
        other => {
            // Still must be JSON: a body that is not JSON at all is a broken delivery.
            serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(err)?;
            Event::Other {
                name: other.to_string(),
            }
        }
    })
}

impl Event {
    /// The `(repository, head_sha)` this event concerns, used to serialize work per commit.
    pub fn commit_key(&self) -> Option<(&str, &str)> {
        match self {
            Event::WorkflowRun(e) => Some((&e.repo, &e.run.head_sha)),
            Event::WorkflowJob(e) => Some((&e.repo, &e.job.head_sha)),
            Event::Push(e) => Some((&e.repo, &e.after)),
            _ => None,
        }
    }

    pub fn action(&self) -> Option<&Action> {
        match self {
            Event::WorkflowRun(e) => Some(&e.action),
            Event::WorkflowJob(e) => Some(&e.action),
            _ => None,
        }
    }

    pub fn installation_id(&self) -> Option<u64> {
        match self {
            Event::WorkflowRun(e) => e.installation_id,
            Event::WorkflowJob(e) => e.installation_id,
            Event::Push(e) => e.installation_id,
            _ => None,
        }
    }

    pub fn repo(&self) -> &str {
        self.commit_key().map(|(r, _)| r).unwrap_or("")
    }
}

/// `.github/workflows/trunk.yml` -> `trunk.yml` (the dispatch API takes the file name).
pub fn workflow_file(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_event_must_still_be_json() {
        assert!(matches!(parse("issues", b"{}"), Ok(Event::Other { .. })));
        assert!(parse("issues", b"{").is_err());
    }

    /// The delivery log stores events as JSON: every fixture must come back unchanged.
    #[test]
    fn events_round_trip_through_the_delivery_log_encoding() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/github");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("fixtures/github") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let event = if name.starts_with("workflow_run") {
                "workflow_run"
            } else if name.starts_with("workflow_job") {
                "workflow_job"
            } else if name.starts_with("push") {
                "push"
            } else {
                continue;
            };
            let body = std::fs::read(&path).expect("fixture");
            let parsed = parse(event, &body).expect("fixture parses");
            let json = serde_json::to_vec(&parsed).expect("serializes");
            let back: Event = serde_json::from_slice(&json).expect("deserializes");
            assert_eq!(back, parsed, "{name}");
            assert!(
                json.len() * 3 < body.len(),
                "{name}: {} -> {}",
                body.len(),
                json.len()
            );
            seen += 1;
        }
        assert!(seen >= 2, "no workflow fixtures found in {dir}");
    }

    #[test]
    fn a_push_lists_its_commits_oldest_first() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/github");
        let body = std::fs::read(format!("{dir}/push.with-new-branch.json")).expect("fixture");
        let Event::Push(p) = parse("push", &body).expect("parses") else {
            panic!("not a push")
        };
        assert_eq!(p.repo, "Codertocat/Hello-World");
        assert_eq!(p.branch(), Some("master"));
        assert_eq!(p.installation_id, Some(1));
        assert_eq!(
            p.landed(),
            vec!["6113728f27ae82c7b1a177c8d03f9e96e0adf246".to_string()]
        );
        assert_eq!(p.pushed_at.map(|t| t.timestamp()), Some(1557933657));
        let body = std::fs::read(format!("{dir}/push.deleted-tag.json")).expect("fixture");
        let Event::Push(p) = parse("push", &body).expect("parses") else {
            panic!("not a push")
        };
        assert_eq!(p.branch(), None);
        assert!(p.landed().is_empty(), "a deleted ref lands nothing");
    }

    #[test]
    fn workflow_run_needs_its_object() {
        let e = parse("workflow_run", br#"{"action":"completed"}"#).unwrap_err();
        assert!(e.to_string().contains("workflow_run"), "{e}");
    }
}

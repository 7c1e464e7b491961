//! Rows of the local mirror of PyTorch's `workflow_run` and `workflow_job` tables (written
//! only when ingestion is on; columns as in PyTorch's DDL).

use crate::intake::events::{Job, Run};
use chrono::{DateTime, Utc};
use clickhouse::Row;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct MirrorRunRow {
    id: i64,
    name: String,
    event: String,
    head_sha: String,
    head_branch: String,
    status: String,
    conclusion: String,
    path: String,
    run_attempt: i64,
    workflow_id: i64,
    created_at: i64,
    updated_at: i64,
    html_url: String,
    url: String,
    repository_full_name: String,
    #[serde(rename = "dynamoKey")]
    dynamo_key: String,
}

type StepTuple = (i64, String, String, i64, i64, String);

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct MirrorJobRow {
    check_run_url: String,
    completed_at: i64,
    conclusion: String,
    created_at: i64,
    #[serde(rename = "dynamoKey")]
    dynamo_key: String,
    head_branch: String,
    head_sha: String,
    html_url: String,
    id: i64,
    labels: Vec<String>,
    name: String,
    node_id: String,
    run_attempt: i64,
    run_id: i64,
    run_url: String,
    runner_group_id: i64,
    runner_group_name: String,
    runner_id: i64,
    runner_name: String,
    started_at: i64,
    status: String,
    steps: Vec<StepTuple>,
    url: String,
    workflow_name: String,
}

fn nanos(t: Option<DateTime<Utc>>) -> i64 {
    t.and_then(|t| t.timestamp_nanos_opt()).unwrap_or(0)
}

impl MirrorRunRow {
    pub fn new(repo: &str, r: &Run) -> Self {
        MirrorRunRow {
            id: r.id as i64,
            name: r.name.clone(),
            event: r.event.to_string(),
            head_sha: r.head_sha.clone(),
            head_branch: r.head_branch.clone().unwrap_or_default(),
            status: r.status.to_string(),
            conclusion: text(r.conclusion.as_ref()),
            path: r.path.clone(),
            run_attempt: r.run_attempt as i64,
            workflow_id: r.workflow_id as i64,
            created_at: nanos(Some(r.created_at)),
            updated_at: nanos(r.updated_at),
            html_url: r.html_url.clone(),
            url: r.url.clone(),
            repository_full_name: repo.to_string(),
            dynamo_key: format!("{repo}/{}", r.id),
        }
    }
}

impl MirrorJobRow {
    pub fn new(repo: &str, j: &Job) -> Self {
        MirrorJobRow {
            check_run_url: j.check_run_url.clone(),
            completed_at: nanos(j.completed_at),
            conclusion: text(j.conclusion.as_ref()),
            created_at: nanos(j.created_at),
            dynamo_key: format!("{repo}/{}", j.id),
            head_branch: j.head_branch.clone().unwrap_or_default(),
            head_sha: j.head_sha.clone(),
            html_url: j.html_url.clone(),
            id: j.id as i64,
            labels: j.labels.clone(),
            name: j.name.clone(),
            node_id: j.node_id.clone(),
            run_attempt: j.run_attempt as i64,
            run_id: j.run_id as i64,
            run_url: j.run_url.clone(),
            runner_group_id: j.runner_group_id.unwrap_or(0),
            runner_group_name: j.runner_group_name.clone().unwrap_or_default(),
            runner_id: j.runner_id.unwrap_or(0),
            runner_name: j.runner_name.clone().unwrap_or_default(),
            started_at: nanos(j.started_at),
            status: j.status.to_string(),
            steps: j
                .steps
                .iter()
                .map(|s| {
                    (
                        nanos(s.completed_at),
                        s.conclusion.clone().unwrap_or_default(),
                        s.name.clone(),
                        s.number,
                        nanos(s.started_at),
                        s.status.clone(),
                    )
                })
                .collect(),
            url: j.url.clone(),
            workflow_name: j.workflow_name.clone(),
        }
    }
}

/// An optional value as the mirror stores it: its text, or empty.
fn text(v: Option<&impl std::fmt::Display>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

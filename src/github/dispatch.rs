//! The dispatch protocol: one POST of `workflow_dispatch` on `trunk/<sha>`, never retried
//! here. An unknown outcome (5xx, timeout) is reported as such, and the caller lists the
//! runs on `trunk/<sha>` before sending anything again.

use super::GitHub;
use super::transport::{Client, error_chain, github_message};
use anyhow::Result;
use http::StatusCode;
use serde::Deserialize;

/// What a dispatch POST came to.
#[derive(Debug, Clone, PartialEq)]
pub enum DispatchResult {
    /// 200 with the new run (`return_run_details: true`).
    Created { run_id: u64, html_url: String },
    /// 204: accepted, run id not returned (GitHub without `return_run_details`).
    Accepted,
    /// 4xx: GitHub refused; nothing was created. `message` is GitHub's own text.
    Rejected { status: u16, message: String },
    /// 5xx, timeout or transport error: a run may or may not have been created.
    Unknown { reason: String },
    /// Nothing reached GitHub (no installation token could be had: GitHub unreachable or
    /// refusing the App), so nothing was created and sending later is safe.
    NotSent { reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct DispatchRequest {
    pub repo: String,
    pub workflow_file: String,
    pub git_ref: String,
    pub inputs: Option<serde_json::Value>,
}

impl DispatchRequest {
    pub fn route(&self) -> String {
        format!(
            "/repos/{}/actions/workflows/{}/dispatches",
            self.repo, self.workflow_file
        )
    }

    pub fn body(&self, return_run_details: bool) -> serde_json::Value {
        let mut body = serde_json::json!({ "ref": self.git_ref });
        if let Some(inputs) = &self.inputs {
            body["inputs"] = inputs.clone();
        }
        if return_run_details {
            body["return_run_details"] = serde_json::Value::Bool(true);
        }
        body
    }
}

#[derive(Deserialize)]
struct DispatchDetails {
    workflow_run_id: u64,
    #[serde(default)]
    html_url: String,
}

impl GitHub {
    /// Sends the dispatch POST once (twice only when GitHub refused the request outright as
    /// not understanding `return_run_details`, as GHES <= 3.20 does: nothing was created).
    pub async fn dispatch(
        &self,
        req: &DispatchRequest,
        installation: Option<u64>,
    ) -> Result<DispatchResult> {
        let client = self.client_for(&req.repo, installation).await?;
        let first = post_once(&client, &req.route(), &req.body(true)).await;
        if let DispatchResult::Rejected {
            status: 400 | 422,
            message,
        } = &first
            && message.contains("return_run_details")
        {
            return Ok(post_once(&client, &req.route(), &req.body(false)).await);
        }
        Ok(first)
    }
}

async fn post_once(client: &Client, route: &str, body: &serde_json::Value) -> DispatchResult {
    let (status, text) = match client.post(route, Some(body)).await {
        Ok(answer) => answer,
        Err(e) => {
            return DispatchResult::Unknown {
                reason: format!("no answer from GitHub: {}", error_chain(&e)),
            };
        }
    };
    let text = match text {
        Ok(t) => t,
        Err(e) if status.is_success() => {
            return DispatchResult::Unknown {
                reason: format!("GitHub answered {status} but the body was lost: {e}"),
            };
        }
        Err(_) => String::new(),
    };
    match status {
        StatusCode::NO_CONTENT => DispatchResult::Accepted,
        s if s.is_success() => match serde_json::from_str::<DispatchDetails>(&text) {
            Ok(d) => DispatchResult::Created {
                run_id: d.workflow_run_id,
                html_url: d.html_url,
            },
            Err(_) => DispatchResult::Accepted,
        },
        s if s.is_client_error() => DispatchResult::Rejected {
            status: s.as_u16(),
            message: github_message(&text),
        },
        s => DispatchResult::Unknown {
            reason: format!("GitHub answered {s}: {}", github_message(&text)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_body_asks_for_run_details() {
        let req = DispatchRequest {
            repo: "pytorch/pytorch".into(),
            workflow_file: "trunk.yml".into(),
            git_ref: "trunk/abc".into(),
            inputs: None,
        };
        assert_eq!(
            req.body(true),
            serde_json::json!({"ref": "trunk/abc", "return_run_details": true})
        );
        assert_eq!(
            req.route(),
            "/repos/pytorch/pytorch/actions/workflows/trunk.yml/dispatches"
        );
    }
}

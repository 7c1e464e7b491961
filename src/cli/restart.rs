//! `autorevert restart`: a manual dispatch on `trunk/<sha>`.

use super::check_sha;
use crate::config::GitHubArgs;
use crate::github::{DispatchRequest, DispatchResult, GitHub};
use crate::restart::trunk_ref;
use anyhow::{Result, bail};
use std::process::ExitCode;

pub async fn run(
    workflow: String,
    sha: String,
    repo: String,
    dry_run: bool,
    github: GitHubArgs,
) -> Result<ExitCode> {
    check_sha(&sha)?;
    let gh = match github.validate()? {
        Some(cfg) => Some(GitHub::new(&cfg)?),
        None if dry_run => None,
        None => {
            bail!("no GitHub credentials: set GITHUB_TOKEN, or GITHUB_APP_ID with its private key")
        }
    };
    let file = match &gh {
        Some(gh) => gh.resolve_workflow(&repo, &workflow).await?,
        None => workflow.clone(),
    };
    let req = DispatchRequest {
        repo: repo.clone(),
        workflow_file: file.clone(),
        git_ref: trunk_ref(&sha),
        inputs: None,
    };
    println!("POST {}", req.route());
    println!("{}", serde_json::to_string_pretty(&req.body(true))?);
    match &gh {
        Some(gh) => match gh.workflow_inputs(&repo, &file, &req.git_ref, None).await {
            Ok(None) => println!(
                "warning: {file} at {} has no workflow_dispatch trigger; GitHub will refuse",
                req.git_ref
            ),
            Ok(Some(inputs)) if inputs.is_empty() => {
                println!("dispatch inputs declared by {file}: none")
            }
            Ok(Some(inputs)) => {
                println!("dispatch inputs declared by {file}: {}", inputs.join(", "))
            }
            Err(e) => println!("dispatch inputs: unknown ({e:#})"),
        },
        None => println!("dispatch inputs: unknown (no GitHub credentials)"),
    }
    if dry_run {
        println!("dry run: nothing sent");
        return Ok(ExitCode::SUCCESS);
    }
    let gh = gh.expect("checked above");
    match gh.dispatch(&req, None).await? {
        DispatchResult::Created { run_id, html_url } => {
            println!("dispatched: run {run_id} {html_url}");
            Ok(ExitCode::SUCCESS)
        }
        DispatchResult::Accepted => {
            println!(
                "dispatched (GitHub returned no run id); runs on {}: see the Actions tab",
                req.git_ref
            );
            Ok(ExitCode::SUCCESS)
        }
        DispatchResult::Rejected { status, message } => {
            bail!("GitHub refused the dispatch ({status}): {message}")
        }
        DispatchResult::Unknown { reason } => bail!(
            "outcome unknown ({reason}); look for a run on {} before trying again",
            req.git_ref
        ),
        DispatchResult::NotSent { reason } => bail!("not sent: {reason}"),
    }
}

//! The kill switch: an open issue carrying the label stops all restarts, but only when the
//! user who applied the label has write, maintain or admin permission.

use super::GitHub;
use super::transport::{Client, url_escape};
use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::HashMap;

/// An open issue that switches restarts off, and who switched it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KillSwitch {
    pub issue: u64,
    pub labelled_by: String,
    pub permission: String,
}

impl std::fmt::Display for KillSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "issue #{} labelled by @{} ({})",
            self.issue, self.labelled_by, self.permission
        )
    }
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct Login {
    login: String,
}

#[derive(Deserialize)]
struct IssueEvent {
    event: String,
    label: Option<Named>,
    actor: Option<Login>,
}

#[derive(Deserialize)]
struct Permission {
    permission: String,
    #[serde(default)]
    role_name: String,
}

/// The role that counts for the kill switch, if the user's permission grants it: write,
/// maintain or admin (GitHub reports maintain as `write` with the role name `maintain`).
fn switching_role(p: &Permission) -> Option<String> {
    let role = if p.role_name.is_empty() {
        p.permission.clone()
    } else {
        p.role_name.clone()
    };
    let allowed = matches!(p.permission.as_str(), "admin" | "write")
        || matches!(role.as_str(), "admin" | "maintain" | "write");
    allowed.then_some(role)
}

/// Pages of open labelled issues read (100 each). More than that is not read to the end, so
/// the switch's state is unknown: an attacker's flood of labelled issues must not push a
/// writer's switch out of sight.
pub const MAX_ISSUE_PAGES: u32 = 10;

/// Pages of one issue's events read (100 each) to find who applied the label last.
pub const MAX_EVENT_PAGES: u32 = 10;

impl GitHub {
    /// The kill switch of `repo`, if an open issue carries `label` and the user who applied
    /// the label (the latest `labeled` event for it) may switch restarts off. Anyone can open
    /// an issue from a template that applies labels; PyTorch's autorevert was switched off
    /// for 15 hours that way (pytorch/test-infra#8229).
    ///
    /// Every open labelled issue is read (all pages, up to `MAX_ISSUE_PAGES`). An error
    /// means the state is unknown: listing the issues, or any issue's events or labeller's
    /// permission failed (a switch found elsewhere is still reported as on).
    pub async fn kill_switch(
        &self,
        repo: &str,
        label: &str,
        installation: Option<u64>,
    ) -> Result<Option<KillSwitch>> {
        let client = self.client_for(repo, installation).await?;
        let route = format!(
            "/repos/{repo}/issues?labels={}&state=open&per_page=100",
            url_escape(label)
        );
        let issues: Vec<Issue> = client
            .get_all(&route, MAX_ISSUE_PAGES)
            .await
            .with_context(|| format!("listing the open issues labelled {label:?}"))?;
        // Permission by login, looked up once per lookup (one user may label many issues).
        let mut roles: HashMap<String, Option<String>> = HashMap::new();
        let mut failed = None;
        for issue in issues {
            match switched_by(&client, repo, issue.number, label, &mut roles).await {
                Ok(Some(ks)) => return Ok(Some(ks)),
                Ok(None) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }
}

/// The switch an issue stands for, if its labeller may switch restarts off.
async fn switched_by(
    client: &Client,
    repo: &str,
    issue: u64,
    label: &str,
    roles: &mut HashMap<String, Option<String>>,
) -> Result<Option<KillSwitch>> {
    let route = format!("/repos/{repo}/issues/{issue}/events?per_page=100");
    let events: Vec<IssueEvent> = client
        .get_all(&route, MAX_EVENT_PAGES)
        .await
        .with_context(|| format!("reading who labelled issue #{issue}"))?;
    let Some(user) = labelled_by(events, label) else {
        return Ok(None);
    };
    let role = match roles.get(&user) {
        Some(role) => role.clone(),
        None => {
            let route = format!("/repos/{repo}/collaborators/{user}/permission");
            let p: Permission = client.get_json(&route).await.with_context(|| {
                format!("looking up the permission of @{user}, who labelled issue #{issue}")
            })?;
            let role = switching_role(&p);
            if role.is_none() {
                tracing::warn!(
                    repo,
                    issue,
                    user,
                    permission = p.permission,
                    "kill-switch label applied by a user without write permission: ignored"
                );
            }
            roles.insert(user.clone(), role.clone());
            role
        }
    };
    Ok(role.map(|permission| KillSwitch {
        issue,
        labelled_by: user,
        permission,
    }))
}

/// Who applied `label` last, from an issue's events (oldest first).
fn labelled_by(events: Vec<IssueEvent>, label: &str) -> Option<String> {
    events
        .into_iter()
        .rev()
        .find(|e| e.event == "labeled" && e.label.as_ref().is_some_and(|l| l.name == label))
        .and_then(|e| e.actor)
        .map(|a| a.login)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(permission: &str, role: &str) -> Permission {
        Permission {
            permission: permission.into(),
            role_name: role.into(),
        }
    }

    #[test]
    fn only_writers_maintainers_and_admins_switch_restarts_off() {
        assert_eq!(
            switching_role(&p("admin", "admin")).as_deref(),
            Some("admin")
        );
        assert_eq!(
            switching_role(&p("write", "maintain")).as_deref(),
            Some("maintain")
        );
        assert_eq!(switching_role(&p("write", "")).as_deref(), Some("write"));
        assert_eq!(switching_role(&p("read", "triage")), None);
        assert_eq!(switching_role(&p("none", "none")), None);
    }

    #[test]
    fn the_latest_labelling_counts() {
        let e = |event: &str, label: &str, by: &str| IssueEvent {
            event: event.into(),
            label: Some(Named { name: label.into() }),
            actor: Some(Login { login: by.into() }),
        };
        let label = "ci: disable-autorevert";
        let events = vec![
            e("labeled", label, "oncall"),
            e("unlabeled", label, "oncall"),
            e("labeled", label, "drive-by"),
            e("labeled", "other", "someone"),
            e("mentioned", label, "bot"),
        ];
        assert_eq!(labelled_by(events, label).as_deref(), Some("drive-by"));
        assert_eq!(labelled_by(vec![e("labeled", "other", "x")], label), None);
    }
}

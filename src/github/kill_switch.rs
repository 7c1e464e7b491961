//! The kill switch: an open issue carrying the label stops all restarts, but only when the
//! user who applied the label has write, maintain or admin permission.

use super::GitHub;
use super::transport::{get_json, url_escape};
use anyhow::Result;
use octocrab::Octocrab;
use serde::Deserialize;

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

impl GitHub {
    /// The kill switch of `repo`, if an open issue carries `label` and the user who applied
    /// the label (the latest `labeled` event for it) may switch restarts off. Anyone can open
    /// an issue from a template that applies labels; PyTorch's autorevert was switched off
    /// for 15 hours that way (pytorch/test-infra#8229).
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
        let issues: Vec<Issue> = get_json(&client, &route).await?;
        for issue in issues {
            let Some(user) = labelled_by(&client, repo, issue.number, label).await? else {
                continue;
            };
            let route = format!("/repos/{repo}/collaborators/{user}/permission");
            let p: Permission = get_json(&client, &route).await?;
            if let Some(permission) = switching_role(&p) {
                return Ok(Some(KillSwitch {
                    issue: issue.number,
                    labelled_by: user,
                    permission,
                }));
            }
            tracing::warn!(
                repo,
                issue = issue.number,
                user,
                permission = p.permission,
                "kill-switch label applied by a user without write permission: ignored"
            );
        }
        Ok(None)
    }
}

/// Who applied `label` to an issue last (its issue events, up to 1,000).
async fn labelled_by(
    client: &Octocrab,
    repo: &str,
    issue: u64,
    label: &str,
) -> Result<Option<String>> {
    let mut by = None;
    for page in 1..=10u32 {
        let route = format!("/repos/{repo}/issues/{issue}/events?per_page=100&page={page}");
        let events: Vec<IssueEvent> = get_json(client, &route).await?;
        let n = events.len();
        for e in events {
            if e.event == "labeled" && e.label.as_ref().is_some_and(|l| l.name == label) {
                by = e.actor.map(|a| a.login);
            }
        }
        if n < 100 {
            break;
        }
    }
    Ok(by)
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
}

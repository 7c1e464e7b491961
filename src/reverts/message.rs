//! Commit messages and comment bodies: the PR a commit message names (PyTorch's merge bot
//! writes `Pull Request resolved: https://github.com/{repo}/pull/N`, its reverts
//! `Reverted https://github.com/{repo}/pull/N`), the `@pytorchbot revert` comment, the
//! notify comment, and the hidden marker both end with, by which the App finds its own
//! comment again before posting (a POST whose answer was lost must not be sent twice).

use super::model::{Culprit, Evidence, Reason};

/// The PR label that opts a PR out of automatic reverts.
pub const DISABLE_LABEL: &str = "autorevert: disable";

/// Entries listed in a comment; the rest are counted (GitHub caps a body at 65,536 chars).
const MAX_LISTED: usize = 40;

/// The hidden line that marks the App's comment about `sha`.
pub fn marker(sha: &str) -> String {
    format!("<!-- autorevert:{sha} -->")
}

/// The number after the last `{prefix}https://github.com/{repo}/pull/` in `message`
/// (the repository compared without regard to case, as GitHub's URLs are).
fn last_pr_after(message: &str, prefix: &str, repo: &str) -> Option<u64> {
    let needle = format!("{prefix}https://github.com/{repo}/pull/").to_ascii_lowercase();
    let haystack = message.to_ascii_lowercase();
    haystack
        .match_indices(&needle)
        .filter_map(|(at, _)| {
            let digits: String = haystack[at + needle.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .last()
}

/// The PR a merge commit came from: the last `Pull Request resolved:` line naming `repo`.
pub fn pr_from_message(message: &str, repo: &str) -> Option<u64> {
    last_pr_after(message, "Pull Request resolved: ", repo)
}

/// The PR a revert commit reverts: the last `Reverted https://github.com/{repo}/pull/N`.
pub fn reverted_pr(message: &str, repo: &str) -> Option<u64> {
    last_pr_after(message, "Reverted ", repo)
}

/// Whether the commit is itself a revert: the merge bot's `Reverted …/pull/N` line, or a
/// subject starting `Revert "` (git's own revert message).
pub fn is_revert(message: &str, repo: &str) -> bool {
    reverted_pr(message, repo).is_some() || message.trim_start().starts_with("Revert \"")
}

/// `text` as one line inside double quotes of a bot command: no line breaks, `\` and `"`
/// escaped.
fn quoted(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    format!(
        "\"{}\"",
        one_line.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

/// Markdown link text: brackets escaped.
fn link_text(text: &str) -> String {
    text.replace('[', "\\[").replace(']', "\\]")
}

fn short(sha: &str) -> &str {
    sha.get(..8).unwrap_or(sha)
}

/// The evidence, grouped by workflow (in the order the signals come), with links.
fn evidence_list(culprit: &Culprit) -> String {
    let mut workflows: Vec<(&str, Vec<&Evidence>)> = Vec::new();
    for e in culprit.signals.iter().take(MAX_LISTED) {
        match workflows.iter_mut().find(|(w, _)| *w == e.workflow) {
            Some((_, list)) => list.push(e),
            None => workflows.push((&e.workflow, vec![e])),
        }
    }
    let mut out = String::new();
    for (workflow, list) in workflows {
        out.push_str(&format!("- **{}**\n", link_text(workflow)));
        for e in list {
            out.push_str(&format!(
                "  - [{}]({}): {}\n",
                link_text(&e.job),
                e.failing_job_url,
                e.restart_evidence.trim()
            ));
        }
    }
    let rest = culprit.signals.len().saturating_sub(MAX_LISTED);
    if rest > 0 {
        out.push_str(&format!("- … and {rest} more signals\n"));
    }
    out
}

/// The `-m` text: why, the first failing job's link, and how to opt out.
fn revert_reason(culprit: &Culprit) -> String {
    let first = culprit.signals.first().map(|e| {
        format!(
            ": {} ({}) failed again on {} in restarts while its parent passed, {}",
            e.job,
            e.workflow,
            short(&culprit.sha),
            e.failing_job_url
        )
    });
    let more = match culprit.signals.len() {
        0 | 1 => String::new(),
        n => format!(", and {} more signals", n - 1),
    };
    format!(
        "Reverted automatically by autorevert{}{more}; to opt out add the label {DISABLE_LABEL}",
        first.unwrap_or_default()
    )
}

/// The revert comment pytorchbot acts on, for the culprit's PR: the command on its first
/// line, then the evidence and the marker.
pub fn revert_comment(culprit: &Culprit) -> String {
    format!(
        "@pytorchbot revert -m {} -c autorevert\n\n\
         This PR is attributed to have caused regression in:\n{}\n\
         Please investigate and fix the issues.\n\n{}\n",
        quoted(&revert_reason(culprit)),
        evidence_list(culprit),
        marker(&culprit.sha)
    )
}

/// The comment on the notify issue: the culprit, its PR if known, why it is not reverted,
/// the same evidence, and the marker.
pub fn notify_comment(culprit: &Culprit, pr: Option<u64>, why: Reason) -> String {
    let commit = format!(
        "[{}](https://github.com/{}/commit/{})",
        short(&culprit.sha),
        culprit.repo,
        culprit.sha
    );
    let from = pr.map(|n| format!(" from PR #{n}")).unwrap_or_default();
    format!(
        "Autorevert detected a possible offender: {commit}{from}. {} (`{why}`)\n\n\
         This commit is attributed to have caused regression in:\n{}\n{}\n",
        why.describe(),
        evidence_list(culprit),
        marker(&culprit.sha)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: &str = "pytorch/pytorch";
    const SHA: &str = "2d3615f577894c7a117a55e85bb8371bb598ec50";

    /// A merge as PyTorch's merge bot writes it.
    const MERGE: &str = "[inductor] Fix a stride bug in mm lowering (#160001)

The lowering dropped the stride of the second operand. Follows up on
https://github.com/pytorch/pytorch/pull/159000 (Pull Request resolved elsewhere).

Test Plan: python test/inductor/test_mm.py

Pull Request resolved: https://github.com/pytorch/pytorch/pull/160001
Approved by: https://github.com/eellison
";

    /// A ghstack commit: the stack lists other PRs as `#N`; its own line is the last.
    const GHSTACK: &str = "[dynamo] Trace through functools.partial (#160003)

Stack from [ghstack](https://github.com/ezyang/ghstack) (oldest at bottom):
* #160004
* __->__ #160003
* #160002

ghstack-source-id: 3f9a1c2b7e
Pull Request resolved: https://github.com/pytorch/pytorch/pull/160002
Pull Request resolved: https://github.com/pytorch/pytorch/pull/160003
Approved by: https://github.com/anijain2305
ghstack dependencies: #160002
";

    /// A revert as PyTorch's merge bot writes it.
    const REVERT: &str = "Revert \"[inductor] Fix a stride bug in mm lowering (#160001)\"

This reverts commit 2d3615f577894c7a117a55e85bb8371bb598ec50.

Reverted https://github.com/pytorch/pytorch/pull/160001 on behalf of https://github.com/pytorch-auto-revert due to Reverted automatically ([comment](https://github.com/pytorch/pytorch/pull/160001#issuecomment-1))
";

    fn culprit(signals: usize) -> Culprit {
        let workflows = ["trunk", "pull", "trunk"];
        Culprit {
            repo: REPO.into(),
            sha: SHA.into(),
            signals: (0..signals)
                .map(|i| Evidence {
                    workflow: workflows[i % 3].into(),
                    job: format!("linux-jammy / test (\"default\", {i}) [x]"),
                    failing_job_url: Evidence::job_url(REPO, 100 + i as u64, 200 + i as u64),
                    run_id: 100 + i as u64,
                    job_id: 200 + i as u64,
                    restart_evidence: format!(
                        "suspect failed {}×, parent passed 2× in paired restarts",
                        i + 3
                    ),
                })
                .collect(),
        }
    }

    #[test]
    fn the_pr_of_a_merge_a_ghstack_commit_and_a_revert() {
        assert_eq!(pr_from_message(MERGE, REPO), Some(160001));
        assert_eq!(reverted_pr(MERGE, REPO), None);
        assert!(!is_revert(MERGE, REPO));
        assert_eq!(pr_from_message(GHSTACK, REPO), Some(160003));
        assert!(!is_revert(GHSTACK, REPO));
        assert_eq!(reverted_pr(REVERT, REPO), Some(160001));
        assert_eq!(pr_from_message(REVERT, REPO), None);
        assert!(is_revert(REVERT, REPO));
    }

    #[test]
    fn other_repositories_and_lookalikes_name_no_pr() {
        let other = "Pull Request resolved: https://github.com/pytorch/vision/pull/9\n\
                     Pull Request resolved: https://github.com/pytorch/pytorch-foo/pull/8\n\
                     Pull Request resolved: https://github.com/pytorch/pytorch/pull/\n\
                     see #160001";
        assert_eq!(pr_from_message(other, REPO), None);
        assert_eq!(pr_from_message("", REPO), None);
        let shouted = "Pull Request resolved: https://github.com/PyTorch/PyTorch/pull/42\n";
        assert_eq!(pr_from_message(shouted, REPO), Some(42));
        assert!(is_revert(
            "  Revert \"Fix\"\n\nThis reverts commit abc.",
            REPO
        ));
        assert!(!is_revert("Reverting the revert of foo", REPO));
        assert!(!is_revert("Revert foo without quotes", REPO));
    }

    #[test]
    fn the_revert_comment_starts_with_the_command_and_escapes_its_message() {
        let body = revert_comment(&culprit(1));
        let first = body.lines().next().unwrap();
        assert_eq!(
            first,
            "@pytorchbot revert -m \"Reverted automatically by autorevert: linux-jammy / test \
             (\\\"default\\\", 0) [x] (trunk) failed again on 2d3615f5 in restarts while its parent \
             passed, https://github.com/pytorch/pytorch/actions/runs/100/job/200; to opt out add \
             the label autorevert: disable\" -c autorevert"
        );
        assert!(body.ends_with(&format!("{}\n", marker(SHA))), "{body}");
        assert!(body.contains("Please investigate and fix the issues."));
    }

    #[test]
    fn the_evidence_is_grouped_by_workflow_with_links() {
        let body = revert_comment(&culprit(3));
        let list = "This PR is attributed to have caused regression in:\n\
            - **trunk**\n\
            \x20 - [linux-jammy / test (\"default\", 0) \\[x\\]](https://github.com/pytorch/pytorch/actions/runs/100/job/200): suspect failed 3×, parent passed 2× in paired restarts\n\
            \x20 - [linux-jammy / test (\"default\", 2) \\[x\\]](https://github.com/pytorch/pytorch/actions/runs/102/job/202): suspect failed 5×, parent passed 2× in paired restarts\n\
            - **pull**\n\
            \x20 - [linux-jammy / test (\"default\", 1) \\[x\\]](https://github.com/pytorch/pytorch/actions/runs/101/job/201): suspect failed 4×, parent passed 2× in paired restarts\n";
        assert!(body.contains(list), "{body}");
        assert!(
            body.lines()
                .next()
                .unwrap()
                .contains(", and 2 more signals;")
        );
    }

    #[test]
    fn a_long_list_is_cut_and_counted() {
        let body = revert_comment(&culprit(100));
        assert!(body.contains("- … and 60 more signals\n"), "{body}");
        assert_eq!(body.matches("/job/").count(), 41, "40 listed and one in -m");
        assert!(body.len() < 65_536);
    }

    #[test]
    fn the_notify_comment_names_the_commit_the_pr_and_why() {
        let body = notify_comment(&culprit(1), Some(160001), Reason::PrOpen);
        assert!(body.starts_with(
            "Autorevert detected a possible offender: \
             [2d3615f5](https://github.com/pytorch/pytorch/commit/2d3615f577894c7a117a55e85bb8371bb598ec50) \
             from PR #160001. The PR is open. (`pr_open`)\n\n\
             This commit is attributed to have caused regression in:\n- **trunk**\n"
        ), "{body}");
        assert!(body.ends_with(&format!("{}\n", marker(SHA))));
        assert!(!body.contains("@pytorchbot"));
        let no_pr = notify_comment(&culprit(1), None, Reason::NoPrFound);
        assert!(
            no_pr.contains("/commit/2d3615f577894c7a117a55e85bb8371bb598ec50). No PR was found"),
            "{no_pr}"
        );
        assert_eq!(
            marker(SHA),
            "<!-- autorevert:2d3615f577894c7a117a55e85bb8371bb598ec50 -->"
        );
    }
}

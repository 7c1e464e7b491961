//! Acting on a revert decision, against the fake GitHub with the real octocrab client: the
//! facts about a commit (a merge, a ghstack commit, a revert, a commit found only through
//! the pulls endpoint, a labelled PR, an open PR) and the action the guards choose from
//! them; and the comment posted once, through a failed POST, a lost answer, a refusal and
//! a comment list of several pages.

mod common;

use autorevert::github::GitHub;
use autorevert::github::comments::CommentCreated;
use autorevert::pipeline::effects::{CommentOutcome, NoGitHub, RevertActions, post_once};
use autorevert::reverts::{
    Action, CommitFacts, Culprit, Evidence, Guards, PullFacts, Reason, RevertMode, choose, marker,
    notify_comment, revert_comment,
};
use common::fake_github::{CommentAnswer, FakeGitHub, FakePull};
use common::{INSTALLATION, REPO, sha};

const NOTIFY_ISSUE: u64 = 163650;
const INST: Option<u64> = Some(INSTALLATION);

fn merge_message(pr: u64) -> String {
    format!(
        "[inductor] Fix a stride bug in mm lowering (#{pr})\n\n\
         Pull Request resolved: https://github.com/{REPO}/pull/{pr}\n\
         Approved by: https://github.com/eellison\n"
    )
}

async fn start() -> (FakeGitHub, GitHub) {
    let fake = FakeGitHub::start(INSTALLATION, &[REPO]).await;
    fake.allow_comments(INSTALLATION);
    fake.add_issue(NOTIFY_ISSUE);
    let client = fake.client();
    (fake, client)
}

fn culprit(sha: &str) -> Culprit {
    Culprit {
        repo: REPO.into(),
        sha: sha.into(),
        signals: vec![Evidence {
            workflow: "trunk".into(),
            job: "linux-jammy-py3.10-gcc11 / test (default)".into(),
            failing_job_url: Evidence::job_url(REPO, 9_100_000_001, 70_000_000_001),
            run_id: 9_100_000_001,
            job_id: 70_000_000_001,
            restart_evidence: "suspect failed 3×, parent passed 2× in paired restarts".into(),
        }],
    }
}

/// What the guards choose in `revert` mode for facts read from GitHub, nothing else
/// standing in the way.
fn chosen(sha: &str, facts: &CommitFacts) -> Action {
    let now = chrono::Utc::now();
    let guards = Guards {
        notify_issue: Some(NOTIFY_ISSUE),
        ..Guards::new(now - chrono::Duration::minutes(90))
    };
    choose(RevertMode::Revert, &culprit(sha), facts, &guards, now)
}

fn pulls_lookups(fake: &FakeGitHub, sha: &str) -> usize {
    fake.requests_matching("GET", &format!("/commits/{sha}/pulls"))
        .len()
}

#[tokio::test]
async fn a_merge_and_a_ghstack_commit_name_their_pr_and_are_reverted() {
    let (fake, gh) = start().await;
    let (merge, ghstack) = (sha(1), sha(2));
    fake.add_commit(REPO, &merge, &merge_message(160001), &[]);
    fake.add_pull(REPO, FakePull::landed(160001));
    let stack = format!(
        "[dynamo] Trace through functools.partial (#160003)\n\n\
         Stack from [ghstack](https://github.com/ezyang/ghstack) (oldest at bottom):\n\
         * #160004\n* __->__ #160003\n* #160002\n\n\
         ghstack-source-id: 3f9a1c2b7e\n\
         Pull Request resolved: https://github.com/{REPO}/pull/160003\n\
         Approved by: https://github.com/anijain2305\nghstack dependencies: #160002\n"
    );
    fake.add_commit(REPO, &ghstack, &stack, &[]);
    for n in [160002, 160003, 160004] {
        fake.add_pull(REPO, FakePull::landed(n));
    }

    let facts = gh.commit_facts(REPO, INST, &merge).await.unwrap();
    assert_eq!(facts.message, merge_message(160001));
    let landed = PullFacts {
        number: 160001,
        open: false,
        merged: false,
        labels: vec!["Merged".into()],
    };
    assert_eq!(facts.pr, Some(landed));
    assert_eq!(chosen(&merge, &facts), Action::Revert { pr: 160001 });

    let facts = gh.commit_facts(REPO, INST, &ghstack).await.unwrap();
    assert_eq!(facts.pr.as_ref().map(|p| p.number), Some(160003));
    assert_eq!(chosen(&ghstack, &facts), Action::Revert { pr: 160003 });
    assert_eq!(
        pulls_lookups(&fake, &merge) + pulls_lookups(&fake, &ghstack),
        0
    );
    let commit_reads = fake.requests_matching("GET", &format!("/commits/{merge}?per_page=1"));
    assert_eq!(commit_reads.len(), 1, "the commit, without its file list");
}

#[tokio::test]
async fn a_revert_commit_names_the_pr_it_reverts_and_is_only_notified() {
    let (fake, gh) = start().await;
    let revert = sha(3);
    let message = format!(
        "Revert \"[inductor] Fix a stride bug in mm lowering (#160001)\"\n\n\
         This reverts commit {}.\n\n\
         Reverted https://github.com/{REPO}/pull/160001 on behalf of \
         https://github.com/pytorch-auto-revert due to Reverted automatically\n",
        sha(1)
    );
    fake.add_commit(REPO, &revert, &message, &[]);
    fake.add_pull(REPO, FakePull::landed(160001));
    let facts = gh.commit_facts(REPO, INST, &revert).await.unwrap();
    assert_eq!(facts.pr.as_ref().map(|p| p.number), Some(160001));
    assert_eq!(
        chosen(&revert, &facts),
        Action::Notify {
            issue: NOTIFY_ISSUE,
            why: Reason::CommitIsRevert
        }
    );
}

#[tokio::test]
async fn without_a_pr_in_its_message_the_commit_s_merged_pr_into_main_is_asked_for() {
    let (fake, gh) = start().await;
    let (found, release_only, none) = (sha(4), sha(5), sha(6));
    let release = FakePull {
        base: "release/2.9".into(),
        merged: true,
        ..FakePull::landed(170001)
    };
    fake.add_pull(REPO, release);
    fake.add_pull(
        REPO,
        FakePull {
            merged: true,
            ..FakePull::landed(170002)
        },
    );
    fake.add_commit(REPO, &found, "Fix the build", &[170001, 170002]);
    fake.add_commit(REPO, &release_only, "Cherry-pick", &[170001]);
    fake.add_commit(REPO, &none, "Pushed straight to main", &[]);

    let facts = gh.commit_facts(REPO, INST, &found).await.unwrap();
    assert_eq!(
        facts.pr.as_ref().map(|p| (p.number, p.merged)),
        Some((170002, true))
    );
    assert_eq!(pulls_lookups(&fake, &found), 1);
    assert_eq!(chosen(&found, &facts), Action::Revert { pr: 170002 });

    for sha in [release_only, none] {
        let facts = gh.commit_facts(REPO, INST, &sha).await.unwrap();
        assert_eq!(facts.pr, None, "no PR into the default branch");
        assert_eq!(
            chosen(&sha, &facts),
            Action::Notify {
                issue: NOTIFY_ISSUE,
                why: Reason::NoPrFound
            }
        );
    }

    let unknown = gh.commit_facts(REPO, INST, &sha(7)).await.unwrap_err();
    let text = format!("{unknown:#}");
    assert!(text.contains("No commit found for SHA"), "{text}");
}

#[tokio::test]
async fn a_labelled_pr_and_an_open_pr_are_notified_instead() {
    let (fake, gh) = start().await;
    let (labelled, open) = (sha(8), sha(9));
    fake.add_commit(REPO, &labelled, &merge_message(160011), &[]);
    fake.add_pull(
        REPO,
        FakePull {
            labels: vec!["Merged".into(), "autorevert: disable".into()],
            ..FakePull::landed(160011)
        },
    );
    fake.add_commit(REPO, &open, &merge_message(160012), &[]);
    fake.add_pull(
        REPO,
        FakePull {
            open: true,
            ..FakePull::landed(160012)
        },
    );
    let facts = gh.commit_facts(REPO, INST, &labelled).await.unwrap();
    assert!(
        facts
            .pr
            .as_ref()
            .unwrap()
            .labels
            .contains(&"autorevert: disable".to_string())
    );
    assert_eq!(
        chosen(&labelled, &facts),
        Action::Notify {
            issue: NOTIFY_ISSUE,
            why: Reason::PrDisabledLabel
        }
    );
    let facts = gh.commit_facts(REPO, INST, &open).await.unwrap();
    assert!(facts.pr.as_ref().unwrap().open);
    assert_eq!(
        chosen(&open, &facts),
        Action::Notify {
            issue: NOTIFY_ISSUE,
            why: Reason::PrOpen
        }
    );
}

fn posts(fake: &FakeGitHub, issue: u64) -> usize {
    fake.requests_matching("POST", &format!("/issues/{issue}/comments"))
        .len()
}

/// The revert comment for the culprit of `sha`, on PR `pr`.
async fn post_revert(gh: &GitHub, sha: &str, pr: u64) -> CommentOutcome {
    let body = revert_comment(&culprit(sha));
    post_once(gh, REPO, INST, pr, &marker(sha), &body).await
}

#[tokio::test]
async fn the_revert_comment_is_posted_once_and_found_after() {
    let (fake, gh) = start().await;
    let sha = sha(10);
    fake.add_pull(REPO, FakePull::landed(160021));
    let first = post_revert(&gh, &sha, 160021).await;
    let CommentOutcome::Posted { id, url } = first else {
        panic!("{first:?}");
    };
    assert_eq!(
        url,
        format!("https://github.com/{REPO}/pull/160021#issuecomment-{id}")
    );
    assert_eq!(
        post_revert(&gh, &sha, 160021).await,
        CommentOutcome::Found { id }
    );
    let comments = fake.comments(REPO, 160021);
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0]
            .body
            .starts_with("@pytorchbot revert -m \"Reverted automatically by autorevert")
    );
    assert!(comments[0].body.ends_with(&format!("{}\n", marker(&sha))));
    assert_eq!(comments[0].login, "pytorch-autorevert-restarter[bot]");
    assert_eq!(posts(&fake, 160021), 1);
}

#[tokio::test]
async fn a_failed_post_is_retried_and_makes_exactly_one_comment() {
    let (fake, gh) = start().await;
    let sha = sha(11);
    let body = notify_comment(&culprit(&sha), Some(160031), Reason::PrOpen);
    fake.script_comments([CommentAnswer::Fail(502)]);
    let first = post_once(&gh, REPO, INST, NOTIFY_ISSUE, &marker(&sha), &body).await;
    assert!(
        matches!(&first, CommentOutcome::Unknown { error } if error.contains("502")),
        "{first:?}"
    );
    assert!(first.retryable() && !first.done());
    assert!(fake.comments(REPO, NOTIFY_ISSUE).is_empty());
    assert_eq!(
        posts(&fake, NOTIFY_ISSUE),
        1,
        "the transport did not resend it"
    );

    let again = post_once(&gh, REPO, INST, NOTIFY_ISSUE, &marker(&sha), &body).await;
    assert!(matches!(again, CommentOutcome::Posted { .. }), "{again:?}");
    assert_eq!(fake.comments(REPO, NOTIFY_ISSUE).len(), 1);
    assert_eq!(posts(&fake, NOTIFY_ISSUE), 2);
}

#[tokio::test]
async fn after_a_lost_answer_the_retry_finds_the_comment_and_posts_nothing() {
    let (fake, gh) = start().await;
    let sha = sha(12);
    fake.add_pull(REPO, FakePull::landed(160041));
    fake.script_comments([CommentAnswer::StoreThenFail(500)]);
    let first = post_revert(&gh, &sha, 160041).await;
    assert!(matches!(first, CommentOutcome::Unknown { .. }), "{first:?}");
    let stored = fake.comments(REPO, 160041);
    assert_eq!(stored.len(), 1, "GitHub made it; the App does not know");
    assert_eq!(
        post_revert(&gh, &sha, 160041).await,
        CommentOutcome::Found { id: stored[0].id }
    );
    assert_eq!(posts(&fake, 160041), 1, "no second POST");
}

#[tokio::test]
async fn the_comment_is_found_pages_down_and_a_quote_by_a_person_is_not_it() {
    let (fake, gh) = start().await;
    let sha = sha(13);
    fake.add_comment(
        REPO,
        NOTIFY_ISSUE,
        "oncall",
        "User",
        &format!("see\n{}", marker(&sha)),
    );
    for i in 0..150 {
        let body = format!("other offender {i}\n{}", marker(&common::sha(1000 + i)));
        fake.add_comment(
            REPO,
            NOTIFY_ISSUE,
            "pytorch-autorevert-restarter[bot]",
            "Bot",
            &body,
        );
    }
    let body = notify_comment(&culprit(&sha), None, Reason::NoPrFound);
    let posted = post_once(&gh, REPO, INST, NOTIFY_ISSUE, &marker(&sha), &body).await;
    let CommentOutcome::Posted { id, .. } = posted else {
        panic!("{posted:?}");
    };
    let lists = fake.requests_matching("GET", &format!("/issues/{NOTIFY_ISSUE}/comments"));
    assert_eq!(lists.len(), 2, "both pages read before posting: {lists:?}");
    assert_eq!(
        RevertActions::find_comment(&gh, REPO, INST, NOTIFY_ISSUE, &marker(&sha))
            .await
            .unwrap(),
        Some(id)
    );
    assert_eq!(fake.comments(REPO, NOTIFY_ISSUE).len(), 152);
}

#[tokio::test]
async fn a_refused_post_or_a_failed_lookup_posts_nothing() {
    let (fake, gh) = start().await;
    let sha = sha(14);
    // The App's manifest grants `issues: read`: GitHub refuses the comment.
    fake.set_installation_permissions(INSTALLATION, serde_json::json!({"issues": "read"}));
    let body = revert_comment(&culprit(&sha));
    let refused = post_once(&gh, REPO, INST, NOTIFY_ISSUE, &marker(&sha), &body).await;
    assert!(
        matches!(&refused, CommentOutcome::Refused { status: 403, message } if message.contains("Resource not accessible by integration")),
        "{refused:?}"
    );
    assert!(!refused.retryable());

    fake.allow_comments(INSTALLATION);
    fake.set_down(Some(503));
    let down = post_once(&gh, REPO, INST, NOTIFY_ISSUE, &marker(&sha), &body).await;
    assert!(matches!(down, CommentOutcome::NotSent { .. }), "{down:?}");
    assert!(down.retryable());
    fake.set_down(None);
    assert_eq!(
        posts(&fake, NOTIFY_ISSUE),
        1,
        "only the refused one was sent"
    );
    assert!(fake.comments(REPO, NOTIFY_ISSUE).is_empty());

    let unmarked = post_once(&gh, REPO, INST, NOTIFY_ISSUE, &marker(&sha), "no marker").await;
    assert!(
        matches!(unmarked, CommentOutcome::Refused { status: 0, .. }),
        "{unmarked:?}"
    );
    assert_eq!(posts(&fake, NOTIFY_ISSUE), 1);
}

#[tokio::test]
async fn without_credentials_nothing_is_looked_up_or_posted() {
    let err = NoGitHub
        .commit_facts(REPO, None, &sha(1))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "no GitHub credentials are configured");
    let out = post_once(
        &NoGitHub,
        REPO,
        None,
        NOTIFY_ISSUE,
        &marker(&sha(1)),
        &marker(&sha(1)),
    )
    .await;
    assert!(
        matches!(&out, CommentOutcome::NotSent { error } if error.contains("no GitHub credentials")),
        "{out:?}"
    );
    assert_eq!(
        NoGitHub.create_comment(REPO, None, 1, "x").await,
        CommentCreated::Refused {
            status: 0,
            message: "no GitHub credentials are configured".into()
        }
    );
}

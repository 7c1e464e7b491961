//! Acting on a revert decision: the domain, pure. What a culprit is and what the App knows
//! about its commit (`model`), which action the mode and the guards allow (`guards`: revert,
//! notify, skip, or log what it would do, each refusal with a stable reason), and the
//! comments themselves (`message`: the PR found in a commit message, the `@pytorchbot
//! revert` comment, the notify comment, and the hidden marker that finds them again).
//! No I/O and no clock: the caller looks facts up and passes the time in.

pub mod guards;
pub mod message;
pub mod model;

pub use guards::{DEFAULT_MAX_AGE_HOURS, DEFAULT_MAX_PER_DAY, Guards, choose};
pub use message::{
    DISABLE_LABEL, is_revert, marker, notify_comment, pr_from_message, revert_comment, reverted_pr,
};
pub use model::{Action, CommitFacts, Culprit, Evidence, PullFacts, Reason, RevertMode};

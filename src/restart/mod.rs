//! Restarts: the domain. What a restart is (`model`) and how it changes (`lifecycle`), the
//! ledger of them, the decisions (`decide`, with its `policy`, `pacing` and `command`s),
//! which run belongs to a restart (`adopt`), what it asks for (`scope`: the jobs and tests of
//! a targeted restart), the verdict on a finished one (`outcome`), and the check run that
//! shows it on the commit (`check_run`).
//! All of it is pure: no I/O, no clock (time comes in as an argument).

/// A domain enum stored and shown by its snake_case name (strum derives the conversions).
macro_rules! snake_case_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize,
                 strum::Display, strum::EnumString, strum::IntoStaticStr)]
        #[serde(rename_all = "snake_case")]
        #[strum(serialize_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    };
}
pub(crate) use snake_case_enum;

pub mod adopt;
pub mod check_run;
pub mod command;
pub mod decide;
pub mod ledger;
pub mod lifecycle;
pub mod model;
pub mod outcome;
pub mod pacing;
pub mod policy;
pub mod scope;

pub use adopt::adoptable;
pub use check_run::{CheckRun, CheckRunView};
pub use command::{Command, hold_for_kill_switch};
pub use decide::{Asked, decide, decide_asked, may_dispatch};
pub use ledger::Ledger;
pub use lifecycle::{Change, EventKind, MAX_DISPATCH_ATTEMPTS, Transition};
pub use model::{
    Restart, RestartKey, Status, Timeline, is_restart_branch, next_version, seed_versions,
    trunk_ref,
};
pub use outcome::{JobState, Judgement, Verdict, failing_base_names, judge};
pub use pacing::{MAX_FAILED_DISPATCHES, retry_due};
pub use policy::{Policy, RestartAction};
pub use scope::{Scope, ScopeKind};

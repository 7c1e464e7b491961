//! GitHub's enum-like strings as enums: a workflow run's or job's `status` and
//! `conclusion`, a webhook's `action`, and the `event` that triggered a run.
//!
//! A value GitHub adds tomorrow is data, not a parse failure: it is kept as `Other(text)`
//! and written back unchanged (the delivery log stores these as their strings).

use serde::{Deserialize, Serialize};

/// Derives the string conversions of one of GitHub's value sets (snake_case names, unknown
/// values kept in `Other`) and the serde shape of a plain string.
macro_rules! github_values {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, strum::Display, strum::EnumString,
                 Serialize, Deserialize)]
        #[strum(serialize_all = "snake_case")]
        #[serde(from = "Option<String>", into = "String")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this build does not know, kept as GitHub sent it.
            #[strum(default)]
            Other(String),
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name::from(s.as_str())
            }
        }

        /// GitHub's schema allows null for some of these; null reads as an empty value.
        impl From<Option<String>> for $name {
            fn from(s: Option<String>) -> Self {
                s.map($name::from).unwrap_or_default()
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.to_string()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::Other(String::new())
            }
        }
    };
}

github_values!(
    /// `status` of a workflow run or job.
    RunStatus {
        Requested,
        Queued,
        Waiting,
        Pending,
        InProgress,
        Completed,
    }
);

github_values!(
    /// `conclusion` of a completed run or job.
    Conclusion {
        Success,
        Failure,
        TimedOut,
        Cancelled,
        Skipped,
        Neutral,
        ActionRequired,
        Stale,
        StartupFailure,
    }
);

github_values!(
    /// The `action` of a `workflow_run` or `workflow_job` delivery.
    Action {
        Requested,
        Queued,
        Waiting,
        InProgress,
        Completed,
    }
);

github_values!(
    /// The `event` that triggered a run (`push` on main; `workflow_dispatch` for restarts).
    Trigger {
        Push,
        WorkflowDispatch,
        PullRequest,
        Schedule,
    }
);

impl Conclusion {
    /// The one definition of a failed run or job: what warrants a restart, and what a
    /// restart must show again to reproduce (PyTorch counts `timed_out` as a failure).
    pub fn is_failure(&self) -> bool {
        matches!(self, Conclusion::Failure | Conclusion::TimedOut)
    }
}

/// `is_failure` of an optional conclusion (a run or job not finished has none).
pub fn failed(conclusion: Option<&Conclusion>) -> bool {
    conclusion.is_some_and(Conclusion::is_failure)
}

impl RunStatus {
    /// How far along: a later status wins over an earlier one when deliveries arrive out
    /// of order.
    pub fn rank(&self) -> u64 {
        match self {
            RunStatus::Requested | RunStatus::Queued | RunStatus::Waiting | RunStatus::Pending => 1,
            RunStatus::InProgress => 2,
            RunStatus::Completed => 3,
            RunStatus::Other(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_parse_and_print_as_github_spells_them() {
        assert_eq!(Conclusion::from("timed_out"), Conclusion::TimedOut);
        assert_eq!(Conclusion::TimedOut.to_string(), "timed_out");
        assert_eq!(RunStatus::from("in_progress"), RunStatus::InProgress);
        assert_eq!(Trigger::WorkflowDispatch.to_string(), "workflow_dispatch");
    }

    #[test]
    fn unknown_values_are_kept_as_data() {
        let c = Conclusion::from("brand_new");
        assert_eq!(c, Conclusion::Other("brand_new".into()));
        assert_eq!(c.to_string(), "brand_new");
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, "\"brand_new\"");
        assert_eq!(serde_json::from_str::<Conclusion>(&json).unwrap(), c);
    }

    #[test]
    fn failure_is_defined_once() {
        assert!(Conclusion::Failure.is_failure());
        assert!(Conclusion::TimedOut.is_failure());
        assert!(!Conclusion::Cancelled.is_failure());
        assert!(!failed(None));
    }
}

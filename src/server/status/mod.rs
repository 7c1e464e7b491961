//! Seeing what the App does: the status page (`GET /`: recent restarts, filtered by
//! workflow and outcome, a page at a time), one restart's page (`GET /restarts/{id}`: its
//! per-job evidence and event log), and the same as JSON (`GET /api/restarts`,
//! `GET /api/restarts/{id}`). A restart id holds slashes (`owner/name/workflow/sha/attempt`):
//! the routes take it as the rest of the path.
//!
//! Everything is read from ClickHouse (`store::status`), never from the in-memory ledger:
//! a page reads `PER_PAGE` rows however long the ledger is. The decision engine's section
//! (`decisions`: signals with a revert or restart decision, actions on culprits) is the
//! engine's own state, which it rebuilds from ClickHouse at start-up.

mod api;
pub mod decisions;
mod html;
pub mod view;

use crate::pipeline::Pipeline;
use crate::pipeline::kill_switch::SwitchView;
use crate::restart::RestartAction;
use crate::store::Store;
use crate::store::status::{OutcomeFilter, RestartFilter};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use view::{EventView, JobView, RestartView};

/// Restarts on one page.
pub const PER_PAGE: u32 = 50;

/// How far back the kill switch's last hold is looked for.
const KILL_SWITCH_HOURS: u32 = 24;

/// What the pages read: the store, and the policy (mode, kill-switch label).
#[derive(Clone)]
pub struct Pages {
    store: Option<Store>,
    pipeline: Arc<Pipeline>,
}

/// The status page, a restart's page and `/api/`, to merge into the App's router.
pub fn routes(store: Option<Store>, pipeline: Arc<Pipeline>) -> Router {
    Router::new()
        .route("/", get(html::list))
        .route("/restarts/{*id}", get(html::detail))
        .route("/api/restarts", get(api::list))
        .route("/api/restarts/{*id}", get(api::detail))
        .with_state(Pages { store, pipeline })
}

/// The query string of a listing, as sent (an HTML form sends empty fields).
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    workflow: Option<String>,
    outcome: Option<String>,
    page: Option<String>,
}

/// A listing asked for: which restarts, which page (from 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub filter: RestartFilter,
    pub page: u32,
}

/// Why a page cannot be shown.
#[derive(Debug)]
pub enum Problem {
    BadRequest(String),
    NotFound(String),
    /// No ClickHouse is configured: nothing to read the ledger from.
    NoStore,
    Store(anyhow::Error),
}

impl Problem {
    pub fn status(&self) -> StatusCode {
        match self {
            Problem::BadRequest(_) => StatusCode::BAD_REQUEST,
            Problem::NotFound(_) => StatusCode::NOT_FOUND,
            Problem::NoStore | Problem::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Problem::BadRequest(m) | Problem::NotFound(m) => m.clone(),
            Problem::NoStore => "no ClickHouse is configured: the ledger is not stored".into(),
            Problem::Store(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "the status page could not read ClickHouse"
                );
                "ClickHouse did not answer; try again shortly".into()
            }
        }
    }
}

impl Params {
    pub fn ask(self) -> Result<Ask, Problem> {
        let given = |v: Option<String>| v.filter(|s| !s.is_empty());
        let outcome = match given(self.outcome) {
            None => None,
            Some(o) => Some(OutcomeFilter::parse(&o).ok_or_else(|| {
                Problem::BadRequest(
                    "outcome is one of reproduced, not_reproduced, inconclusive, pending".into(),
                )
            })?),
        };
        let page = match given(self.page) {
            None => 1,
            Some(p) => p
                .parse::<u32>()
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| Problem::BadRequest("page is a number from 1".into()))?,
        };
        Ok(Ask {
            filter: RestartFilter {
                workflow: given(self.workflow),
                outcome,
            },
            page,
        })
    }
}

impl Ask {
    /// The query string of this listing at `page` (`?` included; empty fields left out).
    pub fn query(&self, page: u32) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(w) = &self.filter.workflow {
            q.append_pair("workflow", w);
        }
        if let Some(o) = self.filter.outcome {
            q.append_pair("outcome", o.as_str());
        }
        if page > 1 {
            q.append_pair("page", &page.to_string());
        }
        let q = q.finish();
        if q.is_empty() { q } else { format!("?{q}") }
    }
}

/// One page of restarts, and where it stands among the others.
#[derive(Debug, Serialize)]
pub struct Listing {
    pub restarts: Vec<RestartView>,
    pub page: u32,
    pub per_page: u32,
    /// Restarts matching the filter, on all pages.
    pub total: u64,
    pub pages: u64,
    pub filter: FilterView,
    /// Every workflow with restarts (what the workflow filter offers).
    pub workflows: Vec<String>,
    pub kill_switch: KillSwitchView,
    /// `RESTART_ACTION`: `run`, `log` (dry runs) or `skip`.
    pub mode: &'static str,
    /// The decision engine: signals with a revert or restart decision, culprits acted on.
    pub decisions: decisions::DecisionsView,
}

#[derive(Debug, Serialize)]
pub struct FilterView {
    pub workflow: Option<String>,
    pub outcome: Option<&'static str>,
}

/// The kill switch: its label, each repository's state as the refresher last found it
/// (on, off, unknown while lookups fail, or not looked up yet), and the last restart it held.
#[derive(Debug, Serialize)]
pub struct KillSwitchView {
    /// None: no kill switch is configured.
    pub label: Option<String>,
    /// How often each repository's switch is looked up again (`KILL_SWITCH_TTL_SECS`).
    pub every_secs: u64,
    pub repos: Vec<SwitchView>,
    pub hours: u32,
    pub last_hold: Option<EventView>,
}

/// One restart with its evidence.
#[derive(Debug, Serialize)]
pub struct Detail {
    pub restart: RestartView,
    /// The originally failing jobs and how each did in the restart (once judged).
    pub jobs: Vec<JobView>,
    pub events: Vec<EventView>,
}

impl Pages {
    fn store(&self) -> Result<&Store, Problem> {
        self.store.as_ref().ok_or(Problem::NoStore)
    }

    async fn listing(&self, ask: &Ask) -> Result<Listing, Problem> {
        let store = self.store()?;
        let offset = u64::from(ask.page - 1) * u64::from(PER_PAGE);
        let (page, workflows, hold) = tokio::join!(
            store.restart_page(&ask.filter, PER_PAGE, offset),
            store.restart_workflows(),
            store.last_kill_switch_hold(KILL_SWITCH_HOURS)
        );
        let page = page.map_err(Problem::Store)?;
        let engine = self.pipeline.engine();
        let policy = &engine.policy;
        Ok(Listing {
            restarts: page.restarts.iter().map(RestartView::of).collect(),
            page: ask.page,
            per_page: PER_PAGE,
            total: page.total,
            pages: page.total.div_ceil(u64::from(PER_PAGE)).max(1),
            filter: FilterView {
                workflow: ask.filter.workflow.clone(),
                outcome: ask.filter.outcome.map(|o| o.as_str()),
            },
            workflows: workflows.map_err(Problem::Store)?,
            kill_switch: KillSwitchView {
                label: policy.kill_switch_label.clone(),
                every_secs: engine.kill_switches().ttl().as_secs(),
                repos: engine.kill_switches().view(&policy.repos),
                hours: KILL_SWITCH_HOURS,
                last_hold: hold.map_err(Problem::Store)?.map(EventView::from),
            },
            mode: match policy.action {
                RestartAction::Run => "run",
                RestartAction::Log => "log",
                RestartAction::Skip => "skip",
            },
            decisions: decisions::DecisionsView::of(engine),
        })
    }

    async fn detail(&self, id: &str) -> Result<Detail, Problem> {
        let store = self.store()?;
        let Some(r) = store.restart(id).await.map_err(Problem::Store)? else {
            return Err(Problem::NotFound(format!("no restart {id}")));
        };
        let (jobs, events) = tokio::join!(store.job_evidence(&r), store.restart_events(&r));
        Ok(Detail {
            restart: RestartView::of(&r),
            jobs: jobs
                .map_err(Problem::Store)?
                .into_iter()
                .map(JobView::from)
                .collect(),
            events: events
                .map_err(Problem::Store)?
                .into_iter()
                .map(EventView::from)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restart::Verdict;

    fn params(w: &str, o: &str, p: &str) -> Params {
        let some = |s: &str| Some(s.to_string());
        Params {
            workflow: some(w),
            outcome: some(o),
            page: some(p),
        }
    }

    #[test]
    fn empty_form_fields_are_no_filter() {
        let ask = params("", "", "").ask().unwrap();
        assert_eq!(ask.filter, RestartFilter::default());
        assert_eq!(ask.page, 1);
        assert_eq!(ask.query(1), "");
    }

    #[test]
    fn filters_and_pages_round_trip_through_the_query_string() {
        let ask = params("linux aarch64", "reproduced", "3").ask().unwrap();
        assert_eq!(
            ask.filter.outcome,
            Some(OutcomeFilter::Verdict(Verdict::Reproduced))
        );
        assert_eq!(
            ask.query(4),
            "?workflow=linux+aarch64&outcome=reproduced&page=4"
        );
        assert_eq!(ask.query(1), "?workflow=linux+aarch64&outcome=reproduced");
    }

    #[test]
    fn bad_values_are_refused() {
        for (o, p) in [("maybe", "1"), ("", "0"), ("", "x"), ("", "-1")] {
            let e = params("", o, p).ask().unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{o:?} {p:?}");
        }
    }
}

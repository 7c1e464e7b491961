//! The pages, server-rendered from `templates/` (askama: checked at compile time, every
//! value HTML-escaped unless a template says otherwise, and none does). No JavaScript: the
//! filters are a plain GET form, the pages plain links.

use super::view::RestartView;
use super::{Ask, Detail, Listing, Pages, Params, Problem};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// One option of a filter's `<select>`.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "restarts.html")]
struct ListPage<'a> {
    l: &'a Listing,
    workflows: Vec<Choice>,
    outcomes: Vec<Choice>,
    filtered: bool,
    prev: Option<String>,
    next: Option<String>,
    first: Option<String>,
    last: Option<String>,
}

#[derive(Template)]
#[template(path = "restart.html")]
struct DetailPage<'a> {
    d: &'a Detail,
    r: &'a RestartView,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    code: u16,
    reason: &'static str,
    message: String,
}

const OUTCOMES: [(&str, &str); 4] = [
    ("reproduced", "reproduced"),
    ("not_reproduced", "not reproduced"),
    ("inconclusive", "inconclusive"),
    ("pending", "no outcome yet"),
];

pub async fn list(State(pages): State<Pages>, Query(params): Query<Params>) -> Response {
    let ask = match params.ask() {
        Ok(ask) => ask,
        Err(p) => return problem(p),
    };
    match pages.listing(&ask).await {
        Ok(l) => render(&list_page(&ask, &l)),
        Err(p) => problem(p),
    }
}

pub async fn detail(State(pages): State<Pages>, Path(id): Path<String>) -> Response {
    match pages.detail(&id).await {
        Ok(d) => render(&DetailPage {
            d: &d,
            r: &d.restart,
        }),
        Err(p) => problem(p),
    }
}

fn list_page<'a>(ask: &Ask, l: &'a Listing) -> ListPage<'a> {
    let link = |page: u32| format!("/{}", ask.query(page));
    let last_page = u32::try_from(l.pages).unwrap_or(u32::MAX);
    let workflow = ask.filter.workflow.as_deref();
    let outcome = ask.filter.outcome.map(|o| o.as_str());
    ListPage {
        l,
        workflows: l
            .workflows
            .iter()
            .map(|w| Choice {
                value: w.clone(),
                label: w.clone(),
                selected: workflow == Some(w.as_str()),
            })
            .collect(),
        outcomes: OUTCOMES
            .iter()
            .map(|(value, label)| Choice {
                value: value.to_string(),
                label: label.to_string(),
                selected: outcome == Some(*value),
            })
            .collect(),
        filtered: ask.filter.workflow.is_some() || ask.filter.outcome.is_some(),
        prev: (ask.page > 1).then(|| link(ask.page.min(last_page.saturating_add(1)) - 1)),
        next: (ask.page < last_page).then(|| link(ask.page + 1)),
        first: (ask.page > 1).then(|| link(1)),
        last: (ask.page < last_page).then(|| link(last_page)),
    }
}

fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a status page did not render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page did not render\n",
            )
                .into_response()
        }
    }
}

fn problem(p: Problem) -> Response {
    let status = p.status();
    let page = ErrorPage {
        code: status.as_u16(),
        reason: status.canonical_reason().unwrap_or(""),
        message: p.message(),
    };
    (status, render(&page)).into_response()
}

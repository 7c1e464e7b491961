//! `/metrics` in Prometheus' text format. The App records with the `metrics` facade where
//! things happen (intake, the restart lifecycle, the store, GitHub); this installs the
//! Prometheus recorder once per process, describes the series, and sets the gauges that
//! are read at scrape time.

use crate::pipeline::Pipeline;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Seconds: from a few milliseconds (a dispatch) to an hour (ClickHouse ingestion lag).
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 1800.0,
];

/// The process's Prometheus recorder (installed on first use). None when another recorder
/// was installed first (then `/metrics` says so).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let latencies = Matcher::Suffix("_latency_seconds".into());
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(latencies, &LATENCY_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            Some(recorder)
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "autorevert_deliveries_total",
        "Webhook deliveries answered, by event, action and result."
    );
    describe_counter!(
        "autorevert_signature_failures_total",
        "Deliveries refused for a missing or wrong signature."
    );
    describe_counter!(
        "autorevert_restart_events_total",
        "Steps of restarts (the event log's kinds): dispatched, skipped, confirmed, outcome, ..."
    );
    describe_counter!("autorevert_verdicts_total", "Judged restarts, by verdict.");
    describe_histogram!(
        "autorevert_dispatch_latency_seconds",
        "From the decision to restart to GitHub's answer to the dispatch."
    );
    describe_histogram!(
        "autorevert_confirmation_latency_seconds",
        "From the dispatch to the restart's jobs being visible in ClickHouse."
    );
    describe_counter!(
        "autorevert_clickhouse_errors_total",
        "ClickHouse calls that failed or timed out."
    );
    describe_counter!(
        "autorevert_github_errors_total",
        "GitHub requests that failed (after the read retry layer), by endpoint kind and status \
         (no_answer: none came; unreadable: a 2xx that could not be read)."
    );
    describe_gauge!(
        "autorevert_github_rate_limit_remaining",
        "GitHub's x-ratelimit-remaining at the last answer, by credential (app, installation, token)."
    );
    describe_gauge!(
        "autorevert_queue_depth",
        "Deliveries waiting in the work queues."
    );
    describe_gauge!(
        "autorevert_backlog",
        "Deliveries left from the last run, not handled yet."
    );
    describe_gauge!(
        "autorevert_restarts_tracked",
        "Restarts in the in-memory ledger."
    );
    describe_gauge!(
        "autorevert_worker_panics",
        "Deliveries whose handling panicked since start."
    );
}

/// The text exposition, with the scrape-time gauges set first.
pub fn render(pipeline: &Pipeline) -> Option<String> {
    let handle = handle()?;
    let engine = pipeline.engine();
    metrics::gauge!("autorevert_queue_depth").set(pipeline.queued() as f64);
    metrics::gauge!("autorevert_backlog").set(engine.activity().backlog() as f64);
    metrics::gauge!("autorevert_restarts_tracked").set(engine.restarts().len() as f64);
    metrics::gauge!("autorevert_worker_panics").set(engine.activity().panics() as f64);
    Some(handle.render())
}

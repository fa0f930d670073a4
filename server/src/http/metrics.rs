//! Prometheus metrics (`GET /metrics`, OpenMetrics text): executions by kind, language and
//! outcome, their latency, HTTP responses by status class and their latency, error responses
//! by code (`rate_limited`, `quota_exceeded`, `busy`, `timeout`, ...), and values read at
//! scrape time (sandboxes open, each backend's admitted jobs and capacity, live contexts, usage
//! records dropped), and how often a quiet server gave its heap's free memory back.

use super::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use soulbox_engine::Outcome;
use std::sync::Arc;
use std::time::Duration;

/// Labels of an execution.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExecutionLabels {
    /// `stateless` or `cell`.
    kind: &'static str,
    language: &'static str,
    outcome: &'static str,
}

/// Labels of an execution's latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    kind: &'static str,
    language: &'static str,
}

/// Labels of an HTTP response.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    /// `2xx`, `4xx`, `5xx`.
    class: &'static str,
}

/// Labels of a backend's gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    /// `wasm` or `container`.
    backend: &'static str,
}

/// Labels of an error response.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    /// The [`super::ApiError`] code.
    code: &'static str,
}

/// The server's metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    executions: Family<ExecutionLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    responses: Family<ResponseLabels, Counter>,
    response_latency: Histogram,
    errors: Family<ErrorLabels, Counter>,
    usage_dropped: Gauge,
    sandboxes: Gauge,
    pool_in_use: Family<BackendLabels, Gauge>,
    pool_capacity: Family<BackendLabels, Gauge>,
    contexts: Gauge,
    heap_trims: Counter,
}

/// What kind of execution a metric is about.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `POST /v1/execute`.
    Stateless,
    /// A cell in a sandbox.
    Cell,
    /// A command in a sandbox's container.
    Command,
    /// A background process in a sandbox's container (counted when it ends).
    Process,
    /// A page rendered in a headless browser.
    Render,
}

impl Kind {
    /// Its label (and its usage records' `kind`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Stateless => "stateless",
            Kind::Cell => "cell",
            Kind::Command => "command",
            Kind::Process => "process",
            Kind::Render => "render",
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::labelled(None)
    }
}

impl Metrics {
    /// The metrics of a cluster node: every series carries `node="<name>"`.
    pub fn for_node(node: &str) -> Self {
        Metrics::labelled(Some(node))
    }

    fn labelled(node: Option<&str>) -> Self {
        let labels = node.map(|node| (std::borrow::Cow::Borrowed("node"), std::borrow::Cow::Owned(node.to_owned())));
        let mut registry = Registry::with_prefix_and_labels("soulbox", labels.into_iter());
        let executions = Family::<ExecutionLabels, Counter>::default();
        // 0.1 ms to ~26 s.
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1e-4, 2.0, 19))
        });
        let responses = Family::<ResponseLabels, Counter>::default();
        let response_latency = Histogram::new(exponential_buckets(1e-4, 2.0, 19));
        let errors = Family::<ErrorLabels, Counter>::default();
        let usage_dropped = Gauge::default();
        let (sandboxes, contexts) = (Gauge::default(), Gauge::default());
        let (pool_in_use, pool_capacity) = (Family::default(), Family::default());
        let heap_trims = Counter::default();
        registry.register("executions", "Executions by kind, language and outcome", executions.clone());
        registry.register("execution_duration_seconds", "Execution latency", latency.clone());
        registry.register("http_responses", "HTTP responses by status class", responses.clone());
        registry.register("http_response_duration_seconds", "Time to answer an HTTP request", response_latency.clone());
        registry.register("http_errors", "Error responses by code", errors.clone());
        registry.register("usage_records_dropped", "Usage records dropped (database behind)", usage_dropped.clone());
        registry.register("sandboxes_open", "Sandboxes open", sandboxes.clone());
        registry.register("worker_pool_in_use", "Jobs a backend admitted (running plus queued)", pool_in_use.clone());
        registry.register("worker_pool_capacity", "Jobs a backend admits at most", pool_capacity.clone());
        registry.register("contexts_alive", "Stateful contexts alive", contexts.clone());
        registry.register(
            "heap_trims",
            "Times the server, quiet, gave its heap's free memory back",
            heap_trims.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                executions,
                latency,
                responses,
                response_latency,
                errors,
                usage_dropped,
                sandboxes,
                pool_in_use,
                pool_capacity,
                contexts,
                heap_trims,
            }),
        }
    }
}

impl Metrics {
    /// Counts an execution and records its latency.
    pub fn execution(&self, kind: Kind, language: &'static str, outcome: Outcome, duration: Duration) {
        let kind = kind.name();
        self.inner.executions.get_or_create(&ExecutionLabels { kind, language, outcome: outcome.name() }).inc();
        self.inner.latency.get_or_create(&LatencyLabels { kind, language }).observe(duration.as_secs_f64());
    }

    /// Counts a response by its status class (and its error code), and its latency.
    pub fn response(&self, status: u16, error: Option<&'static str>, took: Duration) {
        self.inner.response_latency.observe(took.as_secs_f64());
        if let Some(code) = error {
            self.inner.errors.get_or_create(&ErrorLabels { code }).inc();
        }
        let class = match status {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.inner.responses.get_or_create(&ResponseLabels { class }).inc();
    }

    /// Counts a time the server gave its heap's free memory back.
    pub fn heap_trimmed(&self) {
        self.inner.heap_trims.inc();
    }
}

/// `GET /metrics`.
pub(super) async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    let inner = &state.metrics.inner;
    inner.sandboxes.set(i64::try_from(state.sandboxes.len()).unwrap_or(i64::MAX));
    let mut contexts = 0;
    for (backend, load) in state.engine.load() {
        let labels = BackendLabels { backend };
        inner.pool_in_use.get_or_create(&labels).set(i64::try_from(load.in_use).unwrap_or(i64::MAX));
        inner.pool_capacity.get_or_create(&labels).set(i64::try_from(load.capacity).unwrap_or(i64::MAX));
        contexts += load.contexts;
    }
    inner.contexts.set(i64::try_from(contexts).unwrap_or(i64::MAX));
    inner.usage_dropped.set(i64::try_from(state.usage.dropped()).unwrap_or(i64::MAX));
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &inner.registry) {
        tracing::error!(%error, "could not encode the metrics");
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
}

//! The HTTP API (axum): what LLM tool calls hit.
//!
//! [`app`] builds the whole `Router` over an [`AppState`], so tests drive it with `oneshot` and
//! `soulbox serve` binds it to a socket. Routes:
//!
//! - `/v1/...`: executions, sandboxes, contexts, cells (JSON, NDJSON or SSE), files, usage, the
//!   audit log ([`audit`]) and the LLM tools ([`tools`]); `/mcp`: the same tools over MCP ([`mcp`]). These need an API key
//!   naming a tenant, except in development mode ([`auth`]); a tenant sees only its own
//!   sandboxes (another tenant's id is a 404).
//! - `/health`, `/ready`, `/metrics` (Prometheus), `/cluster/nodes` (in a cluster),
//!   `/openapi.json` and `/docs` for operators.
//!
//! Layers, outside in: a request span with a request id (taken from `x-request-id` when the
//! client sends a sane one, and returned in it), counted in the metrics; in a cluster, the
//! routing of requests for other nodes' sandboxes ([`cluster`]); then, for `/v1` and
//! `/mcp`, the in-flight bound (503 at once past it), the request timeout (504), the body
//! limit, and authentication with the key's rate limit ([`guard`]); last, on the routes whose
//! work goes to the engine's worker pool, a POST tells the engine a job is coming
//! ([`Engine::expect_job`], [`expect_job`]). Errors are [`ApiError`]s:
//! JSON with a stable code and a clean message; details only go to the log.
//!
//! Handlers stay thin: what a request does lives in [`operations`], shared by REST routes,
//! MCP tools and `/v1/tools/call`.

mod audit;
mod auth;
mod budget;
mod cluster;
mod e2b;
mod error;
mod execute;
pub(crate) mod files;
mod guard;
mod mcp;
mod metrics;
mod no_other_fields;
mod openapi;
mod operations;
mod processes;
mod run_to_end;
mod sandboxes;
mod settings;
mod streaming;
mod templates;
mod tools;

pub use audit::Audit;
pub use auth::{Auth, Tenant};
pub use budget::{Budgets, charge_closed_sandboxes};
pub use e2b::{E2b, SandboxTokens};
pub use error::ApiError;
pub use guard::Guard;
pub use metrics::Metrics;
pub use settings::Settings;

use crate::database::UsageRecorder;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use soulbox_engine::{Engine, Sandboxes};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tracing::Instrument;

/// Longest request id taken from a client.
const MAX_REQUEST_ID_CHARS: usize = 64;

/// What every handler shares, in one allocation: axum clones the state for each extractor and
/// layer of every request, and a clone is one reference count (the parts are read through
/// `Deref`).
#[derive(Clone, Debug)]
pub struct AppState(Arc<SharedState>);

impl AppState {
    /// The state of an app made of `parts`.
    pub fn new(parts: SharedState) -> Self {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct SharedState {
    /// Runs one-shot executions.
    pub engine: Engine,
    /// Holds the sandboxes.
    pub sandboxes: Sandboxes,
    /// Counts what happens, for `GET /metrics`.
    pub metrics: Metrics,
    /// Who may call, and whose sandboxes are whose.
    pub auth: Auth,
    /// Writes usage records.
    pub usage: UsageRecorder,
    /// Writes the audit log.
    pub audit: Audit,
    /// Each tenant's daily budgets.
    pub budgets: Budgets,
    /// What the configuration decides per request.
    pub settings: Arc<Settings>,
    /// Per-key rate limits and quotas.
    pub guard: Guard,
    /// Draining and shutdown.
    pub lifecycle: Lifecycle,
    /// The E2B surface's tokens and watchers.
    pub e2b: E2b,
    /// This node's membership, when the server is one node of a cluster.
    pub cluster: Option<crate::cluster::Cluster>,
}

impl AppState {
    /// The live nodes sharing per-key limits: those of the cluster, or this server alone.
    pub fn live_nodes(&self) -> u32 {
        self.cluster.as_ref().map_or(1, crate::cluster::Cluster::live_nodes)
    }
}

/// The server's life: whether it is draining, and the token that ends long-lived work (MCP
/// streams) at shutdown.
#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    draining: Arc<AtomicBool>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
}

impl Lifecycle {
    /// Marks the server as draining: `/ready` answers 503 from now on.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.shutdown.cancel();
    }

    /// Whether the server is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// The whole API.
pub fn app(state: AppState) -> Router {
    let rousing = middleware::from_fn_with_state(state.clone(), expect_job);
    let v1 = Router::new()
        .merge(execute::routes())
        .merge(sandboxes::routes())
        .merge(templates::routes())
        .merge(files::routes())
        .merge(processes::routes())
        .merge(tools::routes())
        .merge(audit::routes())
        .route_layer(rousing.clone())
        // A cell answered as one JSON value starts on the request's own task: no worker wakes
        // for it unless it streams.
        .merge(sandboxes::cell_routes().route_layer(middleware::from_fn_with_state(state.clone(), expect_streamed_job)))
        .layer(DefaultBodyLimit::max(state.settings.json_body_limit));
    // One semaphore for every guarded route, whichever surface it is on.
    let in_flight = GlobalConcurrencyLimitLayer::new(state.settings.max_in_flight);
    let mcp = ServiceBuilder::new().layer(rousing.clone()).service(mcp::service(state.clone()));
    let own = Router::new().nest("/v1", v1).nest_service("/mcp", mcp);
    let guarded = behind_the_guard(own, &state, &in_flight);
    // E2B's control plane: the same guard, and every error in E2B's shape.
    let e2b_control = behind_the_guard(
        e2b::control_routes().route_layer(rousing).layer(DefaultBodyLimit::max(state.settings.json_body_limit)),
        &state,
        &in_flight,
    )
    .layer(middleware::map_response(e2b::reshape_errors));
    let mut open = Router::new().route("/health", get(health)).route("/ready", get(ready));
    if state.settings.metrics_enabled {
        open = open.route("/metrics", get(metrics::scrape));
    }
    if state.cluster.is_some() {
        open = open.route("/cluster/nodes", get(cluster::nodes));
    }
    let docs = utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", openapi::document());
    Router::new()
        .merge(guarded)
        .merge(e2b_control)
        .merge(open)
        .merge(docs)
        .fallback(not_found)
        // E2B sandbox traffic (`E2b-Sandbox-Id`) never reaches the routes above.
        .layer(middleware::from_fn_with_state(e2b::SandboxTraffic::new(state.clone(), &in_flight), e2b::divert))
        // In a cluster, a request for another node's sandbox goes there before anything else.
        .layer(middleware::from_fn_with_state(state.clone(), cluster::route))
        .layer(middleware::from_fn_with_state(state.clone(), request_span))
        .with_state(state)
}

/// `routes` behind authentication (with the key's rate limit), then [`bounded`].
fn behind_the_guard(
    routes: Router<AppState>,
    state: &AppState,
    in_flight: &GlobalConcurrencyLimitLayer,
) -> Router<AppState> {
    bounded(routes.route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate)), state, in_flight)
}

/// `routes` behind the request timeout and the server's in-flight bound (503 at once past it).
fn bounded(routes: Router<AppState>, state: &AppState, in_flight: &GlobalConcurrencyLimitLayer) -> Router<AppState> {
    routes.layer(middleware::from_fn_with_state(state.clone(), timeout)).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(guard::overloaded))
            .load_shed()
            // Global: one semaphore shared by every route (a plain concurrency limit would
            // be cloned per route by `Router::layer`).
            .layer(in_flight.clone()),
    )
}

/// JSON bodies whose rejections (bad JSON, wrong types, unknown fields) are [`ApiError`]s.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query strings whose rejections are [`ApiError`]s.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = String)))]
async fn health() -> &'static str {
    "ok"
}

/// Readiness: a backend is configured, the server is not draining and, in a cluster, its lease
/// runs. `soulbox serve` loads (or compiles) every module before it listens, so a server that
/// answers has its runtimes ready.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, body = String), (status = 503, body = error::ErrorBody)))]
async fn ready(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if state.lifecycle.is_draining() {
        return Err(ApiError::Unavailable("the server is shutting down".into()));
    }
    if state.engine.languages().is_empty() {
        return Err(ApiError::Unavailable("no backend is configured".into()));
    }
    if state.cluster.as_ref().is_some_and(|cluster| !cluster.is_live()) {
        return Err(ApiError::Unavailable(crate::cluster::ClusterError::NotLive.to_string()));
    }
    Ok("ready")
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// Bounds the time to produce a response (a streamed body may go on after it).
async fn timeout(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.settings.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(format!("the request took longer than {} ms", limit.as_millis())).into_response(),
    }
}

/// Tells the engine a job is coming ([`Engine::expect_job`]: a parked worker wakes while the
/// request is read and handled) when the request is a POST: every route that runs code is one.
async fn expect_job(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() == axum::http::Method::POST {
        state.engine.expect_job();
    }
    next.run(request).await
}

/// [`expect_job`] for a cell whose events stream as they happen; a cell answered as one JSON
/// value at its end does not hand its work over (the engine starts it on this task).
async fn expect_streamed_job(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if streaming::Delivery::of(request.headers()) != streaming::Delivery::Json {
        state.engine.expect_job();
    }
    next.run(request).await
}

async fn request_span(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let id = request_id(&request);
    let span = tracing::info_span!(
        "request",
        id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        tenant = tracing::field::Empty,
    );
    crate::telemetry::continue_trace(&span, request.headers());
    let started = std::time::Instant::now();
    let declared_body = declares_body(&request);
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    if declared_body && status >= 400 {
        // The body may be unread (a refusal before it was looked at): the connection cannot
        // carry another request, so say so rather than leave the client to find it closed.
        response.headers_mut().insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    span.in_scope(|| tracing::info!(status, took_us = started.elapsed().as_micros() as u64, "answered"));
    let error = response.extensions().get::<error::ErrorCode>().map(|code| code.0);
    state.metrics.response(status, error, started.elapsed());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Whether a request says it has a body (a length above zero, or chunks).
fn declares_body(request: &Request) -> bool {
    let headers = request.headers();
    let length = headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
    headers.contains_key(axum::http::header::TRANSFER_ENCODING) || length.is_some_and(|l| l.trim() != "0")
}

/// The client's `x-request-id` when it is short and plain, else a new one.
fn request_id(request: &Request) -> String {
    let given = request.headers().get("x-request-id").and_then(|v| v.to_str().ok());
    let plain = |id: &&str| {
        !id.is_empty()
            && id.len() <= MAX_REQUEST_ID_CHARS
            && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    };
    match given.filter(plain) {
        Some(id) => id.to_owned(),
        None => uuid::Uuid::new_v4().simple().to_string(),
    }
}

#[cfg(test)]
mod tests;

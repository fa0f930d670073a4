//! The HTTP API (axum): what LLM tool calls hit.
//!
//! [`app`] builds the whole `Router` over an [`AppState`] (the engine and the sandbox registry),
//! so tests drive it with `oneshot` and `soulbox serve` binds it to a socket. Every route lives
//! under `/v1`; `/health` and `/ready` are for operators. Errors are [`ApiError`]s: JSON with a
//! stable code and a clean message. Each request gets a `tracing` span with a request id,
//! which is also returned in `x-request-id`.
//!
//! Bodies are bounded per route ([`JSON_BODY_LIMIT`] for JSON, [`UPLOAD_BODY_LIMIT`] for file
//! uploads, which stream to disk); a cell's events stream as NDJSON or server-sent events.
//! `/metrics` serves Prometheus metrics ([`Metrics`]). Every `/v1` route needs an API key
//! (`Authorization: Bearer sbk_...` or `x-api-key`) naming a [`Tenant`], except in development
//! mode ([`Auth`]); a tenant sees only its own sandboxes: another tenant's id is a 404.

mod auth;
mod error;
mod execute;
mod files;
mod metrics;
mod sandboxes;

pub use auth::{Auth, Tenant};
pub use error::ApiError;
pub use metrics::Metrics;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use soulbox_engine::{Engine, Sandboxes};
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Instrument;

/// Largest JSON body (a stateless request carries up to 64 MiB of inputs, base64-encoded).
pub const JSON_BODY_LIMIT: usize = 96 << 20;
/// Largest file upload (enforced by the upload handler as it streams).
pub const UPLOAD_BODY_LIMIT: usize = 1 << 30;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Runs one-shot executions.
    pub engine: Engine,
    /// Holds the sandboxes.
    pub sandboxes: Sandboxes,
    /// Counts what happens, for `GET /metrics`.
    pub metrics: Metrics,
    /// Who may call, and whose sandboxes are whose.
    pub auth: Auth,
}

/// The whole API.
pub fn app(state: AppState) -> Router {
    let v1 = Router::new()
        .merge(execute::routes())
        .merge(sandboxes::routes())
        .merge(files::routes())
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    Router::new()
        .nest("/v1", v1)
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics::scrape))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), request_span))
        .with_state(state)
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

async fn health() -> &'static str {
    "ok"
}

/// Ready once a backend is configured: `soulbox serve` loads (or compiles) every module before
/// it listens, so a server that answers has its runtimes ready.
async fn ready(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if state.engine.languages().is_empty() {
        return Err(ApiError::Unavailable("no backend is configured".into()));
    }
    Ok("ready")
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn request_span(State(state): State<AppState>, request: Request, next: Next) -> Response {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!(
        "request",
        id,
        method = %request.method(),
        path = %request.uri().path(),
        tenant = tracing::field::Empty,
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "answered"));
    state.metrics.response(response.status().as_u16());
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

#[cfg(test)]
mod tests;

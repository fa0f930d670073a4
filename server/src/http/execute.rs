//! `POST /v1/execute`: one stateless execution, JSON in and out (an [`ExecRequest`] in, an
//! [`ExecResult`] out); `GET /v1/usage`: the caller's usage records, summed.

use super::metrics::Kind;
use super::{ApiError, ApiJson, ApiQuery, AppState, Tenant};
use crate::database::UsageRow;
use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use soulbox_engine::{ExecRequest, ExecResult};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/execute", post(execute)).route("/usage", get(usage))
}

async fn execute(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    ApiJson(request): ApiJson<ExecRequest>,
) -> Result<ApiJson<ExecResult>, ApiError> {
    let language = request.language;
    let result = state.engine.execute(request).await?;
    state.metrics.execution(Kind::Stateless, language, result.outcome, result.duration);
    state.auth.record(&tenant, "stateless", language, result.outcome, result.duration, result.fuel_used);
    Ok(ApiJson(result))
}

/// `?since_ms=` (Unix milliseconds; default: everything).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Since {
    #[serde(default)]
    since_ms: i64,
}

/// `GET /v1/usage`: the caller's executions by kind, language and outcome.
async fn usage(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    ApiQuery(since): ApiQuery<Since>,
) -> Result<ApiJson<Vec<UsageRow>>, ApiError> {
    Ok(ApiJson(state.auth.db().usage(&tenant.0, since.since_ms).await?))
}

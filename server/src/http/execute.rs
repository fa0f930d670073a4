//! `POST /v1/execute`: one stateless execution, JSON in and out ([`ExecuteBody`] in, an
//! [`ExecResult`] out); `GET /v1/usage`: the caller's usage records, summed.

use super::auth::Caller;
use super::openapi::ErrorResponses;
use super::{ApiError, ApiJson, ApiQuery, AppState};
use crate::database::UsageRow;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use soulbox_engine::{ExecRequest, ExecResult, LimitsPatch};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/execute", post(execute)).route("/usage", get(usage))
}

/// `POST /v1/execute`'s body: the engine's own request, with limits as a patch over the
/// server's policy (those left out get its defaults).
pub type ExecuteBody = ExecRequest<LimitsPatch>;

/// Resolves a body into the engine's request under the server's settings: its limits policy,
/// and its configured environment under the body's.
pub fn into_request(body: ExecuteBody, state: &AppState) -> Result<ExecRequest, ApiError> {
    let mut request = body.with_resolved_limits(|patch| state.settings.limits.resolve(patch))?;
    request.env = state.settings.execution_env(std::mem::take(&mut request.env));
    Ok(request)
}

/// Run code once in a fresh, isolated guest and return its whole result.
#[utoipa::path(post, path = "/v1/execute", tag = "executions", request_body = ExecRequest<LimitsPatch>,
    responses((status = 200, description = "The execution ran (see `outcome`)", body = ExecResult), ErrorResponses))]
async fn execute(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ExecuteBody>,
) -> Result<ApiJson<ExecResult>, ApiError> {
    let request = into_request(body, &state)?;
    Ok(ApiJson(state.run_once(&caller, request).await?))
}

/// `?since_ms=` (Unix milliseconds; default: everything), for usage and the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct Since {
    /// Only records from this time on (Unix milliseconds).
    #[serde(default)]
    pub(super) since_ms: i64,
}

/// The caller's executions by kind, language and outcome: count, total duration, fuel.
#[utoipa::path(get, path = "/v1/usage", tag = "usage", params(Since),
    responses((status = 200, body = Vec<UsageRow>), ErrorResponses))]
async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(since): ApiQuery<Since>,
) -> Result<ApiJson<Vec<UsageRow>>, ApiError> {
    Ok(ApiJson(state.auth.db().usage(&caller.tenant.0, since.since_ms).await?))
}

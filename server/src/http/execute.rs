//! `POST /v1/execute`: one stateless execution, JSON in and out (an [`ExecRequest`] in, an
//! [`ExecResult`] out).

use super::metrics::Kind;
use super::{ApiError, ApiJson, AppState};
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use soulbox_engine::{ExecRequest, ExecResult};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/execute", post(execute))
}

async fn execute(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ExecRequest>,
) -> Result<ApiJson<ExecResult>, ApiError> {
    let language = request.language;
    let result = state.engine.execute(request).await?;
    state.metrics.execution(Kind::Stateless, language, result.outcome, result.duration);
    Ok(ApiJson(result))
}

//! `POST /v1/execute`: one stateless execution, JSON in and out (an [`ExecRequest`] in, an
//! [`ExecResult`] out).

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
    Ok(ApiJson(state.engine.execute(request).await?))
}

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
use soulbox_engine::{BackendKind, ExecRequest, ExecResult, InputFile, Language, LimitsPatch};
use std::collections::BTreeMap;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/execute", post(execute)).route("/usage", get(usage))
}

/// One execution: code in a language, with its inputs and limits. Limits left out get the
/// server's defaults. Unknown fields are refused.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteBody {
    /// `python`, `javascript`, `bash`, `c`, `cpp`, `go`, `java`, `ruby` or `php`.
    pub language: Language,
    /// The program text.
    pub code: String,
    /// Bytes the program reads on stdin, base64.
    #[serde(default, with = "soulbox_engine::base64_bytes")]
    #[schema(value_type = String, format = Byte)]
    pub stdin: Vec<u8>,
    /// Arguments after the program name.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables (over the server's configured ones).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Files placed in the workspace before the code runs.
    #[serde(default)]
    pub files: Vec<InputFile>,
    /// Deadline, memory, output and open-file caps, fuel.
    #[serde(default)]
    pub limits: LimitsPatch,
    /// `wasm` or `container`; default: WebAssembly for Python and JavaScript, a container for
    /// the other languages.
    #[serde(default)]
    pub backend: Option<BackendKind>,
}

impl ExecuteBody {
    /// The engine request, under the server's settings.
    pub fn into_request(self, state: &AppState) -> Result<ExecRequest, ApiError> {
        let limits = state.settings.limits.resolve(&self.limits)?;
        let mut request = ExecRequest::new(self.language, self.code).with_stdin(self.stdin).with_args(self.args);
        request.env = state.settings.execution_env(self.env);
        request.files = self.files;
        request.backend = self.backend;
        Ok(request.with_limits(limits))
    }
}

/// Run code once in a fresh, isolated guest and return its whole result.
#[utoipa::path(post, path = "/v1/execute", tag = "executions", request_body = ExecuteBody,
    responses((status = 200, description = "The execution ran (see `outcome`)", body = ExecResult), ErrorResponses))]
async fn execute(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ExecuteBody>,
) -> Result<ApiJson<ExecResult>, ApiError> {
    let request = body.into_request(&state)?;
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

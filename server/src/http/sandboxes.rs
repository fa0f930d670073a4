//! Sandboxes, their contexts, and cells run in them (JSON, NDJSON or server-sent events).

use super::auth::Caller;
use super::no_other_fields::NoOtherFields;
use super::openapi::ErrorResponses;
use super::streaming::{Delivery, streamed};
use super::{ApiError, ApiJson, ApiQuery, AppState};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use soulbox_engine::kernel::Preload;
use soulbox_engine::sandbox::{CheckpointReport, ContextInfo, PauseReport, SandboxInfo};
use soulbox_engine::{Execution, ExecutionEvent, Language, LimitsPatch, RunOptions, SandboxSpec};
use std::collections::BTreeMap;
use std::time::Duration;

/// Query parameters that filter the sandbox list: `metadata.<key>=<value>`.
const METADATA_PREFIX: &str = "metadata.";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sandboxes", post(create).get(list))
        .route("/sandboxes/{id}", get(info).delete(kill))
        .route("/sandboxes/{id}/timeout", post(set_timeout))
        .route("/sandboxes/{id}/pause", post(pause))
        .route("/sandboxes/{id}/checkpoint", post(checkpoint))
        .route("/sandboxes/{id}/resume", post(resume))
        .route("/sandboxes/{id}/fork", post(fork))
        .route("/sandboxes/{id}/contexts", get(contexts).post(create_context))
        .route("/sandboxes/{id}/contexts/{context}", delete(remove_context))
        .route("/sandboxes/{id}/contexts/{context}/restart", post(restart_context))
}

/// A cell's route, apart: whether its work goes to a worker depends on how it is answered.
pub(super) fn cell_routes() -> Router<AppState> {
    Router::new().route("/sandboxes/{id}/execute", post(execute))
}

/// Open a sandbox: a workspace and its template's context, started.
#[utoipa::path(post, path = "/v1/sandboxes", tag = "sandboxes", request_body = SandboxSpec,
    responses((status = 201, description = "Created", body = SandboxInfo), ErrorResponses))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(spec): ApiJson<SandboxSpec>,
) -> Result<(StatusCode, ApiJson<SandboxInfo>), ApiError> {
    let sandbox = state.open_sandbox(&caller, spec).await?;
    Ok((StatusCode::CREATED, ApiJson(sandbox.info())))
}

/// The caller's open sandboxes, oldest first; filter with `metadata.<key>=<value>` query
/// parameters (all must match).
#[utoipa::path(get, path = "/v1/sandboxes", tag = "sandboxes",
    params(("metadata.<key>" = Option<String>, Query, description = "Only sandboxes whose metadata has this value")),
    responses((status = 200, body = Vec<SandboxInfo>), ErrorResponses))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<BTreeMap<String, String>>,
) -> Result<ApiJson<Vec<SandboxInfo>>, ApiError> {
    let mut filter = BTreeMap::new();
    for (key, value) in query {
        let Some(name) = key.strip_prefix(METADATA_PREFIX) else {
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter `{key}`; filter with `{METADATA_PREFIX}<key>=<value>`"
            )));
        };
        filter.insert(name.to_owned(), value);
    }
    Ok(ApiJson(state.list_sandboxes(&caller.tenant, &filter)))
}

/// A sandbox's details.
#[utoipa::path(get, path = "/v1/sandboxes/{id}", tag = "sandboxes", params(("id" = String, Path)),
    responses((status = 200, body = SandboxInfo), ErrorResponses))]
async fn info(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<SandboxInfo>, ApiError> {
    Ok(ApiJson(state.sandbox(&caller.tenant, &id)?.info()))
}

/// Kill a sandbox: a running cell stops, its contexts and workspace are gone.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}", tag = "sandboxes", params(("id" = String, Path)),
    responses((status = 204, description = "Killed"), ErrorResponses))]
async fn kill(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.kill_sandbox(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// New timeouts, counted from now.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Timeouts {
    /// Idle time before the sandbox is killed.
    idle_timeout_ms: Option<u64>,
    /// Time from now before it is killed.
    lifetime_ms: Option<u64>,
}

/// Change a sandbox's idle timeout or remaining lifetime.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/timeout", tag = "sandboxes", params(("id" = String, Path)),
    request_body = Timeouts, responses((status = 200, body = SandboxInfo), ErrorResponses))]
async fn set_timeout(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(timeouts): ApiJson<Timeouts>,
) -> Result<ApiJson<SandboxInfo>, ApiError> {
    let sandbox = state.sandbox(&caller.tenant, &id)?;
    sandbox.set_timeouts(
        timeouts.idle_timeout_ms.map(Duration::from_millis),
        timeouts.lifetime_ms.map(Duration::from_millis),
    )?;
    Ok(ApiJson(sandbox.info()))
}

/// Pause a sandbox: every context is checkpointed to disk and its memory released (after the
/// cell it is running). Any cell, or `/resume`, brings it back with its state. Its container,
/// if it has one, is stopped with its processes (`processes_restored: false`,
/// `processes_stopped`); the workspace stays and the next command starts a container. 409 when a context
/// holds something a checkpoint cannot carry (an open file).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/pause", tag = "sandboxes", params(("id" = String, Path)),
    responses((status = 200, body = PauseReport), ErrorResponses))]
async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<PauseReport>, ApiError> {
    let sandbox = state.sandbox(&caller.tenant, &id)?;
    Ok(ApiJson(sandbox.pause().await?))
}

/// Checkpoint a sandbox without pausing it: every context is checkpointed (after the cell it
/// is running) and stays live, and the checkpoint is synced to disk, so a server that stops
/// before the next cell, even killed, hands the sandbox back as it is now. Only what changed
/// since the last checkpoint is written (`new_bytes`). 409 when a context holds something a
/// checkpoint cannot carry (an open file), or when a cell ran meanwhile.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/checkpoint", tag = "sandboxes", params(("id" = String, Path)),
    responses((status = 200, body = CheckpointReport), ErrorResponses))]
async fn checkpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<CheckpointReport>, ApiError> {
    let sandbox = state.sandbox(&caller.tenant, &id)?;
    Ok(ApiJson(sandbox.checkpoint().await?))
}

/// Resume a paused sandbox now (a cell would resume its own context on demand). A checkpoint
/// that fails its check is refused (`checkpoint_unusable`) and the sandbox stays paused.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/resume", tag = "sandboxes", params(("id" = String, Path)),
    responses((status = 200, body = SandboxInfo), ErrorResponses))]
async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<SandboxInfo>, ApiError> {
    let sandbox = state.sandbox(&caller.tenant, &id)?;
    Ok(ApiJson(sandbox.resume().await?))
}

/// How many forks to make.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ForkBody {
    /// Forks to make, 1 to 100 (default 1).
    #[serde(default = "one")]
    count: usize,
}

fn one() -> usize {
    1
}

/// Fork a sandbox (live or paused) into `count` new, independent sandboxes: each starts with
/// the source's variables, imports and objects in every context and a copy of its files, gets
/// fresh random state, and shares nothing afterwards. Processes are not forked. All or none:
/// past the caller's sandbox quota, nothing is made (429).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/fork", tag = "sandboxes", params(("id" = String, Path)),
    request_body = ForkBody, responses((status = 201, body = Vec<SandboxInfo>), ErrorResponses))]
async fn fork(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ForkBody>,
) -> Result<(StatusCode, ApiJson<Vec<SandboxInfo>>), ApiError> {
    let forks = state.fork_sandbox(&caller, &id, body.count).await?;
    Ok((StatusCode::CREATED, ApiJson(forks.iter().map(|fork| fork.info()).collect())))
}

/// A sandbox's contexts.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/contexts", tag = "contexts", params(("id" = String, Path)),
    responses((status = 200, body = Vec<ContextInfo>), ErrorResponses))]
async fn contexts(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<Vec<ContextInfo>>, ApiError> {
    Ok(ApiJson(state.sandbox(&caller.tenant, &id)?.contexts()))
}

/// A new context.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewContext {
    /// Its language.
    language: Language,
    /// What it imports first (default: nothing, or the template's preload).
    #[serde(default)]
    preload: Option<Preload>,
}

/// Start another context (a Python or JavaScript kernel) in a sandbox.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/contexts", tag = "contexts", params(("id" = String, Path)),
    request_body = NewContext, responses((status = 201, body = ContextInfo), ErrorResponses))]
async fn create_context(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(new): ApiJson<NewContext>,
) -> Result<(StatusCode, ApiJson<ContextInfo>), ApiError> {
    let context = state.sandbox(&caller.tenant, &id)?.create_context(new.language, new.preload).await?;
    Ok((StatusCode::CREATED, ApiJson(context)))
}

/// Restart a context: its variables are gone.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/contexts/{context}/restart", tag = "contexts",
    params(("id" = String, Path), ("context" = String, Path)),
    responses((status = 200, body = ContextInfo), ErrorResponses))]
async fn restart_context(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, context)): Path<(String, String)>,
) -> Result<ApiJson<ContextInfo>, ApiError> {
    Ok(ApiJson(state.sandbox(&caller.tenant, &id)?.restart_context(&context).await?))
}

/// Remove a context.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}/contexts/{context}", tag = "contexts",
    params(("id" = String, Path), ("context" = String, Path)),
    responses((status = 204, description = "Removed"), ErrorResponses))]
async fn remove_context(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, context)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.sandbox(&caller.tenant, &id)?.remove_context(&context).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A cell to run: its code, and the engine's [`RunOptions`] (`context`, `language`,
/// `limits`) flattened beside it, with limits left out getting the server's defaults.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CellRequest {
    /// The code.
    code: String,
    #[serde(flatten)]
    options: RunOptions<LimitsPatch>,
    #[serde(flatten)]
    #[schema(ignore)]
    _others: NoOtherFields,
}

/// Run a cell in a sandbox's context. With `Accept: application/x-ndjson` each event is a JSON
/// line as it happens; with `Accept: text/event-stream`, a server-sent event named after its
/// type (`stdout`, `stderr`, `result`, `error`, `end`; `failure` if the run fails midway);
/// otherwise the whole `Execution` once the cell ends.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/execute", tag = "sandboxes", params(("id" = String, Path)),
    request_body = CellRequest,
    responses(
        (status = 200, description = "The cell ran (JSON), or its events (NDJSON, SSE)",
            content((Execution = "application/json"), (ExecutionEvent = "application/x-ndjson"),
                (ExecutionEvent = "text/event-stream"))),
        ErrorResponses))]
async fn execute(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(cell): ApiJson<CellRequest>,
) -> Result<Response, ApiError> {
    let sandbox = state.sandbox(&caller.tenant, &id)?;
    let options = cell.options.with_resolved_limits(|patch| state.settings.limits.resolve(patch))?;
    let delivery = Delivery::of(&headers);
    if delivery == Delivery::Json {
        let execution: Execution = state.run_cell(&caller, &sandbox, &cell.code, options).await?;
        return Ok(ApiJson(execution).into_response());
    }
    let items = state.stream_cell(&caller, &sandbox, &cell.code, options).await?;
    Ok(streamed(delivery, items))
}

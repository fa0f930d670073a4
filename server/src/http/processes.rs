//! A sandbox's native processes (in its container): commands run to their end or streamed,
//! background processes (list, stdin, close stdin, kill, wait, output), terminals (PTY:
//! create with a size, input, resize, kill, output), and the headless browser.

use super::auth::Caller;
use super::no_other_fields::NoOtherFields;
use super::openapi::ErrorResponses;
use super::streaming::{Delivery, streamed};
use super::{ApiError, ApiJson, AppState};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde::Deserialize;
use soulbox_engine::LimitsPatch;
use soulbox_engine::process::{ProcessEvent, ProcessExit, ProcessSpec, PtySize, RenderRequest, RenderedPage};
use soulbox_engine::sandbox::{CommandResult, ProcessInfo};
use std::time::Duration;

/// Most bytes one stdin write carries.
pub const MAX_STDIN_WRITE_BYTES: usize = 1 << 20;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sandboxes/{id}/commands", post(command))
        .route("/sandboxes/{id}/processes", get(list))
        .route("/sandboxes/{id}/processes/{pid}", get(info).delete(kill))
        .route("/sandboxes/{id}/processes/{pid}/stdin", post(stdin))
        .route("/sandboxes/{id}/processes/{pid}/stdin/close", post(close_stdin))
        .route("/sandboxes/{id}/processes/{pid}/resize", post(resize))
        .route("/sandboxes/{id}/processes/{pid}/output", get(output))
        .route("/sandboxes/{id}/processes/{pid}/wait", post(wait))
        .route("/sandboxes/{id}/render", post(render_in_sandbox))
        .route("/render", post(render))
}

/// A command for a sandbox's container: the engine's [`ProcessSpec`] (`command`, `cwd`, `env`,
/// `timeout_ms`, `pty`; with `pty` and no command, an interactive shell) and how to answer.
/// A foreground command gets the server's default deadline and may not ask for more than its
/// maximum.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CommandBody {
    #[serde(flatten)]
    spec: ProcessSpec,
    /// Start it and answer at once (201 with its pid); read it through `/processes/{pid}`.
    /// A command with `pty` always runs in the background.
    #[serde(default)]
    background: bool,
    #[serde(flatten)]
    #[schema(ignore)]
    _others: NoOtherFields,
}

/// Run a command in the sandbox's container (made on the first command, sharing the
/// workspace). In the foreground: its whole result as JSON, or its events as they happen
/// (`Accept: application/x-ndjson` or `text/event-stream`: `stdout`, `stderr`, then `exit`).
/// With `background` or `pty`: 201 and the process, at once.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/commands", tag = "processes", params(("id" = String, Path)),
    request_body = CommandBody,
    responses(
        (status = 200, description = "The command ran (JSON), or its events (NDJSON, SSE)",
            content((CommandResult = "application/json"), (ProcessEvent = "application/x-ndjson"),
                (ProcessEvent = "text/event-stream"))),
        (status = 201, description = "Started in the background", body = ProcessInfo),
        ErrorResponses))]
async fn command(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CommandBody>,
) -> Result<Response, ApiError> {
    let sandbox = state.sandbox(&caller.tenant, &id)?;
    let mut spec = body.spec;
    let background = body.background || spec.pty.is_some();
    // A foreground command answers within the request timeout: it gets the server's deadline
    // policy (default and maximum). A background one runs until it ends, is killed, reaches
    // its own `timeout_ms`, or the sandbox dies.
    if !background {
        let asked = LimitsPatch {
            deadline_ms: spec.deadline.map(|d: Duration| d.as_millis().try_into().unwrap_or(u64::MAX)),
            ..LimitsPatch::default()
        };
        spec.deadline = Some(state.settings.limits.resolve(&asked)?.deadline);
    }
    if background {
        let info = state.spawn_process(&caller, &sandbox, spec).await?;
        return Ok((StatusCode::CREATED, ApiJson(info)).into_response());
    }
    let delivery = Delivery::of(&headers);
    if delivery == Delivery::Json {
        return Ok(ApiJson(state.run_command(&caller, &sandbox, spec).await?).into_response());
    }
    let events = state.stream_command(&caller, &sandbox, spec).await?;
    Ok(streamed(delivery, events))
}

/// The sandbox's processes: running ones and recently finished ones.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/processes", tag = "processes", params(("id" = String, Path)),
    responses((status = 200, body = Vec<ProcessInfo>), ErrorResponses))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<Vec<ProcessInfo>>, ApiError> {
    Ok(ApiJson(state.sandbox(&caller.tenant, &id)?.processes()))
}

/// One process.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/processes/{pid}", tag = "processes",
    params(("id" = String, Path), ("pid" = u32, Path)), responses((status = 200, body = ProcessInfo), ErrorResponses))]
async fn info(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, pid)): Path<(String, u32)>,
) -> Result<ApiJson<ProcessInfo>, ApiError> {
    Ok(ApiJson(state.sandbox(&caller.tenant, &id)?.process(pid)?))
}

/// Kill a process and everything it started.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}/processes/{pid}", tag = "processes",
    params(("id" = String, Path), ("pid" = u32, Path)), responses((status = 204, description = "Killed"), ErrorResponses))]
async fn kill(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, pid)): Path<(String, u32)>,
) -> Result<StatusCode, ApiError> {
    state.sandbox(&caller.tenant, &id)?.kill_process(pid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Write the body's bytes to a process's standard input (a terminal's input, for a PTY).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/processes/{pid}/stdin", tag = "processes",
    params(("id" = String, Path), ("pid" = u32, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 204, description = "Written"), ErrorResponses))]
async fn stdin(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, pid)): Path<(String, u32)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    if body.len() > MAX_STDIN_WRITE_BYTES {
        return Err(ApiError::TooLarge(format!("one write carries at most {MAX_STDIN_WRITE_BYTES} bytes")));
    }
    state.sandbox(&caller.tenant, &id)?.send_stdin(pid, body.to_vec()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Close a process's standard input (it reads end of file).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/processes/{pid}/stdin/close", tag = "processes",
    params(("id" = String, Path), ("pid" = u32, Path)), responses((status = 204, description = "Closed"), ErrorResponses))]
async fn close_stdin(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, pid)): Path<(String, u32)>,
) -> Result<StatusCode, ApiError> {
    state.sandbox(&caller.tenant, &id)?.close_stdin(pid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Resize a PTY process's terminal.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/processes/{pid}/resize", tag = "processes",
    params(("id" = String, Path), ("pid" = u32, Path)), request_body = PtySize,
    responses((status = 204, description = "Resized"), ErrorResponses))]
async fn resize(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, pid)): Path<(String, u32)>,
    ApiJson(size): ApiJson<PtySize>,
) -> Result<StatusCode, ApiError> {
    if size.cols == 0 || size.rows == 0 {
        return Err(ApiError::BadRequest("a terminal needs at least one column and one row".into()));
    }
    state.sandbox(&caller.tenant, &id)?.resize_pty(pid, size).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A process's output: what is kept of it so far, then what comes, to its `exit` (NDJSON by
/// default, or server-sent events).
#[utoipa::path(get, path = "/v1/sandboxes/{id}/processes/{pid}/output", tag = "processes",
    params(("id" = String, Path), ("pid" = u32, Path)),
    responses((status = 200, description = "Events", content((ProcessEvent = "application/x-ndjson"),
        (ProcessEvent = "text/event-stream"))), ErrorResponses))]
async fn output(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, pid)): Path<(String, u32)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let events = state.sandbox(&caller.tenant, &id)?.process_output(pid)?;
    let delivery = match Delivery::of(&headers) {
        Delivery::Json => Delivery::Ndjson,
        other => other,
    };
    Ok(streamed(delivery, events.map(Ok::<_, ApiError>)))
}

/// Wait for a process to end (bounded by the server's request timeout).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/processes/{pid}/wait", tag = "processes",
    params(("id" = String, Path), ("pid" = u32, Path)), responses((status = 200, body = ProcessExit), ErrorResponses))]
async fn wait(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, pid)): Path<(String, u32)>,
) -> Result<ApiJson<ProcessExit>, ApiError> {
    Ok(ApiJson(state.sandbox(&caller.tenant, &id)?.wait_process(pid).await?))
}

/// Render a page (a URL, a workspace file such as `{"path": "/report.html"}`, or HTML) in
/// the sandbox's headless browser: PNG, optionally PDF, and the page's title, text and links.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/render", tag = "browser", params(("id" = String, Path)),
    request_body = RenderRequest, responses((status = 200, body = RenderedPage), ErrorResponses))]
async fn render_in_sandbox(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<RenderRequest>,
) -> Result<ApiJson<RenderedPage>, ApiError> {
    let sandbox = state.sandbox(&caller.tenant, &id)?;
    Ok(ApiJson(state.render(&caller, Some(&sandbox), request).await?))
}

/// Render a page (a URL or HTML) in a fresh headless browser.
#[utoipa::path(post, path = "/v1/render", tag = "browser", request_body = RenderRequest,
    responses((status = 200, body = RenderedPage), ErrorResponses))]
async fn render(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<RenderRequest>,
) -> Result<ApiJson<RenderedPage>, ApiError> {
    Ok(ApiJson(state.render(&caller, None, request).await?))
}

//! Sandboxes, their contexts, and cells run in them (JSON, NDJSON or server-sent events).

use super::metrics::Kind;
use super::{ApiError, ApiJson, ApiQuery, AppState, Tenant};
use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use futures_util::StreamExt;
use serde::Deserialize;
use soulbox_engine::kernel::Preload;
use soulbox_engine::sandbox::{ContextInfo, SandboxInfo};
use soulbox_engine::{Execution, ExecutionEvent, Language, Limits, RunOptions, SandboxSpec};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

/// Query parameters that filter the sandbox list: `metadata.<key>=<value>`.
const METADATA_PREFIX: &str = "metadata.";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sandboxes", post(create).get(list))
        .route("/sandboxes/{id}", get(info).delete(kill))
        .route("/sandboxes/{id}/timeout", post(set_timeout))
        .route("/sandboxes/{id}/contexts", get(contexts).post(create_context))
        .route("/sandboxes/{id}/contexts/{context}", delete(remove_context))
        .route("/sandboxes/{id}/contexts/{context}/restart", post(restart_context))
        .route("/sandboxes/{id}/execute", post(execute))
}

async fn create(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    ApiJson(spec): ApiJson<SandboxSpec>,
) -> Result<(StatusCode, ApiJson<SandboxInfo>), ApiError> {
    let sandbox = state.sandboxes.create(spec).await?;
    if let Err(error) = state.auth.own(&tenant, &sandbox).await {
        let _ = state.sandboxes.kill(sandbox.id());
        return Err(error);
    }
    Ok((StatusCode::CREATED, ApiJson(sandbox.info())))
}

async fn list(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
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
    Ok(ApiJson(state.list_sandboxes(&tenant, &filter)))
}

async fn info(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<ApiJson<SandboxInfo>, ApiError> {
    Ok(ApiJson(state.sandbox(&tenant, &id)?.info()))
}

async fn kill(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.sandbox(&tenant, &id)?;
    state.sandboxes.kill(&id)?;
    state.auth.disown(&id);
    Ok(StatusCode::NO_CONTENT)
}

/// New timeouts, counted from now.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Timeouts {
    idle_timeout_ms: Option<u64>,
    lifetime_ms: Option<u64>,
}

async fn set_timeout(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    ApiJson(timeouts): ApiJson<Timeouts>,
) -> Result<ApiJson<SandboxInfo>, ApiError> {
    let sandbox = state.sandbox(&tenant, &id)?;
    sandbox.set_timeouts(
        timeouts.idle_timeout_ms.map(Duration::from_millis),
        timeouts.lifetime_ms.map(Duration::from_millis),
    )?;
    Ok(ApiJson(sandbox.info()))
}

async fn contexts(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<ApiJson<Vec<ContextInfo>>, ApiError> {
    Ok(ApiJson(state.sandbox(&tenant, &id)?.contexts()))
}

/// A new context.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewContext {
    language: Language,
    #[serde(default)]
    preload: Option<Preload>,
}

async fn create_context(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    ApiJson(new): ApiJson<NewContext>,
) -> Result<(StatusCode, ApiJson<ContextInfo>), ApiError> {
    let context = state.sandbox(&tenant, &id)?.create_context(new.language, new.preload).await?;
    Ok((StatusCode::CREATED, ApiJson(context)))
}

async fn restart_context(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path((id, context)): Path<(String, String)>,
) -> Result<ApiJson<ContextInfo>, ApiError> {
    Ok(ApiJson(state.sandbox(&tenant, &id)?.restart_context(&context).await?))
}

async fn remove_context(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path((id, context)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.sandbox(&tenant, &id)?.remove_context(&context)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A cell to run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CellRequest {
    code: String,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    language: Option<Language>,
    #[serde(default)]
    limits: Limits,
}

/// How the client wants a cell's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Json,
    Ndjson,
    Sse,
}

fn delivery(headers: &HeaderMap) -> Delivery {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if accept.contains("text/event-stream") {
        Delivery::Sse
    } else if accept.contains("application/x-ndjson") || accept.contains("application/jsonl") {
        Delivery::Ndjson
    } else {
        Delivery::Json
    }
}

/// Runs a cell. With `Accept: application/x-ndjson` each event is a JSON line as it happens;
/// with `Accept: text/event-stream`, a server-sent event named after its type; otherwise the
/// whole [`Execution`] once the cell ends.
async fn execute(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(cell): ApiJson<CellRequest>,
) -> Result<Response, ApiError> {
    let sandbox = state.sandbox(&tenant, &id)?;
    let language = cell_language(&sandbox, &cell);
    let options = RunOptions { context: cell.context, language: cell.language, limits: cell.limits };
    let delivery = delivery(&headers);
    let metrics = state.metrics.clone();
    if delivery == Delivery::Json {
        let execution: Execution = sandbox.run_code(&cell.code, options).await?;
        metrics.execution(Kind::Cell, language, execution.end.outcome, execution.end.duration);
        let end = &execution.end;
        state.auth.record(&tenant, "cell", language, end.outcome, end.duration, end.fuel_used);
        return Ok(ApiJson(execution).into_response());
    }
    let events = sandbox.run_code_stream(&cell.code, options).await?;
    // A failure after the stream started (busy, backend fault) becomes a `failure` item.
    let auth = state.auth.clone();
    let items = events.map(move |item| {
        if let Ok(ExecutionEvent::End(end)) = &item {
            metrics.execution(Kind::Cell, language, end.outcome, end.duration);
            auth.record(&tenant, "cell", language, end.outcome, end.duration, end.fuel_used);
        }
        item.map_err(ApiError::from)
    });
    Ok(match delivery {
        Delivery::Sse => Sse::new(items.map(|item| Ok::<_, Infallible>(sse_event(item)))).into_response(),
        _ => {
            let lines = items.map(|item| Ok::<_, Infallible>(ndjson_line(item)));
            ([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(lines)).into_response()
        }
    })
}

/// The language a cell runs in, for metrics: its context's, else the one asked for, else the
/// template's.
fn cell_language(sandbox: &soulbox_engine::Sandbox, cell: &CellRequest) -> Language {
    let of_context = cell.context.as_ref().and_then(|id| sandbox.contexts().into_iter().find(|c| &c.id == id));
    of_context.map(|c| c.language).or(cell.language).unwrap_or(sandbox.template().language())
}

fn ndjson_line(item: Result<ExecutionEvent, ApiError>) -> String {
    let mut line = match item {
        Ok(event) => serde_json::to_string(&event).unwrap_or_default(),
        Err(error) => failure_json(&error).to_string(),
    };
    line.push('\n');
    line
}

fn sse_event(item: Result<ExecutionEvent, ApiError>) -> Event {
    match item {
        Ok(event) => {
            let data = serde_json::to_value(&event).unwrap_or_default();
            let kind = data["type"].as_str().unwrap_or("event").to_owned();
            Event::default().event(kind).data(data.to_string())
        }
        Err(error) => Event::default().event("failure").data(failure_json(&error).to_string()),
    }
}

fn failure_json(error: &ApiError) -> serde_json::Value {
    serde_json::json!({"type": "failure", "code": error.code(), "message": error.to_string()})
}

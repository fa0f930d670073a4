//! E2B's code interpreter over a sandbox's WebAssembly contexts: `POST /execute` streamed as
//! NDJSON, and `/contexts` (create, list, restart, remove).
//!
//! Lines are E2B's: `stdout`/`stderr` with a timestamp, `result` (a string's `text` without
//! its quotes, a DataFrame's `data` as `to_dict(orient="list")`), `error` with name, value and
//! traceback, `number_of_executions`, `keepalive` while a cell is silent, `end_of_execution`
//! last; never a blank line. A cell runs to the server's longest deadline (E2B's cells have
//! none of their own; the SDK's 300 s is client-side).
//!
//! Python contexts work in E2B's home: each is set up with one cell that changes directory
//! ([`PYTHON_SETUP`]), which E2B's execution count does not include.

use super::HOME;
use super::traffic::TargetSandbox;
use super::wire;
use crate::http::auth::Caller;
use crate::http::{ApiError, ApiJson, AppState, Settings};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use soulbox_engine::{ExecutionEvent, Language, Outcome, RichResult, RunOptions, Sandbox};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a cell may be silent before a `keepalive` line (E2B's server sends one every 5 s).
const KEEPALIVE: Duration = Duration::from_secs(5);

/// The cell that makes a Python context's working directory E2B's home (its only effect).
pub const PYTHON_SETUP: &str = "__import__('os').chdir('/home/user')";

pub(super) fn routes(settings: &Settings) -> Router<AppState> {
    Router::new()
        .route("/execute", post(execute))
        .route("/contexts", get(list).post(create))
        .route("/contexts/{id}", delete(remove))
        .route("/contexts/{id}/restart", post(restart))
        .route("/health", get(|| async { StatusCode::NO_CONTENT }))
        .layer(DefaultBodyLimit::max(settings.json_body_limit))
}

/// Runs [`PYTHON_SETUP`] in Python context `context` (fresh, or just restarted).
pub async fn set_up_context(
    state: &AppState,
    caller: &Caller,
    sandbox: &Sandbox,
    context: &str,
) -> Result<(), ApiError> {
    let options = RunOptions {
        context: Some(context.to_owned()),
        limits: state.settings.limits.defaults.clone(),
        ..RunOptions::default()
    };
    let done = state.run_cell(caller, sandbox, PYTHON_SETUP, options).await?;
    match done.error {
        None => Ok(()),
        Some(error) => Err(ApiError::Internal(format!("setting up a context: {}: {}", error.name, error.value))),
    }
}

/// `POST /execute`'s body: always all four keys, nulls included.
#[derive(Debug, Deserialize)]
struct ExecuteRequest {
    code: String,
    #[serde(default)]
    context_id: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    env_vars: Option<BTreeMap<String, String>>,
}

/// E2B's language names as SoulBox's; a language no context here runs is refused by name.
fn language(name: &str) -> Result<Language, ApiError> {
    match serde_json::from_value::<Language>(json!(name.to_ascii_lowercase())) {
        Ok(language @ (Language::Python | Language::JavaScript | Language::TypeScript)) => Ok(language),
        _ => Err(ApiError::BadRequest(format!(
            "language `{name}` is not available in SoulBox's code interpreter (python, javascript and typescript are)"
        ))),
    }
}

async fn execute(
    State(state): State<AppState>,
    caller: Caller,
    TargetSandbox(sandbox): TargetSandbox,
    ApiJson(request): ApiJson<ExecuteRequest>,
) -> Result<Response, ApiError> {
    let lines = start(&state, &caller, &sandbox, request).await?;
    let body = Body::from_stream(lines.map(Ok::<_, std::convert::Infallible>));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// Starts the cell; its lines follow as they happen.
async fn start(
    state: &AppState,
    caller: &Caller,
    sandbox: &Sandbox,
    request: ExecuteRequest,
) -> Result<BoxStream<'static, Bytes>, ApiError> {
    if request.context_id.is_some() && request.language.is_some() {
        return Err(ApiError::BadRequest("give either `context_id` or `language`, not both".into()));
    }
    if request.env_vars.as_ref().is_some_and(|vars| !vars.is_empty()) {
        return Err(ApiError::BadRequest(
            "per-cell `env_vars` are not supported by SoulBox: pass `envs` to `Sandbox.create`".into(),
        ));
    }
    let mut limits = state.settings.limits.defaults.clone();
    limits.deadline = state.settings.limits.max_deadline;
    let language = request.language.as_deref().map(language).transpose()?;
    // The context by id, so a Python context a cell restarts (out of memory) can be set up
    // again: the one named, else the language's default if it has one yet.
    let context = request.context_id.or_else(|| sandbox.default_context_id(language.unwrap_or(Language::Python)));
    let options = RunOptions { context: context.clone(), language, limits };
    let events = state.stream_cell(caller, sandbox, &request.code, options).await?;
    let follow_up = FollowUp { state: state.clone(), caller: caller.clone(), sandbox: sandbox.clone(), context };
    Ok(lines(events, follow_up).boxed())
}

/// What to do after a cell that restarted its context.
#[derive(Clone)]
struct FollowUp {
    state: AppState,
    caller: Caller,
    sandbox: Sandbox,
    context: Option<String>,
}

impl FollowUp {
    /// A Python context the cell restarted works in `/` again: set it up as the first was.
    async fn context_restarted(&self) {
        let Some(context) = &self.context else { return };
        if let Err(error) = set_up_context(&self.state, &self.caller, &self.sandbox, context).await {
            tracing::warn!(%error, context, "a restarted context could not be set up in the home directory");
        }
    }
}

/// What a cell's events become on the wire, with keepalives while it is silent.
fn lines(
    events: impl Stream<Item = Result<ExecutionEvent, ApiError>> + Send + 'static,
    follow_up: FollowUp,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let events = Box::pin(events);
    futures_util::stream::unfold(Some((events, false)), move |progress| {
        let follow_up = follow_up.clone();
        async move {
            let (mut events, mut failed) = progress?;
            let event = match tokio::time::timeout(KEEPALIVE, events.next()).await {
                Err(_) => return Some((vec![line(json!({ "type": "keepalive" }))], Some((events, failed)))),
                Ok(None) => return None,
                Ok(Some(event)) => event,
            };
            let out = match event {
                Ok(ExecutionEvent::Stdout { text }) => vec![output("stdout", text)],
                Ok(ExecutionEvent::Stderr { text }) => vec![output("stderr", text)],
                Ok(ExecutionEvent::Result(result)) => vec![line(result_json(result))],
                Ok(ExecutionEvent::Error(error)) => {
                    failed = true;
                    vec![line(json!({ "type": "error", "name": error.name, "value": error.value, "traceback": error.traceback }))]
                }
                Ok(ExecutionEvent::End(end)) => {
                    let mut out = Vec::new();
                    if end.outcome != Outcome::Completed && !failed {
                        let value = end.message.clone().unwrap_or_else(|| end.outcome.name().to_owned());
                        out.push(line(json!({ "type": "error", "name": outcome_name(end.outcome), "value": value, "traceback": "" })));
                    }
                    let setup_cells = u64::from(end.language == Language::Python);
                    if end.context_restarted && end.language == Language::Python {
                        follow_up.context_restarted().await;
                    }
                    let count = end.execution_count.saturating_sub(setup_cells);
                    out.push(line(json!({ "type": "number_of_executions", "execution_count": count })));
                    out.push(line(json!({ "type": "end_of_execution" })));
                    out
                }
                Ok(_) => Vec::new(),
                Err(error) => vec![line(json!({ "type": "error", "name": "UnexpectedEndOfExecution", "value": error.to_string(), "traceback": "" }))],
            };
            Some((out, Some((events, failed))))
        }
    })
    .flat_map(futures_util::stream::iter)
}

fn line(value: Value) -> Bytes {
    let mut bytes = serde_json::to_vec(&value).expect("JSON values serialize");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn output(kind: &str, text: String) -> Bytes {
    line(json!({ "type": kind, "text": text, "timestamp": wire::now() }))
}

/// The exception name E2B's users see for a cell a limit stopped.
fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::DeadlineExceeded => "TimeoutError",
        Outcome::MemoryExceeded => "MemoryError",
        Outcome::OutputLimitExceeded => "OutputLimitExceeded",
        _ => "UnexpectedEndOfExecution",
    }
}

/// A rich result as E2B's `Result`.
fn result_json(result: RichResult) -> Value {
    let mut value = serde_json::to_value(&result).expect("results serialize");
    if let Some(text) = value.get("text").and_then(Value::as_str) {
        value["text"] = json!(unquoted(text));
    }
    if let Some(data) = value.get("data").and_then(columns_as_lists) {
        value["data"] = data;
    }
    value["type"] = json!("result");
    value
}

/// A string's repr without its one pair of quotes, as IPython's `text/plain` is shown by E2B.
fn unquoted(text: &str) -> &str {
    let quoted = text.len() >= 2
        && ((text.starts_with('\'') && text.ends_with('\'')) || (text.starts_with('"') && text.ends_with('"')));
    if quoted { &text[1..text.len() - 1] } else { text }
}

/// SoulBox's table (`{"columns", "index", "data": rows}`) as `to_dict(orient="list")`.
fn columns_as_lists(table: &Value) -> Option<Value> {
    let columns = table.get("columns")?.as_array()?;
    let rows = table.get("data")?.as_array()?;
    let mut dict = serde_json::Map::new();
    for (i, column) in columns.iter().enumerate() {
        let name = column.as_str().map_or_else(|| column.to_string(), str::to_owned);
        let values = rows.iter().map(|row| row.get(i).cloned().unwrap_or(Value::Null)).collect();
        dict.insert(name, Value::Array(values));
    }
    Some(Value::Object(dict))
}

/// `POST /contexts`'s body: each key only when the caller gave it.
#[derive(Debug, Default, Deserialize)]
struct NewContext {
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    cwd: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    TargetSandbox(sandbox): TargetSandbox,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: NewContext = wire::optional_json(&body)?;
    let language = request.language.as_deref().map(language).transpose()?.unwrap_or(Language::Python);
    let cwd = wire::workspace_path(request.cwd.as_deref().unwrap_or(HOME));
    if cwd != HOME {
        return Err(ApiError::BadRequest(format!(
            "a context's `cwd` is {HOME} in SoulBox; change directory in the context's code instead of {cwd}"
        )));
    }
    let context = sandbox.create_context(language, None).await?;
    if language == Language::Python
        && let Err(error) = set_up_context(&state, &caller, &sandbox, &context.id).await
    {
        let _ = sandbox.remove_context(&context.id).await;
        return Err(error);
    }
    Ok(axum::Json(json!({ "id": context.id, "language": language.name(), "cwd": cwd })).into_response())
}

async fn list(TargetSandbox(sandbox): TargetSandbox) -> Response {
    let contexts: Vec<Value> =
        sandbox.contexts().iter().map(|c| json!({ "id": c.id, "language": c.language.name(), "cwd": HOME })).collect();
    axum::Json(contexts).into_response()
}

async fn restart(
    State(state): State<AppState>,
    caller: Caller,
    TargetSandbox(sandbox): TargetSandbox,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let context = sandbox.restart_context(&id).await?;
    if context.language == Language::Python {
        set_up_context(&state, &caller, &sandbox, &context.id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(TargetSandbox(sandbox): TargetSandbox, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    sandbox.remove_context(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_lose_their_quotes_and_tables_become_lists_per_column() {
        assert_eq!(unquoted("'abc'"), "abc");
        assert_eq!(unquoted("\"it's\""), "it's");
        assert_eq!(unquoted("42"), "42");
        let table = json!({"columns": ["a", "b"], "index": [0, 1], "data": [[1, 3], [2, 4]]});
        assert_eq!(columns_as_lists(&table).unwrap(), json!({"a": [1, 2], "b": [3, 4]}));
    }

    #[test]
    fn the_setup_cell_only_changes_directory() {
        assert!(PYTHON_SETUP.contains("chdir('/home/user')") && !PYTHON_SETUP.contains('\n'));
    }
}

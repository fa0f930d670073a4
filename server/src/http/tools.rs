//! Tools for LLM clients: each tool's arguments (a JSON Schema through `schemars`), its
//! implementation over the shared [operations](super::operations), and the REST face:
//! `GET /v1/tools` (the definitions for OpenAI and Anthropic function calling, and MCP) and
//! `POST /v1/tools/call` (run a tool call a model made).
//!
//! The MCP endpoint ([`super::mcp`]) exposes the same tools with the same definitions and the
//! same implementations, so a tool behaves alike whichever way a model reaches it. A tool's
//! failure (a bad path, an unknown sandbox) is a [`ToolReply`] the model can read and act on,
//! not a transport error.

use super::auth::Caller;
use super::openapi::ErrorResponses;
use super::{ApiError, ApiJson, ApiQuery, AppState};
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use soulbox_engine::{ExecRequest, Execution, Language, LimitsPatch, RunOptions, SandboxSpec, Template};
use std::collections::BTreeMap;

/// Largest file `read_file` returns (a model's context is small).
pub const MAX_READ_BYTES: usize = 1 << 20;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/tools", get(definitions)).route("/tools/call", post(call))
}

/// A language, as tools take it.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolLanguage {
    /// CPython 3.15 with numpy, pandas, matplotlib (WebAssembly).
    Python,
    /// QuickJS (ES2023, WebAssembly).
    Javascript,
    /// A bash script (container).
    Bash,
    /// C, gcc (container).
    C,
    /// C++, g++ (container).
    Cpp,
    /// Go (container).
    Go,
    /// Java (container).
    Java,
    /// Ruby (container).
    Ruby,
    /// PHP (container).
    Php,
}

impl From<ToolLanguage> for Language {
    fn from(language: ToolLanguage) -> Self {
        match language {
            ToolLanguage::Python => Language::Python,
            ToolLanguage::Javascript => Language::JavaScript,
            ToolLanguage::Bash => Language::Bash,
            ToolLanguage::C => Language::C,
            ToolLanguage::Cpp => Language::Cpp,
            ToolLanguage::Go => Language::Go,
            ToolLanguage::Java => Language::Java,
            ToolLanguage::Ruby => Language::Ruby,
            ToolLanguage::Php => Language::Php,
        }
    }
}

/// `run_code`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCodeArgs {
    /// The language of `code`.
    pub language: ToolLanguage,
    /// The program. Its stdout and stderr are returned; in Python a final expression's value
    /// is printed.
    pub code: String,
    /// Milliseconds before the run is stopped (default: the server's).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// `create_sandbox`'s arguments.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSandboxArgs {
    /// `python` (default), `data-science` (numpy as np, pandas as pd, matplotlib.pyplot as plt
    /// already imported) or `javascript`.
    #[serde(default)]
    pub template: Option<String>,
    /// Labels to find the sandbox by later.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// `run_cell`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCellArgs {
    /// The sandbox (from `create_sandbox`).
    pub sandbox_id: String,
    /// The code. Variables, imports and functions persist from cell to cell; a final
    /// expression's value is returned, and matplotlib figures come back as images.
    pub code: String,
    /// The context's language (default: the sandbox template's).
    #[serde(default)]
    pub language: Option<ToolLanguage>,
    /// Milliseconds before the cell is stopped (default: the server's).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// `run_command`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCommandArgs {
    /// The sandbox.
    pub sandbox_id: String,
    /// A shell command line, run in the sandbox's container (its working directory is the
    /// sandbox's workspace, the same files `run_cell` sees).
    pub command: String,
    /// Milliseconds before it is killed (default: the server's deadline).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// Arguments naming a sandbox.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxArgs {
    /// The sandbox.
    pub sandbox_id: String,
}

/// `write_file`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFileArgs {
    /// The sandbox.
    pub sandbox_id: String,
    /// A workspace path, such as `/data/input.csv` (parent directories are made).
    pub path: String,
    /// The file's content: text, or base64 when `base64` is true.
    pub content: String,
    /// Whether `content` is base64.
    #[serde(default)]
    pub base64: bool,
}

/// `read_file`'s and `list_files`' arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathArgs {
    /// The sandbox.
    pub sandbox_id: String,
    /// A workspace path (default `/` for listing).
    #[serde(default)]
    pub path: Option<String>,
    /// How deep to list (default 1).
    #[serde(default)]
    pub depth: Option<usize>,
}

/// What a tool call produced: JSON for the model, plus images (PNG) to show it.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ToolReply {
    /// Whether the tool failed (the content says why).
    pub is_error: bool,
    /// The result.
    #[schema(value_type = Object)]
    pub content: Value,
    /// Figures, base64 PNG.
    pub images: Vec<ToolImage>,
}

/// An image a tool returns.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ToolImage {
    /// `image/png`.
    pub mime_type: &'static str,
    /// Base64.
    pub data: String,
}

impl ToolReply {
    fn ok(content: Value) -> Self {
        ToolReply { content, ..ToolReply::default() }
    }

    /// A failure the model can read.
    pub fn failed(error: &ApiError) -> Self {
        ToolReply {
            is_error: true,
            content: json!({"error": error.code(), "message": error.to_string()}),
            images: vec![],
        }
    }
}

/// The tools, by name: what `POST /v1/tools/call` and the MCP endpoint run.
pub async fn run_tool(state: &AppState, caller: &Caller, name: &str, arguments: Value) -> Result<ToolReply, ApiError> {
    fn args<T: serde::de::DeserializeOwned>(name: &str, arguments: Value) -> Result<T, ApiError> {
        let arguments = if arguments.is_null() { json!({}) } else { arguments };
        serde_json::from_value(arguments).map_err(|e| ApiError::BadRequest(format!("`{name}` arguments: {e}")))
    }
    match name {
        "run_code" => run_code(state, caller, args(name, arguments)?).await,
        "create_sandbox" => create_sandbox(state, caller, args(name, arguments)?).await,
        "run_cell" => run_cell(state, caller, args(name, arguments)?).await,
        "run_command" => run_command(state, caller, args(name, arguments)?).await,
        "list_sandboxes" => Ok(list_sandboxes(state, caller)),
        "kill_sandbox" => kill_sandbox(state, caller, args(name, arguments)?),
        "write_file" => write_file(state, caller, args(name, arguments)?).await,
        "read_file" => read_file(state, caller, args(name, arguments)?).await,
        "list_files" => list_files(state, caller, args(name, arguments)?).await,
        _ => Err(ApiError::NotFound(format!("no tool named `{name}`"))),
    }
}

fn limits(timeout_ms: Option<u64>) -> LimitsPatch {
    LimitsPatch { deadline_ms: timeout_ms, ..LimitsPatch::default() }
}

/// Runs code once in a fresh sandbox.
pub async fn run_code(state: &AppState, caller: &Caller, args: RunCodeArgs) -> Result<ToolReply, ApiError> {
    let limits = state.settings.limits.resolve(&limits(args.timeout_ms))?;
    let mut request = ExecRequest::new(args.language.into(), args.code).with_limits(limits);
    request.env = state.settings.execution_env(BTreeMap::new());
    let result = state.run_once(caller, request).await?;
    Ok(ToolReply::ok(json!({
        "stdout": result.stdout,
        "stderr": result.stderr,
        "exit_code": result.exit_code,
        "outcome": result.outcome,
        "error": result.error,
    })))
}

/// Opens a sandbox.
pub async fn create_sandbox(state: &AppState, caller: &Caller, args: CreateSandboxArgs) -> Result<ToolReply, ApiError> {
    let template = match &args.template {
        Some(name) => name.parse::<Template>().map_err(ApiError::BadRequest)?,
        None => Template::default(),
    };
    let spec = SandboxSpec { template, metadata: args.metadata, ..SandboxSpec::default() };
    let sandbox = state.open_sandbox(caller, spec).await?;
    let info = sandbox.info();
    Ok(ToolReply::ok(json!({"sandbox_id": info.id, "template": info.template, "expires_at_ms": info.expires_at_ms})))
}

/// Runs a cell in a sandbox; figures become images.
pub async fn run_cell(state: &AppState, caller: &Caller, args: RunCellArgs) -> Result<ToolReply, ApiError> {
    let sandbox = state.sandbox(&caller.tenant, &args.sandbox_id)?;
    let limits = state.settings.limits.resolve(&limits(args.timeout_ms))?;
    let options = RunOptions { context: None, language: args.language.map(Into::into), limits };
    let execution = state.run_cell(caller, &sandbox, &args.code, options).await?;
    Ok(cell_reply(execution))
}

/// Runs a shell command in a sandbox's container.
pub async fn run_command(state: &AppState, caller: &Caller, args: RunCommandArgs) -> Result<ToolReply, ApiError> {
    let sandbox = state.sandbox(&caller.tenant, &args.sandbox_id)?;
    let limits = state.settings.limits.resolve(&limits(args.timeout_ms))?;
    let spec = soulbox_engine::process::ProcessSpec {
        command: args.command,
        deadline: Some(limits.deadline),
        ..soulbox_engine::process::ProcessSpec::default()
    };
    let result = state.run_command(caller, &sandbox, spec).await?;
    Ok(ToolReply::ok(json!({
        "stdout": result.stdout,
        "stderr": result.stderr,
        "exit_code": result.exit.exit_code,
        "outcome": result.exit.outcome,
        "message": result.exit.message,
    })))
}

/// A cell's result for a model: results without their base64 PNGs, which travel as images (a
/// result's `image` is its image's 1-based position).
fn cell_reply(execution: Execution) -> ToolReply {
    let mut images = Vec::new();
    let results: Vec<Value> = execution
        .results
        .into_iter()
        .map(|mut result| {
            let png = result.png.take();
            let mut value = serde_json::to_value(&result).unwrap_or_default();
            if let Some(data) = png {
                images.push(ToolImage { mime_type: "image/png", data });
                value["image"] = json!(images.len());
            }
            value
        })
        .collect();
    let end = execution.end;
    ToolReply {
        is_error: false,
        content: json!({
            "stdout": execution.stdout,
            "stderr": execution.stderr,
            "results": results,
            "error": execution.error,
            "outcome": end.outcome,
            "context_restarted": end.context_restarted,
        }),
        images,
    }
}

/// The caller's sandboxes.
pub fn list_sandboxes(state: &AppState, caller: &Caller) -> ToolReply {
    let sandboxes: Vec<Value> = state
        .list_sandboxes(&caller.tenant, &BTreeMap::new())
        .into_iter()
        .map(|info| {
            json!({
                "sandbox_id": info.id,
                "template": info.template,
                "metadata": info.metadata,
                "expires_at_ms": info.expires_at_ms,
            })
        })
        .collect();
    ToolReply::ok(json!({ "sandboxes": sandboxes }))
}

/// Kills a sandbox.
pub fn kill_sandbox(state: &AppState, caller: &Caller, args: SandboxArgs) -> Result<ToolReply, ApiError> {
    state.sandbox(&caller.tenant, &args.sandbox_id)?;
    state.sandboxes.kill(&args.sandbox_id)?;
    Ok(ToolReply::ok(json!({"killed": args.sandbox_id})))
}

/// Writes a workspace file.
pub async fn write_file(state: &AppState, caller: &Caller, args: WriteFileArgs) -> Result<ToolReply, ApiError> {
    let bytes = match args.base64 {
        true => STANDARD.decode(&args.content).map_err(|e| ApiError::BadRequest(format!("invalid base64: {e}")))?,
        false => args.content.into_bytes(),
    };
    let sandbox = state.sandbox(&caller.tenant, &args.sandbox_id)?;
    let files = sandbox.files()?;
    files.write(&args.path, &bytes).await?;
    Ok(ToolReply::ok(serde_json::to_value(files.stat(&args.path).await?).unwrap_or_default()))
}

/// Reads a workspace file (at most [`MAX_READ_BYTES`]).
pub async fn read_file(state: &AppState, caller: &Caller, args: PathArgs) -> Result<ToolReply, ApiError> {
    let path = args.path.ok_or_else(|| ApiError::BadRequest("`read_file` needs a `path`".into()))?;
    let sandbox = state.sandbox(&caller.tenant, &args.sandbox_id)?;
    let files = sandbox.files()?;
    // Read at most one byte past the limit: the file may grow while it is read.
    let bytes = files.read_at_most(&path, MAX_READ_BYTES as u64 + 1).await?;
    if bytes.len() > MAX_READ_BYTES {
        return Err(ApiError::TooLarge(format!(
            "{path} is over {MAX_READ_BYTES} bytes, the most read_file returns (download it over HTTP instead)"
        )));
    }
    let size = bytes.len();
    Ok(ToolReply::ok(match String::from_utf8(bytes) {
        Ok(text) => json!({"path": path, "size": size, "content": text}),
        Err(e) => json!({"path": path, "size": size, "content_base64": STANDARD.encode(e.into_bytes())}),
    }))
}

/// Lists a workspace directory.
pub async fn list_files(state: &AppState, caller: &Caller, args: PathArgs) -> Result<ToolReply, ApiError> {
    let sandbox = state.sandbox(&caller.tenant, &args.sandbox_id)?;
    let files = sandbox.files()?;
    let entries = files.list(args.path.as_deref().unwrap_or("/"), args.depth.unwrap_or(1)).await?;
    Ok(ToolReply::ok(json!({ "entries": entries })))
}

/// `?format=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Format {
    /// `openai`, `anthropic` or `mcp`; default: all three, by name.
    #[serde(default)]
    format: Option<String>,
}

/// The tools as ready-to-use function definitions: OpenAI (`tools` of a chat completion or
/// response), Anthropic (`tools` of a message) and MCP (`tools/list`).
#[utoipa::path(get, path = "/v1/tools", tag = "tools", params(Format),
    responses((status = 200, description = "Tool definitions", body = Object), ErrorResponses))]
async fn definitions(ApiQuery(format): ApiQuery<Format>) -> Result<ApiJson<Value>, ApiError> {
    let tools = super::mcp::tool_definitions();
    let openai: Vec<Value> = tools
        .iter()
        .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.schema}}))
        .collect();
    let anthropic: Vec<Value> =
        tools.iter().map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.schema})).collect();
    let mcp: Vec<Value> =
        tools.iter().map(|t| json!({"name": t.name, "description": t.description, "inputSchema": t.schema})).collect();
    Ok(ApiJson(match format.format.as_deref() {
        None => json!({"openai": openai, "anthropic": anthropic, "mcp": mcp}),
        Some("openai") => Value::from(openai),
        Some("anthropic") => Value::from(anthropic),
        Some("mcp") => Value::from(mcp),
        Some(other) => {
            return Err(ApiError::BadRequest(format!("unknown format `{other}`: use openai, anthropic or mcp")));
        }
    }))
}

/// A tool call a model made.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ToolCall {
    /// The tool's name.
    name: String,
    /// Its arguments: an object, or the JSON string OpenAI gives (`function.arguments`).
    #[serde(default)]
    #[schema(value_type = Object)]
    arguments: Value,
}

/// Run a tool call a model made (from `GET /v1/tools` definitions). A failure of the tool
/// itself (an unknown sandbox, a bad path) is a 200 with `is_error: true`, for the model to
/// read; a malformed call is a 400.
#[utoipa::path(post, path = "/v1/tools/call", tag = "tools", request_body = ToolCall,
    responses((status = 200, body = ToolReply), ErrorResponses))]
async fn call(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(call): ApiJson<ToolCall>,
) -> Result<ApiJson<ToolReply>, ApiError> {
    let arguments = match call.arguments {
        Value::String(text) => serde_json::from_str(&text)
            .map_err(|e| ApiError::BadRequest(format!("`arguments` is a string but not JSON: {e}")))?,
        other => other,
    };
    if !super::mcp::tool_definitions().iter().any(|t| t.name == call.name) {
        return Err(ApiError::NotFound(format!("no tool named `{}`; see GET /v1/tools", call.name)));
    }
    match run_tool(&state, &caller, &call.name, arguments).await {
        Ok(reply) => Ok(ApiJson(reply)),
        Err(error) if for_the_model(&error) => Ok(ApiJson(ToolReply::failed(&error))),
        Err(error) => Err(error),
    }
}

/// Whether a tool's failure is the model's to read and fix (bad arguments, an unknown sandbox
/// or path), rather than the client's to handle (overload, limits, server faults).
pub fn for_the_model(error: &ApiError) -> bool {
    matches!(error, ApiError::BadRequest(_) | ApiError::NotFound(_) | ApiError::Conflict(_) | ApiError::TooLarge(_))
}

//! Tools for LLM clients: each tool's arguments (a JSON Schema through `schemars`), its
//! implementation over the shared [operations](super::operations), and the REST face:
//! `GET /v1/tools` (the definitions for OpenAI and Anthropic function calling, and MCP) and
//! `POST /v1/tools/call` (run a tool call a model made).
//!
//! [`TOOLS`] is the one table of tools: the definitions for every vendor, `/v1/tools/call` and
//! the MCP endpoint ([`super::mcp`]) are all derived from it, so a tool is defined once and
//! behaves alike whichever way a model reaches it. A tool's
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
use soulbox_engine::sandbox::TemplateRef;
use soulbox_engine::{ExecRequest, Execution, Language, LimitsPatch, RunOptions, SandboxSpec, Template};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

/// Largest file `read_file` returns (a model's context is small).
pub const MAX_READ_BYTES: usize = 1 << 20;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/tools", get(definitions)).route("/tools/call", post(call))
}

/// `run_code`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCodeArgs {
    /// The language of `code`.
    pub language: Language,
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
    /// The name of a template you saved with `save_template` (its latest version): the new
    /// sandbox starts with that template's variables and files. Instead of `template`.
    #[serde(default)]
    pub from_template: Option<String>,
    /// Labels to find the sandbox by later.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// `save_template`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveTemplateArgs {
    /// The prepared sandbox (it keeps running, unchanged).
    pub sandbox_id: String,
    /// The template's name: 1-64 letters, digits, `-` or `_`. Saving a name again makes its
    /// next version.
    pub name: String,
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
    pub language: Option<Language>,
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

/// No arguments (any given are ignored, as models sometimes send an empty placeholder).
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct NoArgs {}

/// Arguments naming a sandbox.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxArgs {
    /// The sandbox.
    pub sandbox_id: String,
}

/// `fork_sandbox`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForkArgs {
    /// The sandbox to fork.
    pub sandbox_id: String,
    /// How many copies to make (1 to 100; default 1).
    #[serde(default)]
    pub count: Option<usize>,
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

/// A tool's run: its arguments as JSON in, its reply out.
type ToolRun = for<'a> fn(&'a AppState, &'a Caller, Value) -> Pin<Box<dyn Future<Output = ToolResult> + Send + 'a>>;

/// What a tool's run gives: a reply, or an error (the model's to read when [`for_the_model`]).
pub type ToolResult = Result<ToolReply, ApiError>;

/// One tool, as every door shows and runs it: `GET /v1/tools` (OpenAI, Anthropic and MCP
/// definitions), `POST /v1/tools/call` and the MCP endpoint all read [`TOOLS`].
#[derive(Debug)]
pub struct Tool {
    /// Its name.
    pub name: &'static str,
    /// What it does, for the model.
    pub description: &'static str,
    schema: fn() -> Value,
    run: ToolRun,
}

impl Tool {
    /// JSON Schema of its arguments (an object).
    pub fn schema(&self) -> Value {
        (self.schema)()
    }

    /// Runs it for `caller`; `arguments` are checked against its argument type first (`null`
    /// is no arguments).
    pub async fn run(&self, state: &AppState, caller: &Caller, arguments: Value) -> ToolResult {
        (self.run)(state, caller, arguments).await
    }

    /// The tool named `name`.
    pub fn named(name: &str) -> Option<&'static Tool> {
        TOOLS.iter().find(|tool| tool.name == name)
    }
}

/// The schema of a tool's arguments `T`, as MCP wants it (an object; no title).
fn schema_of<T: JsonSchema + 'static>() -> Value {
    let schema = rmcp::handler::server::common::schema_for_input::<T>().expect("tool arguments are JSON objects");
    let mut schema = Value::Object(schema.as_ref().clone());
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
    }
    schema
}

/// `arguments` as `T`, or a 400 naming the tool.
fn arguments<T: serde::de::DeserializeOwned>(tool: &str, arguments: Value) -> Result<T, ApiError> {
    let arguments = if arguments.is_null() { json!({}) } else { arguments };
    serde_json::from_value(arguments).map_err(|e| ApiError::BadRequest(format!("`{tool}` arguments: {e}")))
}

/// A [`Tool`] from its implementation `$name(state, caller, args: $args)` and description.
macro_rules! tool {
    ($name:ident($args:ty), $description:expr) => {{
        fn run<'a>(
            state: &'a AppState,
            caller: &'a Caller,
            json: Value,
        ) -> Pin<Box<dyn Future<Output = ToolResult> + Send + 'a>> {
            Box::pin(async move { $name(state, caller, arguments::<$args>(stringify!($name), json)?).await })
        }
        Tool { name: stringify!($name), description: $description, schema: schema_of::<$args>, run }
    }};
}

/// Every tool, in the order clients list them.
pub static TOOLS: [Tool; 13] = [
    tool!(
        run_code(RunCodeArgs),
        "Run a program once in a fresh, isolated sandbox and return its stdout, stderr and exit code: Python (with \
         numpy, pandas, matplotlib) or JavaScript in WebAssembly, or bash, C, C++, Go, Java, Ruby or PHP in a \
         container. Nothing persists between calls; use create_sandbox and run_cell to keep state."
    ),
    tool!(
        create_sandbox(CreateSandboxArgs),
        "Open a sandbox: a private workspace with a stateful Python or JavaScript context, where variables \
         persist between run_cell calls. Returns its sandbox_id."
    ),
    tool!(
        run_cell(RunCellArgs),
        "Run code in a sandbox's stateful context, like a notebook cell. Returns stdout, stderr, the final \
         expression's value, any exception, and matplotlib figures as images."
    ),
    tool!(
        run_command(RunCommandArgs),
        "Run a shell command (bash) in a sandbox's Linux container: compilers (gcc, go, javac), python3, node, \
         ruby, php, and a shell. It works in the same files as run_cell. Returns stdout, stderr and the exit code."
    ),
    tool!(list_sandboxes(NoArgs), "List your open sandboxes."),
    tool!(kill_sandbox(SandboxArgs), "Kill a sandbox: its contexts and files are gone."),
    tool!(
        pause_sandbox(SandboxArgs),
        "Pause a sandbox: its variables and files are saved to disk and its memory released. The next run_cell \
         (or resume_sandbox) brings it back exactly as it was."
    ),
    tool!(resume_sandbox(SandboxArgs), "Resume a paused sandbox now, with its variables and files as they were."),
    tool!(
        fork_sandbox(ForkArgs),
        "Fork a sandbox into independent copies (1 to 100): each starts with the sandbox's variables and files, \
         then goes its own way (its own random state). Use it to try several approaches from one point. Returns \
         the new sandbox_ids."
    ),
    tool!(
        save_template(SaveTemplateArgs),
        "Save a prepared sandbox (packages imported, data loaded, files written) as a named template. \
         create_sandbox with from_template starts new sandboxes with its variables and files, with no set-up."
    ),
    tool!(write_file(WriteFileArgs), "Write a file into a sandbox's workspace (text, or base64 for binary content)."),
    tool!(
        read_file(PathArgs),
        "Read a file from a sandbox's workspace (text, or base64 when it is not UTF-8; at most 1 MiB)."
    ),
    tool!(list_files(PathArgs), "List a directory of a sandbox's workspace."),
];

fn limits(timeout_ms: Option<u64>) -> LimitsPatch {
    LimitsPatch { deadline_ms: timeout_ms, ..LimitsPatch::default() }
}

/// Runs code once in a fresh sandbox.
pub async fn run_code(state: &AppState, caller: &Caller, args: RunCodeArgs) -> Result<ToolReply, ApiError> {
    let limits = state.settings.limits.resolve(&limits(args.timeout_ms))?;
    let mut request = ExecRequest::new(args.language, args.code).with_limits(limits);
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
    if args.from_template.is_some() && args.template.is_some() {
        return Err(ApiError::BadRequest("give `template` or `from_template`, not both".into()));
    }
    let from_template = args.from_template.map(|name| TemplateRef { name, version: None });
    let spec = SandboxSpec { template, metadata: args.metadata, from_template, ..SandboxSpec::default() };
    let sandbox = state.open_sandbox(caller, spec).await?;
    let info = sandbox.info();
    Ok(ToolReply::ok(json!({"sandbox_id": info.id, "template": info.template, "expires_at_ms": info.expires_at_ms})))
}

/// Runs a cell in a sandbox; figures become images.
pub async fn run_cell(state: &AppState, caller: &Caller, args: RunCellArgs) -> Result<ToolReply, ApiError> {
    let sandbox = state.sandbox(&caller.tenant, &args.sandbox_id)?;
    let limits = state.settings.limits.resolve(&limits(args.timeout_ms))?;
    let options = RunOptions { context: None, language: args.language, limits };
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
pub async fn list_sandboxes(state: &AppState, caller: &Caller, _: NoArgs) -> ToolResult {
    let sandboxes: Vec<Value> = state
        .list_sandboxes(&caller.tenant, &BTreeMap::new())
        .into_iter()
        .map(|info| {
            json!({
                "sandbox_id": info.id,
                "template": info.template,
                "metadata": info.metadata,
                "state": info.state,
                "expires_at_ms": info.expires_at_ms,
            })
        })
        .collect();
    Ok(ToolReply::ok(json!({ "sandboxes": sandboxes })))
}

/// Kills a sandbox (its teardown complete when this returns).
pub async fn kill_sandbox(state: &AppState, caller: &Caller, args: SandboxArgs) -> ToolResult {
    state.kill_sandbox(caller, &args.sandbox_id).await?;
    Ok(ToolReply::ok(json!({"killed": args.sandbox_id})))
}

/// Pauses a sandbox (its checkpoint is on disk when this returns).
pub async fn pause_sandbox(state: &AppState, caller: &Caller, args: SandboxArgs) -> ToolResult {
    let report = state.sandbox(&caller.tenant, &args.sandbox_id)?.pause().await?;
    Ok(ToolReply::ok(
        json!({"paused": args.sandbox_id, "contexts": report.contexts, "stored_bytes": report.stored_bytes}),
    ))
}

/// Resumes a paused sandbox.
pub async fn resume_sandbox(state: &AppState, caller: &Caller, args: SandboxArgs) -> ToolResult {
    let info = state.sandbox(&caller.tenant, &args.sandbox_id)?.resume().await?;
    Ok(ToolReply::ok(json!({"resumed": info.id, "state": info.state})))
}

/// Forks a sandbox.
pub async fn fork_sandbox(state: &AppState, caller: &Caller, args: ForkArgs) -> ToolResult {
    let forks = state.fork_sandbox(caller, &args.sandbox_id, args.count.unwrap_or(1)).await?;
    let ids: Vec<&str> = forks.iter().map(|fork| fork.id()).collect();
    Ok(ToolReply::ok(json!({"forked": args.sandbox_id, "sandbox_ids": ids})))
}

/// Saves a sandbox as a template.
pub async fn save_template(state: &AppState, caller: &Caller, args: SaveTemplateArgs) -> ToolResult {
    let sandbox = state.sandbox(&caller.tenant, &args.sandbox_id)?;
    let saved = state.sandboxes.save_template(&sandbox, &args.name).await?;
    Ok(ToolReply::ok(json!({"template": saved.name, "version": saved.version, "from": args.sandbox_id})))
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
    let openai: Vec<Value> = TOOLS
        .iter()
        .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.schema()}}))
        .collect();
    let anthropic: Vec<Value> = TOOLS
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.schema()}))
        .collect();
    let mcp: Vec<Value> = TOOLS
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description, "inputSchema": t.schema()}))
        .collect();
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
    let Some(tool) = Tool::named(&call.name) else {
        return Err(ApiError::NotFound(format!("no tool named `{}`; see GET /v1/tools", call.name)));
    };
    match tool.run(&state, &caller, arguments).await {
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

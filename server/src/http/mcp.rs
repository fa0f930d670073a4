//! The MCP endpoint (`/mcp`, streamable HTTP, through the official Rust SDK `rmcp`): the
//! [tools](super::tools) for models that speak the Model Context Protocol.
//!
//! The endpoint sits behind the same authentication, rate limit and in-flight bound as `/v1`:
//! each HTTP request carries its API key, and a tool learns its [`Caller`] from the request
//! parts rmcp hands it. It runs stateless (no MCP session kept between requests, JSON
//! responses), so any server behind a load balancer can answer any call. In development mode
//! the SDK's `Host` check (loopback names only, against DNS rebinding) stays on; with API keys
//! every request is authenticated, so any host name is accepted.

use super::auth::Caller;
use super::tools::{
    self, CreateSandboxArgs, PathArgs, RunCellArgs, RunCodeArgs, RunCommandArgs, SandboxArgs, ToolReply, WriteFileArgs,
    for_the_model,
};
use super::{ApiError, AppState};
use axum::http::request::Parts;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use serde_json::Value;
use std::sync::{Arc, OnceLock};

/// The MCP server: the tools over the app's state.
#[derive(Clone)]
pub struct SoulboxMcp {
    state: AppState,
    tool_router: ToolRouter<SoulboxMcp>,
}

impl std::fmt::Debug for SoulboxMcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoulboxMcp").finish_non_exhaustive()
    }
}

/// A tool's name, description and argument schema, as every client format needs them.
#[derive(Debug, Clone)]
pub struct ToolDefinition {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments (an object).
    pub schema: Value,
}

/// The tools' definitions, from the MCP tool router (built once).
pub fn tool_definitions() -> &'static [ToolDefinition] {
    static DEFINITIONS: OnceLock<Vec<ToolDefinition>> = OnceLock::new();
    DEFINITIONS.get_or_init(|| {
        SoulboxMcp::tool_router()
            .list_all()
            .into_iter()
            .map(|tool| {
                let mut schema = Value::Object(tool.input_schema.as_ref().clone());
                if let Some(object) = schema.as_object_mut() {
                    object.remove("$schema");
                }
                ToolDefinition {
                    name: tool.name.into_owned(),
                    description: tool.description.map(|d| d.into_owned()).unwrap_or_default(),
                    schema,
                }
            })
            .collect()
    })
}

/// The `/mcp` service.
pub fn service(state: AppState) -> StreamableHttpService<SoulboxMcp, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_max_request_body_bytes(state.settings.json_body_limit)
        .with_cancellation_token(state.lifecycle.shutdown.child_token());
    if !state.auth.is_dev() {
        config = config.disable_allowed_hosts();
    }
    let router = SoulboxMcp::tool_router();
    StreamableHttpService::new(
        move || Ok(SoulboxMcp { state: state.clone(), tool_router: router.clone() }),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

#[tool_router(vis = "pub")]
impl SoulboxMcp {
    /// Run Python or JavaScript once in a fresh, isolated sandbox.
    #[tool(description = "Run a program once in a fresh, isolated sandbox and return its stdout, stderr and exit \
                       code: Python (with numpy, pandas, matplotlib) or JavaScript in WebAssembly, or bash, C, \
                       C++, Go, Java, Ruby or PHP in a container. Nothing persists between calls; use \
                       create_sandbox and run_cell to keep state.")]
    async fn run_code(
        &self,
        Parameters(args): Parameters<RunCodeArgs>,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller(&parts)?;
        reply(tools::run_code(&self.state, &caller, args).await)
    }

    /// Open a sandbox.
    #[tool(description = "Open a sandbox: a private workspace with a stateful Python or JavaScript context, where \
                       variables persist between run_cell calls. Returns its sandbox_id.")]
    async fn create_sandbox(
        &self,
        Parameters(args): Parameters<CreateSandboxArgs>,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller(&parts)?;
        reply(tools::create_sandbox(&self.state, &caller, args).await)
    }

    /// Run a cell in a sandbox.
    #[tool(
        description = "Run code in a sandbox's stateful context, like a notebook cell. Returns stdout, stderr, the \
                       final expression's value, any exception, and matplotlib figures as images."
    )]
    async fn run_cell(
        &self,
        Parameters(args): Parameters<RunCellArgs>,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller(&parts)?;
        reply(tools::run_cell(&self.state, &caller, args).await)
    }

    /// Run a shell command in a sandbox.
    #[tool(description = "Run a shell command (bash) in a sandbox's Linux container: compilers (gcc, go, javac), \
                       python3, node, ruby, php, and a shell. It works in the same files as run_cell. Returns \
                       stdout, stderr and the exit code.")]
    async fn run_command(
        &self,
        Parameters(args): Parameters<RunCommandArgs>,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller(&parts)?;
        reply(tools::run_command(&self.state, &caller, args).await)
    }

    /// List the caller's sandboxes.
    #[tool(description = "List your open sandboxes.")]
    async fn list_sandboxes(&self, Extension(parts): Extension<Parts>) -> Result<CallToolResult, ErrorData> {
        let caller = caller(&parts)?;
        reply(Ok(tools::list_sandboxes(&self.state, &caller)))
    }

    /// Kill a sandbox.
    #[tool(description = "Kill a sandbox: its contexts and files are gone.")]
    async fn kill_sandbox(
        &self,
        Parameters(args): Parameters<SandboxArgs>,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller(&parts)?;
        reply(tools::kill_sandbox(&self.state, &caller, args))
    }

    /// Write a file into a sandbox.
    #[tool(description = "Write a file into a sandbox's workspace (text, or base64 for binary content).")]
    async fn write_file(
        &self,
        Parameters(args): Parameters<WriteFileArgs>,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller(&parts)?;
        reply(tools::write_file(&self.state, &caller, args).await)
    }

    /// Read a file from a sandbox.
    #[tool(
        description = "Read a file from a sandbox's workspace (text, or base64 when it is not UTF-8; at most 1 MiB)."
    )]
    async fn read_file(
        &self,
        Parameters(args): Parameters<PathArgs>,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller(&parts)?;
        reply(tools::read_file(&self.state, &caller, args).await)
    }

    /// List files in a sandbox.
    #[tool(description = "List a directory of a sandbox's workspace.")]
    async fn list_files(
        &self,
        Parameters(args): Parameters<PathArgs>,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller(&parts)?;
        reply(tools::list_files(&self.state, &caller, args).await)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for SoulboxMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("soulbox", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "SoulBox runs code in isolated sandboxes. Use run_code for one-off programs; create_sandbox then \
                 run_cell to keep state between steps, with write_file/read_file/list_files for its files.",
            )
    }
}

/// The authenticated caller of an MCP request.
fn caller(parts: &Parts) -> Result<Caller, ErrorData> {
    parts.extensions.get::<Caller>().cloned().ok_or_else(|| ErrorData::internal_error("unauthenticated request", None))
}

/// A tool's outcome as MCP content: the JSON as text (and as structured content), then images.
fn reply(result: Result<ToolReply, ApiError>) -> Result<CallToolResult, ErrorData> {
    let reply = match result {
        Ok(reply) => reply,
        Err(error) if for_the_model(&error) => ToolReply::failed(&error),
        Err(error) => {
            if let ApiError::Internal(detail) = &error {
                tracing::error!(%detail, "MCP tool failed");
            }
            return Err(ErrorData::internal_error(error.to_string(), None));
        }
    };
    let mut content = vec![ContentBlock::text(reply.content.to_string())];
    content.extend(reply.images.into_iter().map(|image| ContentBlock::image(image.data, image.mime_type)));
    let mut result = if reply.is_error { CallToolResult::error(content) } else { CallToolResult::success(content) };
    result.structured_content = Some(reply.content);
    Ok(result)
}

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
use super::tools::{TOOLS, Tool, ToolReply, for_the_model};
use super::{ApiError, AppState};
use axum::http::request::Parts;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler};
use serde_json::Value;
use std::sync::Arc;

/// The MCP server: the tools of [`TOOLS`] over the app's state.
#[derive(Clone)]
pub struct SoulboxMcp {
    state: AppState,
}

impl std::fmt::Debug for SoulboxMcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoulboxMcp").finish_non_exhaustive()
    }
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
    StreamableHttpService::new(
        move || Ok(SoulboxMcp { state: state.clone() }),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// A tool of [`TOOLS`] as MCP lists it.
fn mcp_tool(tool: &Tool) -> rmcp::model::Tool {
    let schema = match tool.schema() {
        Value::Object(object) => object,
        _ => unreachable!("tool arguments are JSON objects (checked by schema_of)"),
    };
    rmcp::model::Tool::new(tool.name, tool.description, schema)
}

impl ServerHandler for SoulboxMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("soulbox", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "SoulBox runs code in isolated sandboxes. Use run_code for one-off programs; create_sandbox then \
                 run_cell to keep state between steps, with write_file/read_file/list_files for its files.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult { tools: TOOLS.iter().map(mcp_tool).collect(), ..ListToolsResult::default() })
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        Tool::named(name).map(mcp_tool)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let parts =
            context.extensions.get::<Parts>().ok_or_else(|| ErrorData::internal_error("no HTTP request", None))?;
        let caller = caller(parts)?;
        let tool = Tool::named(&request.name)
            .ok_or_else(|| ErrorData::invalid_params(format!("no tool named `{}`", request.name), None))?;
        let arguments = request.arguments.map_or(Value::Null, Value::Object);
        Ok(reply(tool.run(&self.state, &caller, arguments).await)?.into())
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

//! The HTTP side of a cluster ([`crate::cluster`]): the layer that routes each request naming
//! a sandbox to the node that owns it, and `GET /cluster/nodes` for operators.
//!
//! A request names a sandbox by its path (`/v1/sandboxes/{id}/...`, E2B's
//! `/sandboxes/{id}/...` and `/v2/sandboxes/{id}/...`), by E2B's `E2b-Sandbox-Id` header, or,
//! for a tool call (`POST /v1/tools/call`, or MCP's `tools/call` on `POST /mcp`, which is
//! stateless), by its arguments' `sandbox_id`.
//! Such a request is served here when this node owns the sandbox (no database round trip),
//! or was forwarded here by another node; otherwise it goes to the live owner, or, when its
//! owner's lease has run out, this node takes the sandbox over from its hand-over (its latest
//! checkpoint and files, in the shared object store) and serves it; a sandbox whose node died
//! without one is kept for that node to come back for a lease (503: a restarting node adopts
//! it back), then lost (410, with why, to its tenant through any node: authentication answers
//! it, from [`LostInCluster`], so another tenant still gets 404). Any sandbox request is
//! refused while this node's own
//! lease has run out. A new sandbox (REST, E2B, or the `create_sandbox` tool) is made on the
//! live node holding the fewest; other requests naming no sandbox (stateless executions,
//! listings) are served by whichever node receives them. Every response says which node served it
//! ([`SERVED_BY`]).

use super::{ApiError, AppState};
use crate::cluster::{Cluster, ClusterError, FORWARD_TOKEN, FORWARDED_BY};
use crate::database::{NodeRow, SandboxOwner, TakeOver};
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use soulbox_engine::sandbox::is_plain_name;

/// The header every response of a node carries: the node that served it.
pub const SERVED_BY: &str = "x-soulbox-node";
/// The header of the response to the request that made a node take a sandbox over: the node
/// that held it before.
pub const TAKEN_OVER_FROM: &str = "x-soulbox-taken-over-from";

/// Middleware: serves, forwards or refuses a request by the sandbox it names.
pub async fn route(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(cluster) = state.cluster.clone() else { return next.run(request).await };
    let (request, call) = match is_tool_call(&request) {
        true => match read_tool_call(request, state.settings.json_body_limit).await {
            Ok(read) => read,
            Err(refusal) => return refusal,
        },
        false => (request, ToolCall::default()),
    };
    let creates = call.creates_a_sandbox || creates_a_sandbox(&request);
    // Percent-decoded as axum's path extractor decodes it, so an encoded id is routed too.
    let sandbox =
        call.sandbox.or_else(|| addressed_sandbox(&request).map(percent_decoded)).filter(|id| is_plain_name(id));
    let forwarded = request.headers().contains_key(FORWARDED_BY)
        && request.headers().get(FORWARD_TOKEN).is_some_and(|token| cluster.forwarded_by_a_node(token.as_bytes()));
    let mut response = match sandbox {
        None if creates && !forwarded => place(&cluster, request, next).await,
        None => next.run(request).await,
        Some(_) if !cluster.is_live() => ApiError::Unavailable(ClusterError::NotLive.to_string()).into_response(),
        Some(id) if cluster.serves(&id) || forwarded => serve_here(&state, &id, request, next).await,
        Some(id) => to_owner(&state, &cluster, &id, request, next).await,
    };
    if let Ok(node) = HeaderValue::from_str(cluster.node()) {
        // A forwarded response already names the node that served it.
        response.headers_mut().entry(SERVED_BY).or_insert(node);
    }
    response
}

/// A new sandbox: made on the live node holding the fewest open sandboxes (here among equals).
/// When the placement cannot be looked up, it is made here.
async fn place(cluster: &Cluster, request: Request, next: Next) -> Response {
    match cluster.placement().await {
        Ok(Some((node, url))) => {
            let owner = SandboxOwner { node, url, live: true };
            forward_to(cluster, &owner, "(new)", request).await
        }
        Ok(None) => next.run(request).await,
        Err(error) => {
            tracing::warn!(%error, "could not look up the least loaded node; the sandbox is made here");
            next.run(request).await
        }
    }
}

/// Whether `request` makes a sandbox: SoulBox's `POST /v1/sandboxes`, E2B's
/// `POST /v2/sandboxes`.
fn creates_a_sandbox(request: &Request) -> bool {
    request.method() == axum::http::Method::POST && ["/v1/sandboxes", "/v2/sandboxes"].contains(&request.uri().path())
}

/// A request for a sandbox this node serves. One that may change it other than through a
/// cell or a checkpoint (its files, its processes, E2B's envd) first withdraws the sandbox's
/// hand-over, so a node that takes it over later cannot bring back files older than what this
/// request was told it wrote: it is lost instead, until its next checkpoint.
async fn serve_here(state: &AppState, id: &str, request: Request, next: Next) -> Response {
    if changes_outside_cells(&request)
        && let Ok(sandbox) = state.sandboxes.get(id)
        && let Err(error) = sandbox.withdraw_hand_over().await
    {
        tracing::warn!(%error, sandbox = %id, "could not withdraw a sandbox's hand-over; the change is refused");
        return ApiError::Unavailable("the cluster's database did not answer; retry".into()).into_response();
    }
    next.run(request).await
}

/// Whether `request` may change its sandbox other than by a cell, a context change or a
/// checkpoint (which record or withdraw its hand-over themselves): anything but a read.
fn changes_outside_cells(request: &Request) -> bool {
    use axum::http::Method;
    let reads = [Method::GET, Method::HEAD, Method::OPTIONS].contains(request.method());
    let path = request.uri().path();
    let recorded = ["/execute", "/pause", "/checkpoint", "/resume", "/contexts", "/restart", "/timeout", "/connect"]
        .iter()
        .any(|end| path.ends_with(end));
    !reads && !recorded
}

/// `segment` with its `%XX` escapes decoded (as text), or as it is when it has none or they
/// do not decode to UTF-8.
fn percent_decoded(segment: &str) -> String {
    if !segment.contains('%') {
        return segment.to_owned();
    }
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).unwrap_or_else(|_| segment.to_owned())
}

/// A request for a sandbox this node does not serve: forwarded to its live owner, taken over
/// when its owner's lease ran out; served here when it has none (a 404, or a sandbox this node
/// has not adopted).
async fn to_owner(state: &AppState, cluster: &Cluster, id: &str, request: Request, next: Next) -> Response {
    let owner = match cluster.owner_of(id).await {
        Ok(owner) => owner,
        Err(error) => {
            tracing::warn!(%error, sandbox = %id, "could not look up a sandbox's node");
            return ApiError::Unavailable("the cluster's database did not answer; retry".into()).into_response();
        }
    };
    match owner {
        Some(owner) if !owner.live => take_over(state, cluster, id, &owner.node, request, next).await,
        None => without_owner(state, cluster, id, request, next).await,
        Some(owner) if owner.node != cluster.node() => forward_to(cluster, &owner, id, request).await,
        _ => next.run(request).await,
    }
}

/// A sandbox the cluster has as lost, for authentication to answer 410 (with why) to its
/// tenant and 404 to anyone else.
#[derive(Debug, Clone)]
pub struct LostInCluster {
    /// The sandbox.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// Why it was lost.
    pub why: String,
}

impl LostInCluster {
    /// The answer its tenant gets.
    pub fn gone(&self) -> ApiError {
        ApiError::Gone(format!("sandbox `{}` was lost: {}", self.id, self.why))
    }
}

/// A request for a sandbox no node owns (killed, lost, or unknown). A copy this node still has
/// is stale: never served (a 404), and closed when the cluster has the sandbox as lost. A lost
/// sandbox's request carries its loss to authentication ([`LostInCluster`]); any other is
/// served here, as a sandbox this node does not know.
async fn without_owner(state: &AppState, cluster: &Cluster, id: &str, mut request: Request, next: Next) -> Response {
    let lost = match cluster.lost(id).await {
        Ok(lost) => lost,
        Err(error) => {
            tracing::warn!(%error, sandbox = %id, "could not look up whether a sandbox was lost");
            None
        }
    };
    let Some(lost) = lost else {
        if state.sandboxes.knows(id) {
            return ApiError::NotFound(format!("no sandbox `{id}`")).into_response();
        }
        return next.run(request).await;
    };
    if state.sandboxes.kill(id).is_ok() {
        tracing::info!(sandbox = %id, "closed this node's stale copy of a sandbox the cluster lost");
    }
    let why = lost.why.unwrap_or_else(|| "its node stopped".into());
    request.extensions_mut().insert(LostInCluster { id: id.to_owned(), tenant: lost.tenant, why });
    next.run(request).await
}

/// Forwards `request` to `owner`; a node that does not answer is a 503 (its name only logged).
async fn forward_to(cluster: &Cluster, owner: &SandboxOwner, id: &str, request: Request) -> Response {
    tracing::debug!(sandbox = %id, node = %owner.node, "forwarded");
    match cluster.forward(&owner.node, &owner.url, request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(%error, sandbox = %id, "could not forward a request");
            ApiError::Unavailable("the sandbox's node did not answer; retry".into()).into_response()
        }
    }
}

/// A request for a sandbox whose node's lease ran out: this node takes it over from its
/// hand-over (its latest checkpoint, in the shared object store) and serves the request.
async fn take_over(
    state: &AppState,
    cluster: &Cluster,
    id: &str,
    from: &str,
    request: Request,
    next: Next,
) -> Response {
    // In a task of its own: a client that goes away must not leave a takeover half done.
    let (task_cluster, task_id, sandboxes) = (cluster.clone(), id.to_owned(), state.sandboxes.clone());
    let open = move |manifest: String| async move { crate::cluster::open_handover(&sandboxes, manifest).await };
    let taken = tokio::spawn(async move { task_cluster.take_over(&task_id, open).await });
    let taken =
        taken.await.unwrap_or_else(|e| Err(ClusterError::Unreachable { node: "this".into(), why: e.to_string() }));
    match taken {
        Ok(Some(TakeOver::From(_))) => {
            tracing::info!(sandbox = %id, from = %from, "took over a sandbox whose node is gone");
            let mut response = next.run(request).await;
            if let Ok(node) = HeaderValue::from_str(from) {
                response.headers_mut().insert(TAKEN_OVER_FROM, node);
            }
            response
        }
        Ok(Some(TakeOver::Lost(why))) => {
            tracing::info!(sandbox = %id, from = %from, why, "a sandbox whose node is gone is lost");
            ApiError::Gone(format!("sandbox `{id}` was lost when its node stopped: {why}")).into_response()
        }
        Ok(Some(TakeOver::Awaited)) => ApiError::Unavailable(format!(
            "sandbox `{id}`'s node stopped moments ago without handing it over; it is kept for the node to \
             come back for a lease ({} ms); retry",
            cluster.lease().as_millis()
        ))
        .into_response(),
        // Its owner came back, or another node took it: ask again, once.
        Ok(_) => match cluster.owner_of(id).await {
            Ok(Some(owner)) if owner.live && owner.node != cluster.node() => {
                forward_to(cluster, &owner, id, request).await
            }
            _ => next.run(request).await,
        },
        Err(error) => {
            tracing::warn!(%error, sandbox = %id, "could not take a sandbox over");
            ApiError::Unavailable(format!("sandbox `{id}`'s node is gone and it could not be taken over yet; retry"))
                .into_response()
        }
    }
}

/// The sandbox a request names, if any.
fn addressed_sandbox(request: &Request) -> Option<&str> {
    if let Some(id) = request.headers().get("e2b-sandbox-id").and_then(|v| v.to_str().ok()) {
        return Some(id);
    }
    let path = request.uri().path();
    let rest = ["/v1/sandboxes/", "/sandboxes/", "/v2/sandboxes/"].iter().find_map(|p| path.strip_prefix(p))?;
    rest.split('/').next().filter(|id| !id.is_empty())
}

/// Whether `request` may be a tool call, which says in its body what it does: SoulBox's
/// `POST /v1/tools/call`, or a JSON-RPC request to MCP's `POST /mcp`.
fn is_tool_call(request: &Request) -> bool {
    request.method() == axum::http::Method::POST && ["/v1/tools/call", "/mcp"].contains(&request.uri().path())
}

/// What routing needs of a tool call.
#[derive(Debug, Default, PartialEq, Eq)]
struct ToolCall {
    /// The sandbox its arguments name.
    sandbox: Option<String>,
    /// Whether it is `create_sandbox`.
    creates_a_sandbox: bool,
}

/// Reads a tool call's body (at most `limit` bytes) for what it does, and gives the request
/// back whole. A body too large or unreadable is refused as the route would.
async fn read_tool_call(request: Request, limit: usize) -> Result<(Request, ToolCall), Response> {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => return Err(ApiError::TooLarge("the request body is too large".into()).into_response()),
    };
    let call = tool_call(&bytes).unwrap_or_default();
    Ok((Request::from_parts(parts, axum::body::Body::from(bytes)), call))
}

/// The tool a call runs and the `sandbox_id` its arguments name (an object, or the JSON text
/// OpenAI gives): SoulBox's `{"name", "arguments"}`, or MCP's
/// `{"method": "tools/call", "params": {"name", "arguments"}}`.
fn tool_call(body: &[u8]) -> Option<ToolCall> {
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    let call = if body["method"] == "tools/call" { &body["params"] } else { &body };
    let arguments = match &call["arguments"] {
        serde_json::Value::String(text) => serde_json::from_str(text).ok()?,
        other => other.clone(),
    };
    Some(ToolCall {
        sandbox: arguments["sandbox_id"].as_str().map(str::to_owned),
        creates_a_sandbox: call["name"] == "create_sandbox",
    })
}

/// `GET /cluster/nodes`: every node, its lease, load and the sandboxes it owns (an operator's
/// endpoint, like `/metrics`: keep it off the public network).
pub async fn nodes(State(state): State<AppState>) -> Result<axum::Json<Vec<NodeRow>>, ApiError> {
    let cluster = state.cluster.as_ref().ok_or_else(|| ApiError::NotFound("this server is not in a cluster".into()))?;
    match cluster.nodes().await {
        Ok(nodes) => Ok(axum::Json(nodes)),
        Err(error) => {
            tracing::warn!(%error, "could not list the cluster's nodes");
            Err(ApiError::Unavailable("the cluster's database did not answer; retry".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(path: &str, header: Option<&str>) -> Option<String> {
        let mut request = Request::builder().uri(path);
        if let Some(id) = header {
            request = request.header("e2b-sandbox-id", id);
        }
        addressed_sandbox(&request.body(axum::body::Body::empty()).unwrap()).map(str::to_owned)
    }

    #[test]
    fn a_request_names_its_sandbox_by_path_or_by_e2b_header() {
        assert_eq!(named("/v1/sandboxes/sbx-1/execute", None).as_deref(), Some("sbx-1"));
        assert_eq!(named("/v1/sandboxes/sbx-1", None).as_deref(), Some("sbx-1"));
        assert_eq!(named("/sandboxes/sbx-2/pause", None).as_deref(), Some("sbx-2"));
        assert_eq!(named("/v2/sandboxes/sbx-3/connect", None).as_deref(), Some("sbx-3"));
        assert_eq!(named("/files?path=x", Some("sbx-4")).as_deref(), Some("sbx-4"));
        assert_eq!(named("/v1/sandboxes", None), None);
        assert_eq!(named("/v1/sandboxes/", None), None);
        assert_eq!(named("/v1/execute", None), None);
        assert_eq!(named("/v1/templates/t", None), None);
        assert_eq!(percent_decoded("sbx%2D1"), "sbx-1");
        assert_eq!(percent_decoded("sbx-1"), "sbx-1");
        assert_eq!(percent_decoded("bad%zz"), "bad%zz");
    }

    fn named_in_body(body: &[u8]) -> Option<String> {
        tool_call(body).and_then(|call| call.sandbox)
    }

    #[test]
    fn a_tool_call_names_its_sandbox_in_its_arguments_object_or_text_and_says_if_it_creates_one() {
        let object = br#"{"name": "run_cell", "arguments": {"sandbox_id": "sbx-1", "code": "1"}}"#;
        assert_eq!(named_in_body(object).as_deref(), Some("sbx-1"));
        let text = br#"{"name": "run_cell", "arguments": "{\"sandbox_id\": \"sbx-2\"}"}"#;
        assert_eq!(named_in_body(text).as_deref(), Some("sbx-2"));
        assert_eq!(named_in_body(br#"{"name": "run_code", "arguments": {"code": "1"}}"#), None);
        assert_eq!(tool_call(b"not json"), None);
        let mcp = br#"{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "read_file", "arguments": {"sandbox_id": "sbx-3", "path": "/a"}}}"#;
        assert_eq!(named_in_body(mcp).as_deref(), Some("sbx-3"));
        let listing = br#"{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}"#;
        assert_eq!(tool_call(listing), Some(ToolCall::default()));
        let creation = br#"{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "create_sandbox"}}"#;
        assert_eq!(tool_call(creation), Some(ToolCall { sandbox: None, creates_a_sandbox: true }));
        let created = tool_call(br#"{"name": "create_sandbox", "arguments": {}}"#).unwrap();
        assert!(created.creates_a_sandbox);
    }
}

//! Sandbox traffic: requests with `E2b-Sandbox-Id`, diverted before SoulBox's own routes (whose
//! `/health` they would otherwise hit), checked, and routed by `E2b-Sandbox-Port`.
//!
//! Order of checks, as E2B's proxy and envd answer them: an unknown, killed or lost sandbox is
//! 502 "The sandbox ... was not found" (the SDK keys on those words); a port that is neither
//! envd's nor the code interpreter's is 502 "port is not open"; envd's `/health` needs no token;
//! everything else needs the sandbox's token (`X-Access-Token`, or on the code interpreter
//! `E2B-Traffic-Access-Token` too), else 401. A request that passes carries the sandbox and a
//! [`Caller`] for its owner: its rate limit and execution slots are the owner's sandbox
//! traffic's, one budget per tenant ([`traffic_key`]), and its work counts against the
//! tenant's quotas and budget. The two routers then sit behind the same request timeout and
//! in-flight bound as every other route.

use super::wire;
use crate::http::AppState;
use crate::http::auth::{Caller, Tenant};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use soulbox_engine::Sandbox;
use tower::ServiceExt;
use tower::limit::GlobalConcurrencyLimitLayer;

/// envd's port: files, filesystem and process RPCs.
pub const ENVD_PORT: &str = "49983";
/// The code interpreter's port: `/execute`, `/contexts`.
pub const INTERPRETER_PORT: &str = "49999";

/// The sandbox a request is for, put in its extensions once its token checked out.
#[derive(Debug, Clone)]
pub struct TargetSandbox(pub Sandbox);

/// What [`divert`] needs: the server's state and the two sandbox-side routers, built once.
#[derive(Debug, Clone)]
pub struct SandboxTraffic {
    state: AppState,
    envd: Router,
    interpreter: Router,
}

impl SandboxTraffic {
    /// The routers, bounded by `in_flight` (the server's one in-flight semaphore).
    pub fn new(state: AppState, in_flight: &GlobalConcurrencyLimitLayer) -> Self {
        let bounded = |routes| crate::http::bounded(routes, &state, in_flight).with_state(state.clone());
        let envd = bounded(super::envd::routes(&state.settings));
        let interpreter = bounded(super::interpreter::routes(&state.settings));
        SandboxTraffic { state, envd, interpreter }
    }
}

/// The key a tenant's sandbox traffic is rate-limited and given execution slots under: it
/// carries no API key, so all of it shares one budget per tenant.
fn traffic_key(tenant: &str) -> String {
    format!("e2b-sandbox-traffic:{tenant}")
}

/// 502 for a sandbox that is not open (killed, expired, lost, never made), in the words the
/// SDK looks for.
pub fn sandbox_not_found(id: &str) -> Response {
    wire::error(StatusCode::BAD_GATEWAY, format!("The sandbox {id} was not found"))
}

/// Middleware: requests with `E2b-Sandbox-Id` go to the sandbox's envd or code interpreter;
/// the rest go on to SoulBox's own routes.
pub async fn divert(State(traffic): State<SandboxTraffic>, mut request: Request, next: Next) -> Response {
    let Some(id) = header(&request, "e2b-sandbox-id").map(str::to_owned) else {
        return next.run(request).await;
    };
    let state = &traffic.state;
    let port = header(&request, "e2b-sandbox-port").unwrap_or_default().to_owned();
    let Ok(sandbox) = state.sandboxes.get(&id) else { return sandbox_not_found(&id) };
    if request.method() == axum::http::Method::POST {
        // A cell or a command: it streams, on a worker that may wake while this is handled.
        state.engine.expect_job();
    }
    let router = match port.as_str() {
        ENVD_PORT => traffic.envd.clone(),
        INTERPRETER_PORT => traffic.interpreter.clone(),
        _ => {
            let message = format!("The sandbox {id} is running but port {port} is not open");
            return wire::error(StatusCode::BAD_GATEWAY, message);
        }
    };
    let open = port == ENVD_PORT && request.uri().path() == "/health";
    if !open && !token_opens(state, &request, &id, port == INTERPRETER_PORT) {
        tracing::info!(sandbox = %id, "sandbox traffic without its token was refused");
        return wire::error(StatusCode::UNAUTHORIZED, "missing or invalid access token for this sandbox");
    }
    let owner = sandbox.owner().unwrap_or_default().to_owned();
    tracing::Span::current().record("tenant", owner.as_str());
    let caller = Caller { key: traffic_key(&owner), tenant: Tenant(owner) };
    if let Err(limited) = state.guard.check_rate(&caller.key, state.live_nodes()) {
        return wire::shaped(limited.into_response());
    }
    request.extensions_mut().insert(caller);
    request.extensions_mut().insert(TargetSandbox(sandbox));
    match router.oneshot(request).await {
        Ok(response) => wire::shaped(response),
        Err(never) => match never {},
    }
}

/// Whether the request carries sandbox `id`'s token where its port expects it.
fn token_opens(state: &AppState, request: &Request, id: &str, interpreter: bool) -> bool {
    let mut presented = vec![header(request, "x-access-token")];
    if interpreter {
        presented.push(header(request, "e2b-traffic-access-token"));
    }
    presented.into_iter().flatten().any(|token| state.e2b.tokens.verify(id, token))
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for TargetSandbox {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<TargetSandbox>().cloned().ok_or_else(|| {
            wire::error(StatusCode::INTERNAL_SERVER_ERROR, "a sandbox route outside the sandbox check").into_response()
        })
    }
}

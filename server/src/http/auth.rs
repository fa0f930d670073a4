//! Who is calling: API keys, tenants, and which sandboxes belong to whom.
//!
//! [`authenticate`] runs before every `/v1` and `/mcp` handler: it resolves the key in
//! `Authorization: Bearer <key>` or `x-api-key: <key>` to a [`Caller`] (its key and tenant, an
//! extension handlers read), applies the key's rate limit, or answers 401. In development mode
//! every caller is the tenant `dev`. A sandbox's owner is its tenant, a field of the sandbox in
//! the engine (and recorded in the database); a sandbox that is not the caller's is reported
//! exactly like one that does not exist.

use super::{ApiError, AppState};
use crate::database::{Database, Usage, now_ms};
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use soulbox_engine::sandbox::SandboxInfo;
use soulbox_engine::{Outcome, Sandbox};
use std::collections::BTreeMap;
use std::time::Duration;

/// The tenant every development-mode caller is.
pub const DEV_TENANT: &str = "dev";

/// The calling tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub String);

/// Who is calling: the key (its id; `dev` in development mode) and its tenant. Handlers take it
/// as an extractor; it exists only behind [`authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The API key's id.
    pub key: String,
    /// The key's tenant.
    pub tenant: Tenant,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("a route outside authentication".into()))
    }
}

/// How callers are recognised, and the records kept about them.
#[derive(Debug, Clone)]
pub struct Auth {
    mode: Mode,
    db: Database,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Dev,
    Keys,
}

impl Auth {
    /// API keys checked against `db`.
    pub fn keys(db: Database) -> Self {
        Auth { mode: Mode::Keys, db }
    }

    /// Development mode: no keys, one tenant (`dev`); records still go to `db`.
    pub fn dev(db: Database) -> Self {
        Auth { mode: Mode::Dev, db }
    }

    /// Whether this is development mode (no keys).
    pub fn is_dev(&self) -> bool {
        self.mode == Mode::Dev
    }

    /// The database.
    pub fn db(&self) -> &Database {
        &self.db
    }
}

/// One execution's usage record.
pub fn usage(
    tenant: &Tenant,
    kind: &'static str,
    language: &'static str,
    outcome: Outcome,
    took: Duration,
    fuel: Option<u64>,
    network: Option<soulbox_engine::NetworkUsage>,
) -> Usage {
    Usage {
        tenant: tenant.0.clone(),
        kind,
        language,
        outcome: outcome.name(),
        duration_us: i64::try_from(took.as_micros()).unwrap_or(i64::MAX),
        fuel: fuel.map(|f| i64::try_from(f).unwrap_or(i64::MAX)),
        network,
        at_ms: now_ms(),
    }
}

impl AppState {
    /// The sandbox `id` if `tenant` owns it; otherwise not found, exactly as if it did not exist.
    pub fn sandbox(&self, tenant: &Tenant, id: &str) -> Result<Sandbox, ApiError> {
        Ok(self.sandboxes.get_owned(Some(&tenant.0), id)?)
    }

    /// `tenant`'s open sandboxes whose metadata holds `filter`.
    pub fn list_sandboxes(&self, tenant: &Tenant, filter: &BTreeMap<String, String>) -> Vec<SandboxInfo> {
        self.sandboxes.list_owned(Some(&tenant.0), filter)
    }
}

/// Resolves the caller and applies its key's rate limit, or answers 401 or 429; records what
/// the audit log keeps of the request.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path().to_owned(), |matched| matched.as_str().to_owned());
    let secret = presented_key(&request);
    let (caller, response) = match identify(&state, secret).await {
        Err(error) => (None, error.into_response()),
        Ok(caller) => {
            tracing::Span::current().record("tenant", caller.tenant.0.as_str());
            state.audit.key_used(&caller, &method, &route);
            // A sandbox of this tenant's that the cluster lost: said so, with why.
            let lost = request.extensions().get::<super::cluster::LostInCluster>();
            let gone = lost.filter(|lost| lost.tenant == caller.tenant.0).map(super::cluster::LostInCluster::gone);
            let response = match (state.guard.check_rate(&caller.key, state.live_nodes()), gone) {
                (Err(error), _) => error.into_response(),
                (Ok(()), Some(gone)) => gone.into_response(),
                (Ok(()), None) => {
                    request.extensions_mut().insert(caller.clone());
                    next.run(request).await
                }
            };
            (Some(caller), response)
        }
    };
    let code = response.extensions().get::<super::error::ErrorCode>().map(|code| code.0);
    state.audit.response(caller.as_ref(), &method, &route, response.status().as_u16(), code);
    response
}

async fn identify(state: &AppState, secret: Option<String>) -> Result<Caller, ApiError> {
    if state.auth.mode == Mode::Dev {
        return Ok(Caller { key: DEV_TENANT.into(), tenant: Tenant(DEV_TENANT.into()) });
    }
    let Some(secret) = secret else {
        return Err(ApiError::Unauthorized("an API key is required: `Authorization: Bearer <key>`".into()));
    };
    match state.auth.db.key_of(&secret).await? {
        Some(key) => Ok(Caller { key: key.id, tenant: Tenant(key.tenant) }),
        None => Err(ApiError::Unauthorized("unknown or revoked API key".into())),
    }
}

fn presented_key(request: &Request) -> Option<String> {
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let key = bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim));
    key.filter(|k| !k.is_empty()).map(str::to_owned)
}

//! E2B's control plane: create, connect (and resume), list, describe, kill, time out and pause
//! sandboxes, as SoulBox sandboxes of the caller's tenant.
//!
//! Status codes are E2B's to the letter (201 on create, 204 on kill, timeout and pause, 200 or
//! 201 on connect): the SDK treats any other success as "no body". An E2B sandbox has no idle
//! timeout (E2B has none): it lives until its `timeout`, which `set_timeout` and `connect`
//! move.

use super::wire::{self, rfc3339};
use super::{CLIENT_ID, ENVD_VERSION, HOME, TEMPLATE_KEY};
use crate::http::auth::Caller;
use crate::http::{ApiError, ApiJson, AppState};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use soulbox_engine::sandbox::{MAX_LIFETIME, SandboxInfo, SandboxState, TemplateRef};
use soulbox_engine::{Language, Sandbox, SandboxSpec, Template};
use std::collections::BTreeMap;
use std::time::Duration;

/// A sandbox's lifetime when `Sandbox.create` gives no `timeout` (E2B's default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// What `cpuCount`, `memoryMB` and `diskSizeMB` say: E2B's smallest sandbox. SoulBox bounds
/// each cell and command instead, so these are nominal.
const NOMINAL_CPUS: u32 = 2;
const NOMINAL_MEMORY_MB: u32 = 512;
const NOMINAL_DISK_MB: u32 = 512;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/sandboxes", post(create).get(list))
        .route("/v2/sandboxes/{id}/connect", post(connect))
        .route("/sandboxes", get(list))
        .route("/sandboxes/{id}", get(describe).delete(kill))
        .route("/sandboxes/{id}/timeout", post(set_timeout))
        .route("/sandboxes/{id}/pause", post(pause))
        .route("/sandboxes/{id}/resume", post(resume))
        .route("/sandboxes/{id}/metrics", get(metrics))
        // The rest of E2B's API (fork, snapshots, network rules, templates, volumes...) is
        // answered in E2B's error shape, never SoulBox's, which the SDK could not parse.
        .route("/sandboxes/{id}/{*rest}", any(unsupported))
        .route("/v2/sandboxes/{id}/{*rest}", any(unsupported))
        .route("/v2/{*rest}", any(unsupported))
        .route("/v3/{*rest}", any(unsupported))
        .route("/templates", any(unsupported))
        .route("/templates/{*rest}", any(unsupported))
        .route("/volumes", any(unsupported))
        .route("/volumes/{*rest}", any(unsupported))
        .route("/snapshots", any(unsupported))
        .route("/snapshots/{*rest}", any(unsupported))
        .method_not_allowed_fallback(unsupported)
}

/// An E2B endpoint SoulBox does not serve.
async fn unsupported(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("{method} {} is not supported by SoulBox's E2B API", uri.path()))
}

/// `POST /v2/sandboxes`. Fields E2B has and SoulBox does not implement (`autoPause`, `mcp`,
/// `network`, `iam`, `volumeMounts`) are accepted at their defaults and refused otherwise;
/// `autoResume` and `autoPauseMemory` are accepted (a paused SoulBox sandbox resumes on use).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewSandbox {
    #[serde(rename = "templateID")]
    template_id: String,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    env_vars: Option<BTreeMap<String, String>>,
    /// Seconds.
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default, rename = "allow_internet_access")]
    allow_internet_access: Option<bool>,
    #[serde(default)]
    auto_pause: Option<bool>,
    #[serde(default)]
    volume_mounts: Option<Vec<Value>>,
    #[serde(default)]
    network: Option<Value>,
    #[serde(default)]
    mcp: Option<Value>,
    #[serde(default)]
    iam: Option<Value>,
}

impl NewSandbox {
    /// A refusal naming the first field asking for what SoulBox does not do.
    fn unsupported(&self) -> Option<ApiError> {
        let given = |value: &Option<Value>| value.as_ref().is_some_and(|v| !v.is_null());
        let what = if self.auto_pause == Some(true) {
            "`autoPause` (a SoulBox sandbox is killed at its timeout; pause it before)"
        } else if self.volume_mounts.as_ref().is_some_and(|v| !v.is_empty()) {
            "volumes"
        } else if given(&self.network) {
            "`network` rules (SoulBox allows all or nothing: `allow_internet_access`)"
        } else if given(&self.mcp) {
            "`mcp` gateways"
        } else if given(&self.iam) {
            "`iam` workload identities"
        } else {
            return None;
        };
        Some(ApiError::BadRequest(format!("{what} is not supported by SoulBox")))
    }
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewSandbox>,
) -> Result<Response, ApiError> {
    if let Some(refusal) = body.unsupported() {
        return Err(refusal);
    }
    // Made and set up in a task of its own: a client that gives up (or a request timeout)
    // midway must not leave a half-made sandbox behind.
    let made = tokio::spawn(make(state.clone(), caller, body));
    let info = made.await.map_err(|e| ApiError::Internal(format!("a create's task failed: {e}")))??;
    Ok((StatusCode::CREATED, ApiJson(sandbox_json(&state, &info))).into_response())
}

/// Opens and prepares the sandbox `body` asks for; a failure kills what was opened.
async fn make(state: AppState, caller: Caller, body: NewSandbox) -> Result<SandboxInfo, ApiError> {
    let (template, from_template) = resolve_template(&state, &caller, &body.template_id)?;
    let lifetime = body.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let mut metadata = body.metadata.unwrap_or_default();
    metadata.insert(TEMPLATE_KEY.into(), body.template_id.clone());
    let spec = SandboxSpec {
        template,
        metadata,
        env: body.env_vars.unwrap_or_default(),
        lifetime: Some(lifetime),
        // No idle reaping: E2B sandboxes live until their timeout.
        idle_timeout: Some(MAX_LIFETIME),
        network: body.allow_internet_access.unwrap_or(false),
        from_template,
        ..SandboxSpec::default()
    };
    let sandbox = state.open_sandbox(&caller, spec).await?;
    if let Err(error) = prepare(&state, &caller, &sandbox).await {
        let _ = state.kill_sandbox(&caller, sandbox.id()).await;
        return Err(error);
    }
    Ok(sandbox.info())
}

/// E2B's home in the workspace, and every Python context working in it.
async fn prepare(state: &AppState, caller: &Caller, sandbox: &Sandbox) -> Result<(), ApiError> {
    sandbox.files()?.make_dir(HOME).await?;
    for context in sandbox.contexts().into_iter().filter(|c| c.language == Language::Python) {
        if context.execution_count == 0 {
            super::interpreter::set_up_context(state, caller, sandbox, &context.id).await?;
        }
    }
    Ok(())
}

/// E2B's template names: its code interpreter's and its base image are the data-science
/// template; SoulBox's own names are themselves; anything else is one of the caller's saved
/// templates, or E2B's 404.
fn resolve_template(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<(Template, Option<TemplateRef>), ApiError> {
    if matches!(name, "code-interpreter-v1" | "code-interpreter" | "base") {
        return Ok((Template::DataScience, None));
    }
    if let Ok(template) = serde_json::from_value::<Template>(json!(name)) {
        return Ok((template, None));
    }
    match state.sandboxes.template(Some(&caller.tenant.0), name, None) {
        Ok(saved) => Ok((saved.base, Some(TemplateRef { name: name.to_owned(), version: None }))),
        Err(_) => Err(ApiError::NotFound(format!("template '{name}' not found"))),
    }
}

/// The optional `{"timeout": seconds}` of connect and resume.
#[derive(Debug, Default, Deserialize)]
struct Timeout {
    #[serde(default)]
    timeout: Option<u64>,
}

/// `POST /v2/sandboxes/{id}/connect`: 200 for a running sandbox, 201 for one it resumed; a
/// `timeout` longer than what is left extends its lifetime.
async fn connect(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let timeout: Timeout = wire::optional_json(&body)?;
    let sandbox = owned(&state, &caller, &id)?;
    let status = match sandbox.info().state {
        SandboxState::Paused => {
            sandbox.resume().await?;
            StatusCode::CREATED
        }
        _ => StatusCode::OK,
    };
    // A sandbox made through SoulBox's own API gets E2B's home on its first connect.
    sandbox.files()?.make_dir(HOME).await?;
    if let Some(timeout) = timeout.timeout {
        let left = sandbox.info().expires_at_ms.saturating_sub(crate::database::now_ms() as u64);
        if timeout.saturating_mul(1000) > left {
            sandbox.set_timeouts(None, Some(Duration::from_secs(timeout)))?;
        }
    }
    Ok((status, ApiJson(sandbox_json(&state, &sandbox.info()))).into_response())
}

/// `POST /sandboxes/{id}/resume` (older SDKs): as connect, 201.
async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let sandbox = owned(&state, &caller, &id)?;
    if sandbox.info().state == SandboxState::Running {
        return Err(ApiError::Conflict(format!("sandbox {id} is already running")));
    }
    connect(State(state), caller, Path(id), body).await
}

/// `GET /v2/sandboxes`: the caller's sandboxes, filtered by `metadata` (a query string in a
/// query parameter), `state` and `template`, paged by `limit` and `nextToken`.
async fn list(State(state): State<AppState>, caller: Caller, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let filter = ListFilter::parse(query.as_deref().unwrap_or_default())?;
    let mut rows: Vec<Value> = state
        .list_sandboxes(&caller.tenant, &filter.metadata)
        .iter()
        .filter(|info| filter.states.contains(&info.state))
        .filter(|info| filter.template.as_ref().is_none_or(|t| template_id(info) == *t))
        .map(listed_json)
        .collect();
    if filter.descending {
        rows.reverse();
    }
    let rest = rows.split_off(filter.offset.min(rows.len()));
    let page: Vec<Value> = rest.iter().take(filter.limit).cloned().collect();
    let mut headers = HeaderMap::new();
    if rest.len() > page.len() {
        let next = (filter.offset + page.len()).to_string();
        headers.insert("x-next-token", HeaderValue::from_str(&next).expect("digits"));
    }
    Ok((headers, ApiJson(page)).into_response())
}

/// What a listing asked for.
#[derive(Debug)]
struct ListFilter {
    metadata: BTreeMap<String, String>,
    states: Vec<SandboxState>,
    template: Option<String>,
    limit: usize,
    offset: usize,
    descending: bool,
}

impl ListFilter {
    fn parse(query: &str) -> Result<ListFilter, ApiError> {
        let bad = |what: String| ApiError::BadRequest(what);
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|e| bad(format!("the query string: {e}")))?;
        let mut filter = ListFilter {
            metadata: BTreeMap::new(),
            states: Vec::new(),
            template: None,
            limit: usize::MAX,
            offset: 0,
            descending: false,
        };
        for (key, value) in pairs {
            match key.as_str() {
                // `k1=v1&k2=v2`, itself URL-encoded once more by the SDK.
                "metadata" => filter.metadata.extend(
                    serde_urlencoded::from_str::<Vec<(String, String)>>(&value)
                        .map_err(|e| bad(format!("`metadata`: {e}")))?,
                ),
                "state" => {
                    for name in value.split(',').filter(|s| !s.is_empty()) {
                        filter.states.push(match name {
                            "running" => SandboxState::Running,
                            "paused" => SandboxState::Paused,
                            other => return Err(bad(format!("unknown sandbox state `{other}`"))),
                        });
                    }
                }
                "template" => filter.template = Some(value),
                "limit" => {
                    filter.limit = value.parse().map_err(|_| bad(format!("`limit` is not a number: {value}")))?
                }
                "nextToken" => {
                    filter.offset =
                        value.parse().map_err(|_| bad(format!("`nextToken` is not one of ours: {value}")))?
                }
                "order" => filter.descending = value.eq_ignore_ascii_case("desc"),
                other => return Err(bad(format!("`{other}` is not a filter SoulBox supports"))),
            }
        }
        if filter.states.is_empty() {
            filter.states = vec![SandboxState::Running, SandboxState::Paused];
        }
        Ok(filter)
    }
}

/// `GET /sandboxes/{id}`.
async fn describe(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let sandbox = owned(&state, &caller, &id)?;
    let info = sandbox.info();
    let mut detail = listed_json(&info);
    detail["envdAccessToken"] = json!(state.e2b.tokens.token(&info.id));
    detail["domain"] = Value::Null;
    detail["allowInternetAccess"] = json!(sandbox.allows_network());
    detail["lifecycle"] = json!({ "onTimeout": "kill", "autoResume": info.auto_resume });
    Ok(ApiJson(detail).into_response())
}

/// `DELETE /sandboxes/{id}`: 204.
async fn kill(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.kill_sandbox(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{"timeout": seconds}` of `set_timeout`.
#[derive(Debug, Deserialize)]
struct NewTimeout {
    timeout: u64,
}

/// `POST /sandboxes/{id}/timeout`: the sandbox ends `timeout` seconds from now; 204.
async fn set_timeout(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewTimeout>,
) -> Result<StatusCode, ApiError> {
    owned(&state, &caller, &id)?.set_timeouts(None, Some(Duration::from_secs(body.timeout)))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/pause`: 204; 409 when it is paused already.
async fn pause(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let sandbox = owned(&state, &caller, &id)?;
    if sandbox.info().state == SandboxState::Paused {
        return Err(ApiError::Conflict(format!("sandbox {id} is already paused")));
    }
    match sandbox.pause().await.map_err(ApiError::from) {
        // The SDK reads 409 as "already paused": a pause refused for another reason (a cell
        // running) is the server being busy.
        Err(ApiError::Conflict(why)) => Err(ApiError::Busy(why)),
        Err(other) => Err(other),
        Ok(_) => Ok(StatusCode::NO_CONTENT),
    }
}

/// `GET /sandboxes/{id}/metrics`: SoulBox samples no machine metrics; an empty series, as E2B
/// answers for a sandbox too young to have one.
async fn metrics(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    owned(&state, &caller, &id)?;
    Ok(ApiJson(Vec::<Value>::new()).into_response())
}

/// The caller's sandbox `id`, or E2B's 404.
fn owned(state: &AppState, caller: &Caller, id: &str) -> Result<Sandbox, ApiError> {
    state.sandbox(&caller.tenant, id).map_err(|error| match error {
        ApiError::NotFound(_) | ApiError::Gone(_) => ApiError::NotFound(format!("sandbox \"{id}\" not found")),
        other => other,
    })
}

/// The template a sandbox was created from, as its creator named it.
fn template_id(info: &SandboxInfo) -> String {
    info.metadata.get(TEMPLATE_KEY).cloned().unwrap_or_else(|| info.template.name().to_owned())
}

/// E2B's `Sandbox` (create and connect): ids, the envd version and the sandbox's tokens.
fn sandbox_json(state: &AppState, info: &SandboxInfo) -> Value {
    let token = state.e2b.tokens.token(&info.id);
    json!({
        "sandboxID": info.id,
        "templateID": template_id(info),
        "clientID": CLIENT_ID,
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": token,
        "trafficAccessToken": token,
        "domain": null,
    })
}

/// E2B's `ListedSandbox`.
fn listed_json(info: &SandboxInfo) -> Value {
    let mut metadata = info.metadata.clone();
    metadata.remove(TEMPLATE_KEY);
    let state = match info.state {
        SandboxState::Running => "running",
        _ => "paused",
    };
    json!({
        "sandboxID": info.id,
        "templateID": template_id(info),
        "clientID": CLIENT_ID,
        "startedAt": rfc3339(info.created_at_ms),
        "endAt": rfc3339(info.expires_at_ms),
        "cpuCount": NOMINAL_CPUS,
        "memoryMB": NOMINAL_MEMORY_MB,
        "diskSizeMB": NOMINAL_DISK_MB,
        "state": state,
        "envdVersion": ENVD_VERSION,
        "metadata": metadata,
    })
}

//! Templates saved from sandboxes: named, versioned, the caller's own
//! ([`soulbox_engine::Sandboxes::save_template`]). A sandbox starts from one with
//! `POST /v1/sandboxes {"from_template": {"name": ..., "version": ...}}`.

use super::auth::Caller;
use super::openapi::ErrorResponses;
use super::{ApiError, ApiJson, ApiQuery, AppState};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use soulbox_engine::sandbox::TemplateInfo;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/templates", post(save).get(list)).route("/templates/{name}", get(describe).delete(remove))
}

/// What to save, and under which name.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SaveBody {
    /// The sandbox to save (live or paused; it is not changed).
    sandbox_id: String,
    /// The template's name: 1-64 letters, digits, `-` or `_`. Saving a name again makes its
    /// next version.
    name: String,
}

/// Which version (default: the latest; for a delete, every version).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct VersionQuery {
    /// The version.
    version: Option<u32>,
}

/// Save a sandbox as the next version of one of the caller's templates: every context
/// checkpointed (the sandbox keeps running, unchanged) and the workspace copied. New
/// sandboxes start from it with no set-up. 409 when a context holds an open file.
#[utoipa::path(post, path = "/v1/templates", tag = "templates", request_body = SaveBody,
    responses((status = 201, body = TemplateInfo), ErrorResponses))]
async fn save(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SaveBody>,
) -> Result<(StatusCode, ApiJson<TemplateInfo>), ApiError> {
    let sandbox = state.sandbox(&caller.tenant, &body.sandbox_id)?;
    let info = state.sandboxes.save_template(&sandbox, &body.name).await?;
    Ok((StatusCode::CREATED, ApiJson(info)))
}

/// The caller's templates, every version, by name then version.
#[utoipa::path(get, path = "/v1/templates", tag = "templates",
    responses((status = 200, body = Vec<TemplateInfo>), ErrorResponses))]
async fn list(State(state): State<AppState>, caller: Caller) -> Result<ApiJson<Vec<TemplateInfo>>, ApiError> {
    Ok(ApiJson(state.sandboxes.list_templates(Some(&caller.tenant.0))))
}

/// One of the caller's templates: the latest version, or `?version=N`.
#[utoipa::path(get, path = "/v1/templates/{name}", tag = "templates", params(("name" = String, Path), VersionQuery),
    responses((status = 200, body = TemplateInfo), ErrorResponses))]
async fn describe(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> Result<ApiJson<TemplateInfo>, ApiError> {
    Ok(ApiJson(state.sandboxes.template(Some(&caller.tenant.0), &name, query.version)?))
}

/// Delete one of the caller's templates: every version, or `?version=N`. Sandboxes made from
/// it keep running.
#[utoipa::path(delete, path = "/v1/templates/{name}", tag = "templates", params(("name" = String, Path), VersionQuery),
    responses((status = 204, description = "Deleted"), ErrorResponses))]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> Result<StatusCode, ApiError> {
    state.sandboxes.delete_template(Some(&caller.tenant.0), &name, query.version)?;
    Ok(StatusCode::NO_CONTENT)
}

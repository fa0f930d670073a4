//! A sandbox's workspace files: streamed upload and download, list, stat, remove, rename,
//! mkdir. Paths are workspace paths (`/data/in.csv`); `..` and escaping symlinks are refused.

use super::auth::Caller;
use super::openapi::ErrorResponses;
use super::{ApiError, ApiJson, ApiQuery, AppState};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::TryStreamExt;
use http_body_util::{LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use soulbox_engine::sandbox::{EntryInfo, FileError, Workspace};
use tokio::io::AsyncReadExt;
use tokio_util::io::{ReaderStream, StreamReader};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sandboxes/{id}/files", get(download).put(upload).delete(remove))
        .route("/sandboxes/{id}/files/list", get(list))
        .route("/sandboxes/{id}/files/stat", get(stat))
        .route("/sandboxes/{id}/files/rename", post(rename))
        .route("/sandboxes/{id}/files/mkdir", post(mkdir))
}

/// `?path=...`
#[derive(Debug, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct At {
    /// A workspace path (`/data/in.csv`).
    path: String,
}

/// `?path=...&depth=...`
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListAt {
    /// The directory (default `/`).
    #[serde(default = "root")]
    path: String,
    /// How deep to list (default 1: the directory's own entries).
    #[serde(default = "one")]
    depth: usize,
}

fn root() -> String {
    "/".into()
}

fn one() -> usize {
    1
}

/// Download a file (streamed).
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files", tag = "files", params(("id" = String, Path), At),
    responses((status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Vec<u8>),
        ErrorResponses))]
async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(at): ApiQuery<At>,
) -> Result<Response, ApiError> {
    let sandbox = state.sandbox(&caller.tenant, &id)?;
    let file = sandbox.files()?.read_stream(&at.path).await?;
    let body = Body::from_stream(ReaderStream::new(file));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

/// Upload a file (the raw body, streamed to disk; replaces an existing file).
#[utoipa::path(put, path = "/v1/sandboxes/{id}/files", tag = "files", params(("id" = String, Path), At),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = EntryInfo), ErrorResponses))]
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(at): ApiQuery<At>,
    body: Body,
) -> Result<(StatusCode, ApiJson<EntryInfo>), ApiError> {
    let sandbox = state.sandbox(&caller.tenant, &id)?;
    let files = sandbox.files()?;
    let limit = usize::try_from(state.settings.upload_limit).unwrap_or(usize::MAX);
    write_upload(&files, &at.path, body, limit).await?;
    Ok((StatusCode::CREATED, ApiJson(files.stat(&at.path).await?)))
}

/// Streams `body` into the workspace file at `path`, refusing it past `limit` bytes (a raw
/// body is not bounded by `DefaultBodyLimit`, so the limit is applied here).
pub(in crate::http) async fn write_upload(
    files: &Workspace,
    path: &str,
    body: Body,
    limit: usize,
) -> Result<u64, ApiError> {
    let limited = Body::new(Limited::new(body, limit));
    let mut reader = StreamReader::new(limited.into_data_stream().map_err(std::io::Error::other));
    match files.write_stream(path, &mut reader).await {
        Ok(written) => Ok(written),
        Err(FileError::Io { source, .. }) if over_limit(&source) => {
            Err(ApiError::TooLarge(format!("the upload is over {limit} bytes")))
        }
        Err(full @ FileError::NoSpace(_)) => {
            // Stopped midway: read (and drop) a bounded rest of the body first, so a client
            // still sending gets this answer rather than a broken pipe.
            let rest = (&mut reader).take(DRAIN_AFTER_REFUSAL);
            let _ = tokio::io::copy(&mut std::pin::pin!(rest), &mut tokio::io::sink()).await;
            Err(full.into())
        }
        Err(other) => Err(other.into()),
    }
}

/// The most of an upload's body read and dropped after the workspace filled up midway.
const DRAIN_AFTER_REFUSAL: u64 = 64 << 20;

/// Whether a streaming failure is the body limit being hit.
fn over_limit(error: &std::io::Error) -> bool {
    let body_error = error.get_ref().and_then(|e| e.downcast_ref::<axum::Error>());
    body_error.and_then(std::error::Error::source).is_some_and(|cause| cause.is::<LengthLimitError>())
}

/// Remove a file or a directory (with its contents).
#[utoipa::path(delete, path = "/v1/sandboxes/{id}/files", tag = "files", params(("id" = String, Path), At),
    responses((status = 204, description = "Removed"), ErrorResponses))]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(at): ApiQuery<At>,
) -> Result<StatusCode, ApiError> {
    state.sandbox(&caller.tenant, &id)?.files()?.remove_path(&at.path).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List a directory.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files/list", tag = "files", params(("id" = String, Path), ListAt),
    responses((status = 200, body = Vec<EntryInfo>), ErrorResponses))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(at): ApiQuery<ListAt>,
) -> Result<ApiJson<Vec<EntryInfo>>, ApiError> {
    Ok(ApiJson(state.sandbox(&caller.tenant, &id)?.files()?.list(&at.path, at.depth).await?))
}

/// Describe one entry.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files/stat", tag = "files", params(("id" = String, Path), At),
    responses((status = 200, body = EntryInfo), ErrorResponses))]
async fn stat(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(at): ApiQuery<At>,
) -> Result<ApiJson<EntryInfo>, ApiError> {
    Ok(ApiJson(state.sandbox(&caller.tenant, &id)?.files()?.stat(&at.path).await?))
}

/// A rename.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Rename {
    /// The entry's path.
    from: String,
    /// Its new path.
    to: String,
}

/// Rename or move an entry.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/files/rename", tag = "files", params(("id" = String, Path)),
    request_body = Rename, responses((status = 200, body = EntryInfo), ErrorResponses))]
async fn rename(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(rename): ApiJson<Rename>,
) -> Result<ApiJson<EntryInfo>, ApiError> {
    Ok(ApiJson(state.sandbox(&caller.tenant, &id)?.files()?.rename(&rename.from, &rename.to).await?))
}

/// Whether `mkdir` made the directory (false: it existed).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Made {
    /// True when the directory was made.
    created: bool,
}

/// Make a directory (and its parents).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/files/mkdir", tag = "files", params(("id" = String, Path)),
    request_body = At, responses((status = 200, body = Made), ErrorResponses))]
async fn mkdir(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(at): ApiJson<At>,
) -> Result<ApiJson<Made>, ApiError> {
    Ok(ApiJson(Made { created: state.sandbox(&caller.tenant, &id)?.files()?.make_dir(&at.path).await? }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uploads_over_the_limit_are_refused_and_leave_nothing() {
        let parent = tempfile::tempdir().unwrap();
        let files = Workspace::create_in(parent.path()).unwrap();
        assert_eq!(write_upload(&files, "/ok.bin", Body::from(vec![1u8; 10]), 10).await.unwrap(), 10);
        let refused = write_upload(&files, "/big.bin", Body::from(vec![1u8; 11]), 10).await.unwrap_err();
        assert!(matches!(refused, ApiError::TooLarge(_)), "{refused:?}");
        assert!(!files.exists("/big.bin").await.unwrap());
        assert_eq!(files.list("/", 1).await.unwrap().len(), 1, "no partial upload left behind");
    }
}

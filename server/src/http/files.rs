//! A sandbox's workspace files: streamed upload and download, list, stat, remove, rename,
//! mkdir. Paths are workspace paths (`/data/in.csv`); `..` and escaping symlinks are refused.

use super::{ApiError, ApiJson, ApiQuery, AppState, Tenant, UPLOAD_BODY_LIMIT};
use axum::Extension;
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct At {
    path: String,
}

/// `?path=...&depth=...`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListAt {
    #[serde(default = "root")]
    path: String,
    #[serde(default = "one")]
    depth: usize,
}

fn root() -> String {
    "/".into()
}

fn one() -> usize {
    1
}

async fn download(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    ApiQuery(at): ApiQuery<At>,
) -> Result<Response, ApiError> {
    let sandbox = state.sandbox(&tenant, &id)?;
    let file = sandbox.files()?.read_stream(&at.path).await?;
    let body = Body::from_stream(ReaderStream::new(file));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

async fn upload(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    ApiQuery(at): ApiQuery<At>,
    body: Body,
) -> Result<(StatusCode, ApiJson<EntryInfo>), ApiError> {
    let sandbox = state.sandbox(&tenant, &id)?;
    let files = sandbox.files()?;
    write_upload(&files, &at.path, body, UPLOAD_BODY_LIMIT).await?;
    Ok((StatusCode::CREATED, ApiJson(files.stat(&at.path).await?)))
}

/// Streams `body` into the workspace file at `path`, refusing it past `limit` bytes (a raw
/// body is not bounded by `DefaultBodyLimit`, so the limit is applied here).
async fn write_upload(files: &Workspace, path: &str, body: Body, limit: usize) -> Result<u64, ApiError> {
    let limited = Body::new(Limited::new(body, limit));
    let reader = StreamReader::new(limited.into_data_stream().map_err(std::io::Error::other));
    files.write_stream(path, reader).await.map_err(|error| match error {
        FileError::Io { source, .. } if over_limit(&source) => {
            ApiError::TooLarge(format!("the upload is over {limit} bytes"))
        }
        other => other.into(),
    })
}

/// Whether a streaming failure is the body limit being hit.
fn over_limit(error: &std::io::Error) -> bool {
    let body_error = error.get_ref().and_then(|e| e.downcast_ref::<axum::Error>());
    body_error.and_then(std::error::Error::source).is_some_and(|cause| cause.is::<LengthLimitError>())
}

async fn remove(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    ApiQuery(at): ApiQuery<At>,
) -> Result<StatusCode, ApiError> {
    state.sandbox(&tenant, &id)?.files()?.remove_path(&at.path).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    ApiQuery(at): ApiQuery<ListAt>,
) -> Result<ApiJson<Vec<EntryInfo>>, ApiError> {
    Ok(ApiJson(state.sandbox(&tenant, &id)?.files()?.list(&at.path, at.depth).await?))
}

async fn stat(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    ApiQuery(at): ApiQuery<At>,
) -> Result<ApiJson<EntryInfo>, ApiError> {
    Ok(ApiJson(state.sandbox(&tenant, &id)?.files()?.stat(&at.path).await?))
}

/// A rename.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    from: String,
    to: String,
}

async fn rename(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    ApiJson(rename): ApiJson<Rename>,
) -> Result<ApiJson<EntryInfo>, ApiError> {
    Ok(ApiJson(state.sandbox(&tenant, &id)?.files()?.rename(&rename.from, &rename.to).await?))
}

/// Whether `mkdir` made the directory (false: it existed).
#[derive(Debug, Serialize)]
struct Made {
    created: bool,
}

async fn mkdir(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    ApiJson(at): ApiJson<At>,
) -> Result<ApiJson<Made>, ApiError> {
    Ok(ApiJson(Made { created: state.sandbox(&tenant, &id)?.files()?.make_dir(&at.path).await? }))
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

//! envd, the E2B sandbox's agent, over the sandbox's workspace: `/health`, `/files` (download;
//! multipart and octet-stream upload) and the `filesystem.Filesystem` Connect service (stat,
//! list, make a directory, move, remove). Paths are E2B paths ([`wire::workspace_path`]). The
//! `process.Process` service is [`process`]'s, the watchers [`watch`]'s.

use super::HOME;
use super::connect::{ConnectError, Unary, reply};
use super::traffic::TargetSandbox;
use super::wire::{self, workspace_path};
use super::{process, watch};
use crate::http::{ApiError, AppState, Settings};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use soulbox_engine::sandbox::{EntryInfo, EntryKind, FileError};
use tokio_util::io::{ReaderStream, StreamReader};

pub(super) fn routes(settings: &Settings) -> Router<AppState> {
    // Uploads (multipart, octet-stream) are bounded by the upload limit; every other request
    // is a small JSON message.
    let upload_limit = usize::try_from(settings.upload_limit).unwrap_or(usize::MAX);
    Router::new()
        .route("/health", get(health))
        .route("/files", get(download).post(upload).layer(DefaultBodyLimit::max(upload_limit)))
        .route("/filesystem.Filesystem/Stat", post(stat))
        .route("/filesystem.Filesystem/ListDir", post(list_dir))
        .route("/filesystem.Filesystem/MakeDir", post(make_dir))
        .route("/filesystem.Filesystem/Move", post(move_entry))
        .route("/filesystem.Filesystem/Remove", post(remove))
        .route("/filesystem.Filesystem/WatchDir", post(watch::watch_dir))
        .route("/filesystem.Filesystem/CreateWatcher", post(watch::create_watcher))
        .route("/filesystem.Filesystem/GetWatcherEvents", post(watch::get_watcher_events))
        .route("/filesystem.Filesystem/RemoveWatcher", post(watch::remove_watcher))
        .route("/filesystem.Filesystem/{method}", post(filesystem_unimplemented))
        .merge(process::routes())
        .layer(DefaultBodyLimit::max(settings.json_body_limit))
}

/// Whether a multipart upload failed on the body limit (the router's `DefaultBodyLimit`).
fn over_limit(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<axum::extract::multipart::MultipartError>())
        .is_some_and(|e| e.status() == StatusCode::PAYLOAD_TOO_LARGE)
}

/// `GET /health`: 204 while the sandbox is open (the traffic check answers for one that is not).
async fn health() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// `?path=...` (a `username` is ignored: every user is E2B's one user here).
#[derive(Debug, Deserialize)]
struct FileQuery {
    #[serde(default)]
    path: Option<String>,
}

/// `GET /files?path=`: the file's bytes.
async fn download(TargetSandbox(sandbox): TargetSandbox, Query(query): Query<FileQuery>) -> Result<Response, ApiError> {
    let path = query.path.ok_or_else(|| ApiError::BadRequest("`path` is required".into()))?;
    let file = sandbox.files()?.read_stream(&workspace_path(&path)).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], Body::from_stream(ReaderStream::new(file)))
        .into_response())
}

/// `POST /files?path=`: multipart (one part per file, its file name the destination path) or
/// a raw `application/octet-stream` body for `path`. Answers one entry per file written.
async fn upload(
    State(state): State<AppState>,
    TargetSandbox(sandbox): TargetSandbox,
    Query(query): Query<FileQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let limit = usize::try_from(state.settings.upload_limit).unwrap_or(usize::MAX);
    let encoding = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let files = sandbox.files()?;
    let mut written = Vec::new();
    if multipart {
        let malformed =
            |e: axum::extract::multipart::MultipartError| ApiError::BadRequest(format!("the multipart body: {e}"));
        let mut parts = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("the multipart body: {e}")))?;
        while let Some(part) = parts.next_field().await.map_err(malformed)? {
            let Some(path) = part.file_name().map(str::to_owned).or_else(|| query.path.clone()) else {
                return Err(ApiError::BadRequest("a part has no file name and there is no `path`".into()));
            };
            let path = workspace_path(&path);
            let mut reader = StreamReader::new(part.map_err(std::io::Error::other));
            files.write_stream(&path, &mut reader).await.map_err(|error| match error {
                FileError::Io { source, .. } if over_limit(&source) => {
                    ApiError::TooLarge(format!("the upload is over {limit} bytes"))
                }
                other => other.into(),
            })?;
            written.push(path);
        }
    } else {
        let path =
            workspace_path(query.path.as_deref().ok_or_else(|| ApiError::BadRequest("`path` is required".into()))?);
        let body = match encoding.as_deref() {
            None | Some("identity") => request.into_body(),
            Some("gzip") => gunzipped(request.into_body()),
            Some(other) => return Err(ApiError::BadRequest(format!("uploads in `{other}` are not supported"))),
        };
        // The limit applies to what is written (decompressed).
        crate::http::files::write_upload(&files, &path, body, limit).await?;
        written.push(path);
    }
    if written.is_empty() {
        return Err(ApiError::BadRequest("no file in the upload".into()));
    }
    let entries: Vec<Value> =
        written.iter().map(|path| json!({ "name": name_of(path), "type": "file", "path": path })).collect();
    Ok(axum::Json(entries).into_response())
}

/// `body` (gzip) decompressed as it streams.
fn gunzipped(body: Body) -> Body {
    use std::io::Write as _;
    let decoder = flate2::write::GzDecoder::new(Vec::new());
    let chunks = futures_util::stream::unfold(Some((body.into_data_stream(), decoder)), |state| async move {
        let (mut chunks, mut decoder) = state?;
        match chunks.next().await {
            Some(Ok(chunk)) => {
                let out = decoder.write_all(&chunk).map(|()| Bytes::from(std::mem::take(decoder.get_mut())));
                let next = out.is_ok().then_some((chunks, decoder));
                Some((out, next))
            }
            Some(Err(error)) => Some((Err(std::io::Error::other(error)), None)),
            None => Some((decoder.finish().map(Bytes::from), None)),
        }
    });
    Body::from_stream(chunks)
}

fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// E2B's `EntryInfo`.
fn entry_json(entry: &EntryInfo) -> Value {
    let (kind, mode, permissions) = match entry.kind {
        EntryKind::File => ("FILE_TYPE_FILE", 0o644, "-rw-r--r--"),
        EntryKind::Dir => ("FILE_TYPE_DIRECTORY", 0o755, "drwxr-xr-x"),
        EntryKind::Symlink => ("FILE_TYPE_SYMLINK", 0o777, "lrwxrwxrwx"),
        _ => ("FILE_TYPE_UNSPECIFIED", 0o644, "-rw-r--r--"),
    };
    let mut json = json!({
        "name": entry.name,
        "type": kind,
        "path": entry.path,
        "size": entry.size.to_string(),
        "mode": mode,
        "permissions": permissions,
        "owner": "user",
        "group": "user",
    });
    if let Some(ms) = entry.modified_ms {
        json["modifiedTime"] = json!(wire::rfc3339(ms));
    }
    if entry.kind == EntryKind::Symlink {
        json["isSymlink"] = json!(true);
    }
    json
}

#[derive(Debug, Deserialize)]
struct PathRequest {
    #[serde(default)]
    path: String,
}

#[derive(Debug, Deserialize)]
struct ListRequest {
    #[serde(default)]
    path: String,
    #[serde(default)]
    depth: usize,
}

#[derive(Debug, Deserialize)]
struct MoveRequest {
    #[serde(default)]
    source: String,
    #[serde(default)]
    destination: String,
}

async fn stat(
    TargetSandbox(sandbox): TargetSandbox,
    Unary(request): Unary<PathRequest>,
) -> Result<Response, ConnectError> {
    let entry = sandbox.files()?.stat(&workspace_path(&request.path)).await?;
    Ok(reply(json!({ "entry": entry_json(&entry) })))
}

async fn list_dir(
    TargetSandbox(sandbox): TargetSandbox,
    Unary(request): Unary<ListRequest>,
) -> Result<Response, ConnectError> {
    let entries = sandbox.files()?.list(&workspace_path(&request.path), request.depth.max(1)).await?;
    Ok(reply(json!({ "entries": entries.iter().map(entry_json).collect::<Vec<_>>() })))
}

async fn make_dir(
    TargetSandbox(sandbox): TargetSandbox,
    Unary(request): Unary<PathRequest>,
) -> Result<Response, ConnectError> {
    let path = workspace_path(&request.path);
    let files = sandbox.files()?;
    if !files.make_dir(&path).await? {
        return Err(ConnectError::new("already_exists", format!("directory {path} already exists")));
    }
    Ok(reply(json!({ "entry": entry_json(&files.stat(&path).await?) })))
}

async fn move_entry(
    TargetSandbox(sandbox): TargetSandbox,
    Unary(request): Unary<MoveRequest>,
) -> Result<Response, ConnectError> {
    let (from, to) = (workspace_path(&request.source), workspace_path(&request.destination));
    refuse_home(&from)?;
    let entry = sandbox.files()?.rename(&from, &to).await?;
    Ok(reply(json!({ "entry": entry_json(&entry) })))
}

async fn remove(
    TargetSandbox(sandbox): TargetSandbox,
    Unary(request): Unary<PathRequest>,
) -> Result<Response, ConnectError> {
    let path = workspace_path(&request.path);
    refuse_home(&path)?;
    sandbox.files()?.remove_path(&path).await?;
    Ok(reply(json!({})))
}

/// `permission_denied` for the home directory or one of its parents, which must stay.
fn refuse_home(path: &str) -> Result<(), ConnectError> {
    match holds_home(path) {
        true => Err(ConnectError::new("permission_denied", format!("{path} holds the home directory"))),
        false => Ok(()),
    }
}

/// Whether `path` is the home directory or one of its parents (which must stay).
fn holds_home(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path.is_empty() || path == HOME || HOME.starts_with(&format!("{path}/"))
}

async fn filesystem_unimplemented(axum::extract::Path(method): axum::extract::Path<String>) -> ConnectError {
    ConnectError::unimplemented(&format!("filesystem.Filesystem/{method}"))
}

//! envd's directory watchers, over the engine's workspace watch (inotify): `WatchDir`, a
//! server stream (the async SDK's `files.watch_dir`), and `CreateWatcher`, `GetWatcherEvents`,
//! `RemoveWatcher`, polled (the sync SDK's).
//!
//! A polled watcher lives in [`Watchers`] until it is removed or its sandbox goes (checked
//! whenever a watcher is made); a sandbox holds at most [`MAX_WATCHERS_PER_SANDBOX`]. Events
//! name the entry relative to the watched directory, as envd's do; a watcher whose buffer
//! filled loses the oldest news, never stalls the sandbox.

use super::connect::{self, ConnectError, Unary};
use super::traffic::TargetSandbox;
use super::wire::workspace_path;
use crate::http::AppState;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use soulbox_engine::Sandbox;
use soulbox_engine::sandbox::{FsEvent, FsEventKind, WatchStream};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Polled watchers one sandbox may hold at once.
pub const MAX_WATCHERS_PER_SANDBOX: usize = 16;
/// Events one `GetWatcherEvents` answers with at most (the rest wait for the next call).
const MAX_EVENTS_PER_POLL: usize = 10_000;
/// How long a `WatchDir` stream may be silent before a keepalive.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// The polled watchers of every sandbox. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Watchers {
    by_id: Arc<Mutex<HashMap<String, Watcher>>>,
}

#[derive(Debug)]
struct Watcher {
    sandbox: Sandbox,
    dir: String,
    events: WatchStream,
}

/// `WatchDirRequest` and `CreateWatcherRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WatchRequest {
    path: String,
    recursive: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct WatcherRequest {
    watcher_id: String,
}

/// E2B's `FilesystemEvent` for `event` under the watched `dir`; `None` for kinds E2B lacks.
fn event_json(dir: &str, event: &FsEvent) -> Option<Value> {
    let kind = match event.kind {
        FsEventKind::Create => "EVENT_TYPE_CREATE",
        FsEventKind::Write => "EVENT_TYPE_WRITE",
        FsEventKind::Remove => "EVENT_TYPE_REMOVE",
        FsEventKind::Rename => "EVENT_TYPE_RENAME",
        FsEventKind::Chmod => "EVENT_TYPE_CHMOD",
        _ => return None,
    };
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    let name = event.path.strip_prefix(&prefix).unwrap_or(&event.path);
    Some(json!({ "name": name, "type": kind }))
}

async fn watch(sandbox: &Sandbox, request: &WatchRequest) -> Result<(String, WatchStream), ConnectError> {
    let dir = workspace_path(&request.path);
    let events = sandbox.files()?.watch(&dir, request.recursive).await?;
    Ok((dir, events))
}

/// `filesystem.Filesystem/WatchDir`: `start`, then events as they happen, keepalives while it
/// is quiet, until the client goes, the sandbox goes or the server stops.
pub(super) async fn watch_dir(
    State(state): State<AppState>,
    TargetSandbox(sandbox): TargetSandbox,
    request: axum::extract::Request,
) -> Result<Response, ConnectError> {
    let request: WatchRequest = super::process::first_message(request).await?;
    let (dir, events) = watch(&sandbox, &request).await?;
    let shutdown = state.lifecycle.shutdown.clone();
    let start = connect::message(&json!({ "start": {} }));
    let stream = futures_util::stream::unfold(Some(events), move |events| {
        let (dir, shutdown, sandbox) = (dir.clone(), shutdown.clone(), sandbox.clone());
        async move {
            let mut events = events?;
            let next = tokio::select! {
                next = tokio::time::timeout(KEEPALIVE, events.next()) => next,
                () = shutdown.cancelled() => return Some((connect::end_of_stream(), None)),
            };
            match next {
                Err(_) if sandbox.is_gone() => Some((connect::end_of_stream(), None)),
                Err(_) => Some((connect::message(&json!({ "keepalive": {} })), Some(events))),
                Ok(Some(event)) => {
                    let message = event_json(&dir, &event).map(|e| connect::message(&json!({ "filesystem": e })));
                    Some((message.unwrap_or_default(), Some(events)))
                }
                Ok(None) => Some((connect::end_of_stream(), None)),
            }
        }
    })
    .filter(|bytes: &Bytes| std::future::ready(!bytes.is_empty()));
    let body = futures_util::stream::once(async move { start }).chain(stream).map(Ok::<_, std::convert::Infallible>);
    Ok(([(header::CONTENT_TYPE, "application/connect+json")], Body::from_stream(body)).into_response())
}

/// `filesystem.Filesystem/CreateWatcher`.
pub(super) async fn create_watcher(
    State(state): State<AppState>,
    TargetSandbox(sandbox): TargetSandbox,
    Unary(request): Unary<WatchRequest>,
) -> Result<Response, ConnectError> {
    let watchers = &state.e2b.watchers;
    {
        let mut all = watchers.by_id.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|_, watcher| !watcher.sandbox.is_gone());
        if all.values().filter(|w| w.sandbox.id() == sandbox.id()).count() >= MAX_WATCHERS_PER_SANDBOX {
            let why = format!("a sandbox holds at most {MAX_WATCHERS_PER_SANDBOX} watchers; remove one first");
            return Err(ConnectError::new("resource_exhausted", why));
        }
    }
    let (dir, events) = watch(&sandbox, &request).await?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    watchers.by_id.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), Watcher { sandbox, dir, events });
    Ok(connect::reply(json!({ "watcherId": id })))
}

/// `filesystem.Filesystem/GetWatcherEvents`: what happened since the last call.
pub(super) async fn get_watcher_events(
    State(state): State<AppState>,
    TargetSandbox(sandbox): TargetSandbox,
    Unary(request): Unary<WatcherRequest>,
) -> Response {
    let mut all = state.e2b.watchers.by_id.lock().unwrap_or_else(|e| e.into_inner());
    let Some(watcher) = all.get_mut(&request.watcher_id).filter(|w| w.sandbox.id() == sandbox.id()) else {
        return ConnectError::new("not_found", format!("watcher {} not found", request.watcher_id)).into_response();
    };
    let mut events = Vec::new();
    while events.len() < MAX_EVENTS_PER_POLL {
        match watcher.events.next().now_or_never() {
            Some(Some(event)) => events.extend(event_json(&watcher.dir, &event)),
            // Nothing more yet, or the watch ended.
            Some(None) | None => break,
        }
    }
    connect::reply(json!({ "events": events }))
}

/// `filesystem.Filesystem/RemoveWatcher`.
pub(super) async fn remove_watcher(
    State(state): State<AppState>,
    TargetSandbox(sandbox): TargetSandbox,
    Unary(request): Unary<WatcherRequest>,
) -> Response {
    let mut all = state.e2b.watchers.by_id.lock().unwrap_or_else(|e| e.into_inner());
    match all.get(&request.watcher_id) {
        Some(watcher) if watcher.sandbox.id() == sandbox.id() => {
            all.remove(&request.watcher_id);
            connect::reply(json!({}))
        }
        _ => ConnectError::new("not_found", format!("watcher {} not found", request.watcher_id)).into_response(),
    }
}

//! Watching a workspace directory for changes ([`WatchStream`]), through `notify` (inotify on
//! Linux). Events are reported with workspace paths; the watch ends when the stream is dropped.
//!
//! A move is reported as fsnotify (and so E2B's envd) reports it: the name it leaves as
//! [`FsEventKind::Rename`], the name it arrives at as [`FsEventKind::Create`]. The workspace's
//! own temporary files (an upload being written, [`super::workspace::UPLOAD_MARKER`]) are not
//! reported: an upload shows as its file created when it is complete.

use super::workspace::{FileError, UPLOAD_MARKER};
use futures_core::Stream;
use notify::{EventKind, RecursiveMode, Watcher};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Events a watch buffers before it drops the oldest news (a slow consumer loses events, the
/// sandbox never stalls).
const WATCH_BUFFER: usize = 4096;

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FsEventKind {
    /// Created.
    Create,
    /// Written to.
    Write,
    /// Removed.
    Remove,
    /// Renamed (from or to).
    Rename,
    /// Metadata changed.
    Chmod,
}

/// A change in a watched directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FsEvent {
    /// What happened.
    pub kind: FsEventKind,
    /// The workspace path it happened to, starting with `/`.
    pub path: String,
}

/// A stream of [`FsEvent`]s; dropping it stops the watch.
pub struct WatchStream {
    events: mpsc::Receiver<FsEvent>,
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

impl WatchStream {
    /// Watches `host_dir` (inside the workspace at `workspace_root`).
    pub(crate) fn start(workspace_root: &Path, host_dir: &Path, recursive: bool) -> Result<Self, FileError> {
        let (tx, events) = mpsc::channel(WATCH_BUFFER);
        // inotify reports paths under the path it was given, so strip the same root.
        let root = workspace_root.to_path_buf();
        let failed = |e: notify::Error| FileError::Io { path: "watch".into(), source: std::io::Error::other(e) };
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            let Some(kind) = kind_of(&event.kind) else { return };
            for path in event.paths {
                let ours = path.file_name().is_some_and(|n| n.to_string_lossy().contains(UPLOAD_MARKER));
                if ours {
                    continue;
                }
                if let Some(path) = workspace_path(&root, &path) {
                    // A full buffer drops the event: the watcher thread must never block.
                    let _ = tx.try_send(FsEvent { kind, path });
                }
            }
        })
        .map_err(failed)?;
        let mode = if recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
        watcher.watch(host_dir, mode).map_err(failed)?;
        Ok(WatchStream { events, _watcher: watcher })
    }
}

impl Stream for WatchStream {
    type Item = FsEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FsEvent>> {
        self.events.poll_recv(cx)
    }
}

fn kind_of(kind: &EventKind) -> Option<FsEventKind> {
    use notify::event::{ModifyKind, RenameMode};
    match kind {
        EventKind::Create(_) => Some(FsEventKind::Create),
        EventKind::Remove(_) => Some(FsEventKind::Remove),
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Some(FsEventKind::Create),
        // The pair, after its two halves: already reported.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => None,
        EventKind::Modify(ModifyKind::Name(_)) => Some(FsEventKind::Rename),
        EventKind::Modify(ModifyKind::Metadata(_)) => Some(FsEventKind::Chmod),
        EventKind::Modify(_) => Some(FsEventKind::Write),
        _ => None,
    }
}

fn workspace_path(root: &Path, path: &Path) -> Option<String> {
    let rel: PathBuf = path.strip_prefix(root).ok()?.to_path_buf();
    Some(format!("/{}", rel.to_string_lossy()))
}

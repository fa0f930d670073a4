//! Handing a sandbox to another process, on another machine: with
//! [`super::SandboxesConfig::handover`], every manifest that names checkpoints of a sandbox's
//! latest state (a pause, a checkpoint, a cell of a sandbox checkpointed after every cell) is
//! also stored as a blob, with a snapshot of its workspace's files, in the snapshot store,
//! uploaded to the object store every process reaches (a [`crate::blobs::Replica`]), and the
//! manifest blob's id given to the registry's [`super::HandoverLog`] before the checkpoint is
//! reported done. A process given that id ([`super::Sandboxes::take_over`]) fetches the
//! manifest, the files and, when a context is used, its checkpoint, and opens the sandbox,
//! paused, as it was.
//!
//! A workspace snapshot is an index blob (each directory; each regular file's path, whether
//! it is executable, and the blob of its content). Blobs are content-addressed, so a file that
//! did not change costs nothing to store again; a snapshot whose files' sizes, modification
//! times and modes all match the previous one's reuses it without reading a file. Symbolic
//! links and special files are not kept. Paths are checked again when a snapshot is restored:
//! only plain relative paths inside the new workspace are written.

use crate::blobs::{BlobError, BlobId, BlobStore};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The workspace index format this code writes and reads.
const FORMAT: u32 = 1;

/// A workspace's files, stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WorkspaceSnapshot {
    /// The index blob.
    pub index: BlobId,
    /// Every blob it names (the index and each file's content).
    pub blobs: HashSet<BlobId>,
    /// The files' sizes, times and modes when it was taken.
    fingerprint: blake3::Hash,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    format: u32,
    dirs: Vec<String>,
    files: Vec<FileEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    path: String,
    executable: bool,
    blob: BlobId,
}

/// What a walk of a workspace found.
struct Walked {
    dirs: Vec<String>,
    files: Vec<(String, PathBuf, bool)>,
    fingerprint: blake3::Hash,
}

/// Stores the files under `root` (blocking), reusing `previous` when nothing changed.
pub(super) fn snapshot(
    root: &Path,
    blobs: &BlobStore,
    previous: Option<&WorkspaceSnapshot>,
) -> Result<WorkspaceSnapshot, BlobError> {
    let io = |source| BlobError::Io { path: root.to_path_buf(), source };
    let walked = walk(root).map_err(io)?;
    if let Some(previous) = previous.filter(|p| p.fingerprint == walked.fingerprint) {
        return Ok(previous.clone());
    }
    let mut stored = HashSet::new();
    let mut files = Vec::with_capacity(walked.files.len());
    for (path, host, executable) in walked.files {
        let content = std::fs::read(&host).map_err(|source| BlobError::Io { path: host.clone(), source })?;
        let (blob, _) = blobs.put(&content, false)?;
        stored.insert(blob.clone());
        files.push(FileEntry { path, executable, blob });
    }
    let index = Index { format: FORMAT, dirs: walked.dirs, files };
    let bytes = serde_json::to_vec(&index).map_err(|e| io(std::io::Error::other(e)))?;
    let (index, _) = blobs.put(&bytes, false)?;
    stored.insert(index.clone());
    Ok(WorkspaceSnapshot { index, blobs: stored, fingerprint: walked.fingerprint })
}

/// The blobs snapshot `index` names (itself included), read from `blobs` (blocking).
pub(super) fn named_by(index: &BlobId, blobs: &BlobStore) -> Result<WorkspaceSnapshot, String> {
    let read = read_index(index, blobs)?;
    let mut named: HashSet<BlobId> = read.files.into_iter().map(|file| file.blob).collect();
    named.insert(index.clone());
    // An unknown fingerprint: the next snapshot of this workspace is taken afresh.
    Ok(WorkspaceSnapshot { index: index.clone(), blobs: named, fingerprint: blake3::hash(b"") })
}

/// Writes snapshot `index`'s directories and files into the empty directory `root`
/// (blocking).
pub(super) fn restore(index: &BlobId, blobs: &BlobStore, root: &Path) -> Result<(), String> {
    let read = read_index(index, blobs)?;
    for dir in &read.dirs {
        let path = inside(root, dir)?;
        std::fs::create_dir_all(&path).map_err(|e| format!("could not make {dir}: {e}"))?;
    }
    for file in &read.files {
        let path = inside(root, &file.path)?;
        let content = blobs.get(&file.blob).map_err(|e| format!("{}: {e}", file.path))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("could not make {}'s directory: {e}", file.path))?;
        }
        std::fs::write(&path, content).map_err(|e| format!("could not write {}: {e}", file.path))?;
        let mode = if file.executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("could not set {}'s mode: {e}", file.path))?;
    }
    Ok(())
}

fn read_index(index: &BlobId, blobs: &BlobStore) -> Result<Index, String> {
    let bytes = blobs.get(index).map_err(|e| format!("its workspace's files: {e}"))?;
    let read: Index = serde_json::from_slice(&bytes).map_err(|e| format!("its workspace index is unreadable ({e})"))?;
    if read.format != FORMAT {
        return Err(format!("its workspace index is in format {}, which this server does not read", read.format));
    }
    Ok(read)
}

/// `relative` under `root`, if it is a plain relative path.
fn inside(root: &Path, relative: &str) -> Result<PathBuf, String> {
    let path = Path::new(relative);
    if relative.is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("its workspace index names a path outside it (`{relative}`)"));
    }
    Ok(root.join(path))
}

/// Every directory and regular file under `root`, sorted, with their fingerprint.
fn walk(root: &Path) -> std::io::Result<Walked> {
    let mut walked = Walked { dirs: Vec::new(), files: Vec::new(), fingerprint: blake3::hash(b"") };
    let mut hasher = blake3::Hasher::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            let relative = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let metadata = entry.metadata()?; // not followed: a link is itself
            if metadata.is_dir() {
                hasher.update(format!("d {relative}\n").as_bytes());
                walked.dirs.push(relative.clone());
                pending.push((entry.path(), relative));
            } else if metadata.is_file() {
                let executable = metadata.mode() & 0o111 != 0;
                let stamp = format!("f {relative} {} {} {}\n", metadata.len(), metadata.mtime_nsec(), metadata.mtime());
                hasher.update(stamp.as_bytes());
                hasher.update(if executable { b"x" } else { b"-" });
                walked.files.push((relative, entry.path(), executable));
            }
        }
    }
    walked.fingerprint = hasher.finalize();
    Ok(walked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_restores_files_and_directories_and_is_reused_while_nothing_changes() {
        let (store, from, to) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let blobs = BlobStore::open(store.path()).unwrap();
        std::fs::create_dir_all(from.path().join("data/empty")).unwrap();
        std::fs::write(from.path().join("data/table.csv"), "a,b\n1,2\n").unwrap();
        std::fs::write(from.path().join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(from.path().join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", from.path().join("link")).unwrap();
        let first = snapshot(from.path(), &blobs, None).unwrap();
        assert_eq!(snapshot(from.path(), &blobs, Some(&first)).unwrap(), first, "nothing changed: reused");
        assert_eq!(named_by(&first.index, &blobs).unwrap().blobs, first.blobs);
        restore(&first.index, &blobs, to.path()).unwrap();
        assert_eq!(std::fs::read_to_string(to.path().join("data/table.csv")).unwrap(), "a,b\n1,2\n");
        assert!(to.path().join("data/empty").is_dir());
        let mode = std::fs::metadata(to.path().join("run.sh")).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111);
        assert!(!to.path().join("link").exists(), "links are not kept");
        std::fs::write(from.path().join("data/table.csv"), "a,b\n1,3\n").unwrap();
        assert_ne!(snapshot(from.path(), &blobs, Some(&first)).unwrap().index, first.index);
    }

    #[test]
    fn a_path_outside_the_workspace_is_refused() {
        let root = Path::new("/w");
        assert!(inside(root, "../etc/passwd").is_err());
        assert!(inside(root, "/etc/passwd").is_err());
        assert!(inside(root, "a/./b").is_ok_and(|p| p == Path::new("/w/a/b")));
        assert!(inside(root, "").is_err());
    }
}

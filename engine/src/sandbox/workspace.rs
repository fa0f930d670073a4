//! [`Workspace`]: a sandbox's files, shared by all its contexts.
//!
//! The workspace is a private host directory that every context of the sandbox sees as its `/`.
//! The host side reaches it only through a `cap_std::fs::Dir` opened on it: a path is taken
//! relative to the workspace (a leading `/` is the workspace root), `..` is refused outright,
//! and cap-std refuses symlinks that lead outside. Large files go through as streams (a
//! `tokio::fs::File` either way), never whole in memory; writes go to a temporary file beside
//! the target and are renamed into place, so a reader never sees half a file.
//! The directory is deleted when the workspace is dropped (or [`Workspace::remove`]d).

use crate::guest_tree;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, Metadata, OpenOptions};
use serde::{Deserialize, Serialize};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;
use tokio::io::{AsyncRead, AsyncWriteExt};

/// The deepest a listing descends.
pub const MAX_LIST_DEPTH: usize = 32;
/// Entries a listing returns, at most.
pub const MAX_LIST_ENTRIES: usize = 100_000;
/// Copy buffer for streamed writes.
const WRITE_BUFFER_BYTES: usize = 256 << 10;
/// The longest workspace path accepted, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// The longest name of one path component, in bytes (Linux's `NAME_MAX`).
pub const MAX_NAME_BYTES: usize = 255;
/// Permissions of workspaces and of the directory holding them: the server's own.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Why a file operation failed. Messages are safe to show to clients: they name the
/// workspace path, never a host path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The path climbs out with `..`, holds a NUL, or is otherwise unusable.
    #[error("invalid path `{path}`: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Nothing exists at the path.
    #[error("no such file or directory: `{0}`")]
    NotFound(String),
    /// Something already exists at the path.
    #[error("already exists: `{0}`")]
    AlreadyExists(String),
    /// The path (or a parent) is not a directory, or a directory where a file is needed.
    #[error("`{path}`: {reason}")]
    WrongKind {
        /// The path.
        path: String,
        /// What was expected.
        reason: &'static str,
    },
    /// The path leads outside the workspace (through a symlink).
    #[error("`{0}` is outside the sandbox's workspace")]
    Escapes(String),
    /// The sandbox is gone.
    #[error("the sandbox's workspace has been removed")]
    Removed,
    /// The workspace is full (its disk quota is spent).
    #[error("`{0}`: the sandbox's workspace is full (its disk quota is spent)")]
    NoSpace(String),
    /// Any other I/O failure.
    #[error("`{path}`: {source}")]
    Io {
        /// The path.
        path: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

impl FileError {
    fn from_io(path: &str, error: io::Error) -> Self {
        if let Some(refused) = guest_tree::is_not_regular(&error) {
            let reason = if refused.is_dir { "is a directory" } else { "is not a regular file" };
            return FileError::WrongKind { path: path.into(), reason };
        }
        match error.kind() {
            io::ErrorKind::NotFound => FileError::NotFound(path.to_owned()),
            io::ErrorKind::StorageFull => FileError::NoSpace(path.to_owned()),
            io::ErrorKind::InvalidFilename => {
                FileError::InvalidPath { path: path.to_owned(), reason: "a name in it is too long" }
            }
            io::ErrorKind::AlreadyExists => FileError::AlreadyExists(path.to_owned()),
            io::ErrorKind::NotADirectory => FileError::WrongKind { path: path.into(), reason: "not a directory" },
            io::ErrorKind::IsADirectory => FileError::WrongKind { path: path.into(), reason: "is a directory" },
            // cap-std refuses an escape with `PermissionDenied` and nothing more specific: the
            // workspace tells escapes apart by resolving the path itself ([`leads_outside`]).
            _ => FileError::Io { path: path.to_owned(), source: error },
        }
    }
}

/// What kind of entry a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed when listing).
    Symlink,
    /// Anything else.
    Other,
}

/// A workspace entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct EntryInfo {
    /// Its file name.
    pub name: String,
    /// Its workspace path, starting with `/`.
    pub path: String,
    /// File, directory, symlink.
    pub kind: EntryKind,
    /// Size in bytes (files).
    pub size: u64,
    /// Last modification, milliseconds since the Unix epoch.
    pub modified_ms: Option<u64>,
}

/// What the name of an upload's temporary file holds (`.<name>.soulbox-upload-<uuid>`, renamed
/// into place when complete): watches leave such files out.
pub(crate) const UPLOAD_MARKER: &str = ".soulbox-upload-";

/// A sandbox's workspace directory. It is deleted by [`Workspace::remove`] only, never on drop:
/// a paused sandbox's workspace outlives its process, and the registry sweeps the ones no
/// sandbox owns when it opens.
#[derive(Debug)]
pub struct Workspace {
    host_path: PathBuf,
    state: Mutex<Option<Dir>>,
    /// Whether a quota file system is mounted on it.
    quota: bool,
}

impl Workspace {
    /// Creates an empty workspace, private to the server (mode 0700), under `parent` (which
    /// should be private too: see [`prepare_workspace_root`]).
    pub fn create_in(parent: &Path) -> io::Result<Self> {
        Workspace::create(parent, None)
    }

    /// Like [`Workspace::create_in`], holding at most `bytes` (a `tmpfs` of that size mounted
    /// on it; needs root, see [`super::quota`]).
    pub fn create_with_quota(parent: &Path, bytes: u64) -> io::Result<Self> {
        Workspace::create(parent, Some(bytes))
    }

    fn create(parent: &Path, quota: Option<u64>) -> io::Result<Self> {
        std::fs::create_dir_all(parent)?;
        let host = tempfile::Builder::new()
            .prefix(&format!("{}{}-", super::quota::WORKSPACE_PREFIX, std::process::id()))
            .permissions(std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
            .tempdir_in(parent)?;
        if let Some(bytes) = quota {
            super::quota::mount(host.path(), bytes)?;
        }
        let dir = Dir::open_ambient_dir(host.path(), ambient_authority())?;
        Ok(Workspace { host_path: host.keep(), state: Mutex::new(Some(dir)), quota: quota.is_some() })
    }

    /// The workspace left at `path` by an earlier process (a paused sandbox's), taken over as
    /// it is. `quota` says whether a quota file system is mounted on it. It must be a real
    /// directory (not a link); its owner may be the containers' user, to whom a sandbox that
    /// ran commands gave it (its private parent keeps everyone else out).
    pub fn adopt(path: &Path, quota: bool) -> io::Result<Self> {
        if !std::fs::symlink_metadata(path)?.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a directory", path.display())));
        }
        let dir = Dir::open_ambient_dir(path, ambient_authority())?;
        Ok(Workspace { host_path: path.to_path_buf(), state: Mutex::new(Some(dir)), quota })
    }

    /// The host directory (for backends, which hand it to guests as `/`).
    pub fn host_path(&self) -> &Path {
        &self.host_path
    }

    /// Deletes the directory and everything in it; later operations fail with
    /// [`FileError::Removed`].
    pub fn remove(&self) {
        let taken = self.state.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(dir) = taken {
            drop(dir);
            if self.quota {
                super::quota::unmount(&self.host_path);
            }
            if let Err(error) = std::fs::remove_dir_all(&self.host_path) {
                tracing::warn!(%error, "could not delete a sandbox workspace");
            }
        }
    }

    /// Runs `work` on a blocking thread, like [`blocking`], and tells an escape apart from
    /// other refusals: a `PermissionDenied` where one of `paths` resolves out of the workspace
    /// is [`FileError::Escapes`].
    async fn blocking<T: Send + 'static>(
        &self,
        paths: &[&str],
        work: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> Result<T, FileError> {
        let shown = paths.first().copied().unwrap_or("/");
        match blocking(shown, work).await {
            Err(FileError::Io { path, source }) if source.kind() == io::ErrorKind::PermissionDenied => {
                let dir = self.dir()?;
                let named: Vec<(String, PathBuf)> =
                    paths.iter().map(|p| Ok(((*p).to_owned(), relative(p)?))).collect::<Result<_, FileError>>()?;
                let escaping =
                    blocking(shown, move || Ok(named.into_iter().find(|(_, rel)| leads_outside(&dir, rel)))).await?;
                Err(match escaping {
                    Some((escaping, _)) => FileError::Escapes(escaping),
                    None => FileError::Io { path, source },
                })
            }
            other => other,
        }
    }

    fn dir(&self) -> Result<Dir, FileError> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let dir = state.as_ref().ok_or(FileError::Removed)?;
        dir.try_clone().map_err(|e| FileError::from_io("/", e))
    }

    /// Writes `bytes` to `path` (parents created, an existing file replaced).
    pub async fn write(&self, path: &str, bytes: &[u8]) -> Result<u64, FileError> {
        self.write_stream(path, bytes).await
    }

    /// Writes everything `reader` yields to `path`, streamed (parents created, an existing file
    /// replaced atomically). Returns the bytes written.
    pub async fn write_stream(&self, path: &str, mut reader: impl AsyncRead + Unpin) -> Result<u64, FileError> {
        let rel = relative(path)?;
        if rel.as_os_str().is_empty() {
            return Err(FileError::WrongKind { path: path.into(), reason: "is the workspace root" });
        }
        let dir = self.dir()?;
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let name = rel.file_name().unwrap_or_default().to_owned();
        let shown = path.to_owned();
        let (parent_dir, temp_name, file) = blocking_file(path, move || {
            let parent_dir = open_parent(&dir, &parent, &shown)?;
            if parent_dir.symlink_metadata(&name).map(|m| m.is_dir()).unwrap_or(false) {
                return Err(FileError::WrongKind { path: shown, reason: "is a directory" });
            }
            // A fresh name, created exclusively: never an existing entry (a FIFO a guest
            // planted, another upload's temporary file).
            let temp_name = format!(".{}{UPLOAD_MARKER}{}", name.to_string_lossy(), uuid::Uuid::new_v4().simple());
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            let file = parent_dir.open_with(&temp_name, &options).map_err(|e| FileError::from_io(&shown, e))?;
            Ok((parent_dir, temp_name, file))
        })
        .await?;
        let mut file = tokio::fs::File::from_std(file.into_std());
        let copied = {
            let mut writer = tokio::io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, &mut file);
            let copied = tokio::io::copy(&mut reader, &mut writer).await;
            match copied {
                Ok(n) => writer.flush().await.map(|()| n),
                Err(e) => Err(e),
            }
        };
        drop(file);
        let final_name = rel.file_name().unwrap_or_default().to_owned();
        match copied {
            Ok(n) => {
                blocking(path, move || parent_dir.rename(&temp_name, &parent_dir, &final_name)).await?;
                Ok(n)
            }
            Err(error) => {
                let _ = blocking(path, move || parent_dir.remove_file(&temp_name)).await;
                Err(FileError::from_io(path, error))
            }
        }
    }

    /// Reads the whole regular file at `path`.
    pub async fn read(&self, path: &str) -> Result<Vec<u8>, FileError> {
        self.read_at_most(path, u64::MAX).await
    }

    /// Reads at most `max` bytes of the regular file at `path`.
    pub async fn read_at_most(&self, path: &str, max: u64) -> Result<Vec<u8>, FileError> {
        let rel = relative(path)?;
        let dir = self.dir()?;
        self.blocking(&[path], move || guest_tree::read_regular(&dir, &rel, max)).await
    }

    /// Opens the regular file at `path` for streamed reading.
    pub async fn read_stream(&self, path: &str) -> Result<tokio::fs::File, FileError> {
        let rel = relative(path)?;
        let dir = self.dir()?;
        let file = self.blocking(&[path], move || guest_tree::open_regular(&dir, &rel)).await?;
        Ok(tokio::fs::File::from_std(file.into_std()))
    }

    /// Whether anything exists at `path` (a symlink counts, wherever it points).
    pub async fn exists(&self, path: &str) -> Result<bool, FileError> {
        match self.stat(path).await {
            Ok(_) => Ok(true),
            Err(FileError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// What is at `path` (symlinks not followed).
    pub async fn stat(&self, path: &str) -> Result<EntryInfo, FileError> {
        let rel = relative(path)?;
        let dir = self.dir()?;
        let shown = display(&rel);
        self.blocking(&[path], move || {
            let meta = if rel.as_os_str().is_empty() { dir.dir_metadata()? } else { dir.symlink_metadata(&rel)? };
            Ok(entry(&rel, &shown, &meta))
        })
        .await
    }

    /// Lists the directory at `path`, descending `depth` levels (1 = its entries only), sorted
    /// by path. Symlinks are listed, never followed.
    pub async fn list(&self, path: &str, depth: usize) -> Result<Vec<EntryInfo>, FileError> {
        let rel = relative(path)?;
        let dir = self.dir()?;
        let depth = depth.clamp(1, MAX_LIST_DEPTH);
        self.blocking(&[path], move || {
            let start = if rel.as_os_str().is_empty() { dir } else { dir.open_dir(&rel)? };
            let mut entries = Vec::new();
            walk(&start, &rel, depth, &mut entries)?;
            entries.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(entries)
        })
        .await
    }

    /// Removes the file, symlink or directory (with its contents) at `path`.
    pub async fn remove_path(&self, path: &str) -> Result<(), FileError> {
        let rel = relative(path)?;
        if rel.as_os_str().is_empty() {
            return Err(FileError::WrongKind { path: path.into(), reason: "is the workspace root" });
        }
        let dir = self.dir()?;
        self.blocking(&[path], move || {
            if dir.symlink_metadata(&rel)?.is_dir() { dir.remove_dir_all(&rel) } else { dir.remove_file(&rel) }
        })
        .await
    }

    /// Renames `from` to `to` (parents of `to` created; an existing file at `to` replaced).
    pub async fn rename(&self, from: &str, to: &str) -> Result<EntryInfo, FileError> {
        let (src, dst) = (relative(from)?, relative(to)?);
        if src.as_os_str().is_empty() || dst.as_os_str().is_empty() {
            return Err(FileError::WrongKind { path: from.into(), reason: "is the workspace root" });
        }
        let dir = self.dir()?;
        let shown = display(&dst);
        self.blocking(&[from, to], move || {
            dir.symlink_metadata(&src)?;
            if let Some(parent) = dst.parent().filter(|p| !p.as_os_str().is_empty()) {
                dir.create_dir_all(parent)?;
            }
            dir.rename(&src, &dir, &dst)?;
            Ok(entry(&dst, &shown, &dir.symlink_metadata(&dst)?))
        })
        .await
    }

    /// Makes the directory `path` and its parents. Returns false if it already existed.
    pub async fn make_dir(&self, path: &str) -> Result<bool, FileError> {
        let rel = relative(path)?;
        let dir = self.dir()?;
        self.blocking(&[path], move || {
            if rel.as_os_str().is_empty() {
                return Ok(false);
            }
            match dir.symlink_metadata(&rel) {
                Ok(meta) if meta.is_dir() => Ok(false),
                Ok(_) => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
                Err(_) => dir.create_dir_all(&rel).map(|()| true),
            }
        })
        .await
    }

    /// Copies everything in this workspace into `into`, an empty one (a fork); see
    /// [`guest_tree::copy_tree`] for what is copied. Returns the bytes of file content copied.
    pub(crate) async fn copy_into(&self, into: &Workspace) -> Result<u64, FileError> {
        let (from, to) = (self.dir()?, into.dir()?);
        blocking("/", move || guest_tree::copy_tree(&from, &to)).await
    }

    /// Makes `name` in the workspace's root a link to the root itself (`.`), through the
    /// workspace's directory handle (never through a host path a guest could redirect).
    pub(crate) fn link_root_as(&self, name: &str) -> Result<(), FileError> {
        let dir = self.dir()?;
        dir.symlink(".", name).map_err(|e| FileError::from_io(name, e))
    }

    /// The host path of the directory at `path`, checked to be a real directory inside the
    /// workspace (for watching).
    pub(crate) async fn host_dir(&self, path: &str) -> Result<PathBuf, FileError> {
        let rel = relative(path)?;
        let dir = self.dir()?;
        let host = self.host_path.join(&rel);
        // inotify follows symlinks, so no component of the watched path may be one.
        let through_symlink = blocking(path, move || {
            let mut walked = PathBuf::new();
            for part in rel.components() {
                walked.push(part);
                if dir.symlink_metadata(&walked)?.is_symlink() {
                    return Ok(true);
                }
            }
            if !rel.as_os_str().is_empty() {
                dir.open_dir(&rel)?;
            }
            Ok(false)
        })
        .await?;
        if through_symlink {
            return Err(FileError::Escapes(path.to_owned()));
        }
        Ok(host)
    }
}

/// `path` as a clean path relative to the workspace root. Refused: `..`, a NUL byte, control
/// characters (a newline in a path would forge log lines), a name over [`MAX_NAME_BYTES`], a
/// path over [`MAX_PATH_BYTES`].
pub(crate) fn relative(path: &str) -> Result<PathBuf, FileError> {
    let invalid = |reason| FileError::InvalidPath { path: path.escape_debug().to_string(), reason };
    if path.contains('\0') {
        return Err(invalid("it holds a NUL byte"));
    }
    if path.chars().any(char::is_control) {
        return Err(invalid("it holds a control character"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(invalid("it is longer than 4096 bytes"));
    }
    let mut clean = PathBuf::new();
    for part in Path::new(path).components() {
        match part {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) if name.len() > MAX_NAME_BYTES => {
                return Err(invalid("a name in it is longer than 255 bytes"));
            }
            Component::Normal(name) => clean.push(name),
            Component::ParentDir => return Err(invalid("`..` is not allowed")),
            Component::Prefix(_) => return Err(invalid("it is not a workspace path")),
        }
    }
    Ok(clean)
}

fn display(rel: &Path) -> String {
    format!("/{}", rel.to_string_lossy())
}

fn entry(rel: &Path, shown: &str, meta: &Metadata) -> EntryInfo {
    let kind = if meta.is_symlink() {
        EntryKind::Symlink
    } else if meta.is_dir() {
        EntryKind::Dir
    } else if meta.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    };
    let modified_ms = meta
        .modified()
        .ok()
        .and_then(|t| t.into_std().duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    EntryInfo {
        name: rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        path: shown.to_owned(),
        kind,
        size: if kind == EntryKind::File { meta.len() } else { 0 },
        modified_ms,
    }
}

fn walk(dir: &Dir, rel: &Path, depth: usize, out: &mut Vec<EntryInfo>) -> io::Result<()> {
    for item in dir.entries()? {
        if out.len() >= MAX_LIST_ENTRIES {
            return Ok(());
        }
        let item = item?;
        let name = item.file_name();
        let child = rel.join(&name);
        let meta = dir.symlink_metadata(&name)?;
        out.push(entry(&child, &display(&child), &meta));
        if meta.is_dir() && depth > 1 {
            walk(&dir.open_dir(&name)?, &child, depth - 1, out)?;
        }
    }
    Ok(())
}

/// Symbolic links followed while resolving a path before it counts as a loop (Linux's bound).
const MAX_LINK_HOPS: usize = 40;

/// Whether resolving `rel` inside `dir` (following its symbolic links, without opening
/// anything) would leave the workspace: a link to an absolute path, or `..` above the root.
/// A missing component ends the walk (what is left is resolved lexically); a loop is not an
/// escape.
fn leads_outside(dir: &Dir, rel: &Path) -> bool {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    let mut at: Vec<OsString> = Vec::new();
    let mut pending: VecDeque<OsString> = rel.iter().map(OsString::from).collect();
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        match Path::new(&part).components().next() {
            Some(Component::ParentDir) => {
                let above_the_root = at.pop().is_none();
                if above_the_root {
                    return true;
                }
            }
            Some(Component::Normal(_)) => {
                at.push(part);
                let here: PathBuf = at.iter().collect();
                if !dir.symlink_metadata(&here).is_ok_and(|m| m.is_symlink()) {
                    continue;
                }
                hops += 1;
                let Ok(target) = dir.read_link_contents(&here) else { return false };
                if target.has_root() {
                    return true;
                }
                if hops > MAX_LINK_HOPS {
                    return false;
                }
                at.pop();
                for component in target.iter().rev() {
                    pending.push_front(component.to_owned());
                }
            }
            _ => {}
        }
    }
    false
}

/// Opens (making it first) the directory `parent` of an upload to `shown`. When a component
/// is in the way, the error names that component: a link leading out of the workspace is
/// [`FileError::Escapes`], anything else that is not a directory is [`FileError::WrongKind`].
fn open_parent(dir: &Dir, parent: &Path, shown: &str) -> Result<Dir, FileError> {
    if parent.as_os_str().is_empty() {
        return dir.try_clone().map_err(|e| FileError::from_io(shown, e));
    }
    let made = dir.create_dir_all(parent).and_then(|()| dir.open_dir(parent));
    made.map_err(|error| {
        let mut walked = PathBuf::new();
        for part in parent.components() {
            walked.push(part);
            let at = display(&walked);
            match dir.symlink_metadata(&walked) {
                Ok(meta) if meta.is_symlink() && !dir.metadata(&walked).is_ok_and(|m| m.is_dir()) => {
                    return FileError::Escapes(at);
                }
                Ok(meta) if !meta.is_dir() && !meta.is_symlink() => {
                    return FileError::WrongKind { path: at, reason: "not a directory" };
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        FileError::from_io(shown, error)
    })
}

/// Prepares the directory holding workspaces: made if missing (mode 0700), and refused when it
/// is not a directory owned by this process's user or when others may write to it (they could
/// swap a link in and have the server create files through it).
pub fn prepare_workspace_root(root: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(root) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().recursive(true).mode(PRIVATE_DIR_MODE).create(root)?;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
        }
        Err(error) => Err(error),
        Ok(meta) => check_private_dir(root, &meta),
    }
}

/// Refuses a directory this process's user does not own, or that others may write to.
pub fn check_private_dir(path: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: String| Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_dir() {
        return refuse(format!("{} is not a directory", path.display()));
    }
    if meta.uid() != me {
        return refuse(format!("{} is owned by uid {}, not by SoulBox's user (uid {me})", path.display(), meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return refuse(format!("{} may be written by other users; `chmod go-w` it", path.display()));
    }
    Ok(())
}

/// File operations running at once on blocking threads, across every workspace: past it they
/// wait their turn (without a thread), so file transfers never take the whole blocking pool
/// from the rest of the process.
pub const MAX_FILE_WORK: usize = 64;

/// Permits for [`MAX_FILE_WORK`].
static FILE_WORK: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_FILE_WORK);

/// Like [`blocking`], for work that reports [`FileError`]s itself.
async fn blocking_file<T: Send + 'static>(
    path: &str,
    work: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    let _turn = FILE_WORK.acquire().await.map_err(|_| FileError::Removed)?;
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done,
        Err(join) => Err(FileError::Io { path: path.to_owned(), source: io::Error::other(join.to_string()) }),
    }
}

async fn blocking<T: Send + 'static>(
    path: &str,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, FileError> {
    let shown = path.to_owned();
    blocking_file(path, move || work().map_err(|e| FileError::from_io(&shown, e))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_found_by_resolution_not_by_message() {
        let parent = tempfile::tempdir().unwrap();
        let root = parent.path().join("ws");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        let dir = Dir::open_ambient_dir(&root, ambient_authority()).unwrap();
        let link = |target: &str, name: &str| std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        link("/etc", "abs");
        link("../..", "a/b/up2");
        link("..", "a/up1");
        link("a/b/up2", "chain");
        link("loop", "loop");
        assert!(leads_outside(&dir, Path::new("abs/passwd")));
        assert!(leads_outside(&dir, Path::new("a/b/up2/../x")), "two up from a/b is the root, one more leaves");
        assert!(leads_outside(&dir, Path::new("chain/..")));
        assert!(!leads_outside(&dir, Path::new("a/b/up2/a")), "back at the root is inside");
        assert!(!leads_outside(&dir, Path::new("a/up1/a/b")));
        assert!(!leads_outside(&dir, Path::new("loop/x")), "a loop is not an escape");
        assert!(!leads_outside(&dir, Path::new("missing/x")));
    }

    #[test]
    fn paths_stay_inside() {
        assert_eq!(relative("/a/./b").unwrap(), PathBuf::from("a/b"));
        assert_eq!(relative("/").unwrap(), PathBuf::new());
        assert!(matches!(relative("a/../../etc"), Err(FileError::InvalidPath { .. })));
        assert!(matches!(relative("a\0b"), Err(FileError::InvalidPath { .. })));
    }

    proptest::proptest! {
        /// Whatever a caller sends as a path, the clean path is relative, made of normal names
        /// only, within the length bounds, and free of control characters.
        #[test]
        fn workspace_paths_stay_inside(path in "[a-z./\\\\\\x00\n\r]{0,40}|/?[a-z]{250,260}") {
            if let Ok(clean) = relative(&path) {
                proptest::prop_assert!(clean.components().all(|c| matches!(c, Component::Normal(_))));
                proptest::prop_assert!(clean.as_os_str().len() <= MAX_PATH_BYTES);
                proptest::prop_assert!(clean.components().all(|c| c.as_os_str().len() <= MAX_NAME_BYTES));
                proptest::prop_assert!(!clean.to_string_lossy().chars().any(char::is_control));
            }
        }
    }

    #[tokio::test]
    async fn fifos_and_over_long_names_are_refused_cleanly() {
        let parent = tempfile::tempdir().unwrap();
        let ws = Workspace::create_in(parent.path()).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, ws.host_path().join("pipe"), rustix::fs::Mode::RUSR).unwrap();
        let refused = ws.read("/pipe").await.unwrap_err();
        assert!(matches!(refused, FileError::WrongKind { reason: "is not a regular file", .. }), "{refused:?}");
        assert!(matches!(ws.read_stream("/pipe").await, Err(FileError::WrongKind { .. })));
        let long = format!("/{}", "n".repeat(300));
        assert!(matches!(ws.write(&long, b"x").await, Err(FileError::InvalidPath { .. })));
        assert!(matches!(ws.write("/a\nb", b"x").await, Err(FileError::InvalidPath { .. })));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(ws.host_path()).unwrap().permissions().mode() & 0o777, PRIVATE_DIR_MODE);
    }

    #[tokio::test]
    async fn files_round_trip_and_symlinks_cannot_escape() {
        let parent = tempfile::tempdir().unwrap();
        let ws = Workspace::create_in(parent.path()).unwrap();
        ws.write("/data/a.txt", b"hello").await.unwrap();
        assert_eq!(ws.read("data/a.txt").await.unwrap(), b"hello");
        assert_eq!(ws.stat("/data/a.txt").await.unwrap().size, 5);
        assert!(ws.make_dir("/x/y").await.unwrap());
        assert!(!ws.make_dir("/x/y").await.unwrap());
        let listed = ws.list("/", 3).await.unwrap();
        let paths: Vec<_> = listed.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/data", "/data/a.txt", "/x", "/x/y"]);
        ws.rename("/data/a.txt", "/b/c.txt").await.unwrap();
        assert!(!ws.exists("/data/a.txt").await.unwrap());
        assert!(ws.exists("/b/c.txt").await.unwrap());
        std::os::unix::fs::symlink("/etc", ws.host_path().join("out")).unwrap();
        assert!(
            matches!(ws.read("/out/passwd").await, Err(FileError::Escapes(_))),
            "{:?}",
            ws.read("/out/passwd").await
        );
        assert!(ws.write("/out/x", b"no").await.is_err());
        std::os::unix::fs::symlink("../../..", ws.host_path().join("up")).unwrap();
        assert!(matches!(ws.stat("/up/etc").await, Err(FileError::Escapes(_))), "{:?}", ws.stat("/up/etc").await);
        std::os::unix::fs::symlink("data", ws.host_path().join("inside")).unwrap();
        ws.write("/data/in.txt", b"ok").await.unwrap();
        assert_eq!(ws.read("/inside/in.txt").await.unwrap(), b"ok", "a link that stays inside is followed");
        assert!(ws.host_dir("/out").await.is_err());
        ws.remove_path("/b").await.unwrap();
        assert!(matches!(ws.read("/b/c.txt").await, Err(FileError::NotFound(_))));
        ws.remove();
        assert!(matches!(ws.read("/x").await, Err(FileError::Removed)));
    }
}

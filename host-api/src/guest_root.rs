//! [`GuestRoot`]: the guest's private file system root, which is also its workspace.
//!
//! Each execution gets a fresh host directory that the guest sees as `/`. Input files are placed
//! in it before the guest starts, and afterwards every regular file the guest created or changed
//! is collected, except under [`RESERVED_DIRS`] (`/tmp` scratch and `/usr` mount points).
//!
//! All host-side access goes through a `cap_std::fs::Dir` opened on that directory, so paths
//! with `..`, absolute paths and symlinks pointing outside cannot reach the host: cap-std refuses
//! them. Symlinks the guest made are never followed when collecting. The directory is deleted
//! when the `GuestRoot` is dropped, or emptied for another guest ([`GuestRoot::reset`]).
//!
//! A root another process left behind (it exited, or died, without removing it) can be taken
//! over instead of making a new one ([`GuestRoot::adopt`]), but only if it holds exactly its
//! skeleton, empty: anything a guest left in it refuses the adoption, so what a guest finds in
//! an adopted root is what it finds in a new one (only the directories' times tell them apart,
//! as they do for a root [`GuestRoot::reset`] emptied). A one-shot `soulbox run` leaves its root
//! for the next process, which adopts it rather than making its five directories while a sweep
//! removes the last run's five.
//!
//! Most guests leave the root as it was made. The root and its skeleton directories are held
//! open (`Skeleton`), so seeing that costs one directory read each, without a path lookup or
//! an open: a fresh execution's reset and collection took about fifty system calls (a tenth of
//! the server's CPU for a `print(1+1)`), most of them opening and closing the same few
//! directories. A held directory counts as unchanged only if it lists exactly the entries it
//! was made with, each of them the very directory held (same inode: the held descriptor keeps
//! a replaced directory's inode from being reused); anything else takes the full walk, after
//! which the skeleton is opened again.

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Top-level guest directories that are not part of the workspace: `/tmp` (scratch, `TMPDIR`)
/// and `/usr` (where read-only mounts such as the Python stdlib appear).
pub const RESERVED_DIRS: [&str; 2] = ["tmp", "usr"];
/// How deep collection descends into the workspace.
pub const MAX_COLLECT_DEPTH: usize = 32;
/// Directory entries collection looks at, at most, so a guest that made millions of files
/// cannot keep the host walking its workspace.
pub const MAX_COLLECT_ENTRIES: usize = 100_000;

/// Bounds on what [`GuestRoot::collect`] returns.
#[derive(Debug, Clone, Copy)]
pub struct CollectLimits {
    /// The most files returned.
    pub max_files: usize,
    /// The most bytes returned, all files together.
    pub max_total_bytes: u64,
}

/// Errors placing or collecting workspace files.
#[derive(Debug, thiserror::Error)]
pub enum GuestRootError {
    /// The host directory could not be created or opened.
    #[error("cannot create the guest's workspace: {0}")]
    Create(#[source] std::io::Error),
    /// An input path names a reserved directory.
    #[error("input file `{0}` is under a reserved directory ({reserved}); choose another path", reserved = RESERVED_DIRS.join(", "))]
    Reserved(String),
    /// cap-std refused or the write failed.
    #[error("cannot place input file `{path}`: {source}")]
    Place {
        /// The input's path.
        path: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// Reading the workspace back failed.
    #[error("cannot collect output files: {0}")]
    Collect(#[source] std::io::Error),
}

/// Files collected from the workspace.
#[derive(Debug, Default)]
pub struct Collected {
    /// `(relative path, bytes)` of each new or changed file, sorted by path.
    pub files: Vec<(String, Vec<u8>)>,
    /// Whether [`CollectLimits`] or `MAX_COLLECT_ENTRIES` cut the list short.
    pub truncated: bool,
    /// Directory entries looked at.
    seen: usize,
}

/// A fresh guest root on the host, deleted on drop.
#[derive(Debug)]
pub struct GuestRoot {
    host: HostDir,
    dir: Dir,
    inputs: BTreeMap<String, blake3::Hash>,
    /// The directories it was created with ([`RESERVED_DIRS`], the mount points and their
    /// parents), which [`GuestRoot::reset`] keeps.
    skeleton: BTreeSet<String>,
    /// The root and the skeleton held open; `None` if they could not be opened (every reset
    /// and collection then walks).
    held: Option<Skeleton>,
}

/// Makes the reserved directories and `mount_points` inside an existing guest root (a
/// sandbox's workspace, which outlives any one guest) and opens it. Existing files are kept.
pub fn prepare_root(root: &Path, mount_points: &[&str]) -> Result<Dir, GuestRootError> {
    let dir = Dir::open_ambient_dir(root, ambient_authority()).map_err(GuestRootError::Create)?;
    for name in RESERVED_DIRS.iter().chain(mount_points) {
        dir.create_dir_all(name).map_err(GuestRootError::Create)?;
    }
    Ok(dir)
}

impl GuestRoot {
    /// Creates an empty root under `parent` with the reserved directories and the given mount
    /// points (relative guest paths such as `usr/local/lib`) made.
    pub fn create_in(parent: &Path, mount_points: &[&str]) -> Result<Self, GuestRootError> {
        let made = tempfile::Builder::new().prefix(ROOT_PREFIX).tempdir_in(parent).map_err(GuestRootError::Create)?;
        let dir = prepare_root(made.path(), mount_points)?;
        let skeleton = skeleton_of(mount_points);
        let held = Skeleton::open(&dir, &skeleton).ok();
        Ok(GuestRoot { host: HostDir(made.keep()), dir, inputs: BTreeMap::new(), skeleton, held })
    }

    /// Takes over the root at `path` (left by a process that is gone) if it is exactly what
    /// [`GuestRoot::create_in`] makes for `mount_points`: the root and each skeleton directory
    /// holding nothing but the skeleton's own directories, none of them a symlink. Returns
    /// `None`, touching nothing, for anything else (a file, a symlink or a missing directory
    /// anywhere in it, or another skeleton); the caller removes such a root. The adopted root
    /// is deleted on drop like a new one.
    pub fn adopt(path: &Path, mount_points: &[&str]) -> Option<Self> {
        let named = path.file_name().is_some_and(|name| name.as_encoded_bytes().starts_with(ROOT_PREFIX.as_bytes()));
        let parent = path.parent().filter(|_| named)?;
        let parent = Dir::open_ambient_dir(parent, ambient_authority()).ok()?;
        // Opened beneath its parent without following a symlink, like every skeleton directory.
        let dir = Dir::from_std_file(std::fs::File::from(open_listable(&parent, path.file_name()?.to_str()?).ok()?));
        let skeleton = skeleton_of(mount_points);
        let mut held = Skeleton::open(&dir, &skeleton).ok()?;
        if !held.unchanged() {
            return None;
        }
        Some(GuestRoot { host: HostDir(path.to_path_buf()), dir, inputs: BTreeMap::new(), skeleton, held: Some(held) })
    }

    /// Empties the root back to the directories it was created with, so that it can serve
    /// another guest as if new: every other entry (output files, files the guest left in
    /// `/tmp`, a skeleton directory it replaced with a file or a symlink) is removed, symlinks
    /// never followed, a skeleton directory it removed is made again, and input files are
    /// forgotten. Costs one read of each held skeleton directory when the guest left nothing
    /// (`Skeleton`), against a make and a removal of each when a root is created and dropped.
    pub fn reset(&mut self) -> Result<(), GuestRootError> {
        self.inputs.clear();
        if self.held.as_mut().is_some_and(Skeleton::unchanged) {
            return Ok(());
        }
        empty_except(&self.dir, "", &self.skeleton).map_err(GuestRootError::Create)?;
        // A skeleton directory the guest removed or replaced is made again.
        for path in &self.skeleton {
            self.dir.create_dir_all(path).map_err(GuestRootError::Create)?;
        }
        // Hold the skeleton's directories there are now.
        self.held = Skeleton::open(&self.dir, &self.skeleton).ok();
        Ok(())
    }

    /// The host directory the guest sees as `/`.
    pub fn host_path(&self) -> PathBuf {
        self.host.path().to_path_buf()
    }

    /// Writes one input file at a relative `path`, creating parent directories.
    pub fn place(&mut self, path: &str, contents: &[u8]) -> Result<(), GuestRootError> {
        let first = path.split('/').next().unwrap_or_default();
        if RESERVED_DIRS.contains(&first) {
            return Err(GuestRootError::Reserved(path.to_owned()));
        }
        let place_err = |source| GuestRootError::Place { path: path.to_owned(), source };
        if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
            self.dir.create_dir_all(parent).map_err(place_err)?;
        }
        self.dir.write(path, contents).map_err(place_err)?;
        self.inputs.insert(path.to_owned(), blake3::hash(contents));
        Ok(())
    }

    /// Reads back every regular file that is new or differs from its input, outside the
    /// reserved directories, within `limits`. Symlinks are skipped, never followed.
    pub fn collect(&mut self, limits: CollectLimits) -> Result<Collected, GuestRootError> {
        let mut collected = Collected::default();
        if self.held.as_mut().is_some_and(|held| held.root_unchanged()) {
            return Ok(collected); // nothing outside the reserved directories
        }
        let mut budget = limits.max_total_bytes;
        self.walk(&self.dir, "", 0, limits, &mut budget, &mut collected).map_err(GuestRootError::Collect)?;
        collected.files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(collected)
    }

    fn walk(
        &self,
        dir: &Dir,
        prefix: &str,
        depth: usize,
        limits: CollectLimits,
        budget: &mut u64,
        out: &mut Collected,
    ) -> std::io::Result<()> {
        if depth > MAX_COLLECT_DEPTH {
            out.truncated = true;
            return Ok(());
        }
        for entry in dir.entries()? {
            let entry = entry?;
            out.seen += 1;
            if out.seen > MAX_COLLECT_ENTRIES {
                out.truncated = true;
                return Ok(());
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            let kind = entry.file_type()?;
            if depth == 0 && RESERVED_DIRS.contains(&name.as_str()) {
                continue;
            }
            if kind.is_dir() {
                let sub = entry.open_dir()?;
                self.walk(&sub, &path, depth + 1, limits, budget, out)?;
            } else if kind.is_file() {
                let len = entry.metadata()?.len();
                if out.files.len() >= limits.max_files || len > *budget {
                    out.truncated = true;
                    continue;
                }
                // Read at most the size checked. (The root is private to one guest, which is done
                // and cannot make FIFOs; a sandbox workspace, where containers can, is read
                // through `soulbox_engine::guest_tree` instead.)
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut std::io::Read::take(dir.open(&name)?, len), &mut bytes)?;
                if self.inputs.get(&path) == Some(&blake3::hash(&bytes)) {
                    continue;
                }
                *budget -= bytes.len() as u64;
                out.files.push((path, bytes));
            }
        }
        Ok(())
    }
}

/// How a guest root's directory name begins: [`GuestRoot::create_in`] names them so, and
/// [`GuestRoot::adopt`] takes no other.
pub const ROOT_PREFIX: &str = "guest-";

/// A guest root's host directory, removed with everything in it on drop.
#[derive(Debug)]
struct HostDir(PathBuf);

impl HostDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The skeleton of a root made for `mount_points`: [`RESERVED_DIRS`], the mount points and
/// every parent of them.
fn skeleton_of(mount_points: &[&str]) -> BTreeSet<String> {
    let mut skeleton = BTreeSet::new();
    for path in RESERVED_DIRS.iter().chain(mount_points) {
        for (end, _) in path.match_indices('/').chain([(path.len(), "")]) {
            skeleton.insert(path[..end].to_owned());
        }
    }
    skeleton
}

/// The root and its skeleton directories, held open to be listed again without a lookup.
#[derive(Debug)]
struct Skeleton {
    /// The root first, then each skeleton directory.
    dirs: Vec<HeldDir>,
}

#[derive(Debug)]
struct HeldDir {
    listing: rustix::fs::Dir,
    /// The entries it was made with: the name and inode of each skeleton directory in it.
    children: Vec<(Vec<u8>, u64)>,
}

impl Skeleton {
    /// Opens the root (`dir`) and each of `skeleton` in it.
    fn open(dir: &Dir, skeleton: &BTreeSet<String>) -> std::io::Result<Skeleton> {
        let mut opened = vec![(String::new(), open_listable(dir, ".")?)];
        for path in skeleton {
            opened.push((path.clone(), open_listable(dir, path)?));
        }
        let mut inodes = Vec::with_capacity(opened.len());
        for (path, fd) in &opened {
            inodes.push((path.clone(), rustix::fs::fstat(fd)?.st_ino));
        }
        let mut dirs = Vec::with_capacity(opened.len());
        for (path, fd) in opened {
            let children = inodes
                .iter()
                .filter_map(|(child, ino)| {
                    let (parent, name) = child.rsplit_once('/').unwrap_or(("", child.as_str()));
                    (parent == path && !child.is_empty()).then(|| (name.as_bytes().to_vec(), *ino))
                })
                .collect();
            dirs.push(HeldDir { listing: rustix::fs::Dir::new(fd)?, children });
        }
        Ok(Skeleton { dirs })
    }

    /// Whether the root and every skeleton directory hold exactly what they were made with.
    fn unchanged(&mut self) -> bool {
        self.dirs.iter_mut().all(HeldDir::unchanged)
    }

    /// Whether the root holds exactly what it was made with (its reserved directories).
    fn root_unchanged(&mut self) -> bool {
        self.dirs.first_mut().is_some_and(HeldDir::unchanged)
    }
}

/// The directory at `path` under `dir`, opened to be listed (cap-std's own directories are
/// `O_PATH`, which cannot be read); resolved beneath `dir` without following a symlink.
fn open_listable(dir: &Dir, path: &str) -> std::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::openat2(dir, path, flags, Mode::empty(), ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS)?)
}

impl HeldDir {
    /// Whether it lists exactly its `children`, each the directory it was made with.
    fn unchanged(&mut self) -> bool {
        self.listing.rewind();
        let mut seen = 0;
        while let Some(entry) = self.listing.read() {
            let Ok(entry) = entry else { return false };
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let expected = self.children.iter().any(|(child, ino)| child == name && *ino == entry.ino());
            if !expected || entry.file_type() != rustix::fs::FileType::Directory {
                return false;
            }
            seen += 1;
        }
        seen == self.children.len()
    }
}

/// Removes every entry under `dir` (at guest path `prefix`) that is not a real directory in
/// `keep`, descending into those that are.
fn empty_except(dir: &Dir, prefix: &str, keep: &BTreeSet<String>) -> std::io::Result<()> {
    for entry in dir.entries()? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        let kind = entry.file_type()?;
        if kind.is_dir() && keep.contains(&path) {
            empty_except(&entry.open_dir()?, &path, keep)?;
            continue;
        }
        if kind.is_dir() { dir.remove_dir_all(&name)? } else { dir.remove_file(&name)? }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: CollectLimits = CollectLimits { max_files: 10, max_total_bytes: 1 << 20 };

    #[test]
    fn collects_new_and_changed_files_only() {
        let parent = tempfile::tempdir().unwrap();
        let mut root = GuestRoot::create_in(parent.path(), &["usr/local/lib"]).unwrap();
        root.place("in/same.txt", b"same").unwrap();
        root.place("changed.txt", b"before").unwrap();
        let host = root.host_path();
        std::fs::write(host.join("changed.txt"), b"after").unwrap();
        std::fs::write(host.join("in/new.txt"), b"new").unwrap();
        std::fs::write(host.join("tmp/scratch"), b"x").unwrap();
        let got = root.collect(LIMITS).unwrap();
        let paths: Vec<_> = got.files.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(paths, ["changed.txt", "in/new.txt"]);
        assert!(!got.truncated);
    }

    #[test]
    fn refuses_reserved_and_escaping_paths_and_skips_symlinks() {
        let parent = tempfile::tempdir().unwrap();
        let mut root = GuestRoot::create_in(parent.path(), &[]).unwrap();
        assert!(matches!(root.place("tmp/x", b""), Err(GuestRootError::Reserved(_))));
        assert!(root.place("../escape", b"").is_err());
        assert!(root.place("/etc/passwd", b"").is_err());
        std::os::unix::fs::symlink("/etc/passwd", root.host_path().join("link")).unwrap();
        assert!(root.collect(LIMITS).unwrap().files.is_empty());
        assert!(!parent.path().join("escape").exists());
    }

    #[test]
    fn reset_leaves_exactly_a_new_roots_directories() {
        let parent = tempfile::tempdir().unwrap();
        let mut root = GuestRoot::create_in(parent.path(), &["usr/local/lib"]).unwrap();
        root.place("in/data.txt", b"input").unwrap();
        let host = root.host_path();
        std::fs::write(host.join("tmp/scratch"), b"x").unwrap();
        std::fs::create_dir_all(host.join("usr/local/lib/nested")).unwrap();
        std::fs::write(host.join("usr/local/leftover"), b"x").unwrap();
        std::fs::remove_dir(host.join("usr/local/lib/nested")).unwrap();
        std::fs::remove_dir(host.join("usr/local/lib")).unwrap();
        std::os::unix::fs::symlink("/etc", host.join("usr/local/lib")).unwrap(); // replaced by a link
        root.reset().unwrap();
        let mut left: Vec<String> = walkdir(&host);
        left.sort();
        assert_eq!(left, ["tmp/", "usr/", "usr/local/", "usr/local/lib/"]);
        assert!(std::path::Path::new("/etc/passwd").exists(), "the link was removed, not followed");
        std::fs::write(host.join("out.txt"), b"new").unwrap();
        let paths: Vec<_> = root.collect(LIMITS).unwrap().files.into_iter().map(|f| f.0).collect();
        assert_eq!(paths, ["out.txt"]);
    }

    /// Every entry under `root`, relative, directories with a trailing `/`.
    fn walkdir(root: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                if path.is_dir() && !path.is_symlink() {
                    found.push(format!("{relative}/"));
                    stack.push(path);
                } else {
                    found.push(relative);
                }
            }
        }
        found
    }

    #[test]
    fn a_replaced_skeleton_directory_is_emptied_and_held_again() {
        let parent = tempfile::tempdir().unwrap();
        let mut root = GuestRoot::create_in(parent.path(), &["usr/local/lib"]).unwrap();
        let host = root.host_path();
        assert!(root.held.as_mut().is_some_and(Skeleton::unchanged), "a new root is seen unchanged");
        root.reset().unwrap(); // nothing to do
        // Replaced by a directory of the same name holding a file: the name alone would pass.
        std::fs::remove_dir(host.join("tmp")).unwrap();
        std::fs::create_dir(host.join("tmp")).unwrap();
        std::fs::write(host.join("tmp/left"), b"x").unwrap();
        std::fs::remove_dir(host.join("usr/local/lib")).unwrap();
        std::fs::create_dir(host.join("usr/local/lib")).unwrap();
        std::fs::write(host.join("usr/local/lib/left"), b"x").unwrap();
        root.reset().unwrap();
        assert_eq!(sorted(walkdir(&host)), ["tmp/", "usr/", "usr/local/", "usr/local/lib/"]);
        assert!(root.held.as_mut().is_some_and(Skeleton::unchanged), "the new directories are held");
        // The directories held after that reset are the new ones: a file in them is still seen.
        std::fs::write(host.join("tmp/again"), b"x").unwrap();
        root.reset().unwrap();
        assert!(!host.join("tmp/again").exists());
        // A removed skeleton directory is made again.
        std::fs::remove_dir(host.join("usr/local/lib")).unwrap();
        root.reset().unwrap();
        assert_eq!(sorted(walkdir(&host)), ["tmp/", "usr/", "usr/local/", "usr/local/lib/"]);
    }

    #[test]
    fn collection_sees_a_new_file_after_an_unchanged_root() {
        let parent = tempfile::tempdir().unwrap();
        let mut root = GuestRoot::create_in(parent.path(), &["usr/local/lib"]).unwrap();
        assert!(root.collect(LIMITS).unwrap().files.is_empty());
        std::fs::write(root.host_path().join("tmp/scratch"), b"x").unwrap(); // reserved
        assert!(root.collect(LIMITS).unwrap().files.is_empty());
        std::fs::write(root.host_path().join("out.txt"), b"new").unwrap();
        let paths: Vec<_> = root.collect(LIMITS).unwrap().files.into_iter().map(|f| f.0).collect();
        assert_eq!(paths, ["out.txt"]);
    }

    fn sorted(mut paths: Vec<String>) -> Vec<String> {
        paths.sort();
        paths
    }

    #[test]
    fn stops_at_the_limits() {
        let parent = tempfile::tempdir().unwrap();
        let mut root = GuestRoot::create_in(parent.path(), &[]).unwrap();
        for i in 0..3 {
            std::fs::write(root.host_path().join(format!("f{i}")), b"0123456789").unwrap();
        }
        let got = root.collect(CollectLimits { max_files: 2, max_total_bytes: 100 }).unwrap();
        assert_eq!(got.files.len(), 2);
        assert!(got.truncated);
    }

    /// A root left behind as a process that exits leaves it (not removed).
    fn left_behind(parent: &Path, mount_points: &[&str]) -> PathBuf {
        let root = GuestRoot::create_in(parent, mount_points).unwrap();
        let path = root.host_path();
        std::mem::forget(root);
        path
    }

    #[test]
    fn a_root_left_as_new_is_adopted_and_removed_on_drop() {
        let parent = tempfile::tempdir().unwrap();
        let path = left_behind(parent.path(), &["usr/local/lib"]);
        let mut root = GuestRoot::adopt(&path, &["usr/local/lib"]).expect("adopted");
        assert_eq!(root.host_path(), path);
        root.place("in.txt", b"in").unwrap();
        std::fs::write(path.join("out.txt"), b"out").unwrap();
        let collected = root.collect(LIMITS).unwrap();
        assert_eq!(collected.files, vec![("out.txt".to_owned(), b"out".to_vec())]);
        drop(root);
        assert!(!path.exists());
    }

    #[test]
    fn a_root_anything_was_left_in_is_not_adopted_nor_touched() {
        let parent = tempfile::tempdir().unwrap();
        type Leave = (&'static str, fn(&Path));
        let leave: [Leave; 6] = [
            ("a file at the top", |root| std::fs::write(root.join("out.txt"), b"x").unwrap()),
            ("a file in /tmp", |root| std::fs::write(root.join("tmp/x"), b"x").unwrap()),
            ("a directory in a mount point", |root| std::fs::create_dir(root.join("usr/local/lib/x")).unwrap()),
            ("a removed mount point", |root| std::fs::remove_dir(root.join("usr/local/lib")).unwrap()),
            ("/tmp made a symlink", |root| {
                std::fs::remove_dir(root.join("tmp")).unwrap();
                std::os::unix::fs::symlink("/etc", root.join("tmp")).unwrap();
            }),
            ("an empty file in /usr", |root| std::fs::write(root.join("usr/x"), b"").unwrap()),
        ];
        for (what, change) in leave {
            let path = left_behind(parent.path(), &["usr/local/lib"]);
            change(&path);
            let before = walkdir(&path);
            assert!(GuestRoot::adopt(&path, &["usr/local/lib"]).is_none(), "adopted with {what}");
            assert_eq!(walkdir(&path), before, "touched with {what}");
        }
    }

    #[test]
    fn only_a_root_made_for_the_same_mount_points_is_adopted() {
        let parent = tempfile::tempdir().unwrap();
        let python = left_behind(parent.path(), &["usr/local/lib"]);
        let javascript = left_behind(parent.path(), &[]);
        assert!(GuestRoot::adopt(&python, &[]).is_none());
        assert!(GuestRoot::adopt(&javascript, &["usr/local/lib"]).is_none());
        assert!(GuestRoot::adopt(&javascript, &[]).is_some());
        // Not a guest root's name, or not there at all.
        let other = parent.path().join("other");
        std::fs::rename(&python, &other).unwrap();
        assert!(GuestRoot::adopt(&other, &["usr/local/lib"]).is_none());
        assert!(GuestRoot::adopt(&python, &["usr/local/lib"]).is_none());
    }
}

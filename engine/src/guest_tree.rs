//! Reading files in a tree that guest code controls (a sandbox's workspace, a container's
//! output directory), from the host, without being tricked.
//!
//! A guest can leave anything in such a tree: a symlink (cap-std keeps every lookup inside the
//! tree), a FIFO, whose `open(2)` for reading blocks until a writer appears (a host thread
//! parked for good), or a file that grows or is swapped while the host reads it. So every open
//! here is non-blocking and refuses anything but a regular file, and reads stop at a size the
//! caller chose. Refusals are typed ([`NotRegularFile`]), so callers decide by type.

use cap_std::fs::{Dir, File, OpenOptions, OpenOptionsExt};
use rustix::fs::OFlags;
use std::io::{self, Read};
use std::path::Path;

/// The entry is not a regular file (a FIFO, a socket, a device, or a directory where a file
/// was wanted). Carried inside an [`io::Error`]; test for it with [`is_not_regular`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a regular file")]
pub struct NotRegularFile {
    /// The entry is a directory.
    pub is_dir: bool,
}

/// Whether `error` is a [`NotRegularFile`] refusal.
pub fn is_not_regular(error: &io::Error) -> Option<NotRegularFile> {
    error.get_ref().and_then(|inner| inner.downcast_ref::<NotRegularFile>()).copied()
}

/// Opens the regular file at `path` under `dir` for reading, without ever blocking in
/// `open(2)`: it is opened `O_NONBLOCK`, refused unless it is a regular file, and then made
/// blocking again (which means nothing for a regular file, but keeps reads ordinary).
pub fn open_regular(dir: &Dir, path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).custom_flags((OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32);
    let file = dir.open_with(path, &options)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::other(NotRegularFile { is_dir: metadata.is_dir() }));
    }
    let flags = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK)?;
    Ok(file)
}

/// Reads the regular file at `path` under `dir`, at most `max` bytes of it (a file that grew
/// since its size was checked is cut there).
pub fn read_regular(dir: &Dir, path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(dir, path)?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// How deep [`copy_tree`] descends before refusing: a guest can nest directories without end,
/// or swap one for a link to its parent while the copy runs.
pub const MAX_COPY_DEPTH: usize = 128;

/// Copies everything under `from` into the empty directory `to` (blocking): directories,
/// regular files (cloned where the file system shares blocks, with their permission bits) and
/// symbolic links (as links, never followed). Other entries (FIFOs, sockets, devices) are
/// skipped, as is anything a guest removes or swaps for one meanwhile. Returns the bytes of
/// file content copied.
pub fn copy_tree(from: &Dir, to: &Dir) -> io::Result<u64> {
    copy_level(from, to, 0)
}

fn copy_level(from: &Dir, to: &Dir, depth: usize) -> io::Result<u64> {
    if depth >= MAX_COPY_DEPTH {
        return Err(io::Error::other(format!("its directories nest deeper than {MAX_COPY_DEPTH} levels")));
    }
    let mut bytes = 0;
    for entry in from.entries()? {
        let name = entry?.file_name();
        let kind = match from.symlink_metadata(&name) {
            Ok(meta) => meta.file_type(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if kind.is_dir() {
            to.create_dir(&name)?;
            bytes += copy_level(&from.open_dir(&name)?, &to.open_dir(&name)?, depth + 1)?;
        } else if kind.is_symlink() {
            to.symlink_contents(from.read_link_contents(&name)?, &name)?;
        } else if kind.is_file() {
            let mut source = match open_regular(from, Path::new(&name)) {
                Ok(file) => file,
                Err(e) if is_not_regular(&e).is_some() || e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let mut target = to.create(&name)?;
            bytes += match rustix::fs::ioctl_ficlone(&target, &source) {
                Ok(()) => source.metadata()?.len(),
                Err(_) => io::copy(&mut source, &mut target)?,
            };
            target.set_permissions(source.metadata()?.permissions())?;
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_are_refused_without_blocking_and_reads_are_bounded() {
        let host = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(host.path(), cap_std::ambient_authority()).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, host.path().join("pipe"), rustix::fs::Mode::RUSR).unwrap();
        let refused = open_regular(&dir, Path::new("pipe")).unwrap_err();
        assert_eq!(is_not_regular(&refused), Some(NotRegularFile { is_dir: false }));
        dir.create_dir("sub").unwrap();
        let refused = open_regular(&dir, Path::new("sub")).unwrap_err();
        assert_eq!(is_not_regular(&refused), Some(NotRegularFile { is_dir: true }));
        dir.write("big", vec![7u8; 1000]).unwrap();
        assert_eq!(read_regular(&dir, Path::new("big"), 10).unwrap().len(), 10);
        let other = dir.open("missing").unwrap_err();
        assert_eq!(is_not_regular(&other), None);
    }

    #[test]
    fn copies_a_tree_with_links_as_links_and_skips_fifos() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let from = Dir::open_ambient_dir(a.path(), cap_std::ambient_authority()).unwrap();
        let to = Dir::open_ambient_dir(b.path(), cap_std::ambient_authority()).unwrap();
        from.create_dir_all("d/e").unwrap();
        from.write("d/e/f.txt", b"deep").unwrap();
        from.write("top", vec![1u8; 5000]).unwrap();
        from.symlink_contents("/etc/passwd", "out").unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, a.path().join("pipe"), rustix::fs::Mode::RUSR).unwrap();
        assert_eq!(copy_tree(&from, &to).unwrap(), 5004);
        assert_eq!(to.read("d/e/f.txt").unwrap(), b"deep");
        assert_eq!(to.read_link_contents("out").unwrap(), Path::new("/etc/passwd"));
        assert!(to.symlink_metadata("pipe").is_err(), "a FIFO is not copied");
        let nested = (0..MAX_COPY_DEPTH + 1).map(|i| i.to_string()).collect::<Vec<_>>().join("/");
        from.create_dir_all(&nested).unwrap();
        let c = tempfile::tempdir().unwrap();
        let deep = Dir::open_ambient_dir(c.path(), cap_std::ambient_authority()).unwrap();
        assert!(copy_tree(&from, &deep).is_err(), "a tree nested without end is refused");
    }
}

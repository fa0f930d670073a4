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
}

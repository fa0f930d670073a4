//! Disk quotas for workspaces: each workspace is a size-limited `tmpfs` of its own, mounted
//! on its directory when the sandbox is made and detached when it dies, so a guest (or a
//! container process) that writes past its quota gets `ENOSPC` and the host's disks never
//! fill. Mounting needs `CAP_SYS_ADMIN`: [`can_enforce`] says whether this process has it.
//!
//! Workspace directories are named `sandbox-<pid>-<random>`; `sweep_dead` unmounts and
//! removes those of processes that died (a killed server leaves its sandboxes behind).

use rustix::mount::{MountFlags, UnmountFlags};
use std::io;
use std::path::Path;

/// The prefix of every workspace directory.
pub(crate) const WORKSPACE_PREFIX: &str = "sandbox-";
/// Bytes of workspace per inode a quota allows (files and directories count against it too).
const BYTES_PER_INODE: u64 = 4096;
/// The fewest inodes a quota allows.
const MIN_INODES: u64 = 1024;

/// Whether this process can mount quota file systems (it runs as root).
pub fn can_enforce() -> bool {
    rustix::process::geteuid().is_root()
}

/// Mounts a `tmpfs` of `bytes` (private to the server: mode 0700) on the directory `path`.
pub(crate) fn mount(path: &Path, bytes: u64) -> io::Result<()> {
    let inodes = (bytes / BYTES_PER_INODE).max(MIN_INODES);
    let options = std::ffi::CString::new(format!("size={bytes},nr_inodes={inodes},mode=0700"))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = MountFlags::NOSUID | MountFlags::NODEV;
    rustix::mount::mount("soulbox-workspace", path, "tmpfs", flags, Some(options.as_c_str()))?;
    Ok(())
}

/// Whether a file system of its own is mounted on the directory `path` (its device differs from
/// its parent's), as a quota workspace's is.
pub(crate) fn is_mounted(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(here), Some(Ok(parent))) = (std::fs::metadata(path), path.parent().map(std::fs::metadata)) else {
        return false;
    };
    here.dev() != parent.dev()
}

/// Detaches the quota file system mounted on `path`, if there is one (its memory is freed once
/// nothing, a container's bind mount included, still uses it).
pub(crate) fn unmount(path: &Path) {
    match rustix::mount::unmount(path, UnmountFlags::DETACH) {
        Ok(()) => {}
        // Not a mount point: nothing was mounted.
        Err(rustix::io::Errno::INVAL) => {}
        Err(error) => tracing::warn!(%error, path = %path.display(), "could not unmount a workspace"),
    }
}

/// Unmounts and removes the workspaces under `root` whose process has died, except those in
/// `keep` (paused sandboxes' ones). Returns how many.
pub(crate) fn sweep_dead(root: &Path, keep: &std::collections::HashSet<std::path::PathBuf>) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else { return 0 };
    let mut swept = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner_pid) else { continue };
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let path = entry.path();
        if keep.contains(&path) {
            continue;
        }
        unmount(&path);
        if std::fs::remove_dir_all(&path).is_ok() {
            swept += 1;
        }
    }
    swept
}

/// The pid in a workspace directory's name (`sandbox-<pid>-<random>`).
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(WORKSPACE_PREFIX)?.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_names_carry_their_process() {
        assert_eq!(owner_pid("sandbox-1234-abcd"), Some(1234));
        assert_eq!(owner_pid("sandbox-abcd"), None);
        assert_eq!(owner_pid("other-1234-x"), None);
    }
}

//! Where SoulBox keeps runtimes, caches and guest scratch directories.
//!
//! Layout under the home directory (`$SOULBOX_HOME`, else `<user data dir>/soulbox`):
//!
//! ```text
//! runtimes/<package>-<version>/   verified interpreter files, plus `.installed` once complete
//! cache/snapshots/<key>.wasm      pre-initialized modules built here (Wizer)
//! cache/modules/<key>.cwasm       compiled modules, each with a `.b3` checksum beside it
//! scratch/<pid>/                  this process's guest roots (each deleted with its guest; a
//!                                 one-shot `soulbox run` leaves its one to the next process)
//! scratch/<pid>.lock              locked while that process lives; folders whose lock is free
//!                                 (their process died) are taken over or swept at start-up
//! ```
//!
//! A process first tries to take over one folder of a process that is gone (a one-shot
//! `soulbox run` leaves its guest root for the next process, as removing it would delay the
//! exit): it locks that folder's lock file, gives the file its own pid's name as a second
//! name (a hard link), renames the folder to its pid and then removes the file's old name, and
//! later adopts the guest roots in it that hold exactly a new root's skeleton
//! ([`GuestRoot::adopt`]); a root a guest left anything in is removed on a thread of its own
//! instead. On ext4 without a journal (where making an inode passes over the recently freed
//! ones), mounted with `discard`, each run made its folder, its lock file and its root's five
//! directories while its sweep removed the last run's: about 0.3 ms of a one-shot run.
//!
//! Invariant: at every step of a take-over, each folder is named by a lock file (under the old
//! pid's name or the new one, both names the one file while the folder moves). A process killed
//! midway therefore leaves only folders whose lock is free, which the sweep removes: a folder no
//! lock names could not be told from one being taken over, and would stay forever.
//!
//! The start-up sweep runs on a thread of its own ([`SoulboxHome::sweep_in_background`]):
//! nothing a process does depends on another's leftovers being gone, and removing folders is
//! slow where the filesystem is mounted with `discard` (each freed block waits for the device:
//! about a millisecond of a one-shot `soulbox run`, which leaves its own folder for the next).
//! A process that exits mid-sweep leaves the rest to the next one: a folder's lock file is
//! removed only after the folder.

use soulbox_host_api::{GuestRoot, GuestRootError, ROOT_PREFIX};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A held claim on this process's scratch folder (see [`SoulboxHome::claim_scratch`]).
#[derive(Debug)]
pub struct ScratchClaim {
    _lock: std::fs::File,
    /// This process's scratch folder.
    folder: PathBuf,
    /// Guest roots found in the folder when it was taken over from a process that is gone,
    /// not yet looked at.
    adoptable: Mutex<Vec<PathBuf>>,
    /// Threads removing left roots that could not be adopted (those still running).
    removals: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl ScratchClaim {
    /// The claim `lock` holds on `folder`, with the guest roots a gone process left in it.
    fn new(lock: std::fs::File, folder: PathBuf, adoptable: Vec<PathBuf>) -> Self {
        ScratchClaim { _lock: lock, folder, adoptable: Mutex::new(adoptable), removals: Mutex::default() }
    }

    /// A guest root for a new guest: one the folder's previous process left, if one is exactly
    /// a new root for `mount_points` ([`GuestRoot::adopt`]), else a new one. A left root that
    /// is not is removed on a thread of its own.
    pub(crate) fn guest_root(&self, mount_points: &[&str]) -> Result<GuestRoot, GuestRootError> {
        loop {
            let next = self.adoptable.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(path) = next else { break };
            match GuestRoot::adopt(&path, mount_points) {
                Some(root) => return Ok(root),
                None => self.remove_in_background(path),
            }
        }
        std::fs::create_dir_all(&self.folder).map_err(GuestRootError::Create)?;
        GuestRoot::create_in(&self.folder, mount_points)
    }

    /// Removes `path` and everything in it on a thread of its own (here if none can be
    /// started): a guest may have left many files, which the guest that asked for a root
    /// should not wait for.
    fn remove_in_background(&self, path: PathBuf) {
        let remove = move || {
            if let Err(error) = std::fs::remove_dir_all(&path) {
                tracing::warn!(%error, path = %path.display(), "could not remove a guest root a gone process left");
            }
        };
        match std::thread::Builder::new().name("soulbox-sweep".into()).spawn(remove.clone()) {
            Ok(thread) => {
                let mut removals = self.removals.lock().unwrap_or_else(|e| e.into_inner());
                // Finished ones are let go (their threads' resources freed), running ones kept.
                removals.retain(|thread| !thread.is_finished());
                removals.push(thread);
            }
            Err(error) => {
                tracing::warn!(%error, "no thread to remove a guest root; removing it now");
                remove();
            }
        }
    }

    /// Waits for the removals [`ScratchClaim::guest_root`] started.
    #[cfg(test)]
    fn wait_for_removals(&self) {
        let removals = std::mem::take(&mut *self.removals.lock().unwrap());
        removals.into_iter().for_each(|thread| thread.join().unwrap());
    }
}

/// A sweep of dead processes' guest folders running on its own thread
/// ([`SoulboxHome::sweep_in_background`]).
#[derive(Debug)]
pub struct Sweep(Mutex<SweepState>);

#[derive(Debug)]
enum SweepState {
    Running(std::thread::JoinHandle<usize>),
    /// How many folders it removed (none if its thread panicked).
    Done(usize),
}

impl Sweep {
    /// Waits for the sweep to end; returns how many folders it removed.
    pub fn wait(&self) -> usize {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let swept = match std::mem::replace(&mut *state, SweepState::Done(0)) {
            SweepState::Running(thread) => thread.join().unwrap_or(0),
            SweepState::Done(swept) => swept,
        };
        *state = SweepState::Done(swept);
        swept
    }
}

/// The environment variable that overrides the home directory.
pub const HOME_ENV: &str = "SOULBOX_HOME";

/// The home directory and the paths inside it.
#[derive(Debug, Clone)]
pub struct SoulboxHome {
    root: PathBuf,
}

impl SoulboxHome {
    /// `$SOULBOX_HOME` if set, else `<user data dir>/soulbox`, else `./.soulbox`.
    pub fn from_env() -> Self {
        let root = std::env::var_os(HOME_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| dirs::data_dir().map(|d| d.join("soulbox")))
            .unwrap_or_else(|| PathBuf::from(".soulbox"));
        SoulboxHome { root }
    }

    /// A home at an explicit directory.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        SoulboxHome { root: root.into() }
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where one runtime package is installed.
    pub fn runtime_dir(&self, dir_name: &str) -> PathBuf {
        self.root.join("runtimes").join(dir_name)
    }

    /// Pre-initialized snapshot modules.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.root.join("cache").join("snapshots")
    }

    /// Compiled modules.
    pub fn module_dir(&self) -> PathBuf {
        self.root.join("cache").join("modules")
    }

    /// Pure-Python package sets ([`crate::packages`]).
    pub fn packages_dir(&self) -> PathBuf {
        self.root.join("cache").join("packages")
    }

    /// Where all processes keep guest roots.
    pub fn scratch_dir(&self) -> PathBuf {
        self.root.join("scratch")
    }

    /// This process's guest roots.
    pub fn process_scratch_dir(&self) -> PathBuf {
        self.scratch_dir().join(std::process::id().to_string())
    }

    /// Claims [`SoulboxHome::process_scratch_dir`] for this process: an exclusive lock on
    /// `scratch/<pid>.lock`, held until the process exits, tells sweepers the folder is in use.
    /// Claiming again (another backend on the same home) returns the same claim.
    pub fn claim_scratch(&self) -> std::io::Result<Arc<ScratchClaim>> {
        static CLAIMS: Mutex<BTreeMap<PathBuf, Arc<ScratchClaim>>> = Mutex::new(BTreeMap::new());
        let mut claims = CLAIMS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(claim) = claims.get(&self.root) {
            return Ok(Arc::clone(claim));
        }
        let claim = Arc::new(self.lock_scratch()?);
        claims.insert(self.root.clone(), Arc::clone(&claim));
        Ok(claim)
    }

    fn lock_scratch(&self) -> std::io::Result<ScratchClaim> {
        let scratch = self.scratch_dir();
        std::fs::create_dir_all(&scratch)?;
        let folder = self.process_scratch_dir();
        let lock_path = folder.with_extension("lock");
        if let Some(claim) = self.take_over_dead(&folder, &lock_path) {
            return Ok(claim);
        }
        loop {
            let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
            // Not a blocking lock: a sweeper may hold the file (an earlier process's with this
            // pid) and remove it, and a starting process may take it over, as a dead one's, and
            // keep it. Either way the name is free again soon, for a new file.
            if !is_locked_as(&lock, &lock_path)? {
                std::thread::sleep(CLAIM_RETRY);
                continue;
            }
            std::fs::create_dir_all(&folder)?;
            return Ok(ScratchClaim::new(lock, folder, Vec::new()));
        }
    }

    /// Takes over the folder of one process that is gone, as `folder` with its lock at
    /// `lock_path`: locks its lock file (as a sweeper would), links the file as `lock_path`,
    /// renames the folder, then unlinks the file's old name; nothing is replaced, and the folder
    /// is named by a lock file throughout (the module's invariant). Only when nothing is named
    /// for this pid yet (an earlier process with the same pid may have left its folder: the
    /// plain claim takes that). `None` if no folder could be taken; one that could not be is
    /// left to the sweep.
    fn take_over_dead(&self, folder: &Path, lock_path: &Path) -> Option<ScratchClaim> {
        if lock_path.symlink_metadata().is_ok() || folder.symlink_metadata().is_ok() {
            return None;
        }
        for entry in std::fs::read_dir(self.scratch_dir()).ok()?.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "lock") || path == lock_path {
                continue;
            }
            let Some(lock) = lock_if_dead(&path) else { continue };
            // Holding the lock: no sweeper removes the folder, no other process takes it. Both
            // names are the held file from here until the old one goes (`link` replaces nothing).
            if std::fs::hard_link(&path, lock_path).is_err() {
                continue;
            }
            let dead_folder = path.with_extension("");
            let adoptable = match rename_new(&dead_folder, folder) {
                Ok(()) => guest_roots_in(folder),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(_) => {
                    let _ = std::fs::remove_file(lock_path);
                    continue;
                }
            };
            // Left, the old name would stay locked with the new one until this process exits,
            // and then be swept with no folder of its own.
            let _ = std::fs::remove_file(&path);
            return Some(ScratchClaim::new(lock, folder.to_path_buf(), adoptable));
        }
        None
    }

    /// Starts [`SoulboxHome::sweep_dead_scratch`] on a thread of its own (sweeps at once if no
    /// thread can be started).
    pub fn sweep_in_background(&self) -> Sweep {
        let home = self.clone();
        let sweep = move || {
            let swept = home.sweep_dead_scratch();
            if swept > 0 {
                tracing::info!(swept, "removed guest files left by processes that died");
            }
            swept
        };
        let state = match std::thread::Builder::new().name("soulbox-sweep".into()).spawn(sweep.clone()) {
            Ok(thread) => SweepState::Running(thread),
            Err(error) => {
                tracing::warn!(%error, "no thread for the scratch sweep; sweeping now");
                SweepState::Done(sweep())
            }
        };
        Sweep(Mutex::new(state))
    }

    /// Removes the guest-root folders of processes that no longer hold their claim (a killed
    /// process leaves its guests' files behind). Returns how many were removed.
    pub fn sweep_dead_scratch(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(self.scratch_dir()) else { return 0 };
        let mut swept = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "lock") {
                continue;
            }
            // Locked and still under that name (a starting process may have taken it over).
            if let Some(_lock) = lock_if_dead(&path) {
                let folder = path.with_extension("");
                if !folder.exists() || std::fs::remove_dir_all(&folder).is_ok() {
                    let _ = std::fs::remove_file(&path);
                    swept += 1;
                }
            }
        }
        swept
    }
}

/// How long a claim waits before trying again for its lock file, which a sweeper or a
/// starting process holds.
const CLAIM_RETRY: std::time::Duration = std::time::Duration::from_millis(1);

/// The lock file at `path`, locked, if no process holds it (its process is gone) and it is
/// still there under that name (a sweeper removes the file after the folder, holding it; a
/// starting process that takes it over removes its old name, holding it).
fn lock_if_dead(path: &Path) -> Option<std::fs::File> {
    let lock = std::fs::OpenOptions::new().write(true).open(path).ok()?;
    is_locked_as(&lock, path).ok()?.then_some(lock)
}

/// Takes `lock`'s lock without waiting; whether it got it and `lock` is still the file at `path`.
fn is_locked_as(lock: &std::fs::File, path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt as _;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
        Err(std::fs::TryLockError::Error(error)) => return Err(error),
    }
    let held = lock.metadata()?;
    Ok(path.symlink_metadata().is_ok_and(|named| named.dev() == held.dev() && named.ino() == held.ino()))
}

/// Renames `from` to `to`, failing rather than replacing anything at `to`.
fn rename_new(from: &Path, to: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    Ok(renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE)?)
}

/// The guest roots (directories named with [`ROOT_PREFIX`]) in `folder`.
fn guest_roots_in(folder: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.file_name().as_encoded_bytes().starts_with(ROOT_PREFIX.as_bytes()))
        .map(|e| e.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch folder as a process that died leaves it: a guest root as new, and one its guest
    /// left a file in.
    fn dead_process(home: &SoulboxHome, pid: u32) -> (std::ffi::OsString, std::ffi::OsString) {
        let folder = home.scratch_dir().join(pid.to_string());
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.with_extension("lock"), b"").unwrap();
        let left = |file: Option<&str>| {
            let root = GuestRoot::create_in(&folder, &["usr/local/lib"]).unwrap();
            let path = root.host_path();
            std::mem::forget(root);
            if let Some(file) = file {
                std::fs::write(path.join(file), b"left").unwrap();
            }
            path.file_name().unwrap().to_owned()
        };
        (left(None), left(Some("tmp/secret")))
    }

    #[test]
    fn a_dead_processs_folder_is_taken_over_and_its_clean_root_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let home = SoulboxHome::at(dir.path());
        let dead = u32::MAX - 1;
        let (clean, dirty) = dead_process(&home, dead);
        let claim = home.claim_scratch().unwrap();
        let (mine, dead_folder) = (home.process_scratch_dir(), home.scratch_dir().join(dead.to_string()));
        assert!(!dead_folder.exists() && !dead_folder.with_extension("lock").exists());
        assert!(mine.join(&clean).exists() && mine.join(&dirty).exists());
        // The lock was taken over with the folder: a sweeper cannot take it.
        let lock = std::fs::OpenOptions::new().write(true).open(mine.with_extension("lock")).unwrap();
        assert!(lock.try_lock().is_err());
        assert_eq!(home.sweep_dead_scratch(), 0);

        let first = claim.guest_root(&["usr/local/lib"]).unwrap();
        let second = claim.guest_root(&["usr/local/lib"]).unwrap();
        claim.wait_for_removals();
        assert_eq!(first.host_path().file_name(), Some(clean.as_os_str()), "the clean root adopted");
        assert!(!mine.join(&dirty).exists(), "the root with a file left is removed");
        assert_eq!(second.host_path().parent(), Some(mine.as_path()));
        assert!(![clean, dirty].contains(&second.host_path().file_name().unwrap().to_owned()), "a new root");
        assert_eq!(std::fs::read_dir(second.host_path().join("tmp")).unwrap().count(), 0);
    }

    /// What a take-over leaves at each step, were its process killed there: the lock file
    /// under both pids' names, the folder under the old pid's or the new one's.
    #[test]
    fn a_take_over_stopped_midway_is_left_alone_while_its_process_lives_and_swept_after() {
        for moved in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let home = SoulboxHome::at(dir.path());
            let (dead, taker) = (u32::MAX - 3, u32::MAX - 4);
            dead_process(&home, dead);
            let dead_folder = home.scratch_dir().join(dead.to_string());
            let taker_folder = home.scratch_dir().join(taker.to_string());
            std::fs::hard_link(dead_folder.with_extension("lock"), taker_folder.with_extension("lock")).unwrap();
            let held = std::fs::OpenOptions::new().write(true).open(taker_folder.with_extension("lock")).unwrap();
            held.lock().unwrap();
            if moved {
                std::fs::rename(&dead_folder, &taker_folder).unwrap();
            }
            assert_eq!(home.sweep_dead_scratch(), 0, "the taker lives (folder moved: {moved})");
            assert_eq!(std::fs::read_dir(home.scratch_dir()).unwrap().count(), 3);
            drop(held);
            assert_eq!(home.sweep_dead_scratch(), 2, "folder moved: {moved}");
            assert_eq!(std::fs::read_dir(home.scratch_dir()).unwrap().count(), 0, "folder moved: {moved}");
        }
    }

    #[test]
    fn a_folder_whose_process_lives_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let home = SoulboxHome::at(dir.path());
        let alive = u32::MAX - 2;
        dead_process(&home, alive);
        let lock_path = home.scratch_dir().join(format!("{alive}.lock"));
        let held = std::fs::OpenOptions::new().write(true).open(&lock_path).unwrap();
        held.lock().unwrap();
        let claim = home.claim_scratch().unwrap();
        assert!(lock_path.exists() && home.scratch_dir().join(alive.to_string()).exists());
        let root = claim.guest_root(&["usr/local/lib"]).unwrap();
        assert_eq!(root.host_path().parent(), Some(home.process_scratch_dir().as_path()));
    }

    #[test]
    fn a_claim_does_not_wait_on_a_lock_file_a_starting_process_took_over() {
        let dir = tempfile::tempdir().unwrap();
        let home = SoulboxHome::at(dir.path());
        // An earlier process with this pid left its lock file, which a starting process has
        // locked to take it over (and keeps, renamed, for its whole life).
        std::fs::create_dir_all(home.scratch_dir()).unwrap();
        let mine = home.process_scratch_dir().with_extension("lock");
        std::fs::write(&mine, b"").unwrap();
        let taker = std::fs::OpenOptions::new().write(true).open(&mine).unwrap();
        taker.lock().unwrap();
        let claiming = std::thread::spawn({
            let home = home.clone();
            move || home.claim_scratch().map(|_| ())
        });
        std::fs::rename(&mine, home.scratch_dir().join("1.lock")).unwrap();
        claiming.join().unwrap().unwrap();
        let fresh = std::fs::OpenOptions::new().write(true).open(&mine).unwrap();
        assert!(fresh.try_lock().is_err(), "the claim holds a lock file of its own");
    }
}

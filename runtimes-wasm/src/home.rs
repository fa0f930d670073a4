//! Where SoulBox keeps runtimes, caches and guest scratch directories.
//!
//! Layout under the home directory (`$SOULBOX_HOME`, else `<user data dir>/soulbox`):
//!
//! ```text
//! runtimes/<package>-<version>/   verified interpreter files, plus `.installed` once complete
//! cache/snapshots/<key>.wasm      pre-initialized modules built here (Wizer)
//! cache/modules/<key>.cwasm       compiled modules, each with a `.b3` checksum beside it
//! scratch/<pid>/                  this process's guest roots (each deleted after its execution)
//! scratch/<pid>.lock              locked while that process lives; folders whose lock is free
//!                                 (their process died) are swept at start-up
//! ```
//!
//! The start-up sweep runs on a thread of its own ([`SoulboxHome::sweep_in_background`]):
//! nothing a process does depends on another's leftovers being gone, and removing folders is
//! slow where the filesystem is mounted with `discard` (each freed block waits for the device:
//! about a millisecond of a one-shot `soulbox run`, which leaves its own folder for the next).
//! A process that exits mid-sweep leaves the rest to the next one: a folder's lock file is
//! removed only after the folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A held claim on this process's scratch folder (see [`SoulboxHome::claim_scratch`]).
#[derive(Debug)]
pub struct ScratchClaim {
    _lock: std::fs::File,
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
        let lock_path = scratch.join(format!("{}.lock", std::process::id()));
        loop {
            let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
            lock.lock()?;
            // A sweeper may have removed the file while we waited for its lock: start over.
            if lock_path.exists() {
                std::fs::create_dir_all(self.process_scratch_dir())?;
                return Ok(ScratchClaim { _lock: lock });
            }
        }
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
            let Ok(lock) = std::fs::OpenOptions::new().write(true).open(&path) else { continue };
            if lock.try_lock().is_ok() {
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

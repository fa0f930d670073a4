//! Where SoulBox keeps runtimes, caches and guest scratch directories.
//!
//! Layout under the home directory (`$SOULBOX_HOME`, else `<user data dir>/soulbox`):
//!
//! ```text
//! runtimes/<package>-<version>/   verified interpreter files, plus `.installed` once complete
//! cache/snapshots/<key>.wasm      pre-initialized modules built here (Wizer)
//! cache/modules/<key>.cwasm       compiled modules, each with a `.b3` checksum beside it
//! scratch/<pid>/                  this process's guest roots (each deleted after its execution;
//!                                 folders of processes that died are swept at start-up)
//! ```

use std::path::{Path, PathBuf};

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

    /// Where all processes keep guest roots.
    pub fn scratch_dir(&self) -> PathBuf {
        self.root.join("scratch")
    }

    /// This process's guest roots.
    pub fn process_scratch_dir(&self) -> PathBuf {
        self.scratch_dir().join(std::process::id().to_string())
    }

    /// Removes the guest-root folders of processes that no longer run (a killed process leaves
    /// its guests' files behind). Returns how many were removed.
    pub fn sweep_dead_scratch(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(self.scratch_dir()) else { return 0 };
        let dead = |name: &str| name.parse::<u32>().is_ok_and(|pid| !Path::new("/proc").join(pid.to_string()).exists());
        entries
            .flatten()
            .filter(|e| dead(&e.file_name().to_string_lossy()))
            .filter(|e| std::fs::remove_dir_all(e.path()).is_ok())
            .count()
    }
}

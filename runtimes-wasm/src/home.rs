//! Where SoulBox keeps runtimes, caches and guest scratch directories.
//!
//! Layout under the home directory (`$SOULBOX_HOME`, else `<user data dir>/soulbox`):
//!
//! ```text
//! runtimes/<package>-<version>/   verified interpreter files, plus `.installed` once complete
//! cache/snapshots/<key>.wasm      pre-initialized modules built here (Wizer)
//! cache/modules/<key>.cwasm       compiled modules, each with a `.b3` checksum beside it
//! scratch/                        per-execution guest roots (deleted after each execution)
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

    /// Per-execution guest roots.
    pub fn scratch_dir(&self) -> PathBuf {
        self.root.join("scratch")
    }
}

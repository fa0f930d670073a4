//! The compiled-module cache on disk.
//!
//! A compiled module is stored at `cache/modules/<name>-<engine>-<key>.cwasm`: `<engine>` is a
//! digest of the engine fingerprint (wasmtime version + compilation settings) and `<key>` a
//! blake3 digest of the wasm's content hash, what SoulBox did to it, and that fingerprint.
//! Storing a module removes the same name's older modules for the same engine (left by an
//! earlier recipe), so upgrades do not pile up 300 MB files.
//!
//! Beside each module, `<...>.cwasm.b3` holds the blake3 of its bytes and a stamp of the file's
//! metadata (length, mtime, ctime, inode) taken when those bytes were last hashed. A module is
//! loaded only if wasmtime accepts it and either the stamp still matches (the file has not been
//! touched since it was hashed, so hashing 300 MB again on every process start is skipped) or
//! its bytes hash to the checksum again. Anything else (missing, truncated, rewritten, corrupt,
//! built by another engine) is deleted and compiled again. Media corruption that leaves a file's
//! metadata untouched is the one case not re-hashed. Writes go to a temporary file that is
//! renamed into place, so a crash never leaves a half-written module under the final name.

// Loading a compiled module is `unsafe` in wasmtime: this module is the one place SoulBox
// does it, after checking the file (see each `unsafe` block's safety comment).
#![allow(unsafe_code)]

use crate::error::RuntimeError;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::Duration;
use wasmtime::{Engine, Module};

/// The on-disk store of compiled modules for one engine.
#[derive(Debug, Clone)]
pub struct ModuleCache {
    dir: PathBuf,
    fingerprint: String,
    progress: bool,
}

/// A cache key: which module, from which content, prepared how.
#[derive(Debug, Clone)]
pub struct ModuleKey {
    /// Readable prefix of the file name (`python`, `javascript`).
    pub name: String,
    /// Digest of the wasm's identity (content hash plus recipe).
    pub content: String,
}

impl ModuleCache {
    /// A cache in `dir` for modules compiled by `engine`. With `progress`, long compiles show a
    /// spinner on stderr.
    pub fn new(dir: PathBuf, engine: &Engine, progress: bool) -> Self {
        ModuleCache { dir, fingerprint: crate::engine_config::EngineSettings::fingerprint(engine), progress }
    }

    /// The compiled module for `key`: loaded from disk when a valid copy exists, else compiled
    /// from the bytes `wasm` produces and stored.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        key: &ModuleKey,
        wasm: impl FnOnce() -> Result<Vec<u8>, RuntimeError>,
    ) -> Result<Module, RuntimeError> {
        let path = self.path_for(key);
        if let Some(module) = self.load(engine, &path) {
            return Ok(module);
        }
        let bytes = wasm()?;
        let spinner = self.spinner(&key.name, bytes.len());
        let compiled = engine.precompile_module(&bytes).map_err(|e| RuntimeError::wasm(&e))?;
        spinner.finish_and_clear();
        self.store(&path, &compiled)?;
        remove_stale(&self.dir, &self.prefix_for(key), &path);
        // SAFETY: `compiled` was produced just now by `engine` itself.
        unsafe { Module::deserialize(engine, &compiled) }.map_err(|e| RuntimeError::wasm(&e))
    }

    /// `<name>-<engine>-`: the file-name prefix shared by every module of this name compiled
    /// by this engine configuration.
    fn prefix_for(&self, key: &ModuleKey) -> String {
        format!("{}-{}-", key.name, &blake3::hash(self.fingerprint.as_bytes()).to_hex()[..8])
    }

    fn path_for(&self, key: &ModuleKey) -> PathBuf {
        let digest = blake3::hash(format!("{}\n{}\n{}", key.name, key.content, self.fingerprint).as_bytes());
        self.dir.join(format!("{}{}.cwasm", self.prefix_for(key), &digest.to_hex()[..32]))
    }

    /// Loads `path` if its checksum matches and wasmtime accepts it; otherwise removes it.
    fn load(&self, engine: &Engine, path: &Path) -> Option<Module> {
        if !path.exists() || !checksum_path(path).exists() {
            return None; // absent, or another process is still writing it
        }
        match self.verified_load(engine, path) {
            Ok(module) => Some(module),
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "discarding cached module; recompiling");
                let _ = std::fs::remove_file(path);
                let _ = std::fs::remove_file(checksum_path(path));
                None
            }
        }
    }

    fn verified_load(&self, engine: &Engine, path: &Path) -> Result<Module, String> {
        let sidecar = std::fs::read_to_string(checksum_path(path)).map_err(|e| format!("no checksum: {e}"))?;
        let (expected, hashed_at) = sidecar.split_once('\n').unwrap_or((sidecar.as_str(), ""));
        let now = stamp(path).map_err(|e| format!("unreadable: {e}"))?;
        if hashed_at.trim() != now {
            let mut hasher = blake3::Hasher::new();
            hasher.update_mmap_rayon(path).map_err(|e| format!("unreadable: {e}"))?;
            if hasher.finalize().to_hex().as_str() != expected.trim() {
                return Err("checksum mismatch".into());
            }
            // The bytes are intact (say, the file was copied): remember that for next time.
            let _ = atomic_write(&checksum_path(path), format!("{}\n{now}\n", expected.trim()).as_bytes());
        }
        // SAFETY: the file's bytes hashed to the checksum written when SoulBox compiled it, and
        // its metadata is unchanged since (or it was hashed just now), in a directory only
        // SoulBox writes; wasmtime further checks that it was built by a compatible engine. The
        // file is never modified in place (only replaced by rename), so the mapping stays valid.
        unsafe { Module::deserialize_file(engine, path) }.map_err(|e| format!("{e:#}"))
    }

    /// Writes the checksum first and the module second, so a reader (another process) never
    /// sees a module without its checksum; the stamp is added last and only saves re-hashing.
    fn store(&self, path: &Path, compiled: &[u8]) -> Result<(), RuntimeError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| RuntimeError::io(&self.dir, e))?;
        let checksum = blake3::hash(compiled).to_hex().to_string();
        atomic_write(&checksum_path(path), format!("{checksum}\n").as_bytes())?;
        atomic_write(path, compiled)?;
        if let Ok(hashed_at) = stamp(path) {
            atomic_write(&checksum_path(path), format!("{checksum}\n{hashed_at}\n").as_bytes())?;
        }
        Ok(())
    }

    fn spinner(&self, name: &str, bytes: usize) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let spinner = ProgressBar::new_spinner();
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        spinner.set_message(format!("compiling {name} ({} MB of wasm, once; cached afterwards)", bytes >> 20));
        spinner.enable_steady_tick(Duration::from_millis(200));
        spinner
    }
}

/// The metadata that changes whenever a file is written, truncated or replaced.
fn stamp(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(format!(
        "len={} mtime={}.{} ctime={}.{} ino={}",
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.ino()
    ))
}

/// Removes the files in `dir` named `prefix` then a digest (no further `-`: `python-` is not
/// the prefix of `python-plain-…`, another name's files), except `keep` (and its `.b3`).
pub(crate) fn remove_stale(dir: &Path, prefix: &str, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let keep_sidecar = checksum_path(keep);
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let same_name = name.strip_prefix(prefix).is_some_and(|rest| !rest.contains('-'));
        let stale = same_name && path != keep && path != keep_sidecar;
        if stale && std::fs::remove_file(&path).is_ok() {
            tracing::info!(path = %path.display(), "removed a stale cached module");
        }
    }
}

fn checksum_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".b3");
    PathBuf::from(name)
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| RuntimeError::io(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| RuntimeError::io(dir, e))?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(|e| RuntimeError::io(path, e))?;
    tmp.persist(path).map_err(|e| RuntimeError::io(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_files_are_those_of_the_same_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["python-aaaa.wasm", "python-aaaa.wasm.b3", "python-bbbb.wasm", "python-bbbb.wasm.b3"];
        let others = ["python-plain-cccc.wasm", "python-plain-cccc.wasm.b3", "javascript-dddd.wasm"];
        for name in names.iter().chain(&others) {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        remove_stale(dir.path(), "python-", &dir.path().join("python-bbbb.wasm"));
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected: Vec<String> =
            ["python-bbbb.wasm", "python-bbbb.wasm.b3"].iter().chain(&others).map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(left, expected, "the older python file went; another name's files stayed");
    }
}

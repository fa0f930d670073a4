//! Pure-Python packages bundled with the Python runtime: importable by every Python guest.
//!
//! The interpreter has the scientific stack compiled in (numpy, pandas, scipy, scikit-learn,
//! statsmodels, matplotlib, seaborn, sympy, networkx, lxml, openpyxl and more), but not the
//! HTTP clients models reach for first. `runtimes.toml` pins those (`[[bundled]]`: `requests`,
//! `httpx` and their dependencies, `pytz`) by wheel and SHA-256. `soulbox runtimes fetch`
//! downloads them (`pip download --no-deps`, for any platform, pure wheels only) or takes them
//! from its `--from` directory, checks each against its hash and again for native code and
//! paths leaving the directory (the same checks as requested packages, `packages.rs`), and
//! unpacks them into the runtime's `lib/site-packages`, replacing any earlier set whole; a
//! marker holding the set's key says it is complete. The wheels are kept in the runtime's
//! `bundled-wheels`, so a machine without an index can be fetched from another's.
//!
//! A guest sees that directory read-only at [`GUEST_DIR`] (inside the stdlib mount, so the
//! preopens are unchanged), last on `sys.path`: the interpreter's own packages and a request's
//! packages (`/usr/soulbox/site-packages`, first) win over it. Their bytecode is compiled once
//! per home, by the backend's first Python execution (`execution.rs`, the same turn that
//! compiles requested sets), so guests import them without compiling. `requests` and `httpx`
//! make their requests through the host (`net.py`) under the execution's network policy.

use crate::error::RuntimeError;
use crate::fetch::{FetchSource, Progress};
use crate::manifest::{BundledWheel, bundled};
use crate::verify::sha256_file;
use std::path::{Path, PathBuf};

/// Where a guest sees the bundled packages.
pub const GUEST_DIR: &str = "/usr/local/lib/site-packages";
/// Where they are unpacked, relative to the Python runtime's directory.
const DIR: &str = "lib/site-packages";
/// The file in [`DIR`] that holds the key of the set unpacked there, written last.
const MARKER: &str = ".soulbox-bundled";
/// Where the verified wheels are kept, relative to the runtime's directory (outside the
/// guest's mounts): another home can be fetched from them (`--from`).
const WHEELS: &str = "bundled-wheels";

/// The verified wheels kept in the Python runtime installed at `runtime_dir`.
pub fn wheels_dir(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(WHEELS)
}

/// The bundled set's directory in the Python runtime installed at `runtime_dir`.
pub fn site(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(DIR)
}

/// What identifies the pinned set: a hash of its wheels' hashes.
pub fn key() -> String {
    let hashes: Vec<&str> = bundled().iter().map(|b| b.sha256.as_str()).collect();
    blake3::hash(hashes.join("\n").as_bytes()).to_hex().to_string()
}

/// Whether the pinned set is unpacked, complete, in the runtime at `runtime_dir`.
pub fn is_installed(runtime_dir: &Path) -> bool {
    std::fs::read_to_string(site(runtime_dir).join(MARKER)).is_ok_and(|k| k.trim() == key())
}

/// Installs the pinned set into the runtime at `runtime_dir` unless it is there already;
/// whether it installed it now.
pub fn install(runtime_dir: &Path, source: &FetchSource, progress: Progress) -> Result<bool, RuntimeError> {
    if is_installed(runtime_dir) {
        return Ok(false);
    }
    let lib = runtime_dir.join("lib");
    std::fs::create_dir_all(&lib).map_err(|e| RuntimeError::io(&lib, e))?;
    let staging = tempfile::tempdir_in(&lib).map_err(|e| RuntimeError::io(&lib, e))?;
    let wheels = match source {
        FetchSource::Pip { python } => {
            let into = staging.path().join("wheels");
            pip_download(python, &into, progress)?;
            into
        }
        FetchSource::Directory(from) => from.clone(),
    };
    let unpacked = staging.path().join("site");
    std::fs::create_dir_all(&unpacked).map_err(|e| RuntimeError::io(&unpacked, e))?;
    let kept = wheels_dir(runtime_dir);
    std::fs::create_dir_all(&kept).map_err(|e| RuntimeError::io(&kept, e))?;
    let mut total = 0;
    for wanted in bundled() {
        let wheel = verified(&wheels, wanted)?;
        crate::packages::unpack(&wheel, &unpacked, &mut total)?;
        let keep = kept.join(&wanted.wheel);
        if wheel != keep {
            std::fs::copy(&wheel, &keep).map_err(|e| RuntimeError::io(&keep, e))?;
        }
    }
    let marker = unpacked.join(MARKER);
    std::fs::write(&marker, format!("{}\n", key())).map_err(|e| RuntimeError::io(&marker, e))?;
    let site = site(runtime_dir);
    if site.exists() {
        std::fs::remove_dir_all(&site).map_err(|e| RuntimeError::io(&site, e))?;
    }
    std::fs::rename(&unpacked, &site).map_err(|e| RuntimeError::io(&site, e))?;
    Ok(true)
}

/// The wheel `wanted` in `dir`, checked against its pinned hash.
fn verified(dir: &Path, wanted: &BundledWheel) -> Result<PathBuf, RuntimeError> {
    let wheel = dir.join(&wanted.wheel);
    if !wheel.is_file() {
        return Err(RuntimeError::Fetch(format!(
            "{} lacks `{}`; put the wheels from `pip download --no-deps {}` there",
            dir.display(),
            wanted.wheel,
            wanted.requirement()
        )));
    }
    let got = sha256_file(&wheel)?;
    if got != wanted.sha256 {
        return Err(RuntimeError::Tampered { path: wheel, expected: wanted.sha256.clone(), got });
    }
    Ok(wheel)
}

/// Pure wheels for CPython 3.15 on any platform (the guest's).
const PURE_WHEELS: [&str; 8] =
    ["--platform", "any", "--implementation", "py", "--abi", "none", "--python-version", "3.15"];

fn pip_download(python: &str, into: &Path, progress: Progress) -> Result<(), RuntimeError> {
    let requirements: Vec<String> = bundled().iter().map(BundledWheel::requirement).collect();
    crate::fetch::pip_download_wheels(python, into, &requirements, &PURE_WHEELS, progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_of_the_pinned_wheels_is_required_and_a_wrong_wheel_is_refused() {
        let runtime = tempfile::tempdir().unwrap();
        let wheels = tempfile::tempdir().unwrap();
        let source = FetchSource::Directory(wheels.path().to_path_buf());
        let missing = install(runtime.path(), &source, Progress::Quiet).unwrap_err();
        assert!(missing.to_string().contains("lacks `anyio-"), "{missing}");
        std::fs::write(wheels.path().join(&bundled()[0].wheel), b"not the pinned wheel").unwrap();
        let tampered = install(runtime.path(), &source, Progress::Quiet).unwrap_err();
        assert!(matches!(tampered, RuntimeError::Tampered { .. }), "{tampered}");
        assert!(!is_installed(runtime.path()) && !site(runtime.path()).exists(), "nothing half-installed");
    }
}

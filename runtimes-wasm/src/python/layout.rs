//! The guest file system and environment CPython expects.
//!
//! Preopens, always in this order (the snapshot records wasi-libc's preopen table, so every
//! instance must get the same set in the same order):
//!
//! 1. `/usr/local/lib`, read-only: the stdlib zip, installed as `lib/python315.zip`.
//! 2. `/usr/local/lib/python315.zip/matplotlib/mpl-data`, read-only: matplotlib's data,
//!    extracted once from the zip's inner `matplotlib/mpl-data.zip` (wasi-libc picks a preopen
//!    by the longest guest prefix, so this shadows the path inside the zip).
//! 3. `/`, read-write: the execution's guest root ([`soulbox_host_api::GuestRoot`]).

use crate::error::RuntimeError;
use soulbox_host_api::ReadOnlyMount;
use std::io::Read;
use std::path::Path;

/// `argv[0]` the guest sees.
pub const ARGV0: &str = "/usr/local/bin/python.wasm";
/// Guest path of the stdlib directory.
pub const STDLIB_GUEST: &str = "/usr/local/lib";
/// Guest path of matplotlib's data directory.
pub const MPL_DATA_GUEST: &str = "/usr/local/lib/python315.zip/matplotlib/mpl-data";
/// Directories made in every guest root so the mounts have a parent.
pub const MOUNT_POINTS: [&str; 1] = ["usr/local/lib"];
/// The environment every Python guest starts with; a request's env is laid over it.
pub const BASE_ENV: [(&str, &str); 5] = [
    ("TMPDIR", "/tmp"),
    ("PYTHONTZPATH", ""),
    ("HOME", "/tmp"),
    ("MPLCONFIGDIR", "/tmp/matplotlib"),
    ("MPLBACKEND", "Agg"),
];
/// Where matplotlib's data is extracted, relative to the runtime directory.
const MPL_DATA_DIR: &str = "mpl-data";
/// The inner archive holding matplotlib's data.
const MPL_DATA_MEMBER: &str = "matplotlib/mpl-data.zip";
/// The stdlib zip, relative to the runtime directory.
pub const STDLIB_ZIP: &str = "lib/python315.zip";

/// The read-only mounts for a runtime installed in `dir`, in preopen order.
pub fn mounts(dir: &Path) -> Vec<ReadOnlyMount> {
    vec![
        ReadOnlyMount { host: dir.join("lib"), guest: STDLIB_GUEST.into() },
        ReadOnlyMount { host: dir.join(MPL_DATA_DIR), guest: MPL_DATA_GUEST.into() },
    ]
}

/// Extracts matplotlib's data from the installed stdlib zip into `dir/mpl-data`, replacing any
/// earlier copy. Member names that would leave the directory are refused.
pub fn extract_mpl_data(dir: &Path) -> Result<(), RuntimeError> {
    let zip_path = dir.join(STDLIB_ZIP);
    let bad = |e: zip::result::ZipError| RuntimeError::Fetch(format!("{}: {e}", zip_path.display()));
    let file = std::fs::File::open(&zip_path).map_err(|e| RuntimeError::io(&zip_path, e))?;
    let mut stdlib = zip::ZipArchive::new(file).map_err(bad)?;
    let mut inner = Vec::new();
    stdlib
        .by_name(MPL_DATA_MEMBER)
        .map_err(bad)?
        .read_to_end(&mut inner)
        .map_err(|e| RuntimeError::io(&zip_path, e))?;
    let mut data = zip::ZipArchive::new(std::io::Cursor::new(inner)).map_err(bad)?;
    let staging = tempfile::tempdir_in(dir).map_err(|e| RuntimeError::io(dir, e))?;
    data.extract(staging.path()).map_err(bad)?;
    let target = dir.join(MPL_DATA_DIR);
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(|e| RuntimeError::io(&target, e))?;
    }
    std::fs::rename(staging.keep(), &target).map_err(|e| RuntimeError::io(&target, e))
}

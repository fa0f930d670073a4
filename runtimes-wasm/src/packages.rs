//! Pure-Python packages for Python guests: resolved on the host with pip, verified, cached by
//! hash, and copied where guests import them.
//!
//! A request's or a sandbox's `packages` (pip requirements, `requests==2.*`) are resolved by
//! the host's pip (`python3 -m pip download`, with pip's own configuration: `pip.conf`,
//! `PIP_INDEX_URL`, `PIP_FIND_LINKS`...) for a pure-Python target only (`--only-binary=:all:
//! --platform any --implementation py --abi none` for CPython 3.15), so a package with native
//! code and no pure wheel is refused by the resolution itself, and the refusal says to use the
//! container backend. Each wheel is checked again (a `none-any` tag, no native library inside,
//! no path leaving the install directory), its SHA-256 recorded in the set's `wheels.json`, and
//! the set unpacked once under `packages/<key>/site` in SoulBox's home, `key` being the hash of
//! the requirements; later requests for the same set use it as is.
//!
//! A guest gets a copy of the set in its own root, at [`GUEST_SITE`] (copies, not links: the
//! root is the guest's to write, the cache is not), first on `sys.path`, ahead of the packages
//! built into the interpreter. The requirements it was made from are written beside it, so a
//! context's `%pip install` ([`pip_magic`]) installs their union with the new ones.

use crate::verify::sha256_bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// Where a guest imports its packages from (in its root, under the reserved `/usr`).
pub const GUEST_SITE: &str = "/usr/soulbox/site-packages";
/// The Python version pip resolves for (the interpreter's).
const TARGET_PYTHON: &str = "3.15";
/// Bumped whenever the way a set is resolved or laid out changes.
const RECIPE: u32 = 1;
/// The largest unpacked set SoulBox installs.
pub const MAX_SET_BYTES: u64 = 256 << 20;
/// Beside a placed set: the requirements it was made from (JSON).
const REQUIREMENTS_FILE: &str = ".soulbox-requirements.json";
/// The most of [`REQUIREMENTS_FILE`] read back.
const MAX_REQUIREMENTS_FILE_BYTES: u64 = 64 << 10;
/// File endings of native code, which no pure-Python wheel holds.
const NATIVE_SUFFIXES: [&str; 4] = [".so", ".pyd", ".dylib", ".dll"];

/// Where packages come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PackageSource {
    /// Nowhere: a request, sandbox or `%pip install` naming packages is refused.
    Disabled,
    /// pip's own configuration: PyPI, or the index `pip.conf` or `PIP_INDEX_URL` names.
    #[default]
    Pip,
    /// Only this directory of wheels (`pip --no-index --find-links`), for air-gapped hosts
    /// and tests.
    Directory(PathBuf),
}

/// Why a package set could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// This backend installs no packages ([`PackageSource::Disabled`]).
    #[error("installing Python packages is not enabled here")]
    Disabled,
    /// pip found no pure-Python wheel for some requirement, or could not resolve them.
    #[error(
        "pip could not install {requirements} for WebAssembly Python: {detail}\nOnly pure-Python packages (wheels tagged `none-any`) can be installed here; a package with native code needs the container backend (`backend: container`)"
    )]
    Unresolved {
        /// The requirements, as given.
        requirements: String,
        /// pip's last words.
        detail: String,
    },
    /// A wheel pip chose is not a pure-Python one, or its contents are unsafe.
    #[error("refused wheel `{wheel}`: {why}")]
    BadWheel {
        /// The wheel's file name.
        wheel: String,
        /// What is wrong with it.
        why: String,
    },
    /// pip could not be run.
    #[error("cannot run `{python} -m pip` to install packages: {source}")]
    NoPip {
        /// The interpreter.
        python: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file operation in the cache or a guest's root failed.
    #[error("installing packages: {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PackageError + '_ {
    move |source| PackageError::Io { path: path.to_path_buf(), source }
}

/// One wheel of an installed set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WheelRecord {
    /// Its file name.
    pub file: String,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
}

/// A package set, unpacked in the cache.
#[derive(Debug)]
pub struct Installed {
    /// The requirements it was made from.
    pub requirements: Vec<String>,
    /// The hash of its requirements (its directory's name).
    pub key: String,
    /// The unpacked files.
    pub site: PathBuf,
    /// Its wheels.
    pub wheels: Vec<WheelRecord>,
}

/// The package cache of a SoulBox home.
#[derive(Debug)]
pub struct Packages {
    dir: PathBuf,
    python: String,
    source: PackageSource,
    known: Mutex<HashMap<String, Arc<Installed>>>,
}

impl Packages {
    /// The cache under `dir`, resolving with `python -m pip` from `source`.
    pub fn new(dir: PathBuf, python: impl Into<String>, source: PackageSource) -> Self {
        Packages { dir, python: python.into(), source, known: Mutex::new(HashMap::new()) }
    }

    /// The set `requirements` names: from the cache, or resolved, verified and unpacked now.
    pub fn resolve(&self, requirements: &[String]) -> Result<Arc<Installed>, PackageError> {
        let index = match &self.source {
            PackageSource::Disabled => return Err(PackageError::Disabled),
            PackageSource::Pip => "pip".to_owned(),
            PackageSource::Directory(dir) => dir.display().to_string(),
        };
        let key = set_key(requirements, &index);
        if let Some(known) = self.known.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(Arc::clone(known));
        }
        let dir = self.dir.join(&key);
        let mut installed = match read_installed(&dir, &key) {
            Some(installed) => installed,
            None => self.install(requirements, &key, &dir)?,
        };
        installed.requirements = requirements.to_vec();
        let installed = Arc::new(installed);
        self.known.lock().unwrap_or_else(|e| e.into_inner()).insert(key, Arc::clone(&installed));
        Ok(installed)
    }

    fn install(&self, requirements: &[String], key: &str, dir: &Path) -> Result<Installed, PackageError> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let work = tempfile::Builder::new().prefix(".install-").tempdir_in(&self.dir).map_err(io(&self.dir))?;
        let (wheels_dir, site) = (work.path().join("wheels"), work.path().join("site"));
        self.pip_download(requirements, &wheels_dir)?;
        let mut wheels = Vec::new();
        let mut total = 0;
        let mut entries: Vec<_> =
            std::fs::read_dir(&wheels_dir).map_err(io(&wheels_dir))?.filter_map(Result::ok).map(|e| e.path()).collect();
        entries.sort();
        for wheel in entries {
            wheels.push(unpack(&wheel, &site, &mut total)?);
        }
        let record = serde_json::to_vec_pretty(&wheels).unwrap_or_default();
        let record_path = work.path().join("wheels.json");
        std::fs::write(&record_path, record).map_err(io(&record_path))?;
        std::fs::remove_dir_all(&wheels_dir).map_err(io(&wheels_dir))?;
        let work = work.keep();
        // Another process may have installed the same set meanwhile: either copy serves.
        if std::fs::rename(&work, dir).is_err() {
            let _ = std::fs::remove_dir_all(&work);
        }
        tracing::info!(key, wheels = wheels.len(), bytes = total, "installed a Python package set");
        read_installed(dir, key).ok_or_else(|| PackageError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::other("the installed set is unreadable"),
        })
    }

    fn pip_download(&self, requirements: &[String], into: &Path) -> Result<(), PackageError> {
        let mut pip = Command::new(&self.python);
        pip.args(["-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:"])
            .args(["--platform", "any", "--implementation", "py", "--abi", "none", "--python-version", TARGET_PYTHON])
            .arg("--dest")
            .arg(into);
        if let PackageSource::Directory(wheels) = &self.source {
            pip.arg("--no-index").arg("--find-links").arg(wheels);
        }
        let output = pip
            .arg("--")
            .args(requirements)
            .output()
            .map_err(|source| PackageError::NoPip { python: self.python.clone(), source })?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let detail = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("pip failed").trim().to_owned();
        Err(PackageError::Unresolved { requirements: requirements.join(", "), detail })
    }
}

/// The cache key of a requirement set from `index` (order and duplicates do not matter). A
/// set is resolved once: pin versions to get the same packages everywhere.
fn set_key(requirements: &[String], index: &str) -> String {
    let mut sorted: Vec<&str> = requirements.iter().map(|r| r.trim()).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let text = format!("recipe {RECIPE}; python {TARGET_PYTHON}; index {index}; {}", sorted.join("\n"));
    blake3::hash(text.as_bytes()).to_hex()[..32].to_owned()
}

fn read_installed(dir: &Path, key: &str) -> Option<Installed> {
    let wheels = serde_json::from_slice(&std::fs::read(dir.join("wheels.json")).ok()?).ok()?;
    let site = dir.join("site");
    site.is_dir().then(|| Installed { requirements: Vec::new(), key: key.to_owned(), site, wheels })
}

/// Checks one wheel and unpacks it into `site`; adds its unpacked size to `total`.
pub(crate) fn unpack(wheel: &Path, site: &Path, total: &mut u64) -> Result<WheelRecord, PackageError> {
    let file = wheel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let bad = |why: String| PackageError::BadWheel { wheel: file.clone(), why };
    let stem = file.strip_suffix(".whl").ok_or_else(|| bad("not a wheel".into()))?;
    let tags: Vec<&str> = stem.rsplitn(4, '-').collect();
    if tags.len() < 4 || tags[1] != "none" || tags[0] != "any" {
        return Err(bad("it is not a pure-Python wheel (its tags are not `none-any`)".into()));
    }
    let bytes = std::fs::read(wheel).map_err(io(wheel))?;
    let sha256 = sha256_bytes(&bytes);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| bad(e.to_string()))?;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| bad(e.to_string()))?;
        let name = entry.name().to_owned();
        let relative = Path::new(&name);
        if !relative.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(bad(format!("its member `{name}` would leave the install directory")));
        }
        if NATIVE_SUFFIXES.iter().any(|s| name.ends_with(s)) || name.contains(".so.") {
            return Err(bad(format!("it holds native code (`{name}`)")));
        }
        let target = site.join(relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(io(&target))?;
            continue;
        }
        *total += entry.size();
        if *total > MAX_SET_BYTES {
            return Err(bad(format!("the set unpacks to more than {MAX_SET_BYTES} bytes")));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut contents = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        entry.read_to_end(&mut contents).map_err(io(&target))?;
        std::fs::write(&target, contents).map_err(io(&target))?;
    }
    Ok(WheelRecord { file, sha256 })
}

/// Copies `installed` into the guest root at `root` (at [`GUEST_SITE`]), through a directory
/// handle, so links a guest left in its root cannot lead the copy out of it. A marker names
/// the set, so a root that has it already is left alone.
pub fn place(installed: &Installed, root: &Path) -> Result<(), PackageError> {
    let dir = cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority()).map_err(io(root))?;
    let site = GUEST_SITE.trim_start_matches('/');
    let marker = format!("{site}/.soulbox-set-{}", installed.key);
    let recorded = format!("{site}/{REQUIREMENTS_FILE}");
    if dir.exists(&marker) {
        return Ok(());
    }
    // A different set placed before is replaced whole.
    if dir.exists(site) {
        dir.remove_dir_all(site).map_err(io(Path::new(GUEST_SITE)))?;
    }
    dir.create_dir_all(site).map_err(io(Path::new(GUEST_SITE)))?;
    copy_tree(&installed.site, &dir, Path::new(site))?;
    let requirements = serde_json::to_vec(&installed.requirements).unwrap_or_default();
    dir.write(&recorded, requirements).map_err(io(Path::new(&recorded)))?;
    dir.write(&marker, installed.key.as_bytes()).map_err(io(Path::new(&marker)))
}

/// The requirements of the set placed in the guest root at `root`, if any (as the guest left
/// them: only ever resolved again, never trusted further).
pub fn placed_requirements(root: &Path) -> Vec<String> {
    let Ok(dir) = cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority()) else { return Vec::new() };
    let path = format!("{}/{REQUIREMENTS_FILE}", GUEST_SITE.trim_start_matches('/'));
    let Ok(file) = dir.open(&path) else { return Vec::new() };
    let mut text = Vec::new();
    if std::io::Read::take(file, MAX_REQUIREMENTS_FILE_BYTES).read_to_end(&mut text).is_err() {
        return Vec::new();
    }
    serde_json::from_slice(&text).unwrap_or_default()
}

/// A cell's `%pip install REQUIREMENT...` (or `!pip install`) lines, at its top level, as a
/// notebook has them: `None` when it has none; else the requirements they name (pip's
/// `-q`/`--quiet`/`-U`/`--upgrade` flags ignored, any other option refused) and the cell with
/// each such line turned into a no-op, so line numbers stay the user's.
pub fn pip_magic(code: &str) -> Option<Result<(Vec<String>, String), String>> {
    let is_magic = |line: &str| line.starts_with("%pip ") || line.starts_with("!pip ");
    if !code.lines().any(is_magic) {
        return None;
    }
    let mut requirements = Vec::new();
    let mut lines = Vec::new();
    for line in code.lines() {
        if !is_magic(line) {
            lines.push(line.to_owned());
            continue;
        }
        let mut words = line[5..].split_whitespace();
        if words.next() != Some("install") {
            return Some(Err(format!("`{}`: only `%pip install REQUIREMENT...` is supported", line.trim())));
        }
        for word in words {
            match word {
                "-q" | "--quiet" | "-U" | "--upgrade" => {}
                option if option.starts_with('-') => {
                    return Some(Err(format!("`%pip install {option}`: pip options are not supported")));
                }
                requirement => requirements.push(requirement.to_owned()),
            }
        }
        lines.push("pass".to_owned());
    }
    Some(Ok((requirements, lines.join("\n"))))
}

fn copy_tree(from: &Path, dir: &cap_std::fs::Dir, to: &Path) -> Result<(), PackageError> {
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().map_err(io(&source))?.is_dir() {
            dir.create_dir_all(&target).map_err(io(&target))?;
            copy_tree(&source, dir, &target)?;
        } else {
            let contents = std::fs::read(&source).map_err(io(&source))?;
            dir.write(&target, contents).map_err(io(&target))?;
        }
    }
    Ok(())
}

/// Beside a set in the cache once its bytecode is in it ([`adopt_bytecode`]).
const COMPILED_MARKER: &str = ".soulbox-compiled";

/// The Python turn that compiles a placed set to bytecode whose validity is not checked
/// against the sources' times (the copies guests get have new ones).
pub const COMPILE_TURN: &str = "import compileall as _c, py_compile as _p; _c.compile_dir(\"/usr/soulbox/site-packages\", quiet=2, invalidation_mode=_p.PycInvalidationMode.UNCHECKED_HASH); del _c, _p";

/// Whether the set's bytecode is in the cache.
pub fn is_compiled(installed: &Installed) -> bool {
    installed.site.join(COMPILED_MARKER).exists()
}

/// Takes the bytecode a trusted guest (SoulBox's own turn, [`COMPILE_TURN`], before any
/// request's code) compiled in the set placed at `root` into the cache, so every later guest
/// imports the set without compiling it: each `__pycache__/*.pyc` whose source is in the set
/// is written atomically beside it, then the marker.
pub fn adopt_bytecode(installed: &Installed, root: &Path) -> Result<(), PackageError> {
    let placed = root.join(GUEST_SITE.trim_start_matches('/'));
    adopt_dir(&placed, &installed.site)?;
    let marker = installed.site.join(COMPILED_MARKER);
    std::fs::write(&marker, b"").map_err(io(&marker))
}

fn adopt_dir(from: &Path, to: &Path) -> Result<(), PackageError> {
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let (source, name) = (entry.path(), entry.file_name());
        if !entry.file_type().map_err(io(&source))?.is_dir() || !to.join(&name).is_dir() && name != "__pycache__" {
            continue;
        }
        if name == "__pycache__" {
            let target = to.join("__pycache__");
            std::fs::create_dir_all(&target).map_err(io(&target))?;
            for pyc in std::fs::read_dir(&source).map_err(io(&source))? {
                let pyc = pyc.map_err(io(&source))?.path();
                if pyc.extension().is_some_and(|e| e == "pyc") && pyc.is_file() {
                    let file = target.join(pyc.file_name().unwrap_or_default());
                    let partial = file.with_extension("pyc.partial");
                    std::fs::copy(&pyc, &partial).map_err(io(&partial))?;
                    std::fs::rename(&partial, &file).map_err(io(&file))?;
                }
            }
        } else {
            adopt_dir(&source, &to.join(&name))?;
        }
    }
    Ok(())
}

/// The Python turn that puts [`GUEST_SITE`] first on `sys.path`.
pub fn import_path_turn() -> String {
    format!(
        "__import__(\"sys\").path.insert(0, \"{GUEST_SITE}\") if \"{GUEST_SITE}\" not in __import__(\"sys\").path else None"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_keyed_by_its_requirements_not_their_order() {
        let a = set_key(&["requests==2.*".into(), "idna".into()], "pip");
        let b = set_key(&[" idna".into(), "requests==2.*".into(), "idna".into()], "pip");
        assert_eq!(a, b);
        assert_ne!(a, set_key(&["requests==2.*".into()], "pip"));
        assert_ne!(a, set_key(&["requests==2.*".into(), "idna".into()], "/wheels"));
    }

    #[test]
    fn pip_magic_lines_become_requirements_and_keep_the_line_numbers() {
        assert!(pip_magic("import os\nprint(1)").is_none());
        let (requirements, code) =
            pip_magic("x = 1\n%pip install -q requests==2.* idna\n!pip install attrs\nx").unwrap().unwrap();
        assert_eq!(requirements, ["requests==2.*", "idna", "attrs"]);
        assert_eq!(code, "x = 1\npass\npass\nx");
        assert!(pip_magic("%pip uninstall x").unwrap().unwrap_err().contains("only `%pip install"));
        assert!(pip_magic("%pip install -r req.txt").unwrap().unwrap_err().contains("-r"));
    }

    #[test]
    fn native_and_unsafe_wheels_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let write_wheel = |name: &str, member: &str| {
            let path = dir.path().join(name);
            let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
            zip.start_file(member, zip::write::SimpleFileOptions::default()).unwrap();
            std::io::Write::write_all(&mut zip, b"x").unwrap();
            zip.finish().unwrap();
            path
        };
        let site = dir.path().join("site");
        let mut total = 0;
        let native = write_wheel("fast-1.0-cp315-cp315-linux_x86_64.whl", "fast/__init__.py");
        assert!(unpack(&native, &site, &mut total).unwrap_err().to_string().contains("not a pure-Python wheel"));
        let hidden = write_wheel("sneaky-1.0-py3-none-any.whl", "sneaky/_speed.so");
        assert!(unpack(&hidden, &site, &mut total).unwrap_err().to_string().contains("native code"));
        let escaping = write_wheel("escape-1.0-py3-none-any.whl", "../../etc/evil.py");
        assert!(unpack(&escaping, &site, &mut total).unwrap_err().to_string().contains("leave the install directory"));
        let fine = write_wheel("fine-1.0-py3-none-any.whl", "fine/__init__.py");
        let record = unpack(&fine, &site, &mut total).unwrap();
        assert_eq!(record.sha256.len(), 64);
        assert!(site.join("fine/__init__.py").is_file());
    }
}

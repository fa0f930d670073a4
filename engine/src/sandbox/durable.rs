//! Sandboxes that outlive their process: a manifest per sandbox, written when it opens (marked
//! running), at each checkpoint (marked checkpointed), and read when a registry opens.
//!
//! A manifest is `<snapshot dir>/sandboxes/<id>.json`: everything needed to rebuild the
//! sandbox (owner, template, metadata, environment, durability policy, timeouts, its
//! workspace's path, each context's id, language, preload, execution count and checkpoint).
//! It goes to a temporary file and is renamed over the old one after the checkpoints it names
//! are written: a process killed mid-checkpoint leaves the previous manifest, whose
//! checkpoints are still there, intact (a pause also syncs both to disk). When the sandbox
//! changes after its checkpoints (a cell, unless each cell is checkpointed), its manifest is
//! marked `running`; when it is killed, the manifest is removed. See [`super::checkpoint`].
//!
//! A registry that opens ([`super::Sandboxes::new`]) takes every `checkpointed` manifest back
//! as a paused sandbox (its contexts restore on first use), and reports the others as lost
//! ([`super::SandboxError::Lost`], with why): a `running` one changed after its last
//! checkpoint, so what it held is gone; an unreadable one cannot be trusted. Their workspaces
//! are swept with the other leftovers.

use super::context::ContextRecord;
use crate::blobs::BlobId;
use crate::kernel::Template;
use crate::language::Language;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The manifest format this code writes and reads.
pub(super) const FORMAT: u32 = 2;

/// Whether a manifest's sandbox can be taken back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Durability {
    /// Its checkpoints hold its latest state: a new process takes it back, paused.
    Checkpointed,
    /// Changed after its last checkpoint: a new process cannot get it back.
    Running,
}

/// A sandbox, on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Manifest {
    pub format: u32,
    pub id: String,
    pub owner: Option<String>,
    pub template: Template,
    pub metadata: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub network: bool,
    /// Its contexts' network policy (absent in manifests written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<crate::NetworkPolicy>,
    /// Its Python contexts' packages (absent in manifests written before them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    pub policy: super::checkpoint::Policy,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub idle_timeout_ms: u64,
    /// When its checkpoints were taken (ms since the Unix epoch; 0: none).
    pub checkpointed_at_ms: u64,
    /// The lifetime it takes back when it resumes, when a paused lifetime replaced its end
    /// ([`super::SandboxesConfig::paused_lifetime`]).
    #[serde(default)]
    pub lifetime_left_ms: Option<u64>,
    pub workspace: PathBuf,
    pub contexts: Vec<ContextRecord>,
    pub defaults: Vec<(Language, String)>,
    pub state: Durability,
    /// Its workspace's files, stored ([`super::handover`]), when its registry hands sandboxes
    /// over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_snapshot: Option<BlobId>,
}

impl Manifest {
    /// The checkpoints it names.
    pub fn checkpoints(&self) -> impl Iterator<Item = &BlobId> {
        self.contexts.iter().filter_map(|c| c.checkpoint.as_ref())
    }
}

/// What a registry found on disk when it opened.
pub(super) enum Found {
    /// A sandbox an earlier process left checkpointed.
    Checkpointed(Box<Manifest>),
    /// A sandbox that cannot come back, and why.
    Lost { id: String, owner: Option<String>, why: String },
}

/// The manifests' directory.
#[derive(Debug, Clone)]
pub(super) struct Manifests {
    dir: PathBuf,
}

impl Manifests {
    pub fn open(snapshot_dir: &Path) -> std::io::Result<Self> {
        let dir = snapshot_dir.join("sandboxes");
        std::fs::create_dir_all(&dir)?;
        Ok(Manifests { dir })
    }

    /// Takes the snapshot directory for this registry alone, for as long as the returned file
    /// stays open (the lock goes with the process, however it ends). `None` when another
    /// registry, in this process or another, holds it: two registries on one directory would
    /// take back, and sweep, each other's sandboxes.
    pub fn lock(snapshot_dir: &Path) -> std::io::Result<Option<std::fs::File>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(snapshot_dir.join("registry.lock"))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(file)),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `manifest` atomically; with `durable`, synced to disk before it replaces the old
    /// one (a pause); without, visible to the next process but not synced (marking running).
    pub fn write(&self, manifest: &Manifest, durable: bool) -> std::io::Result<()> {
        self.write_encoded(&manifest.id, &encode(manifest), durable)
    }

    /// [`Manifests::write`] of a manifest already [`encode`]d.
    pub fn write_encoded(&self, id: &str, bytes: &[u8], durable: bool) -> std::io::Result<()> {
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
        file.write_all(bytes)?;
        if durable {
            file.as_file().sync_all()?;
        }
        file.persist(self.path(id)).map_err(|e| e.error)?;
        if durable {
            std::fs::File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Marks sandbox `id` running (it changed after its checkpoint), if it has a manifest.
    pub fn mark_running(&self, id: &str) -> std::io::Result<()> {
        let Ok(bytes) = std::fs::read(self.path(id)) else { return Ok(()) };
        let mut manifest: Manifest = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
        manifest.state = Durability::Running;
        self.write(&manifest, false)
    }

    /// Removes sandbox `id`'s manifest, if any.
    pub fn remove(&self, id: &str) {
        match std::fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(error = %e, sandbox = id, "could not remove a sandbox's manifest");
            }
            _ => {}
        }
    }

    /// Every manifest on disk, read; each lost one is also removed (it is reported once, by the
    /// registry that finds it).
    pub fn take_stock(&self) -> Vec<Found> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(id) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else { continue };
            if path.extension().is_none_or(|e| e != "json") {
                continue; // a temporary file a killed write left
            }
            let bytes = std::fs::read(&path);
            let read = bytes.as_ref().map_err(|e| e.to_string()).and_then(|bytes| read_manifest(bytes));
            match read {
                Ok(manifest) if manifest.state == Durability::Checkpointed => {
                    found.push(Found::Checkpointed(Box::new(manifest)));
                }
                Ok(manifest) => {
                    let why = "its server stopped while it was running, after its last checkpoint (only a paused \
                               sandbox, or one checkpointed after every cell, outlives its server)";
                    found.push(Found::Lost { id, owner: manifest.owner, why: why.into() });
                    self.remove(&manifest.id);
                }
                Err(why) => {
                    // Its owner, if the record names one in any format, may still be told why.
                    let owner = bytes.as_deref().ok().and_then(owner_of);
                    found.push(Found::Lost { id: id.clone(), owner, why });
                    self.remove(&id);
                }
            }
        }
        found
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }
}

/// The owner a record names, whatever its format (every format has had a top-level
/// `owner`).
fn owner_of(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Owner {
        owner: Option<String>,
    }
    serde_json::from_slice::<Owner>(bytes).ok()?.owner
}

/// `manifest` as it is written, on disk and as a blob.
pub(super) fn encode(manifest: &Manifest) -> Vec<u8> {
    serde_json::to_vec_pretty(manifest).expect("a manifest serializes")
}

/// A manifest of this code's format, or why it is not one.
pub(super) fn read_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    #[derive(Deserialize)]
    struct Format {
        format: u32,
    }
    let format = serde_json::from_slice::<Format>(bytes).map_err(|e| format!("its record is unreadable ({e})"))?;
    if format.format != FORMAT {
        return Err(format!("its record is in format {}, which this server does not read", format.format));
    }
    serde_json::from_slice(bytes).map_err(|e| format!("its record is unreadable ({e})"))
}

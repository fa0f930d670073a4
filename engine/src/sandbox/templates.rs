//! Templates from a sandbox: a prepared sandbox (packages imported, data loaded, files
//! placed) saved under a name, versioned, per owner; new sandboxes start from it with no
//! set-up time ([`SandboxSpec::from_template`]).
//!
//! Saving checkpoints every context (a live one after the cell it runs; the source keeps
//! running and is not changed) and copies the workspace into the template's own files. The
//! record goes to `<snapshot dir>/templates/<owner key>.<name>.<version>.json`, synced, after
//! the checkpoints it names; its files live under `<snapshot dir>/templates/files`. Versions
//! count from 1 per owner and name; a new save of a name is its next version, and a sandbox
//! names a version or takes the latest. A sandbox from a template starts like a fork of it:
//! its files copied, its contexts restored from the template's checkpoints and given fresh
//! entropy ([`crate::kernel::Kernel::diverge`]). Its environment is the template's (the
//! contexts' memory holds it): a spec that sets another is refused.
//!
//! Templates outlive their server: a registry reads every record when it opens, and the
//! checkpoints they name are never collected.

use super::context::{ContextCopy, ContextInfo, ContextRecord};
use super::fork::Source;
use super::{FileError, Identity, Sandbox, SandboxError, SandboxSpec, Sandboxes, Workspace, epoch_ms};
use crate::blobs::BlobId;
use crate::kernel::Template;
use crate::language::Language;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use tracing::Instrument;

/// The most template versions one owner may keep, all names together.
pub const MAX_TEMPLATE_VERSIONS_PER_OWNER: usize = 100;

/// The record format this code writes and reads.
const FORMAT: u32 = 1;

/// Which saved template a new sandbox starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TemplateRef {
    /// Its name.
    pub name: String,
    /// Its version; `None`, the default, is the latest.
    #[serde(default)]
    pub version: Option<u32>,
}

/// What a caller may know about a saved template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct TemplateInfo {
    /// Its name.
    pub name: String,
    /// Its version (from 1).
    pub version: u32,
    /// The built-in template its source sandbox was made from.
    pub base: Template,
    /// The sandbox it was saved from.
    pub from_sandbox: String,
    /// When it was saved, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Its contexts, as they were saved.
    pub contexts: Vec<ContextInfo>,
    /// Bytes its checkpoints take in the snapshot store (compressed; parts shared with other
    /// checkpoints counted whole).
    pub stored_bytes: u64,
}

/// A template, on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TemplateRecord {
    format: u32,
    owner: Option<String>,
    name: String,
    version: u32,
    base: Template,
    from_sandbox: String,
    created_at_ms: u64,
    env: BTreeMap<String, String>,
    files: PathBuf,
    contexts: Vec<ContextRecord>,
    defaults: Vec<(Language, String)>,
}

impl TemplateRecord {
    fn key(&self) -> Key {
        (self.owner.clone(), self.name.clone(), self.version)
    }

    fn file_name(&self) -> String {
        let owner = match &self.owner {
            Some(owner) => blake3::hash(owner.as_bytes()).to_hex()[..16].to_owned(),
            None => "_".to_owned(),
        };
        format!("{owner}.{}.{}.json", self.name, self.version)
    }
}

type Key = (Option<String>, String, u32);

/// The templates of a registry (see the module's documentation).
#[derive(Debug)]
pub(super) struct Templates {
    dir: PathBuf,
    records: Mutex<BTreeMap<Key, Arc<TemplateRecord>>>,
}

impl Templates {
    /// The templates under `snapshot_dir`, read.
    pub fn open(snapshot_dir: &Path) -> std::io::Result<Self> {
        let dir = snapshot_dir.join("templates");
        super::prepare_workspace_root(&dir)?;
        super::prepare_workspace_root(&dir.join("files"))?;
        let mut records = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let read = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice::<TemplateRecord>(&bytes).map_err(|e| e.to_string()));
            match read {
                Ok(record) if record.format == FORMAT => {
                    records.insert(record.key(), Arc::new(record));
                }
                Ok(record) => {
                    tracing::warn!(path = %path.display(), format = record.format, "a template record in a format this server does not read")
                }
                Err(error) => tracing::warn!(path = %path.display(), %error, "an unreadable template record"),
            }
        }
        Ok(Templates { dir, records: Mutex::new(records) })
    }

    /// Every checkpoint a template names.
    pub fn checkpoints(&self) -> HashSet<BlobId> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records.values().flat_map(|r| r.contexts.iter().filter_map(|c| c.checkpoint.clone())).collect()
    }

    /// The template `owner` may use as `name` (at `version`, or the latest).
    fn get(&self, owner: &Option<String>, name: &str, version: Option<u32>) -> Option<Arc<TemplateRecord>> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records
            .range((owner.clone(), name.to_owned(), 0)..=(owner.clone(), name.to_owned(), u32::MAX))
            .rfind(|(key, _)| version.is_none_or(|v| key.2 == v))
            .map(|(_, record)| Arc::clone(record))
    }

    /// Every checkpoint `owner`'s templates name.
    pub fn owned_checkpoints(&self, owner: &Option<String>) -> Vec<BlobId> {
        self.owned(owner).iter().flat_map(|r| r.contexts.iter().filter_map(|c| c.checkpoint.clone())).collect()
    }

    fn owned(&self, owner: &Option<String>) -> Vec<Arc<TemplateRecord>> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records.values().filter(|r| r.owner == *owner).cloned().collect()
    }

    /// Writes `record` (synced) and adds it.
    fn insert(&self, record: TemplateRecord) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
        file.write_all(&bytes)?;
        file.as_file().sync_all()?;
        file.persist(self.dir.join(record.file_name())).map_err(|e| e.error)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        self.records.lock().unwrap_or_else(|e| e.into_inner()).insert(record.key(), Arc::new(record));
        Ok(())
    }

    /// Removes `record`: its entry, its file and its files (its checkpoints are collected).
    fn remove(&self, record: &TemplateRecord) {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).remove(&record.key());
        let _ = std::fs::remove_file(self.dir.join(record.file_name()));
        if record.files.parent() == Some(self.dir.join("files").as_path()) {
            let _ = std::fs::remove_dir_all(&record.files);
        }
    }
}

/// Checks a template's name: a plain name ([`super::is_plain_name`]).
fn validate_name(name: &str) -> Result<(), SandboxError> {
    if super::is_plain_name(name) {
        Ok(())
    } else {
        Err(SandboxError::Invalid(format!(
            "invalid template name `{name}`: use 1-{} letters, digits, `-` or `_`",
            super::MAX_PLAIN_NAME_BYTES
        )))
    }
}

impl Sandboxes {
    /// Saves `source` (live or paused; it is not changed) as the next version of its owner's
    /// template `name`. A context that cannot be checkpointed (it holds an open file) fails
    /// the save with an error naming why.
    pub async fn save_template(&self, source: &Sandbox, name: &str) -> Result<TemplateInfo, SandboxError> {
        validate_name(name)?;
        let _active = source.shared.begin()?;
        source.shared.check_snapshot_room()?;
        let owner = source.shared.identity.owner.clone();
        let span = tracing::info_span!("template_save", sandbox = %source.id(), template = name);
        let record = async {
            let from = source.fork_source().await?;
            let checkpoints = &self.registry.checkpoints;
            let mut writing = checkpoints.writing().await;
            let mut pins = Vec::new();
            let mut contexts = Vec::with_capacity(from.contexts.len());
            for copy in &from.contexts {
                let id = match &copy.image {
                    Some(image) => {
                        let (store, image) = (checkpoints.clone(), image.clone());
                        let (held, stored) = tokio::task::spawn_blocking(move || {
                            let stored = store.store(&writing, &image, &[], true);
                            (writing, stored)
                        })
                        .await
                        .map_err(|_| SandboxError::Interrupted)?;
                        writing = held;
                        let stored = stored?;
                        pins.push(stored.pin);
                        Some(stored.id)
                    }
                    None => None,
                };
                contexts.push(ContextRecord {
                    id: copy.id.clone(),
                    language: copy.language,
                    preload: copy.preload,
                    executions: copy.executions,
                    checkpoint: id,
                });
            }
            drop(writing);
            let templates = &self.registry.templates;
            let files = Workspace::create_in(&templates.dir.join("files"))
                .map_err(|e| SandboxError::File(FileError::Io { path: "the template's files".into(), source: e }))?;
            let saved = async {
                source.shared.workspace.copy_into(&files).await?;
                let versions = templates.owned(&owner);
                if versions.len() >= MAX_TEMPLATE_VERSIONS_PER_OWNER {
                    return Err(SandboxError::LimitReached(format!(
                        "an owner keeps at most {MAX_TEMPLATE_VERSIONS_PER_OWNER} template versions; delete some first"
                    )));
                }
                let version = versions.iter().filter(|r| r.name == name).map(|r| r.version).max().unwrap_or(0) + 1;
                let record = TemplateRecord {
                    format: FORMAT,
                    owner: owner.clone(),
                    name: name.to_owned(),
                    version,
                    base: from.identity.template,
                    from_sandbox: from.identity.id.clone(),
                    created_at_ms: epoch_ms(SystemTime::now()),
                    env: from.identity.env.clone(),
                    files: files.host_path().to_path_buf(),
                    contexts,
                    defaults: from.defaults.clone(),
                };
                templates.insert(record.clone()).map_err(|e| {
                    SandboxError::File(FileError::Io { path: "the template's record".into(), source: e })
                })?;
                Ok::<_, SandboxError>(record)
            }
            .await;
            if saved.is_err() {
                files.remove();
            }
            drop(pins);
            saved
        }
        .instrument(span)
        .await?;
        tracing::info!(sandbox = %source.id(), template = name, version = record.version, "template saved");
        Ok(self.template_info(&record))
    }

    /// `owner`'s templates, every version, by name then version.
    pub fn list_templates(&self, owner: Option<&str>) -> Vec<TemplateInfo> {
        let owner = owner.map(str::to_owned);
        self.registry.templates.owned(&owner).iter().map(|record| self.template_info(record)).collect()
    }

    /// `owner`'s template `name` at `version` (the latest if `None`).
    pub fn template(
        &self,
        owner: Option<&str>,
        name: &str,
        version: Option<u32>,
    ) -> Result<TemplateInfo, SandboxError> {
        let record = self.template_record(owner, name, version)?;
        Ok(self.template_info(&record))
    }

    /// Deletes `owner`'s template `name`: one version, or every version with `None`. Sandboxes
    /// made from it keep running. Returns how many versions went.
    pub fn delete_template(
        &self,
        owner: Option<&str>,
        name: &str,
        version: Option<u32>,
    ) -> Result<usize, SandboxError> {
        let owner_key = owner.map(str::to_owned);
        let doomed: Vec<Arc<TemplateRecord>> = self
            .registry
            .templates
            .owned(&owner_key)
            .into_iter()
            .filter(|r| r.name == name && version.is_none_or(|v| r.version == v))
            .collect();
        if doomed.is_empty() {
            return Err(missing(name, version));
        }
        for record in &doomed {
            self.registry.templates.remove(record);
        }
        self.registry.checkpoints.note_garbage();
        tracing::info!(template = name, versions = doomed.len(), "template deleted");
        Ok(doomed.len())
    }

    fn template_record(
        &self,
        owner: Option<&str>,
        name: &str,
        version: Option<u32>,
    ) -> Result<Arc<TemplateRecord>, SandboxError> {
        self.registry.templates.get(&owner.map(str::to_owned), name, version).ok_or_else(|| missing(name, version))
    }

    fn template_info(&self, record: &TemplateRecord) -> TemplateInfo {
        let checkpoints = &self.registry.checkpoints;
        TemplateInfo {
            name: record.name.clone(),
            version: record.version,
            base: record.base,
            from_sandbox: record.from_sandbox.clone(),
            created_at_ms: record.created_at_ms,
            contexts: record
                .contexts
                .iter()
                .map(|c| ContextInfo {
                    id: c.id.clone(),
                    language: c.language,
                    preload: c.preload,
                    execution_count: c.executions,
                })
                .collect(),
            stored_bytes: record
                .contexts
                .iter()
                .filter_map(|c| c.checkpoint.as_ref())
                .map(|id| checkpoints.stored_bytes(id))
                .sum(),
        }
    }

    /// Creates a sandbox from the template `spec` names (its owner's): the template's files
    /// and contexts, the spec's metadata, timeouts and policy.
    pub(super) async fn create_from_template(
        &self,
        spec: SandboxSpec,
        template: &super::TemplateRef,
    ) -> Result<Sandbox, SandboxError> {
        let record = self.template_record(spec.owner.as_deref(), &template.name, template.version)?;
        if !spec.env.is_empty() && spec.env != record.env {
            return Err(SandboxError::Invalid(
                "a sandbox from a saved template has the template's environment (its contexts hold it); leave `env` out".into(),
            ));
        }
        let reservation = self.reserve(spec.owner.as_deref(), spec.id.as_deref(), 1)?;
        let span = tracing::info_span!("sandbox_create", template = %record.name, version = record.version);
        let sandbox = async {
            let mut contexts = Vec::with_capacity(record.contexts.len());
            for context in &record.contexts {
                let image = match &context.checkpoint {
                    Some(id) => Some(super::context::load(&self.registry.checkpoints, id).await?),
                    None => None,
                };
                contexts.push(ContextCopy {
                    id: context.id.clone(),
                    language: context.language,
                    preload: context.preload,
                    executions: context.executions,
                    image,
                });
            }
            let now = Instant::now();
            let source = Source {
                identity: Identity::new(&spec, record.base, record.env.clone()),
                idle_timeout: spec.idle_timeout.unwrap_or(super::DEFAULT_IDLE_TIMEOUT),
                ends_at: now + spec.lifetime.unwrap_or(super::DEFAULT_LIFETIME),
                contexts,
                defaults: record.defaults.clone(),
            };
            let files = Workspace::adopt(&record.files, false)
                .map_err(|e| SandboxError::File(FileError::Io { path: "the template's files".into(), source: e }))?;
            self.fork_one(&files, &source, source.identity.clone()).await
        }
        .instrument(span)
        .await?;
        let sandbox = self.open_new(sandbox)?;
        drop(reservation);
        sandbox.shared.record(Vec::new()).await;
        tracing::info!(sandbox = %sandbox.id(), template = %record.name, version = record.version, "sandbox created from a template");
        Ok(sandbox)
    }
}

fn missing(name: &str, version: Option<u32>) -> SandboxError {
    match version {
        Some(version) => SandboxError::TemplateNotFound(format!("{name} version {version}")),
        None => SandboxError::TemplateNotFound(name.to_owned()),
    }
}

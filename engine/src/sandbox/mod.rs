//! Sandboxes: isolated, stateful units with a workspace and one or more contexts (kernels).
//!
//! [`Sandboxes`] is the registry a service holds; [`Sandbox`] is a cheap handle to one sandbox.
//! A sandbox has an id, metadata, environment variables, a creation time, an idle timeout and an
//! absolute lifetime (both adjustable with [`Sandbox::set_timeouts`]), a [`Workspace`] that all
//! its contexts see as `/`, and contexts: Python or JavaScript kernels that keep their state
//! from cell to cell. It opens with one context for its [`Template`]'s language; more may be
//! added, and a cell names its context or takes the default one for its language.
//!
//! Concurrency: cells in one context run one at a time (queued on the context's lock); different
//! contexts and sandboxes run in parallel, as far as the backend's worker pool admits them.
//!
//! Ownership and quotas: a sandbox may have an owner (a service's tenant, set by the service,
//! never by the wire format); [`Sandboxes::get_owned`] and [`Sandboxes::list_owned`] answer a
//! sandbox of another owner exactly as one that does not exist. The bounds on sandboxes open
//! at once, in all and per owner, are reserved under the registry's lock before anything is
//! awaited, so concurrent creations can never pass them.
//!
//! Lifetime: a reaper task checks every [`REAP_INTERVAL`] and kills sandboxes past their
//! lifetime, or idle (no cell running, no file operation) for longer than their idle timeout.
//! Killing raises the sandbox's [`StopSignal`] (a running cell stops within an epoch check),
//! drops the kernels (freeing their memory) and deletes the workspace; the id is then unknown.

mod checkpoint;
mod context;
mod durable;
mod fork;
mod handover;
mod ledger;
mod processes;
pub mod quota;
mod stream;
mod templates;
#[cfg(test)]
mod tests;
mod watch;
mod workspace;

pub use checkpoint::{CheckpointPolicy, CheckpointReport, IdleAction, PauseReport};
pub use context::ContextInfo;
pub use fork::MAX_FORKS;
pub use ledger::{LedgerEntry, LedgerState, SandboxLedger};
pub use processes::{
    CommandResult, MAX_COMMAND_OUTPUT_BYTES, MAX_FINISHED, MAX_LOG_BYTES, MAX_RUNNING, ProcessInfo, ProcessStream,
};
pub use stream::ExecutionStream;
pub use templates::{MAX_TEMPLATE_VERSIONS_PER_OWNER, TemplateInfo, TemplateRef};
pub use watch::{FsEvent, FsEventKind, WatchStream};
pub use workspace::{
    EntryInfo, EntryKind, FileError, MAX_LIST_DEPTH, MAX_LIST_ENTRIES, MAX_NAME_BYTES, MAX_PATH_BYTES,
    PRIVATE_DIR_MODE, Workspace, check_private_dir, prepare_workspace_root,
};

use crate::backend::BackendError;
use crate::blobs::{BlobError, BlobId, BlobStore};
use crate::checkpoints::Checkpoints;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::kernel::{Cell, Execution, KernelSpec, Preload, StopSignal, Template};
use crate::language::Language;
use crate::limits::Limits;
use crate::network::NetworkPolicy;
use crate::request::{RequestError, validate_code, validate_env};
use context::Context;
use processes::Processes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::Instrument;

/// Idle time after which a sandbox is killed, when its spec names none.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Lifetime of a sandbox, when its spec names none.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// The longest idle timeout or lifetime a sandbox may have.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Contexts one sandbox may hold.
pub const MAX_CONTEXTS_PER_SANDBOX: usize = 16;
/// Sandboxes open at once, when the configuration names no other bound.
pub const DEFAULT_MAX_SANDBOXES: usize = 2000;
/// Metadata entries per sandbox, and bytes of all keys and values together.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// See [`MAX_METADATA_ENTRIES`].
pub const MAX_METADATA_BYTES: usize = 16 << 10;
/// Environment variables per sandbox, and bytes of all names and values together: a sandbox
/// keeps them for its life and hands them to every context and process.
pub const MAX_ENV_ENTRIES: usize = 256;
/// See [`MAX_ENV_ENTRIES`].
pub const MAX_ENV_BYTES: usize = 64 << 10;
/// How often expired sandboxes are looked for.
pub const REAP_INTERVAL: Duration = Duration::from_millis(100);
/// How often checkpoints nothing names any more are collected (when something may be).
pub const COLLECT_INTERVAL: Duration = Duration::from_secs(5);

/// Why a sandbox operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// No sandbox has this id (it never existed, was killed or expired).
    #[error("sandbox `{0}` not found")]
    NotFound(String),
    /// The sandbox has no context with this id.
    #[error("context `{0}` not found in this sandbox")]
    ContextNotFound(String),
    /// The owner has no saved template by this name (and version).
    #[error("template `{0}` not found")]
    TemplateNotFound(String),
    /// The sandbox has no process with this id.
    #[error("process {0} not found in this sandbox")]
    ProcessNotFound(u32),
    /// The process has ended: it takes no input, signal or resize.
    #[error("process {0} has ended")]
    ProcessEnded(u32),
    /// The request is malformed (the message says how).
    #[error("{0}")]
    Invalid(String),
    /// A sandbox with the id asked for is already open.
    #[error("a sandbox with id `{0}` is already open")]
    Exists(String),
    /// The registry holds as many sandboxes as it may (all owners together): retry later.
    #[error("{0}")]
    Full(String),
    /// The owner has as many sandboxes open as its quota allows.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A fixed per-sandbox bound (contexts) is reached: retrying will not help until something
    /// is removed.
    #[error("{0}")]
    LimitReached(String),
    /// The sandbox is busy in a way that keeps the operation from completing now (a cell ran
    /// during a pause): retrying later will succeed.
    #[error("{0}")]
    Busy(String),
    /// The sandbox is paused and does not resume on its own ([`SandboxSpec::auto_resume`]
    /// is off): resume it first.
    #[error("sandbox `{0}` is paused; resume it first")]
    Paused(String),
    /// The cell's task ended without a result (the runtime is shutting down).
    #[error("the execution was interrupted before it ended")]
    Interrupted,
    /// The sandbox was open when its server stopped and cannot come back (it had changed since
    /// its last checkpoint, or its record is unreadable): what it held is gone.
    #[error("sandbox `{id}` was lost: {why}")]
    Lost {
        /// Its id.
        id: String,
        /// Why it cannot come back.
        why: String,
    },
    /// The engine refused (no backend for the language, busy, backend failure).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A checkpoint could not be stored or read back (a corrupt one is refused, never loaded).
    #[error(transparent)]
    Checkpoint(#[from] BlobError),
    /// A file operation failed.
    #[error(transparent)]
    File(#[from] FileError),
}

impl From<BackendError> for SandboxError {
    fn from(error: BackendError) -> Self {
        SandboxError::Engine(EngineError::Backend(error))
    }
}

impl From<RequestError> for SandboxError {
    fn from(error: RequestError) -> Self {
        SandboxError::Invalid(error.to_string())
    }
}

/// How to open a [`Sandboxes`] registry.
#[derive(Debug, Clone)]
pub struct SandboxesConfig {
    /// Where workspaces are made. Default: `$TMPDIR/soulbox-sandboxes`.
    pub workspace_root: PathBuf,
    /// Sandboxes open at once. Default: [`DEFAULT_MAX_SANDBOXES`].
    pub max_sandboxes: usize,
    /// Sandboxes one owner may have open at once. Default: [`DEFAULT_MAX_SANDBOXES`] (no bound
    /// beyond the registry's).
    pub max_per_owner: usize,
    /// Bytes each workspace may hold (a size-limited `tmpfs` per workspace; needs root:
    /// [`quota::can_enforce`]). Default `None`: no quota.
    pub workspace_bytes: Option<u64>,
    /// Where checkpoints ([`BlobStore`]) and sandbox manifests are kept: name a directory for
    /// paused sandboxes that outlive the process (one registry holds a directory at a time).
    /// Default (`None`): a private temporary directory removed with the registry.
    pub snapshot_dir: Option<PathBuf>,
    /// Where every sandbox's state is reported as it changes ([`SandboxLedger`]; SoulBox's
    /// server keeps it in its database). Default `None`: nowhere.
    pub ledger: Option<Arc<dyn SandboxLedger>>,
    /// Bytes of checkpoints one owner may keep in the snapshot store: its open and paused
    /// sandboxes' latest checkpoints and its templates' (compressed; a part two of them share
    /// counted for each). Checked before each checkpoint, pause, fork and template save: an
    /// owner at or over it gets [`SandboxError::QuotaExceeded`] until it kills sandboxes or
    /// deletes templates (one checkpoint may take it past the bound). Default `None`: no bound.
    pub max_snapshot_bytes_per_owner: Option<u64>,
    /// How long a paused sandbox is kept, from its pause, instead of until its lifetime ends
    /// (E2B keeps paused sandboxes far longer than running ones). A sandbox that resumes takes
    /// back the lifetime it had left when it paused. Default `None`: a paused sandbox keeps its
    /// lifetime.
    pub paused_lifetime: Option<Duration>,
    /// An object store (S3 or S3-compatible) that keeps a copy of every checkpoint blob: a
    /// pause or a checkpoint on demand returns once its blobs are uploaded (a checkpoint after
    /// every cell does not wait), and one missing or damaged in
    /// `snapshot_dir` is fetched from it ([`crate::blobs::Replica`]). Manifests, template
    /// records and workspaces stay in the local directories. Default `None`.
    pub replica: Option<crate::blobs::Replica>,
    /// Make every sandbox whose checkpoints hold its latest state ready to be taken over by
    /// another registry, on another machine, that shares the replica: its manifest and its
    /// workspace's files are stored as blobs too, uploaded, and the manifest blob's id given
    /// to this log before the checkpoint (a pause, or a cell's end) is reported done
    /// ([`HandoverLog`], [`Sandboxes::take_over`]). Costs a walk of the workspace at each
    /// checkpoint (files are read again only when their size, time or mode changed), and the
    /// uploads' round trips. Default `None`.
    pub handover: Option<Arc<dyn HandoverLog>>,
}

impl Default for SandboxesConfig {
    fn default() -> Self {
        SandboxesConfig {
            workspace_root: std::env::temp_dir().join("soulbox-sandboxes"),
            max_sandboxes: DEFAULT_MAX_SANDBOXES,
            max_per_owner: DEFAULT_MAX_SANDBOXES,
            workspace_bytes: None,
            snapshot_dir: None,
            ledger: None,
            max_snapshot_bytes_per_owner: None,
            paused_lifetime: None,
            replica: None,
            handover: None,
        }
    }
}

/// What a new sandbox looks like. Unknown fields are rejected; durations are milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSpec {
    /// Its starting point. Default: [`Template::Python`].
    pub template: Template,
    /// Key/value labels, for the caller's own bookkeeping and filtering.
    pub metadata: BTreeMap<String, String>,
    /// Environment variables every context sees.
    pub env: BTreeMap<String, String>,
    /// Idle time before it is killed. Default: [`DEFAULT_IDLE_TIMEOUT`].
    #[serde(rename = "idle_timeout_ms", with = "optional_millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub idle_timeout: Option<Duration>,
    /// Time from creation before it is killed. Default: [`DEFAULT_LIFETIME`].
    #[serde(rename = "lifetime_ms", with = "optional_millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub lifetime: Option<Duration>,
    /// Whether it may reach the network (the service decides whether to allow it): its
    /// container's processes get a network, and its Python and JavaScript contexts outbound
    /// HTTP under `egress`. Default false.
    pub network: bool,
    /// The rules its contexts' outbound HTTP follows when `network` is true
    /// ([`NetworkPolicy`]; `None`, the default: every public address, the default limits).
    /// Not enforced on its container's processes. Refused when `network` is false.
    pub egress: Option<NetworkPolicy>,
    /// Python packages its Python contexts import (pip requirements: `requests==2.*`),
    /// installed in its workspace when a context starts (pure-Python wheels only on
    /// WebAssembly). Default: none.
    pub packages: Vec<String>,
    /// When its contexts are checkpointed besides a pause. Default:
    /// [`CheckpointPolicy::OnPause`].
    pub checkpoint: CheckpointPolicy,
    /// What its idle timeout does. Default: [`IdleAction::Kill`].
    pub on_idle: IdleAction,
    /// Whether a cell sent to it while it is paused resumes it. Default true; false refuses
    /// the cell ([`SandboxError::Paused`]) until [`Sandbox::resume`].
    pub auto_resume: bool,
    /// A template its owner saved ([`Sandboxes::save_template`]) to start from instead of
    /// `template`: its files, and its contexts as they were saved (with fresh entropy). Its
    /// environment is the template's: `env` must be left out. Default `None`.
    pub from_template: Option<TemplateRef>,
    /// The id to give it (from [`new_sandbox_id`]); `None`, the default, makes one. Not part
    /// of the wire format: a service that needs the id before the sandbox exists (to put it in
    /// the sandbox's environment) takes one first.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub id: Option<String>,
    /// Who owns it (a service's tenant); `None`, the default, is the library's own use. Not
    /// part of the wire format: the service sets it from the caller's identity.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub owner: Option<String>,
}

impl Default for SandboxSpec {
    fn default() -> Self {
        SandboxSpec {
            template: Template::default(),
            metadata: BTreeMap::new(),
            env: BTreeMap::new(),
            idle_timeout: None,
            lifetime: None,
            network: false,
            egress: None,
            packages: Vec::new(),
            checkpoint: CheckpointPolicy::default(),
            on_idle: IdleAction::default(),
            auto_resume: true,
            from_template: None,
            id: None,
            owner: None,
        }
    }
}

impl SandboxSpec {
    fn validate(&self) -> Result<(), SandboxError> {
        let invalid = |m: String| Err(SandboxError::Invalid(m));
        let bytes: usize = self.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        if self.metadata.len() > MAX_METADATA_ENTRIES || bytes > MAX_METADATA_BYTES {
            return invalid(format!(
                "metadata is too large: at most {MAX_METADATA_ENTRIES} entries and {MAX_METADATA_BYTES} bytes"
            ));
        }
        validate_env(&self.env)?;
        let env_bytes: usize = self.env.iter().map(|(k, v)| k.len() + v.len()).sum();
        if self.env.len() > MAX_ENV_ENTRIES || env_bytes > MAX_ENV_BYTES {
            return invalid(format!("env is too large: at most {MAX_ENV_ENTRIES} variables and {MAX_ENV_BYTES} bytes"));
        }
        if let Some(id) = &self.id
            && !is_plain_name(id)
        {
            return invalid(format!(
                "invalid sandbox id `{id}`: use 1-{MAX_PLAIN_NAME_BYTES} letters, digits, `-` or `_`"
            ));
        }
        for (name, value) in [("idle_timeout_ms", self.idle_timeout), ("lifetime_ms", self.lifetime)] {
            validate_timeout(name, value)?;
        }
        if let Some(egress) = &self.egress {
            if !self.network {
                return invalid("`egress` rules apply only to a sandbox with `network: true`".into());
            }
            egress.rules().map_err(|e| SandboxError::Invalid(e.to_string()))?;
        }
        crate::packages::validate(&self.packages).map_err(|e| SandboxError::Invalid(e.to_string()))?;
        Ok(())
    }
}

fn validate_timeout(name: &str, value: Option<Duration>) -> Result<(), SandboxError> {
    match value {
        Some(d) if d.is_zero() || d > MAX_LIFETIME => {
            Err(SandboxError::Invalid(format!("`{name}` must be between 1 and {} ms", MAX_LIFETIME.as_millis())))
        }
        _ => Ok(()),
    }
}

/// Where and how to run a cell. Unknown fields are rejected.
///
/// The limits are a type parameter, as in [`ExecRequest`](crate::ExecRequest), so a service's
/// wire format is this same type: it takes `RunOptions<LimitsPatch>` (limits left out get its
/// policy's defaults) and resolves it with [`RunOptions::with_resolved_limits`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RunOptions<L = Limits> {
    /// The context to run in. Default: the sandbox's default context for `language`.
    #[serde(default)]
    pub context: Option<String>,
    /// The language, when no context is named. Default: the template's.
    #[serde(default)]
    pub language: Option<Language>,
    /// Limits for this cell. Default: [`Limits::default`].
    #[serde(default)]
    pub limits: L,
}

impl<L> RunOptions<L> {
    /// The same options with their limits resolved by `resolve` (a service's policy applied to
    /// the limits a caller asked for).
    pub fn with_resolved_limits<E>(self, resolve: impl FnOnce(&L) -> Result<Limits, E>) -> Result<RunOptions, E> {
        let limits = resolve(&self.limits)?;
        Ok(RunOptions { context: self.context, language: self.language, limits })
    }
}

/// What a caller may know about a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct SandboxInfo {
    /// Its id.
    pub id: String,
    /// Its template.
    pub template: Template,
    /// Its metadata.
    pub metadata: BTreeMap<String, String>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// When its lifetime ends, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// Its idle timeout in milliseconds.
    pub idle_timeout_ms: u64,
    /// Its contexts.
    pub contexts: Vec<ContextInfo>,
    /// `running`, or `paused` (checkpointed, its memory released; a cell or a resume brings
    /// it back).
    pub state: SandboxState,
    /// When its latest checkpoint (a pause, a checkpoint, or a cell's in a sandbox
    /// checkpointed after every cell) was taken, milliseconds since the Unix epoch; `None`
    /// if it has none.
    pub checkpointed_at_ms: Option<u64>,
    /// When its contexts are checkpointed.
    pub checkpoint: CheckpointPolicy,
    /// What its idle timeout does.
    pub on_idle: IdleAction,
    /// Whether a cell resumes it when it is paused.
    pub auto_resume: bool,
}

/// Whether a sandbox's contexts are in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SandboxState {
    /// Its contexts are live.
    Running,
    /// Checkpointed by [`Sandbox::pause`]; costs disk only until a cell or
    /// [`Sandbox::resume`].
    Paused,
}

/// The registry of open sandboxes. Cheap to clone; the reaper stops when the last clone drops.
#[derive(Clone)]
pub struct Sandboxes {
    registry: Arc<Registry>,
}

impl std::fmt::Debug for Sandboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandboxes").field("open", &self.len()).finish_non_exhaustive()
    }
}

struct Registry {
    /// This registry's hold on its snapshot directory ([`durable::Manifests::lock`]).
    _lock: std::fs::File,
    /// The snapshot directory, when it is a temporary one (removed with the registry).
    _temporary: Option<tempfile::TempDir>,
    engine: Engine,
    checkpoints: Checkpoints,
    manifests: durable::Manifests,
    templates: templates::Templates,
    /// Sandboxes an earlier process left that cannot come back: id to (owner, why).
    lost: Mutex<HashMap<String, (Option<String>, String)>>,
    config: SandboxesConfig,
    open: Mutex<Open>,
    reaper: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: tokio::sync::broadcast::Sender<ClosedSandbox>,
}

/// Closings kept for subscribers that have not read them yet; a subscriber further behind is
/// told it lagged.
pub const CLOSED_BACKLOG: usize = 4096;

/// A sandbox that closed (killed or expired), for [`Sandboxes::subscribe_closed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedSandbox {
    /// Its id.
    pub id: String,
    /// Its owner.
    pub owner: Option<String>,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it closed.
    pub closed_at: SystemTime,
}

impl Registry {
    fn announce_closed(&self, sandbox: &Sandbox) {
        let closed = ClosedSandbox {
            id: sandbox.shared.identity.id.clone(),
            owner: sandbox.shared.identity.owner.clone(),
            created_at: sandbox.shared.identity.created_at,
            closed_at: SystemTime::now(),
        };
        // Nobody listening is fine.
        let _ = self.closed.send(closed);
    }
}

/// The open sandboxes, and places reserved for sandboxes being created.
#[derive(Default)]
struct Open {
    by_id: HashMap<String, Sandbox>,
    /// Places taken by creations in progress, per owner (all of them: their sum).
    reserved: HashMap<Option<String>, usize>,
}

impl Open {
    fn reserved_total(&self) -> usize {
        self.reserved.values().sum()
    }

    fn owned_by(&self, owner: &Option<String>) -> usize {
        let open = self.by_id.values().filter(|s| &s.shared.identity.owner == owner).count();
        open + self.reserved.get(owner).copied().unwrap_or(0)
    }
}

/// A place for one sandbox being created, taken under the registry's lock; given back when
/// dropped (the sandbox then counts itself, or the creation failed).
struct Reservation {
    registry: Arc<Registry>,
    owner: Option<String>,
    places: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut open = self.registry.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.reserved.get_mut(&self.owner) {
            *count = count.saturating_sub(self.places);
            if *count == 0 {
                open.reserved.remove(&self.owner);
            }
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(reaper) = self.reaper.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            reaper.abort();
        }
        // With a temporary snapshot directory nothing outlives the registry: every sandbox goes.
        let keep_paused = self._temporary.is_none();
        for sandbox in self.open.get_mut().unwrap_or_else(|e| e.into_inner()).by_id.values() {
            if keep_paused {
                sandbox.shared.leave();
            } else {
                drop(sandbox.shared.shut());
            }
        }
    }
}

impl Sandboxes {
    /// Opens a registry whose sandboxes run on `engine`. Must be called inside a tokio runtime
    /// (the reaper is a task on it).
    pub fn new(engine: Engine, config: SandboxesConfig) -> Result<Self, SandboxError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| SandboxError::Invalid("Sandboxes::new must be called inside a tokio runtime".into()))?;
        workspace::prepare_workspace_root(&config.workspace_root).map_err(|e| {
            SandboxError::File(FileError::Io { path: config.workspace_root.display().to_string(), source: e })
        })?;
        if config.workspace_bytes.is_some() && !quota::can_enforce() {
            return Err(SandboxError::Invalid(
                "a workspace disk quota needs root (each workspace is a size-limited tmpfs mount); \
                 run as root or set no quota"
                    .into(),
            ));
        }
        let io =
            |dir: &std::path::Path, e| SandboxError::File(FileError::Io { path: dir.display().to_string(), source: e });
        let temporary = match &config.snapshot_dir {
            Some(_) => None,
            None => Some(
                tempfile::Builder::new()
                    .prefix("soulbox-snapshots-")
                    .tempdir()
                    .map_err(|e| io(&std::env::temp_dir(), e))?,
            ),
        };
        let snapshot_dir = config
            .snapshot_dir
            .clone()
            .or_else(|| temporary.as_ref().map(|t| t.path().to_path_buf()))
            .unwrap_or_default();
        let mut blobs = BlobStore::open(&snapshot_dir)?;
        if let Some(replica) = &config.replica {
            blobs = blobs.with_replica(replica.clone());
        }
        let lock = durable::Manifests::lock(&snapshot_dir).map_err(|e| io(&snapshot_dir, e))?.ok_or_else(|| {
            SandboxError::Invalid(format!(
                "the snapshot directory {} is in use by another sandbox registry (each server needs its own)",
                snapshot_dir.display()
            ))
        })?;
        let manifests = durable::Manifests::open(&snapshot_dir).map_err(|e| io(&snapshot_dir, e))?;
        let found = manifests.take_stock();
        let kept: std::collections::HashSet<PathBuf> = found
            .iter()
            .filter_map(|f| match f {
                durable::Found::Checkpointed(manifest) => Some(manifest.workspace.clone()),
                durable::Found::Lost { .. } => None,
            })
            .collect();
        let swept = quota::sweep_dead(&config.workspace_root, &kept);
        if swept > 0 {
            tracing::info!(swept, "removed the workspaces of processes that died");
        }
        let mut named = crate::checkpoints::Named::default();
        for found in &found {
            if let durable::Found::Checkpointed(manifest) = found {
                named.checkpoints.extend(manifest.checkpoints().cloned());
                named.blobs.extend(handed_over(manifest, &blobs).map(|handover| handover.blobs()).unwrap_or_default());
            }
        }
        let templates = templates::Templates::open(&snapshot_dir).map_err(|e| io(&snapshot_dir, e))?;
        named.checkpoints.extend(templates.checkpoints());
        let checkpoints = Checkpoints::new(blobs);
        let unnamed = checkpoints.retain(&named);
        if unnamed > 0 {
            tracing::info!(unnamed, "removed checkpoints no paused sandbox names");
        }
        let registry = Arc::new(Registry {
            _lock: lock,
            _temporary: temporary,
            engine,
            checkpoints,
            manifests,
            templates,
            lost: Mutex::new(HashMap::new()),
            config,
            open: Mutex::new(Open::default()),
            reaper: Mutex::new(None),
            closed: tokio::sync::broadcast::channel(CLOSED_BACKLOG).0,
        });
        let weak = Arc::downgrade(&registry);
        let reaper = runtime.spawn(reap(weak));
        *registry.reaper.lock().unwrap_or_else(|e| e.into_inner()) = Some(reaper);
        let sandboxes = Sandboxes { registry };
        sandboxes.take_back(found);
        Ok(sandboxes)
    }

    /// Pauses every open sandbox (a server that stops keeps its sandboxes for the next start).
    /// Returns how many were paused and how many could not be (those are lost to the next
    /// process, which says so).
    pub async fn pause_all(&self) -> (usize, usize) {
        let open: Vec<Sandbox> =
            self.registry.open.lock().unwrap_or_else(|e| e.into_inner()).by_id.values().cloned().collect();
        let (mut paused, mut refused) = (0, 0);
        for sandbox in open {
            match sandbox.pause_regardless_of_quota().await {
                Ok(_) => paused += 1,
                Err(error) => {
                    tracing::warn!(sandbox = %sandbox.id(), %error, "could not pause a sandbox on the way out");
                    refused += 1;
                }
            }
        }
        (paused, refused)
    }

    /// Takes back the paused sandboxes an earlier process left, and notes the lost ones.
    fn take_back(&self, found: Vec<durable::Found>) {
        let (mut adopted, mut lost) = (0, 0);
        for found in found {
            let (id, owner, why) = match found {
                durable::Found::Checkpointed(manifest) => match self.adopt(&manifest) {
                    Ok(()) => {
                        adopted += 1;
                        continue;
                    }
                    Err(why) => {
                        self.registry.manifests.remove(&manifest.id);
                        (manifest.id, manifest.owner, why)
                    }
                },
                durable::Found::Lost { id, owner, why } => (id, owner, why),
            };
            tracing::warn!(sandbox = %id, %why, "a sandbox of an earlier process is lost");
            if let Some(ledger) = &self.registry.config.ledger {
                ledger.record(ledger::lost(id.clone(), owner.clone(), why.clone()));
            }
            self.registry.lost.lock().unwrap_or_else(|e| e.into_inner()).insert(id, (owner, why));
            lost += 1;
        }
        if adopted + lost > 0 {
            tracing::info!(adopted, lost, "took back the paused sandboxes of an earlier process");
        }
    }

    /// Takes over the sandbox whose hand-over is blob `manifest` (reported by another
    /// registry's [`HandoverLog`]; fetched through the replica): its
    /// workspace's files are restored into a new workspace here, and it opens paused, its
    /// contexts restored from their checkpoints when used, as [`Sandbox::resume`] would. The
    /// other registry must no longer run it: that is the caller's to ensure (a cluster's
    /// ownership). A sandbox already open here is refused ([`SandboxError::Exists`]); one
    /// that cannot be rebuilt (a blob missing from the object store, say) is
    /// [`SandboxError::Lost`], with why.
    pub async fn take_over(&self, manifest: &BlobId) -> Result<Sandbox, SandboxError> {
        let this = self.clone();
        let blob = manifest.clone();
        let id = tokio::task::spawn_blocking(move || this.take_over_blocking(&blob))
            .await
            .map_err(|_| SandboxError::Interrupted)??;
        tracing::info!(sandbox = %id, %manifest, "took over a sandbox");
        self.get(&id)
    }

    fn take_over_blocking(&self, blob: &BlobId) -> Result<String, SandboxError> {
        let lost = |id: &str, why: String| SandboxError::Lost { id: id.to_owned(), why };
        let bytes = self.registry.checkpoints.blobs().get(blob)?;
        let mut manifest = durable::read_manifest(&bytes).map_err(|why| lost(blob.as_str(), why))?;
        if self.knows(&manifest.id) {
            return Err(SandboxError::Exists(manifest.id));
        }
        let Some(files) = manifest.workspace_snapshot.clone() else {
            return Err(lost(&manifest.id, "its hand-over has no snapshot of its files".into()));
        };
        let config = &self.registry.config;
        let workspace = match config.workspace_bytes {
            Some(bytes) => Workspace::create_with_quota(&config.workspace_root, bytes),
            None => Workspace::create_in(&config.workspace_root),
        };
        let workspace = workspace.map_err(|e| lost(&manifest.id, format!("could not make its workspace ({e})")))?;
        let refused = |why: String| {
            workspace.remove();
            lost(&manifest.id, why)
        };
        handover::restore(&files, self.registry.checkpoints.blobs(), workspace.host_path()).map_err(refused)?;
        manifest.workspace = workspace.host_path().to_path_buf();
        self.registry.manifests.write(&manifest, true).map_err(|e| refused(format!("could not record it ({e})")))?;
        if let Err(why) = self.adopt(&manifest) {
            self.registry.manifests.remove(&manifest.id);
            return Err(refused(why));
        }
        Ok(manifest.id)
    }

    /// Opens a paused sandbox from its manifest, its contexts still paused.
    fn adopt(&self, manifest: &durable::Manifest) -> Result<(), String> {
        if manifest.workspace.parent() != Some(self.registry.config.workspace_root.as_path()) {
            return Err(format!(
                "its workspace is not under this server's workspace root ({})",
                manifest.workspace.display()
            ));
        }
        let quota = self.registry.config.workspace_bytes.is_some();
        if quota && !quota::is_mounted(&manifest.workspace) {
            return Err(
                "its workspace's quota file system is gone (the machine restarted), and its files with it".into()
            );
        }
        let workspace =
            Workspace::adopt(&manifest.workspace, quota).map_err(|e| format!("its workspace is gone ({e})"))?;
        // Its checkpoints are checked when they are loaded: one that is damaged or missing is
        // refused then, with why, and the sandbox stays (its files can still be read).
        let (now, wall) = (Instant::now(), epoch_ms(SystemTime::now()));
        let identity = Identity {
            id: manifest.id.clone(),
            owner: manifest.owner.clone(),
            template: manifest.template,
            metadata: manifest.metadata.clone(),
            env: manifest.env.clone(),
            network: manifest.network,
            egress: manifest.egress.clone(),
            packages: manifest.packages.clone(),
            policy: manifest.policy,
            created_at: UNIX_EPOCH + Duration::from_millis(manifest.created_at_ms),
        };
        let clock = Clock {
            idle_timeout: Duration::from_millis(manifest.idle_timeout_ms),
            ends_at: now + Duration::from_millis(manifest.expires_at_ms.saturating_sub(wall)),
            lifetime_left: manifest.lifetime_left_ms.map(Duration::from_millis),
            last_active: now,
            busy: 0,
        };
        let shared = Arc::new(Registry::shared(&self.registry, identity, workspace, clock, true));
        shared.checkpointed_at_ms.store(manifest.checkpointed_at_ms, Ordering::Relaxed);
        {
            let mut contexts = shared.contexts.lock().unwrap_or_else(|e| e.into_inner());
            for record in &manifest.contexts {
                let spec = shared.kernel_spec(record.language, record.preload);
                contexts.by_id.insert(record.id.clone(), Arc::new(Context::adopt(record, spec)));
            }
            contexts.defaults = manifest.defaults.iter().cloned().collect();
        }
        if let Some(handover) = &shared.handover {
            *handover.lock().unwrap_or_else(|e| e.into_inner()) =
                handed_over(manifest, self.registry.checkpoints.blobs()).unwrap_or_default();
        }
        shared.report(ledger::LedgerState::Paused);
        let sandbox = Sandbox { shared };
        self.registry.open.lock().unwrap_or_else(|e| e.into_inner()).by_id.insert(manifest.id.clone(), sandbox);
        Ok(())
    }

    /// Creates a sandbox with its template's default context started. Its place (within the
    /// registry's bound and its owner's) is reserved before anything else happens.
    pub async fn create(&self, spec: SandboxSpec) -> Result<Sandbox, SandboxError> {
        spec.validate()?;
        if let Some(template) = spec.from_template.clone() {
            return self.create_from_template(spec, &template).await;
        }
        let reservation = self.reserve(spec.owner.as_deref(), spec.id.as_deref(), 1)?;
        let workspace = self.registry.new_workspace()?;
        let now = Instant::now();
        let identity = Identity::new(&spec, spec.template, spec.env.clone());
        let clock = Clock {
            idle_timeout: spec.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT),
            ends_at: now + spec.lifetime.unwrap_or(DEFAULT_LIFETIME),
            lifetime_left: None,
            last_active: now,
            busy: 0,
        };
        let made = Unopened::new(Sandbox {
            shared: Arc::new(Registry::shared(&self.registry, identity, workspace, clock, false)),
        });
        let span = tracing::info_span!("sandbox_create", sandbox = %made.id(), template = %spec.template);
        made.default_context(spec.template.language()).instrument(span).await?;
        let sandbox = self.open_new(made)?;
        drop(reservation);
        sandbox.shared.record(Vec::new()).await;
        tracing::info!(sandbox = %sandbox.id(), template = %spec.template, "sandbox created");
        Ok(sandbox)
    }

    /// Adds a sandbox just made to the open ones; one whose id another took meanwhile is shut
    /// and refused.
    fn open_new(&self, made: Unopened) -> Result<Sandbox, SandboxError> {
        let mut open = self.registry.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.by_id.contains_key(made.id()) {
            drop(open);
            return Err(SandboxError::Exists(made.id().to_owned()));
        }
        let sandbox = made.opened();
        open.by_id.insert(sandbox.id().to_owned(), sandbox.clone());
        Ok(sandbox)
    }

    /// Takes `places` places for sandboxes of `owner` (one of them named `id`) within the
    /// registry's bound and the owner's quota: all of them or none.
    fn reserve(&self, owner: Option<&str>, id: Option<&str>, places: usize) -> Result<Reservation, SandboxError> {
        let config = &self.registry.config;
        let owner = owner.map(str::to_owned);
        let mut open = self.registry.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = id
            && open.by_id.contains_key(id)
        {
            return Err(SandboxError::Exists(id.to_owned()));
        }
        if open.by_id.len() + open.reserved_total() + places > config.max_sandboxes {
            let max = config.max_sandboxes;
            return Err(SandboxError::Full(format!("{max} sandboxes are open, the most allowed; retry later")));
        }
        if open.owned_by(&owner) + places > config.max_per_owner {
            let max = config.max_per_owner;
            return Err(SandboxError::QuotaExceeded(format!(
                "{max} sandboxes of this owner may be open at once; kill some first"
            )));
        }
        *open.reserved.entry(owner.clone()).or_default() += places;
        Ok(Reservation { registry: Arc::clone(&self.registry), owner, places })
    }

    /// The sandbox with this id.
    pub fn get(&self, id: &str) -> Result<Sandbox, SandboxError> {
        let open = self.registry.open.lock().unwrap_or_else(|e| e.into_inner());
        open.by_id.get(id).cloned().ok_or_else(|| self.missing(None, id))
    }

    /// Why `id` is not open, as `owner` may know it: [`SandboxError::Lost`] for a sandbox of
    /// theirs an earlier process could not hand back, else [`SandboxError::NotFound`].
    fn missing(&self, owner: Option<Option<&str>>, id: &str) -> SandboxError {
        let lost = self.registry.lost.lock().unwrap_or_else(|e| e.into_inner());
        match lost.get(id) {
            Some((lost_owner, why)) if owner.is_none_or(|o| o == lost_owner.as_deref()) => {
                SandboxError::Lost { id: id.to_owned(), why: why.clone() }
            }
            _ => SandboxError::NotFound(id.to_owned()),
        }
    }

    /// The sandbox with this id if `owner` owns it; otherwise [`SandboxError::NotFound`], exactly
    /// as if it did not exist.
    pub fn get_owned(&self, owner: Option<&str>, id: &str) -> Result<Sandbox, SandboxError> {
        self.get(id).ok().filter(|s| s.owner() == owner).ok_or_else(|| self.missing(Some(owner), id))
    }

    /// Every open sandbox whose metadata holds all of `filter`'s pairs, oldest first.
    pub fn list(&self, filter: &BTreeMap<String, String>) -> Vec<SandboxInfo> {
        self.list_where(|_| true, filter)
    }

    /// `owner`'s open sandboxes whose metadata holds all of `filter`'s pairs, oldest first.
    pub fn list_owned(&self, owner: Option<&str>, filter: &BTreeMap<String, String>) -> Vec<SandboxInfo> {
        self.list_where(|s| s.owner() == owner, filter)
    }

    fn list_where(&self, keep: impl Fn(&Sandbox) -> bool, filter: &BTreeMap<String, String>) -> Vec<SandboxInfo> {
        let open: Vec<Sandbox> =
            self.registry.open.lock().unwrap_or_else(|e| e.into_inner()).by_id.values().cloned().collect();
        let mut infos: Vec<SandboxInfo> = open
            .iter()
            .filter(|s| keep(s) && filter.iter().all(|(k, v)| s.shared.identity.metadata.get(k) == Some(v)))
            .map(Sandbox::info)
            .collect();
        infos.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then_with(|| a.id.cmp(&b.id)));
        infos
    }

    /// Kills the sandbox with this id: it is gone from the registry at once, its kernels are
    /// dropped and its workspace deleted before this returns; its machine (if it had one) is
    /// removed in the background. Await the returned [`Teardown`] to know every process is dead;
    /// dropping it is fine.
    pub fn kill(&self, id: &str) -> Result<Teardown, SandboxError> {
        let removed = self.registry.open.lock().unwrap_or_else(|e| e.into_inner()).by_id.remove(id);
        let sandbox = removed.ok_or_else(|| SandboxError::NotFound(id.to_owned()))?;
        let teardown = sandbox.shared.shut();
        self.registry.announce_closed(&sandbox);
        tracing::info!(sandbox = %id, "sandbox killed");
        Ok(teardown)
    }

    /// Every sandbox that closes from now on (killed or expired), as it closes: for a service
    /// that accounts for sandbox time.
    pub fn subscribe_closed(&self) -> tokio::sync::broadcast::Receiver<ClosedSandbox> {
        self.registry.closed.subscribe()
    }

    /// Whether the registry knows `id`: open (running or paused), or lost by an earlier
    /// process. A ledger entry of a sandbox it does not know is stale (see [`SandboxLedger`]).
    pub fn knows(&self, id: &str) -> bool {
        self.registry.open.lock().unwrap_or_else(|e| e.into_inner()).by_id.contains_key(id)
            || self.registry.lost.lock().unwrap_or_else(|e| e.into_inner()).contains_key(id)
    }

    /// Sandboxes open now.
    pub fn len(&self) -> usize {
        self.registry.open.lock().unwrap_or_else(|e| e.into_inner()).by_id.len()
    }

    /// Whether no sandbox is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn reap(registry: Weak<Registry>) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut collected = Instant::now();
    loop {
        tick.tick().await;
        let Some(registry) = registry.upgrade() else { return };
        let now = Instant::now();
        let expired: Vec<(Sandbox, Expiry)> = {
            let open = registry.open.lock().unwrap_or_else(|e| e.into_inner());
            open.by_id.values().filter_map(|s| s.shared.expired(now).map(|why| (s.clone(), why))).collect()
        };
        for (sandbox, why) in expired {
            let mut reason = why.as_str().to_owned();
            if why == Expiry::Idle && sandbox.shared.identity.policy.on_idle == IdleAction::Pause {
                match sandbox.pause().await {
                    Ok(_) => {
                        tracing::info!(sandbox = %sandbox.id(), "idle sandbox paused");
                        continue;
                    }
                    Err(error) => reason = format!("idle, and it could not be paused: {error}"),
                }
            }
            let removed = registry.open.lock().unwrap_or_else(|e| e.into_inner()).by_id.remove(sandbox.id());
            if let Some(sandbox) = removed {
                sandbox.shared.shut();
                registry.announce_closed(&sandbox);
                tracing::info!(sandbox = %sandbox.id(), %reason, "sandbox expired");
            }
        }
        if now.duration_since(collected) >= COLLECT_INTERVAL {
            registry.collect_checkpoints(false).await;
            collected = now;
        }
    }
}

/// Why the reaper ends a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Its lifetime is over.
    Lifetime,
    /// It has been idle for longer than its idle timeout.
    Idle,
}

impl Expiry {
    fn as_str(self) -> &'static str {
        match self {
            Expiry::Lifetime => "lifetime",
            Expiry::Idle => "idle",
        }
    }
}

impl Registry {
    /// Removes the checkpoints nothing names any more (replaced, or their sandbox gone) if
    /// something may have become garbage since the last collection, or anyway with `always`.
    /// Returns how many blobs went.
    async fn collect_checkpoints(&self, always: bool) -> usize {
        let named = || {
            let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let mut named = crate::checkpoints::Named::default();
            for sandbox in open.by_id.values() {
                let contexts = sandbox.shared.context_handles();
                named.checkpoints.extend(contexts.iter().filter_map(|context| context.stored_checkpoint()));
                named.blobs.extend(sandbox.shared.handed_over());
            }
            named.checkpoints.extend(self.templates.checkpoints());
            named
        };
        let removed = if always {
            self.checkpoints.collect(named).await
        } else {
            self.checkpoints.collect_if_needed(named).await
        };
        if removed > 0 {
            tracing::debug!(removed, "collected checkpoints nothing names");
        }
        removed
    }
}

/// The rest of a killed sandbox's teardown: its machine's removal. Await it (it is a future)
/// to know every process of the sandbox is dead; dropping it lets the teardown finish in the
/// background.
#[derive(Debug)]
pub struct Teardown {
    machine: Option<tokio::task::JoinHandle<()>>,
}

impl std::future::IntoFuture for Teardown {
    type Output = ();
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            if let Some(machine) = self.machine {
                // A machine's shutdown never fails; a panic in it is the backend's bug, logged by
                // the runtime.
                let _ = machine.await;
            }
        })
    }
}

/// A sandbox being made, not yet in the registry: shut (contexts stopped, workspace removed)
/// if dropped before [`Unopened::opened`], whether its creation failed or the caller's future
/// was dropped halfway (a client that hung up).
struct Unopened(Option<Sandbox>);

impl Unopened {
    fn new(sandbox: Sandbox) -> Self {
        Unopened(Some(sandbox))
    }

    /// The sandbox, now the registry's to shut, idle from now: its idle time counts from the
    /// moment the reaper can see it, not from when its making began (a default context that
    /// took longer to start than the idle timeout had it paused or killed as it opened).
    fn opened(mut self) -> Sandbox {
        let sandbox = self.0.take().expect("an unopened sandbox is opened once");
        sandbox.shared.clock.lock().unwrap_or_else(|e| e.into_inner()).last_active = Instant::now();
        sandbox
    }
}

impl std::ops::Deref for Unopened {
    type Target = Sandbox;

    fn deref(&self) -> &Sandbox {
        self.0.as_ref().expect("an unopened sandbox is opened once")
    }
}

impl Drop for Unopened {
    fn drop(&mut self) {
        if let Some(sandbox) = self.0.take() {
            drop(sandbox.shared.shut());
        }
    }
}

/// A handle to one sandbox. Cheap to clone. Once the sandbox is killed or expired, operations
/// fail with [`SandboxError::NotFound`].
#[derive(Clone)]
pub struct Sandbox {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("id", &self.shared.identity.id).finish_non_exhaustive()
    }
}

struct Shared {
    /// The registry it is in (gone once the registry closes).
    registry: std::sync::Weak<Registry>,
    identity: Identity,
    engine: Engine,
    /// Where its contexts' checkpoints go.
    checkpoints: Checkpoints,
    /// Paused ([`Sandbox::pause`]) and not resumed since.
    paused: AtomicBool,
    /// Where its manifest goes.
    manifests: durable::Manifests,
    /// Held while the manifest changes with `paused`, `saved` and `generation`
    /// ([`checkpoint`]'s documentation), so a checkpoint and a cell never interleave.
    durability: tokio::sync::Mutex<()>,
    /// The manifest on disk names checkpoints of its latest state.
    saved: AtomicBool,
    /// Cells started and context changes, counted.
    generation: AtomicU64,
    /// When its latest checkpoint was taken (ms since the Unix epoch; 0: none).
    checkpointed_at_ms: AtomicU64,
    /// A manifest of it is on disk.
    durable: AtomicBool,
    /// Where its state changes are reported, if anywhere ([`ledger`]).
    ledger: Option<Arc<dyn SandboxLedger>>,
    /// What another registry would take it over from, when the registry hands sandboxes over
    /// ([`SandboxesConfig::handover`]).
    handover: Option<Mutex<Handover>>,
    workspace: Workspace,
    clock: Mutex<Clock>,
    contexts: Mutex<Contexts>,
    stop: StopSignal,
    processes: Processes,
}

/// Where a registry that hands sandboxes over ([`SandboxesConfig::handover`]) records each
/// sandbox's latest hand-over, for another registry to take it over from: shared by both (a
/// cluster's database).
#[async_trait::async_trait]
pub trait HandoverLog: Send + Sync + std::fmt::Debug {
    /// Sandbox `sandbox` can now be taken over from blob `manifest`; or, with `None`, it
    /// changed since its last hand-over, which no longer holds its state. Awaited before the
    /// checkpoint that made it is reported done.
    async fn handed_over(&self, sandbox: &str, manifest: Option<&BlobId>) -> Result<(), String>;
}

/// A sandbox's latest hand-over: the blobs another registry would take it over from.
#[derive(Default)]
struct Handover {
    /// Its workspace's files at its latest checkpoint.
    snapshot: Option<handover::WorkspaceSnapshot>,
    /// Its manifest's blob, while that manifest holds its latest state.
    manifest: Option<BlobId>,
}

impl Handover {
    /// The blobs it names.
    fn blobs(&self) -> std::collections::HashSet<BlobId> {
        let mut blobs = self.snapshot.as_ref().map(|snapshot| snapshot.blobs.clone()).unwrap_or_default();
        blobs.extend(self.manifest.clone());
        blobs
    }
}

/// The hand-over a manifest on disk names (blocking: its workspace index is read), if it has
/// one: its files' snapshot, and the manifest's own blob (the same bytes as the file).
fn handed_over(manifest: &durable::Manifest, blobs: &BlobStore) -> Option<Handover> {
    let index = manifest.workspace_snapshot.as_ref()?;
    match handover::named_by(index, blobs) {
        Ok(snapshot) => {
            Some(Handover { snapshot: Some(snapshot), manifest: Some(BlobId::of(&durable::encode(manifest))) })
        }
        Err(why) => {
            tracing::warn!(sandbox = %manifest.id, %why, "a sandbox's hand-over cannot be read; it is taken afresh");
            None
        }
    }
}

impl Shared {
    /// The blobs of its latest hand-over, if its registry hands sandboxes over.
    fn handed_over(&self) -> std::collections::HashSet<BlobId> {
        match &self.handover {
            Some(handover) => handover.lock().unwrap_or_else(|e| e.into_inner()).blobs(),
            None => Default::default(),
        }
    }
}

struct Clock {
    idle_timeout: Duration,
    ends_at: Instant,
    /// The lifetime a paused sandbox takes back when it resumes, when its pause replaced its
    /// end ([`SandboxesConfig::paused_lifetime`]).
    lifetime_left: Option<Duration>,
    last_active: Instant,
    /// Cells running or queued, and file operations in flight.
    busy: usize,
}

#[derive(Default)]
struct Contexts {
    by_id: BTreeMap<String, Arc<Context>>,
    defaults: HashMap<Language, String>,
    shut: bool,
}

/// What makes a sandbox itself, whichever process runs it.
#[derive(Clone)]
struct Identity {
    id: String,
    owner: Option<String>,
    template: Template,
    metadata: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    network: bool,
    egress: Option<NetworkPolicy>,
    packages: Vec<String>,
    policy: checkpoint::Policy,
    created_at: SystemTime,
}

impl Identity {
    /// A new sandbox's identity from `spec` (its id, or a new one, and its owner, metadata,
    /// network and policy), made from `template` with `env`.
    fn new(spec: &SandboxSpec, template: Template, env: BTreeMap<String, String>) -> Self {
        Identity {
            id: spec.id.clone().unwrap_or_else(new_sandbox_id),
            owner: spec.owner.clone(),
            template,
            metadata: spec.metadata.clone(),
            env,
            network: spec.network,
            egress: spec.egress.clone(),
            packages: spec.packages.clone(),
            policy: checkpoint::Policy {
                checkpoint: spec.checkpoint,
                on_idle: spec.on_idle,
                auto_resume: spec.auto_resume,
            },
            created_at: SystemTime::now(),
        }
    }
}

impl Registry {
    /// A sandbox's state, without contexts yet; `paused` for one taken back from its manifest.
    fn shared(self: &Arc<Self>, identity: Identity, workspace: Workspace, clock: Clock, paused: bool) -> Shared {
        Shared {
            registry: Arc::downgrade(self),
            identity,
            engine: self.engine.clone(),
            checkpoints: self.checkpoints.clone(),
            manifests: self.manifests.clone(),
            durability: tokio::sync::Mutex::new(()),
            durable: AtomicBool::new(paused),
            paused: AtomicBool::new(paused),
            saved: AtomicBool::new(paused),
            generation: AtomicU64::new(0),
            checkpointed_at_ms: AtomicU64::new(0),
            ledger: self.config.ledger.clone(),
            handover: self.config.handover.as_ref().map(|_| Mutex::default()),
            workspace,
            clock: Mutex::new(clock),
            contexts: Mutex::new(Contexts::default()),
            stop: StopSignal::default(),
            processes: Processes::default(),
        }
    }

    /// Bytes of checkpoints `owner` keeps: its sandboxes' latest checkpoints and its
    /// templates' (see [`SandboxesConfig::max_snapshot_bytes_per_owner`]).
    fn snapshot_bytes(&self, owner: &Option<String>) -> u64 {
        let mut named: Vec<BlobId> = {
            let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            open.by_id
                .values()
                .filter(|sandbox| sandbox.shared.identity.owner == *owner)
                .flat_map(|sandbox| sandbox.shared.context_handles())
                .filter_map(|context| context.stored_checkpoint())
                .collect()
        };
        named.extend(self.templates.owned_checkpoints(owner));
        named.iter().map(|id| self.checkpoints.stored_bytes(id)).sum()
    }

    /// A new, empty workspace (with the configured quota, if any).
    fn new_workspace(&self) -> Result<Workspace, SandboxError> {
        let root = &self.config.workspace_root;
        match self.config.workspace_bytes {
            Some(bytes) => Workspace::create_with_quota(root, bytes),
            None => Workspace::create_in(root),
        }
        .map_err(|e| SandboxError::File(FileError::Io { path: "workspace".into(), source: e }))
    }
}

impl Shared {
    /// How this sandbox's kernels run: in its workspace, with its environment, stop signal
    /// and owner.
    fn kernel_spec(&self, language: Language, preload: Preload) -> KernelSpec {
        KernelSpec {
            language,
            preload,
            workspace: self.workspace.host_path().to_path_buf(),
            env: self.identity.env.clone(),
            stop: self.stop.clone(),
            owner: self.identity.owner.clone(),
            network: self.identity.network.then(|| self.identity.egress.clone().unwrap_or_default()),
            packages: self.identity.packages.clone(),
        }
    }

    fn expired(&self, now: Instant) -> Option<Expiry> {
        let clock = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        if now >= clock.ends_at {
            Some(Expiry::Lifetime)
        } else if clock.busy == 0
            && !self.paused.load(Ordering::Relaxed)
            && now.duration_since(clock.last_active) >= clock.idle_timeout
        {
            Some(Expiry::Idle)
        } else {
            None
        }
    }

    /// Its contexts, oldest first (handles: a context removed meanwhile stays usable).
    fn context_handles(&self) -> Vec<Arc<Context>> {
        self.contexts.lock().unwrap_or_else(|e| e.into_inner()).by_id.values().cloned().collect()
    }

    /// Refuses a new checkpoint when the owner's checkpoints already take its bound
    /// ([`SandboxesConfig::max_snapshot_bytes_per_owner`]).
    fn check_snapshot_room(&self) -> Result<(), SandboxError> {
        let Some(registry) = self.registry.upgrade() else { return Ok(()) };
        let Some(max) = registry.config.max_snapshot_bytes_per_owner else { return Ok(()) };
        let used = registry.snapshot_bytes(&self.identity.owner);
        if used >= max {
            return Err(SandboxError::QuotaExceeded(format!(
                "this owner's checkpoints take {used} bytes, at or over the bound of {max}; kill paused sandboxes \
                 or delete templates first"
            )));
        }
        Ok(())
    }

    /// Raises the stop signal and takes every context out (no cell starts after this).
    fn stop_contexts(&self) -> BTreeMap<String, Arc<Context>> {
        self.stop.stop();
        let mut contexts = self.contexts.lock().unwrap_or_else(|e| e.into_inner());
        contexts.shut = true;
        contexts.defaults.clear();
        std::mem::take(&mut contexts.by_id)
    }

    fn shut(&self) -> Teardown {
        drop(self.stop_contexts());
        if self.durable.load(Ordering::Relaxed) {
            // Only a sandbox that was recorded (not one whose creation failed, or whose id
            // another took) has a ledger entry to end.
            self.report(ledger::LedgerState::Killed);
        }
        self.checkpoints.note_garbage();
        if self.durable.load(Ordering::Relaxed) {
            self.manifests.remove(&self.identity.id);
        }
        let machine = self.processes.shut();
        self.workspace.remove();
        Teardown { machine }
    }

    /// Stops the sandbox in this process only (its registry is closing): one whose manifest
    /// names checkpoints of its latest state (paused, or checkpointed since its last cell)
    /// keeps them, its manifest and its workspace for the next process to take back; anything
    /// else goes, except a manifest marked running, which tells the next process the sandbox
    /// is lost. (Checkpoints nothing names are collected when the next registry opens.)
    fn leave(&self) {
        drop(self.stop_contexts());
        drop(self.processes.shut());
        if !self.saved.load(Ordering::Relaxed) {
            self.workspace.remove();
        }
    }

    /// Removes the manifest a write in flight brought back after the sandbox was killed.
    fn forget_if_shut(&self) {
        if self.contexts.lock().unwrap_or_else(|e| e.into_inner()).shut {
            self.manifests.remove(&self.identity.id);
        }
    }

    fn info(&self) -> SandboxInfo {
        let clock = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        let now = (Instant::now(), SystemTime::now());
        let expires = now.1 + clock.ends_at.saturating_duration_since(now.0);
        let contexts =
            self.contexts.lock().unwrap_or_else(|e| e.into_inner()).by_id.values().map(|c| c.info()).collect();
        let checkpointed_at_ms = self.checkpointed_at_ms.load(Ordering::Relaxed);
        SandboxInfo {
            id: self.identity.id.clone(),
            template: self.identity.template,
            metadata: self.identity.metadata.clone(),
            created_at_ms: epoch_ms(self.identity.created_at),
            expires_at_ms: epoch_ms(expires),
            idle_timeout_ms: u64::try_from(clock.idle_timeout.as_millis()).unwrap_or(u64::MAX),
            contexts,
            state: if self.paused.load(Ordering::Relaxed) { SandboxState::Paused } else { SandboxState::Running },
            checkpointed_at_ms: (checkpointed_at_ms > 0).then_some(checkpointed_at_ms),
            checkpoint: self.identity.policy.checkpoint,
            on_idle: self.identity.policy.on_idle,
            auto_resume: self.identity.policy.auto_resume,
        }
    }

    fn begin(&self) -> Result<Activity<'_>, SandboxError> {
        if self.contexts.lock().unwrap_or_else(|e| e.into_inner()).shut {
            return Err(SandboxError::NotFound(self.identity.id.clone()));
        }
        let mut clock = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        clock.busy += 1;
        clock.last_active = Instant::now();
        Ok(Activity { clock: &self.clock })
    }
}

/// Marks a sandbox busy (not idle) while it lives.
struct Activity<'a> {
    clock: &'a Mutex<Clock>,
}

impl Drop for Activity<'_> {
    fn drop(&mut self) {
        let mut clock = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        clock.busy = clock.busy.saturating_sub(1);
        clock.last_active = Instant::now();
    }
}

impl Sandbox {
    /// Its id.
    pub fn id(&self) -> &str {
        &self.shared.identity.id
    }

    /// Its template.
    pub fn template(&self) -> Template {
        self.shared.identity.template
    }

    /// Its owner (a service's tenant), if it has one.
    pub fn owner(&self) -> Option<&str> {
        self.shared.identity.owner.as_deref()
    }

    /// Whether its processes may reach the network.
    pub fn allows_network(&self) -> bool {
        self.shared.identity.network
    }

    /// Its metadata.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.shared.identity.metadata
    }

    /// Whether it has been killed or has expired.
    pub fn is_gone(&self) -> bool {
        self.shared.contexts.lock().unwrap_or_else(|e| e.into_inner()).shut
    }

    /// A snapshot of what it is.
    pub fn info(&self) -> SandboxInfo {
        self.shared.info()
    }

    /// Changes its idle timeout, and/or ends its lifetime `lifetime` from now (as E2B's
    /// `set_timeout`).
    pub fn set_timeouts(&self, idle_timeout: Option<Duration>, lifetime: Option<Duration>) -> Result<(), SandboxError> {
        validate_timeout("idle_timeout_ms", idle_timeout)?;
        validate_timeout("lifetime_ms", lifetime)?;
        let _active = self.shared.begin()?;
        let mut clock = self.shared.clock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(idle) = idle_timeout {
            clock.idle_timeout = idle;
        }
        if let Some(lifetime) = lifetime {
            clock.ends_at = Instant::now() + lifetime;
        }
        Ok(())
    }

    /// Its workspace files. Operations keep the sandbox from going idle.
    pub fn files(&self) -> Result<Files<'_>, SandboxError> {
        Ok(Files { workspace: &self.shared.workspace, _active: self.shared.begin()? })
    }

    /// Its contexts, oldest first.
    pub fn contexts(&self) -> Vec<ContextInfo> {
        let contexts = self.shared.contexts.lock().unwrap_or_else(|e| e.into_inner());
        contexts.by_id.values().map(|c| c.info()).collect()
    }

    /// Starts a new context in `language`; `preload` defaults to what the template preloads.
    pub async fn create_context(
        &self,
        language: Language,
        preload: Option<Preload>,
    ) -> Result<ContextInfo, SandboxError> {
        let _active = self.shared.begin()?;
        let context = self
            .start_context(language, preload.unwrap_or(self.shared.identity.template.preload_for(language)))
            .await?;
        self.shared.changed().await;
        Ok(context.info())
    }

    /// The id of its default context for `language` (where cells that name no context run), if
    /// it has one yet.
    pub fn default_context_id(&self, language: Language) -> Option<String> {
        let contexts = self.shared.contexts.lock().unwrap_or_else(|e| e.into_inner());
        contexts.defaults.get(&language).filter(|id| contexts.by_id.contains_key(*id)).cloned()
    }

    /// Replaces a context's kernel with a fresh one (its state is lost).
    pub async fn restart_context(&self, id: &str) -> Result<ContextInfo, SandboxError> {
        let _active = self.shared.begin()?;
        let context = self.context(id)?;
        self.shared.wake().await;
        context.restart(&self.shared.engine, &self.shared.checkpoints).await?;
        self.shared.changed().await;
        Ok(context.info())
    }

    /// Removes a context (a cell running in it ends first).
    pub async fn remove_context(&self, id: &str) -> Result<(), SandboxError> {
        let _active = self.shared.begin()?;
        {
            let mut contexts = self.shared.contexts.lock().unwrap_or_else(|e| e.into_inner());
            contexts.by_id.remove(id).ok_or_else(|| SandboxError::ContextNotFound(id.to_owned()))?;
            contexts.defaults.retain(|_, default| default != id);
        }
        self.shared.checkpoints.note_garbage();
        self.shared.changed().await;
        Ok(())
    }

    /// Runs `code` and waits for it to end.
    pub async fn run_code(&self, code: &str, options: RunOptions) -> Result<Execution, SandboxError> {
        let (context, cell, span) = self.prepare_cell(code, options).await?;
        // Every event is kept until the end: the cell never waits for them to be read, so a
        // backend may run it on this task (see `collecting_channel`).
        let (events_tx, events_rx) = crate::events::collecting_channel();
        let (failure_tx, failure_rx) = tokio::sync::oneshot::channel();
        // Run and read together; awaited here rather than spawned: one task hop less for the
        // common call.
        let _active = self.shared.begin()?;
        let run = context.run(&self.shared, cell, events_tx, failure_tx).instrument(span);
        let ((), execution) = tokio::join!(run, ExecutionStream::new(events_rx, failure_rx).finish());
        execution
    }

    /// Runs `code`, returning its events as they happen. The cell runs on a task of its own:
    /// dropping the stream does not stop it.
    pub async fn run_code_stream(&self, code: &str, options: RunOptions) -> Result<ExecutionStream, SandboxError> {
        let (context, cell, span) = self.prepare_cell(code, options).await?;
        let (events_tx, events_rx) = crate::events::channel(events_deadline(&cell));
        let (failure_tx, failure_rx) = tokio::sync::oneshot::channel();
        let shared = Arc::clone(&self.shared);
        tokio::spawn(
            async move {
                let Ok(_active) = shared.begin() else {
                    let _ = failure_tx.send(SandboxError::NotFound(shared.identity.id.clone()));
                    return;
                };
                context.run(&shared, cell, events_tx, failure_tx).await;
            }
            .instrument(span),
        );
        Ok(ExecutionStream::new(events_rx, failure_rx))
    }

    /// Checks a cell and finds (or starts) its context.
    async fn prepare_cell(
        &self,
        code: &str,
        options: RunOptions,
    ) -> Result<(Arc<Context>, Cell, tracing::Span), SandboxError> {
        options.limits.validate().map_err(RequestError::from)?;
        validate_code(code)?;
        let _active = self.shared.begin()?;
        let context = match (&options.context, options.language) {
            (Some(id), language) => {
                let context = self.context(id)?;
                if language.is_some_and(|l| l != context.language()) {
                    return Err(SandboxError::Invalid(format!("context `{id}` runs {}", context.language())));
                }
                context
            }
            (None, language) => {
                self.default_context(language.unwrap_or(self.shared.identity.template.language())).await?
            }
        };
        let span = tracing::info_span!(
            "run_cell",
            sandbox = %self.shared.identity.id,
            context = %context.id,
            language = %context.language(),
            code_bytes = code.len(),
        );
        Ok((context, Cell { code: code.to_owned(), limits: options.limits }, span))
    }

    fn context(&self, id: &str) -> Result<Arc<Context>, SandboxError> {
        let contexts = self.shared.contexts.lock().unwrap_or_else(|e| e.into_inner());
        if contexts.shut {
            return Err(SandboxError::NotFound(self.shared.identity.id.clone()));
        }
        contexts.by_id.get(id).cloned().ok_or_else(|| SandboxError::ContextNotFound(id.to_owned()))
    }

    async fn default_context(&self, language: Language) -> Result<Arc<Context>, SandboxError> {
        let existing = {
            let contexts = self.shared.contexts.lock().unwrap_or_else(|e| e.into_inner());
            contexts.defaults.get(&language).and_then(|id| contexts.by_id.get(id)).cloned()
        };
        if let Some(context) = existing {
            return Ok(context);
        }
        let context = self.start_context(language, self.shared.identity.template.preload_for(language)).await?;
        let mut contexts = self.shared.contexts.lock().unwrap_or_else(|e| e.into_inner());
        // Two first cells may race to start a default: the first one registered wins.
        let id = contexts.defaults.entry(language).or_insert_with(|| context.id.clone()).clone();
        Ok(contexts.by_id.get(&id).cloned().unwrap_or(context))
    }

    async fn start_context(&self, language: Language, preload: Preload) -> Result<Arc<Context>, SandboxError> {
        if self.shared.contexts.lock().unwrap_or_else(|e| e.into_inner()).by_id.len() >= MAX_CONTEXTS_PER_SANDBOX {
            return Err(SandboxError::LimitReached(format!(
                "a sandbox holds at most {MAX_CONTEXTS_PER_SANDBOX} contexts; remove one first"
            )));
        }
        let spec = self.shared.kernel_spec(language, preload);
        let context = Arc::new(Context::start(&self.shared.engine, new_id("ctx"), spec).await?);
        let mut contexts = self.shared.contexts.lock().unwrap_or_else(|e| e.into_inner());
        if contexts.shut {
            return Err(SandboxError::NotFound(self.shared.identity.id.clone()));
        }
        contexts.by_id.insert(context.id.clone(), Arc::clone(&context));
        Ok(context)
    }
}

/// A sandbox's workspace, borrowed for file operations (see [`Workspace`]); while it lives the
/// sandbox is not idle.
pub struct Files<'a> {
    workspace: &'a Workspace,
    _active: Activity<'a>,
}

impl std::fmt::Debug for Files<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files").field("workspace", &self.workspace).finish()
    }
}

impl std::ops::Deref for Files<'_> {
    type Target = Workspace;

    fn deref(&self) -> &Workspace {
        self.workspace
    }
}

impl Files<'_> {
    /// Watches the directory at `path` for changes (`recursive`: its subdirectories too).
    pub async fn watch(&self, path: &str, recursive: bool) -> Result<WatchStream, SandboxError> {
        let host_dir = self.workspace.host_dir(path).await?;
        Ok(WatchStream::start(self.workspace.host_path(), &host_dir, recursive)?)
    }
}

/// How long a cell's events may wait for a reader: its deadline, plus time to queue for its
/// context and to end.
fn events_deadline(cell: &Cell) -> Instant {
    const SLACK: Duration = Duration::from_secs(30);
    Instant::now() + cell.limits.deadline.saturating_mul(2) + SLACK
}

/// The most bytes in a plain name: a sandbox id, a template name, a tenant.
pub const MAX_PLAIN_NAME_BYTES: usize = 64;

/// Whether `name` is a plain name: 1 to [`MAX_PLAIN_NAME_BYTES`] ASCII letters, digits, `-`
/// or `_` (safe in paths, URLs and logs). Sandbox ids, template names and SoulBox's tenants
/// are plain names.
pub fn is_plain_name(name: &str) -> bool {
    (1..=MAX_PLAIN_NAME_BYTES).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A fresh sandbox id (`sbx-` and 32 hex digits), for [`SandboxSpec::id`].
pub fn new_sandbox_id() -> String {
    new_id("sbx")
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

pub(crate) mod optional_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|ms| ms.map(Duration::from_millis))
    }
}

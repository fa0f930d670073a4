//! A sandbox's checkpoints: pause, resume, checkpoint on demand or after every cell, and the
//! manifest ([`super::durable`]) that names them.
//!
//! The manifest on disk says one of two things: the sandbox's checkpoints hold its latest
//! state (a new process takes it back, paused), or it changed after them (a new process
//! reports it lost). Three flags in [`Shared`] follow it, all changed under its durability
//! lock so that a checkpoint and a cell never interleave their marks:
//! - `paused`: its kernels are released (a pause); a cell or a resume brings them back.
//! - `saved`: the manifest on disk names checkpoints of its latest state. A cell, or any
//!   change to its contexts, clears it and marks the manifest changed ([`Shared::wake`])
//!   before anything changes, except in a sandbox checkpointed after every cell
//!   ([`CheckpointPolicy::EveryCell`]), whose manifest each cell's checkpoint rewrites and
//!   whose previous checkpoint stays the truth until it does.
//! - `generation`: counts cells and changes, so a checkpoint taken context by context can tell
//!   whether one got in between.
//!
//! Old checkpoints are not removed when replaced (forks and later checkpoints may share their
//! parts): the registry collects what nothing names ([`crate::checkpoints`]).

use super::context::ContextRecord;
use super::ledger::LedgerState;
use super::{FileError, Sandbox, SandboxError, SandboxInfo, Shared, durable, epoch_ms, handover};
use crate::checkpoints::Pin;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};
use tracing::Instrument;

/// When a sandbox's contexts are checkpointed, besides [`Sandbox::pause`] and
/// [`Sandbox::checkpoint`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CheckpointPolicy {
    /// Only when asked: a server that stops without pausing it loses it (and says so).
    #[default]
    OnPause,
    /// After every cell, before the cell's end is sent, incrementally (only what the cell
    /// changed is written): a server killed at any moment loses at most the cell that was
    /// running. Checkpoints are written, not synced: they survive the process, not the
    /// machine's power.
    EveryCell,
}

/// What a sandbox's idle timeout does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IdleAction {
    /// Kill it.
    #[default]
    Kill,
    /// Pause it (its lifetime, or the registry's paused lifetime, still ends it); one that
    /// cannot be paused is killed.
    Pause,
}

/// A sandbox's durability settings, from its spec, kept in its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Policy {
    pub checkpoint: CheckpointPolicy,
    pub on_idle: IdleAction,
    pub auto_resume: bool,
}

/// What [`Sandbox::checkpoint`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct CheckpointReport {
    /// Contexts checkpointed.
    pub contexts: usize,
    /// Bytes their checkpoints take in the snapshot store (compressed; parts shared with
    /// other checkpoints counted whole).
    pub stored_bytes: u64,
    /// Bytes this checkpoint added to the store (what changed since the last one).
    pub new_bytes: u64,
    /// When it was taken, milliseconds since the Unix epoch.
    pub checkpointed_at_ms: u64,
}

/// What [`Sandbox::pause`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct PauseReport {
    /// Contexts checkpointed and released.
    pub contexts: usize,
    /// Bytes their checkpoints take in the snapshot store (compressed).
    pub stored_bytes: u64,
    /// Whether native processes (in the sandbox's container) are part of the checkpoint:
    /// never. A pause stops the sandbox's container (its workspace stays); the next command
    /// starts a new one.
    pub processes_restored: bool,
    /// Native processes that were running in the container and stopped with it.
    pub processes_stopped: usize,
}

impl Shared {
    /// Marks the sandbox running before a cell or a change: its kernels come back, and its
    /// manifest, if it named checkpoints of its latest state, now says it changed after them
    /// (a process that dies from here on cannot hand it back), unless it is checkpointed
    /// after every cell.
    pub(super) async fn wake(&self) {
        let _durability = self.durability.lock().await;
        self.generation.fetch_add(1, Ordering::Relaxed);
        if self.paused.swap(false, Ordering::Relaxed) {
            self.take_back_lifetime();
            self.report(LedgerState::Running);
        }
        if self.identity.policy.checkpoint == CheckpointPolicy::EveryCell {
            return;
        }
        if self.saved.swap(false, Ordering::Relaxed) {
            if let Err(error) = self.manifests.mark_running(&self.identity.id) {
                tracing::warn!(%error, sandbox = %self.identity.id, "could not mark a sandbox's manifest changed");
            }
            // Its last hand-over no longer holds its latest state.
            if let Err(error) = self.hand_over(None).await {
                tracing::warn!(%error, sandbox = %self.identity.id, "could not withdraw a sandbox's hand-over");
            }
        }
    }

    /// After its contexts changed (one added, removed or restarted): [`Shared::wake`], and a
    /// sandbox checkpointed after every cell records its contexts as they now are.
    pub(super) async fn changed(&self) {
        self.wake().await;
        if self.identity.policy.checkpoint == CheckpointPolicy::EveryCell {
            self.record(Vec::new()).await;
        }
    }

    /// Writes its manifest as its contexts' latest checkpoints stand (not synced), then drops
    /// `pins`: it names checkpoints of its latest state only in a sandbox checkpointed after
    /// every cell whose contexts all have one (or never ran); otherwise it says the sandbox is
    /// running, so that a process that dies leaves a record saying the sandbox is lost, not
    /// that it never existed.
    pub(super) async fn record(&self, pins: Vec<Pin>) {
        let _durability = self.durability.lock().await;
        let contexts = self.context_handles();
        let whole = self.identity.policy.checkpoint == CheckpointPolicy::EveryCell
            && contexts.iter().all(|context| context.is_recoverable());
        let state = if whole { durable::Durability::Checkpointed } else { durable::Durability::Running };
        let records = contexts.iter().map(|context| context.record()).collect();
        let at = epoch_ms(SystemTime::now());
        match self.write_manifest(records, state, false, at).await {
            Ok(()) => {
                self.saved.store(whole, Ordering::Relaxed);
                if whole {
                    self.checkpointed_at_ms.store(at, Ordering::Relaxed);
                }
                self.report(LedgerState::Running);
            }
            Err(error) => {
                tracing::warn!(%error, sandbox = %self.identity.id, "could not record a sandbox on disk");
                // Its last hand-over is older than the cell just run: withdrawn, so a node that
                // takes it over reports it lost rather than older than it was.
                if let Err(error) = self.hand_over(None).await {
                    tracing::warn!(%error, sandbox = %self.identity.id, "could not withdraw a sandbox's hand-over");
                }
            }
        }
        drop(pins);
    }

    /// Records its latest hand-over (`None`: it has none that holds its state), in memory and
    /// in the registry's [`super::HandoverLog`], if the registry hands sandboxes over.
    async fn hand_over(
        &self,
        handed: Option<(handover::WorkspaceSnapshot, crate::blobs::BlobId)>,
    ) -> Result<(), SandboxError> {
        let (Some(state), Some(log)) =
            (&self.handover, self.registry.upgrade().and_then(|r| r.config.handover.clone()))
        else {
            return Ok(());
        };
        let manifest = {
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            match handed {
                Some((snapshot, id)) => {
                    (state.snapshot, state.manifest) = (Some(snapshot), Some(id.clone()));
                    Some(id)
                }
                None if state.manifest.is_none() => return Ok(()),
                // Withdrawn in memory once the log has it: a failed withdrawal is tried again.
                None => None,
            }
        };
        log.handed_over(&self.identity.id, manifest.as_ref()).await.map_err(|why| {
            SandboxError::File(FileError::Io {
                path: "the sandbox's hand-over".into(),
                source: std::io::Error::other(why),
            })
        })?;
        if manifest.is_none() {
            state.lock().unwrap_or_else(|e| e.into_inner()).manifest = None;
        }
        Ok(())
    }

    /// At a pause, in a registry with a paused lifetime: the sandbox is kept that long from now,
    /// and keeps the lifetime it had left for its resume (a sandbox paused again keeps what it
    /// had left the first time).
    fn keep_while_paused(&self) {
        let Some(kept) = self.registry.upgrade().and_then(|registry| registry.config.paused_lifetime) else {
            return;
        };
        let now = Instant::now();
        let mut clock = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        if clock.lifetime_left.is_none() {
            clock.lifetime_left = Some(clock.ends_at.saturating_duration_since(now));
        }
        clock.ends_at = now + kept;
    }

    /// At a resume (or a pause that failed): the lifetime left at the pause comes back.
    fn take_back_lifetime(&self) {
        let mut clock = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(left) = clock.lifetime_left.take() {
            clock.ends_at = Instant::now() + left;
        }
    }

    /// Writes the manifest of this sandbox with contexts `records` (synced if `durable`).
    async fn write_manifest(
        &self,
        records: Vec<ContextRecord>,
        state: durable::Durability,
        durable: bool,
        checkpointed_at_ms: u64,
    ) -> Result<(), SandboxError> {
        let mut manifest = self.manifest(records, state, checkpointed_at_ms);
        let manifests = self.manifests.clone();
        let hand_over = self.handover.is_some() && state == durable::Durability::Checkpointed;
        let previous =
            self.handover.as_ref().and_then(|h| h.lock().unwrap_or_else(|e| e.into_inner()).snapshot.clone());
        let blobs = self.checkpoints.blobs().clone();
        let workspace = self.workspace.host_path().to_path_buf();
        let io = |e| SandboxError::File(FileError::Io { path: "the sandbox's manifest".into(), source: e });
        let handed = tokio::task::spawn_blocking(move || -> Result<_, SandboxError> {
            if !hand_over {
                manifests.write(&manifest, durable).map_err(io)?;
                return Ok(None);
            }
            // The files, then the manifest naming them; a durable write waits for every
            // upload started, the files' included.
            let snapshot = handover::snapshot(&workspace, &blobs, previous.as_ref())?;
            manifest.workspace_snapshot = Some(snapshot.index.clone());
            let bytes = durable::encode(&manifest);
            let (id, _) = blobs.put(&bytes, durable)?;
            // Another machine takes it over from the object store: every upload, done.
            blobs.flush_replica()?;
            manifests.write_encoded(&manifest.id, &bytes, durable).map_err(io)?;
            Ok(Some((snapshot, id)))
        })
        .await
        .map_err(|_| SandboxError::Interrupted)??;
        self.hand_over(handed).await?;
        self.durable.store(true, Ordering::Relaxed);
        self.forget_if_shut();
        Ok(())
    }

    fn manifest(
        &self,
        records: Vec<ContextRecord>,
        state: durable::Durability,
        checkpointed_at_ms: u64,
    ) -> durable::Manifest {
        let info = self.info();
        let defaults = {
            let contexts = self.contexts.lock().unwrap_or_else(|e| e.into_inner());
            contexts.defaults.iter().map(|(language, id)| (*language, id.clone())).collect()
        };
        let lifetime_left_ms = {
            let clock = self.clock.lock().unwrap_or_else(|e| e.into_inner());
            clock.lifetime_left.map(|left| u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
        };
        durable::Manifest {
            lifetime_left_ms,
            format: durable::FORMAT,
            id: info.id,
            owner: self.identity.owner.clone(),
            template: info.template,
            metadata: info.metadata,
            env: self.identity.env.clone(),
            network: self.identity.network,
            egress: self.identity.egress.clone(),
            packages: self.identity.packages.clone(),
            policy: self.identity.policy,
            created_at_ms: info.created_at_ms,
            expires_at_ms: info.expires_at_ms,
            idle_timeout_ms: info.idle_timeout_ms,
            checkpointed_at_ms,
            workspace: self.workspace.host_path().to_path_buf(),
            contexts: records,
            defaults,
            state,
            workspace_snapshot: None,
        }
    }
}

impl Sandbox {
    /// Withdraws its hand-over, if its registry hands sandboxes over: for a change made
    /// outside a cell (its files, its processes), which its last hand-over does not hold; a
    /// registry taking it over before its next checkpoint reports it lost rather than older.
    pub async fn withdraw_hand_over(&self) -> Result<(), SandboxError> {
        let _durability = self.shared.durability.lock().await;
        self.shared.hand_over(None).await
    }

    /// Pauses the sandbox: every context is checkpointed into the snapshot store (after the
    /// cell it runs, if any) and its interpreter released, and its container (if it has one)
    /// is stopped with its processes, so a paused sandbox costs disk only; the workspace
    /// stays, and the next command starts a container again. A cell, or [`Sandbox::resume`],
    /// brings contexts back with every variable, import and object as it was. A context that
    /// cannot be checkpointed (it holds an open file) fails the pause with an error naming
    /// why; contexts already checkpointed stay so and come back on use. A paused sandbox is
    /// never reaped as idle; its lifetime still ends it, or the registry's
    /// [`paused_lifetime`](super::SandboxesConfig::paused_lifetime) from its pause.
    pub async fn pause(&self) -> Result<PauseReport, SandboxError> {
        self.shared.check_snapshot_room()?;
        self.pause_regardless_of_quota().await
    }

    /// [`Sandbox::pause`] whatever the owner's checkpoints take: for a registry that closes
    /// (its server stops), which keeps every sandbox it can rather than lose it.
    pub(super) async fn pause_regardless_of_quota(&self) -> Result<PauseReport, SandboxError> {
        let _active = self.shared.begin()?;
        let shared = &self.shared;
        let span = tracing::info_span!("sandbox_pause", sandbox = %shared.identity.id);
        let report = async {
            let contexts = shared.context_handles();
            let mut saved = Vec::with_capacity(contexts.len());
            for context in &contexts {
                saved.push(context.pause(&shared.checkpoints).await?);
            }
            // The checkpoints are on disk: now the manifest that names them, unless a cell got
            // in after its context was checkpointed (the sandbox then runs, and says so).
            let durability = shared.durability.lock().await;
            if !contexts.iter().all(|context| context.is_released()) {
                return Err(SandboxError::Busy(
                    "a cell ran in the sandbox while it was being paused; pause it again once it is idle".into(),
                ));
            }
            let at = epoch_ms(SystemTime::now());
            let records = contexts.iter().map(|context| context.record()).collect();
            shared.keep_while_paused();
            if let Err(error) = shared.write_manifest(records, durable::Durability::Checkpointed, true, at).await {
                shared.take_back_lifetime();
                return Err(error);
            }
            shared.paused.store(true, Ordering::Relaxed);
            shared.saved.store(true, Ordering::Relaxed);
            shared.checkpointed_at_ms.store(at, Ordering::Relaxed);
            shared.report(LedgerState::Paused);
            drop(durability);
            let ids: Vec<_> = saved.iter().filter_map(|s| s.id.clone()).collect();
            let stored_bytes = ids.iter().map(|id| shared.checkpoints.stored_bytes(id)).sum();
            drop(saved);
            let processes_stopped = shared.processes.stop_machine().await;
            Ok(PauseReport { contexts: ids.len(), stored_bytes, processes_restored: false, processes_stopped })
        }
        .instrument(span)
        .await?;
        Ok(report)
    }

    /// Checkpoints the sandbox without pausing it: every context is checkpointed (after the
    /// cell it runs, if any) and stays live, and the manifest naming the checkpoints is synced
    /// to disk, so a server that dies before the next cell hands the sandbox back as it is
    /// now. Only what changed since the context's last checkpoint is written. A cell that
    /// gets in before the manifest is written fails the checkpoint with
    /// [`SandboxError::Busy`].
    pub async fn checkpoint(&self) -> Result<CheckpointReport, SandboxError> {
        let _active = self.shared.begin()?;
        self.shared.check_snapshot_room()?;
        let shared = &self.shared;
        let span = tracing::info_span!("sandbox_checkpoint", sandbox = %shared.identity.id);
        async {
            let generation = shared.generation.load(Ordering::Relaxed);
            let contexts = shared.context_handles();
            let mut saved = Vec::with_capacity(contexts.len());
            for context in &contexts {
                saved.push(context.checkpoint(&shared.checkpoints, true).await?);
            }
            let _durability = shared.durability.lock().await;
            if shared.generation.load(Ordering::Relaxed) != generation {
                return Err(SandboxError::Busy(
                    "a cell ran in the sandbox while it was being checkpointed; checkpoint it again once it is idle"
                        .into(),
                ));
            }
            let at = epoch_ms(SystemTime::now());
            let records = contexts.iter().map(|context| context.record()).collect();
            shared.write_manifest(records, durable::Durability::Checkpointed, true, at).await?;
            shared.saved.store(true, Ordering::Relaxed);
            shared.checkpointed_at_ms.store(at, Ordering::Relaxed);
            shared.report(LedgerState::Running);
            let ids: Vec<_> = saved.iter().filter_map(|s| s.id.clone()).collect();
            Ok(CheckpointReport {
                contexts: ids.len(),
                stored_bytes: ids.iter().map(|id| shared.checkpoints.stored_bytes(id)).sum(),
                new_bytes: saved.iter().map(|s| s.new_bytes).sum(),
                checkpointed_at_ms: at,
            })
        }
        .instrument(span)
        .await
    }

    /// Resumes a paused sandbox: every context is restored from its checkpoint now (a cell
    /// would restore its own context on demand). A checkpoint that fails its check is refused
    /// with an error, and its context stays paused, never half-restored.
    pub async fn resume(&self) -> Result<SandboxInfo, SandboxError> {
        let _active = self.shared.begin()?;
        let contexts = self.shared.context_handles();
        let span = tracing::info_span!("sandbox_resume", sandbox = %self.shared.identity.id, contexts = contexts.len());
        async {
            for context in &contexts {
                context.resume(&self.shared.engine, &self.shared.checkpoints).await?;
            }
            Ok::<_, SandboxError>(())
        }
        .instrument(span)
        .await?;
        self.shared.wake().await;
        Ok(self.info())
    }
}

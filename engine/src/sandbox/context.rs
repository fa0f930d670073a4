//! [`Context`]: one kernel in a sandbox, running one cell at a time.

use super::{CheckpointPolicy, SandboxError, Shared};
use crate::blobs::BlobId;
use crate::checkpoints::{Checkpoints, Pin};
use crate::engine::Engine;
use crate::kernel::{Cell, ExecutionEnd, ExecutionEvent, Kernel, KernelImage, KernelSpec, Preload};
use crate::language::Language;
use crate::result::Outcome;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{Mutex, oneshot};
use tracing::Instrument;

/// What a caller may know about a context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct ContextInfo {
    /// Its id, unique within the sandbox.
    pub id: String,
    /// Its language.
    pub language: Language,
    /// What it imported before its first cell.
    pub preload: Preload,
    /// Executions it has run.
    pub execution_count: u64,
}

/// What a paused sandbox's manifest keeps of a context ([`super::durable`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContextRecord {
    pub id: String,
    pub language: Language,
    pub preload: Preload,
    pub executions: u64,
    /// Its checkpoint; `None` for a context whose interpreter was lost (it starts afresh,
    /// and says so) or that never ran a cell (it starts as a new context would).
    pub checkpoint: Option<BlobId>,
}

/// A context as a fork starts from it ([`Context::copy`]).
#[derive(Debug)]
pub(crate) struct ContextCopy {
    pub id: String,
    pub language: Language,
    pub preload: Preload,
    pub executions: u64,
    /// Its checkpoint; `None` for a context whose interpreter was lost.
    pub image: Option<KernelImage>,
}

/// A stateful interpreter. The kernel sits behind an async mutex: a cell holds it for its whole
/// run, so cells in one context queue up and run one at a time; a checkpoint, pause or resume
/// holds it too, so it never sees a cell half-run.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) id: String,
    spec: KernelSpec,
    kernel: Mutex<KernelSlot>,
    executions: AtomicU64,
    /// Its latest checkpoint (kept after a resume until the next checkpoint replaces it, or
    /// the sandbox is killed: a manifest may still name it). `None` when it has none, or when
    /// it changed after its last checkpoint in a sandbox checkpointed after every cell.
    stored: std::sync::Mutex<Option<BlobId>>,
    /// The part ids of the last image its kernel returned, when that image is the one stored
    /// (a checkpoint's [`KernelImage::kept`] parts reuse them); empty otherwise.
    last_parts: std::sync::Mutex<Vec<BlobId>>,
}

/// Where a context's interpreter is.
#[derive(Debug)]
enum KernelSlot {
    /// Running in its backend.
    Live(Box<dyn Kernel>),
    /// Checkpointed and released (its sandbox is paused): the next cell, or a resume,
    /// restores it.
    Paused(BlobId),
    /// Never started (taken back from a manifest before its first cell): the next cell starts
    /// it, as a new context would be.
    Fresh,
    /// Lost (its backend failed): the next cell starts a fresh one and reports a restart.
    Lost,
}

/// A context's checkpoint just taken ([`Context::checkpoint`]).
#[derive(Debug, Default)]
pub(crate) struct Saved {
    /// The checkpoint; `None` for a context with nothing to checkpoint (never started, or
    /// lost).
    pub id: Option<BlobId>,
    /// Compressed bytes the store added.
    pub new_bytes: u64,
    /// Keep the new checkpoint and the one it replaced until the manifest naming the new one
    /// is on disk.
    pub pins: Vec<Pin>,
}

impl Context {
    /// Starts a context's kernel.
    pub(crate) async fn start(engine: &Engine, id: String, spec: KernelSpec) -> Result<Self, SandboxError> {
        let kernel = engine.start_kernel(spec.clone()).await?;
        Ok(Context::with_kernel(id, spec, KernelSlot::Live(kernel), 0))
    }

    fn with_kernel(id: String, spec: KernelSpec, kernel: KernelSlot, executions: u64) -> Self {
        let stored = match &kernel {
            KernelSlot::Paused(blob) => Some(blob.clone()),
            KernelSlot::Live(_) | KernelSlot::Fresh | KernelSlot::Lost => None,
        };
        Context {
            id,
            spec,
            kernel: Mutex::new(kernel),
            executions: AtomicU64::new(executions),
            stored: std::sync::Mutex::new(stored),
            last_parts: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A context an earlier process left, as its record says (its kernel restores, or starts,
    /// on first use).
    pub(crate) fn adopt(record: &ContextRecord, spec: KernelSpec) -> Self {
        let kernel = match &record.checkpoint {
            Some(blob) => KernelSlot::Paused(blob.clone()),
            None if record.executions == 0 => KernelSlot::Fresh,
            None => KernelSlot::Lost,
        };
        Context::with_kernel(record.id.clone(), spec, kernel, record.executions)
    }

    /// The record of this context as its latest checkpoint stands.
    pub(crate) fn record(&self) -> ContextRecord {
        ContextRecord {
            id: self.id.clone(),
            language: self.spec.language,
            preload: self.spec.preload,
            executions: self.executions.load(Ordering::Relaxed),
            checkpoint: self.stored_checkpoint(),
        }
    }

    /// Whether a new process could bring this context back as it is now: it has a checkpoint
    /// of its latest state, or it never ran a cell.
    pub(crate) fn is_recoverable(&self) -> bool {
        self.stored_checkpoint().is_some() || self.executions.load(Ordering::Relaxed) == 0
    }

    /// Checkpoints the kernel into `store`, keeping it live (waits for a running cell to end).
    /// `durable` syncs the checkpoint to disk.
    pub(crate) async fn checkpoint(&self, store: &Checkpoints, durable: bool) -> Result<Saved, SandboxError> {
        let mut slot = self.kernel.lock().await;
        self.save(&mut slot, store, durable).await
    }

    /// Checkpoints the kernel into `store` and releases it (waits for a running cell to end).
    /// A lost or never-started kernel stays so; a paused one stays as it is.
    pub(crate) async fn pause(&self, store: &Checkpoints) -> Result<Saved, SandboxError> {
        let mut slot = self.kernel.lock().await;
        let saved = self.save(&mut slot, store, true).await?;
        if let (KernelSlot::Live(_), Some(id)) = (&*slot, &saved.id) {
            *slot = KernelSlot::Paused(id.clone());
        }
        Ok(saved)
    }

    async fn save(&self, slot: &mut KernelSlot, store: &Checkpoints, durable: bool) -> Result<Saved, SandboxError> {
        let kernel = match slot {
            KernelSlot::Live(kernel) => kernel,
            KernelSlot::Paused(id) => return Ok(Saved { id: Some(id.clone()), ..Saved::default() }),
            KernelSlot::Fresh | KernelSlot::Lost => return Ok(Saved::default()),
        };
        // Taken now: if anything below fails, the kernel's next image is not known to follow
        // one that was stored.
        let previous = std::mem::take(&mut *self.last_parts.lock().unwrap_or_else(|e| e.into_inner()));
        let image = kernel.checkpoint().await?;
        let writing = store.writing().await;
        let (blocking_store, span) = (store.clone(), tracing::Span::current());
        let (writing, stored) = tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            let stored = blocking_store.store(&writing, &image, &previous, durable);
            (writing, stored)
        })
        .await
        .map_err(|_| SandboxError::Interrupted)?;
        let stored = stored?;
        *self.last_parts.lock().unwrap_or_else(|e| e.into_inner()) = stored.parts.clone();
        // Named here while the store's gate is held, so no collection runs in between.
        let replaced = self.stored.lock().unwrap_or_else(|e| e.into_inner()).replace(stored.id.clone());
        let mut pins = vec![stored.pin];
        if let Some(old) = replaced.filter(|old| *old != stored.id) {
            pins.push(store.pin(&old));
            store.note_garbage();
        }
        drop(writing);
        Ok(Saved { id: Some(stored.id), new_bytes: stored.new_bytes, pins })
    }

    /// Forgets its latest checkpoint: it changed after it, and only a checkpoint of its latest
    /// state may be named (a sandbox checkpointed after every cell whose checkpoint failed).
    fn forget_checkpoint(&self, store: &Checkpoints) {
        if self.stored.lock().unwrap_or_else(|e| e.into_inner()).take().is_some() {
            store.note_garbage();
        }
    }

    /// Whether no kernel of it is in memory right now: checkpointed and released, never
    /// started or lost (a cell holding it, or a live kernel, is not).
    pub(crate) fn is_released(&self) -> bool {
        matches!(self.kernel.try_lock().as_deref(), Ok(KernelSlot::Paused(_) | KernelSlot::Fresh | KernelSlot::Lost))
    }

    /// What a fork of this context starts from: its checkpoint (taken now from a live kernel,
    /// after a running cell; read from the store for a paused one), `None` for a lost or
    /// never-started one.
    pub(crate) async fn copy(&self, store: &Checkpoints) -> Result<ContextCopy, SandboxError> {
        let mut slot = self.kernel.lock().await;
        let image = match &mut *slot {
            KernelSlot::Live(kernel) => {
                // This image is not stored: the next one must not be read as following one.
                self.last_parts.lock().unwrap_or_else(|e| e.into_inner()).clear();
                Some(kernel.checkpoint().await?)
            }
            KernelSlot::Paused(id) => Some(load(store, id).await?),
            KernelSlot::Fresh | KernelSlot::Lost => None,
        };
        Ok(ContextCopy {
            id: self.id.clone(),
            language: self.spec.language,
            preload: self.spec.preload,
            executions: self.executions.load(Ordering::Relaxed),
            image,
        })
    }

    /// A fork of the context `copy` was taken from, for a sandbox whose kernels run as `spec`:
    /// restored from the copy's checkpoint and given fresh entropy ([`Kernel::diverge`]).
    pub(crate) async fn fork(engine: &Engine, copy: &ContextCopy, spec: KernelSpec) -> Result<Self, SandboxError> {
        let kernel = match &copy.image {
            Some(image) => {
                let mut kernel = engine.restore_kernel(spec.clone(), image.clone()).await?;
                kernel.diverge().await?;
                KernelSlot::Live(kernel)
            }
            None if copy.executions == 0 => KernelSlot::Fresh,
            None => KernelSlot::Lost,
        };
        Ok(Context::with_kernel(copy.id.clone(), spec, kernel, copy.executions))
    }

    /// Restores a paused kernel from `store`. A checkpoint that fails its check leaves the
    /// context paused (and the error says why), never half-restored.
    pub(crate) async fn resume(&self, engine: &Engine, store: &Checkpoints) -> Result<(), SandboxError> {
        let mut slot = self.kernel.lock().await;
        self.resume_locked(&mut slot, engine, store).await
    }

    async fn resume_locked(
        &self,
        slot: &mut KernelSlot,
        engine: &Engine,
        store: &Checkpoints,
    ) -> Result<(), SandboxError> {
        let KernelSlot::Paused(id) = &*slot else { return Ok(()) };
        let image = load(store, id).await?;
        *slot = KernelSlot::Live(engine.restore_kernel(self.spec.clone(), image).await?);
        Ok(())
    }

    /// Its latest checkpoint in the blob store, if it has one.
    pub(crate) fn stored_checkpoint(&self) -> Option<BlobId> {
        self.stored.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn language(&self) -> Language {
        self.spec.language
    }

    pub(crate) fn info(&self) -> ContextInfo {
        ContextInfo {
            id: self.id.clone(),
            language: self.spec.language,
            preload: self.spec.preload,
            execution_count: self.executions.load(Ordering::Relaxed),
        }
    }

    /// Replaces the kernel with a fresh one (waits for a running cell to end); its
    /// checkpoint, of the state it dropped, is forgotten.
    pub(crate) async fn restart(&self, engine: &Engine, store: &Checkpoints) -> Result<(), SandboxError> {
        let mut slot = self.kernel.lock().await;
        *slot = KernelSlot::Lost;
        self.forget_checkpoint(store);
        *slot = KernelSlot::Live(engine.start_kernel(self.spec.clone()).await?);
        self.executions.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `cell` for `sandbox`, sending its events to `events` and ending with
    /// [`ExecutionEvent::End`]; a failure to run it at all goes to `failure` instead.
    /// A paused context is restored first (a cell resumes it, unless the sandbox says not
    /// to), and the sandbox is marked running ([`Shared::wake`]) once the cell holds the
    /// kernel, before anything changes. In a sandbox checkpointed after every cell, the
    /// checkpoint is taken before the cell's end is sent: a cell that ended is on disk.
    pub(crate) async fn run(
        &self,
        sandbox: &Shared,
        cell: Cell,
        events: crate::events::EventSender,
        failure: oneshot::Sender<SandboxError>,
    ) {
        let started = Instant::now();
        let mut slot = self.kernel.lock().await;
        if matches!(*slot, KernelSlot::Paused(_)) && !sandbox.identity.policy.auto_resume {
            let _ = failure.send(SandboxError::Paused(sandbox.identity.id.clone()));
            return;
        }
        sandbox.wake().await;
        if let Err(error) = self.resume_locked(&mut slot, &sandbox.engine, &sandbox.checkpoints).await {
            let _ = failure.send(error);
            return;
        }
        let mut restarted = false;
        if matches!(*slot, KernelSlot::Lost | KernelSlot::Fresh) {
            match sandbox.engine.start_kernel(self.spec.clone()).await {
                Ok(kernel) => {
                    restarted = matches!(*slot, KernelSlot::Lost);
                    *slot = KernelSlot::Live(kernel);
                    self.executions.store(0, Ordering::Relaxed);
                }
                Err(error) => {
                    let _ = failure.send(error.into());
                    return;
                }
            }
        }
        let KernelSlot::Live(kernel) = &mut *slot else { return };
        match kernel.run(cell, events.clone()).await {
            Ok(report) => {
                if report.restarted {
                    self.executions.store(0, Ordering::Relaxed);
                }
                let execution_count = self.executions.fetch_add(1, Ordering::Relaxed) + 1;
                if sandbox.identity.policy.checkpoint == CheckpointPolicy::EveryCell {
                    self.checkpoint_cell(&mut slot, sandbox, &events).await;
                }
                let end = ExecutionEnd {
                    language: self.spec.language,
                    outcome: report.outcome,
                    message: report.message,
                    context_restarted: restarted || report.restarted,
                    execution_count,
                    duration: started.elapsed(),
                    fuel_used: report.fuel_used,
                    peak_memory_bytes: report.peak_memory_bytes,
                    network: report.network,
                };
                if end.outcome != Outcome::Completed {
                    tracing::debug!(context = %self.id, outcome = end.outcome.name(), "cell stopped");
                }
                let _ = events.send_now(ExecutionEvent::End(end));
            }
            Err(error) => {
                if matches!(error, crate::BackendError::Internal(_)) {
                    // The kernel may be half-gone: start afresh next time (and after a crash).
                    *slot = KernelSlot::Lost;
                    if sandbox.identity.policy.checkpoint == CheckpointPolicy::EveryCell {
                        self.forget_checkpoint(&sandbox.checkpoints);
                        sandbox.record(Vec::new()).await;
                    }
                }
                let _ = failure.send(error.into());
            }
        }
    }

    /// The checkpoint after a cell, in a sandbox checkpointed after every cell: on disk with
    /// the sandbox's manifest naming it before the cell's end is sent. One that fails (the
    /// context holds an open file) is said on the cell's stderr, and the sandbox is recorded
    /// as changed since its checkpoints until a later cell's checkpoint succeeds.
    async fn checkpoint_cell(&self, slot: &mut KernelSlot, sandbox: &Shared, events: &crate::events::EventSender) {
        let span = tracing::debug_span!("checkpoint_cell", context = %self.id);
        let saved = match sandbox.check_snapshot_room() {
            Ok(()) => self.save(slot, &sandbox.checkpoints, false).instrument(span).await,
            Err(error) => Err(error),
        };
        match saved {
            Ok(saved) => sandbox.record(saved.pins).await,
            Err(error) => {
                self.forget_checkpoint(&sandbox.checkpoints);
                sandbox.record(Vec::new()).await;
                let text = format!(
                    "soulbox: this cell's state could not be checkpointed ({error}); until a later cell's is, \
                     a server crash loses this sandbox\n"
                );
                let _ = events.send_now(ExecutionEvent::Stderr { text });
            }
        }
    }
}

/// Reads checkpoint `id` from `store` (on a blocking thread).
pub(super) async fn load(store: &Checkpoints, id: &BlobId) -> Result<KernelImage, SandboxError> {
    let (store, id) = (store.clone(), id.clone());
    Ok(tokio::task::spawn_blocking(move || store.load(&id)).await.map_err(|_| SandboxError::Interrupted)??)
}

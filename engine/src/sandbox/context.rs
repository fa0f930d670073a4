//! [`Context`]: one kernel in a sandbox, running one cell at a time.

use super::SandboxError;
use crate::blobs::{BlobId, BlobStore};
use crate::engine::Engine;
use crate::kernel::{Cell, ExecutionEnd, ExecutionEvent, Kernel, KernelImage, KernelSpec, Preload};
use crate::language::Language;
use crate::result::Outcome;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{Mutex, oneshot};

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
    /// Its checkpoint; `None` for a context whose interpreter was lost (it starts afresh).
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
/// run, so cells in one context queue up and run one at a time; a pause or resume holds it
/// too, so it never sees a cell half-run.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) id: String,
    spec: KernelSpec,
    kernel: Mutex<KernelSlot>,
    executions: AtomicU64,
    /// Its latest checkpoint in the blob store (kept after a resume until the next pause
    /// replaces it, or the sandbox is killed: a manifest may still name it).
    stored: std::sync::Mutex<Option<BlobId>>,
}

/// Where a context's interpreter is.
#[derive(Debug)]
enum KernelSlot {
    /// Running in its backend.
    Live(Box<dyn Kernel>),
    /// Checkpointed into the blob store and released (its sandbox is paused): the next cell,
    /// or a resume, restores it.
    Paused(BlobId),
    /// Lost (its backend failed): the next cell starts a fresh one and reports a restart.
    Lost,
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
            KernelSlot::Live(_) | KernelSlot::Lost => None,
        };
        Context {
            id,
            spec,
            kernel: Mutex::new(kernel),
            executions: AtomicU64::new(executions),
            stored: std::sync::Mutex::new(stored),
        }
    }

    /// A context paused by an earlier process, as its record says (its kernel restores on
    /// first use).
    pub(crate) fn adopt(record: &ContextRecord, spec: KernelSpec) -> Self {
        let kernel = match &record.checkpoint {
            Some(blob) => KernelSlot::Paused(blob.clone()),
            None => KernelSlot::Lost,
        };
        Context::with_kernel(record.id.clone(), spec, kernel, record.executions)
    }

    /// The record of this context checkpointed as `checkpoint`.
    pub(crate) fn record(&self, checkpoint: Option<BlobId>) -> ContextRecord {
        ContextRecord {
            id: self.id.clone(),
            language: self.spec.language,
            preload: self.spec.preload,
            executions: self.executions.load(Ordering::Relaxed),
            checkpoint,
        }
    }

    /// Checkpoints the kernel into `blobs` and releases it (waits for a running cell to end).
    /// A lost kernel stays lost; a paused one stays as it is. Returns the checkpoint, and the
    /// one it replaced, which the caller removes once no manifest names it.
    pub(crate) async fn pause(&self, blobs: &BlobStore) -> Result<(Option<BlobId>, Option<BlobId>), SandboxError> {
        let mut slot = self.kernel.lock().await;
        let kernel = match &mut *slot {
            KernelSlot::Live(kernel) => kernel,
            KernelSlot::Paused(id) => return Ok((Some(id.clone()), None)),
            KernelSlot::Lost => return Ok((None, None)),
        };
        let image = kernel.checkpoint().await?;
        let store = blobs.clone();
        let id = tokio::task::spawn_blocking(move || store.put(&image.bytes))
            .await
            .map_err(|_| SandboxError::Interrupted)??;
        *slot = KernelSlot::Paused(id.clone());
        let replaced = self.stored.lock().unwrap_or_else(|e| e.into_inner()).replace(id.clone());
        Ok((Some(id.clone()), replaced.filter(|old| *old != id)))
    }

    /// Whether the kernel is checkpointed and released right now (a cell holding it, or a live
    /// or lost kernel, is not).
    pub(crate) fn is_paused(&self) -> bool {
        matches!(self.kernel.try_lock().as_deref(), Ok(KernelSlot::Paused(_)))
    }

    /// What a fork of this context starts from: its checkpoint (taken now from a live kernel,
    /// after a running cell; read from the store for a paused one), `None` for a lost one.
    pub(crate) async fn copy(&self, blobs: &BlobStore) -> Result<ContextCopy, SandboxError> {
        let mut slot = self.kernel.lock().await;
        let image = match &mut *slot {
            KernelSlot::Live(kernel) => Some(kernel.checkpoint().await?),
            KernelSlot::Paused(id) => {
                let (store, id) = (blobs.clone(), id.clone());
                let bytes = tokio::task::spawn_blocking(move || store.get(&id))
                    .await
                    .map_err(|_| SandboxError::Interrupted)??;
                Some(KernelImage::new(self.spec.language, bytes))
            }
            KernelSlot::Lost => None,
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
            None => KernelSlot::Lost,
        };
        Ok(Context::with_kernel(copy.id.clone(), spec, kernel, copy.executions))
    }

    /// Restores a paused kernel from `blobs`. A checkpoint that fails its check leaves the
    /// context paused (and the error says why), never half-restored.
    pub(crate) async fn resume(&self, engine: &Engine, blobs: &BlobStore) -> Result<(), SandboxError> {
        let mut slot = self.kernel.lock().await;
        self.resume_locked(&mut slot, engine, blobs).await
    }

    async fn resume_locked(
        &self,
        slot: &mut KernelSlot,
        engine: &Engine,
        blobs: &BlobStore,
    ) -> Result<(), SandboxError> {
        let KernelSlot::Paused(id) = &*slot else { return Ok(()) };
        let (store, id) = (blobs.clone(), id.clone());
        let bytes =
            tokio::task::spawn_blocking(move || store.get(&id)).await.map_err(|_| SandboxError::Interrupted)??;
        let image = KernelImage::new(self.spec.language, bytes);
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

    /// Replaces the kernel with a fresh one (waits for a running cell to end).
    pub(crate) async fn restart(&self, engine: &Engine) -> Result<(), SandboxError> {
        let mut slot = self.kernel.lock().await;
        *slot = KernelSlot::Lost;
        *slot = KernelSlot::Live(engine.start_kernel(self.spec.clone()).await?);
        self.executions.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `cell`, sending its events to `events` and ending with [`ExecutionEvent::End`]; a
    /// failure to run it at all goes to `failure` instead.
    /// A paused context is restored first (a cell resumes it).
    /// `wake` runs once the cell holds the kernel, before anything changes: it marks the
    /// sandbox running (a pause can then no longer write it down as paused).
    pub(crate) async fn run(
        &self,
        engine: &Engine,
        blobs: &BlobStore,
        cell: Cell,
        events: crate::events::EventSender,
        failure: oneshot::Sender<SandboxError>,
        wake: impl std::future::Future<Output = ()>,
    ) {
        let started = Instant::now();
        let mut slot = self.kernel.lock().await;
        wake.await;
        if let Err(error) = self.resume_locked(&mut slot, engine, blobs).await {
            let _ = failure.send(error);
            return;
        }
        let mut restarted = false;
        if matches!(*slot, KernelSlot::Lost) {
            match engine.start_kernel(self.spec.clone()).await {
                Ok(kernel) => {
                    *slot = KernelSlot::Live(kernel);
                    restarted = true;
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
                let end = ExecutionEnd {
                    language: self.spec.language,
                    outcome: report.outcome,
                    message: report.message,
                    context_restarted: restarted || report.restarted,
                    execution_count,
                    duration: started.elapsed(),
                    fuel_used: report.fuel_used,
                    peak_memory_bytes: report.peak_memory_bytes,
                };
                if end.outcome != Outcome::Completed {
                    tracing::debug!(context = %self.id, outcome = end.outcome.name(), "cell stopped");
                }
                let _ = events.send_now(ExecutionEvent::End(end));
            }
            Err(error) => {
                if matches!(error, crate::BackendError::Internal(_)) {
                    // The kernel may be half-gone: start afresh next time.
                    *slot = KernelSlot::Lost;
                }
                let _ = failure.send(error.into());
            }
        }
    }
}

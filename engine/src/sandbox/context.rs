//! [`Context`]: one kernel in a sandbox, running one cell at a time.

use super::SandboxError;
use crate::engine::Engine;
use crate::kernel::{Cell, ExecutionEnd, ExecutionEvent, Kernel, KernelSpec, Preload};
use crate::language::Language;
use crate::result::Outcome;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{Mutex, oneshot};

/// What a caller may know about a context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// A stateful interpreter. The kernel sits behind an async mutex: a cell holds it for its whole
/// run, so cells in one context queue up and run one at a time. `None` means the kernel was
/// lost (its backend failed); the next cell starts a fresh one and reports a restart.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) id: String,
    spec: KernelSpec,
    kernel: Mutex<Option<Box<dyn Kernel>>>,
    executions: AtomicU64,
}

impl Context {
    /// Starts a context's kernel.
    pub(crate) async fn start(engine: &Engine, id: String, spec: KernelSpec) -> Result<Self, SandboxError> {
        let kernel = engine.start_kernel(spec.clone()).await?;
        Ok(Context { id, spec, kernel: Mutex::new(Some(kernel)), executions: AtomicU64::new(0) })
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
        *slot = None;
        *slot = Some(engine.start_kernel(self.spec.clone()).await?);
        self.executions.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `cell`, sending its events to `events` and ending with [`ExecutionEvent::End`]; a
    /// failure to run it at all goes to `failure` instead.
    pub(crate) async fn run(
        &self,
        engine: &Engine,
        cell: Cell,
        events: crate::events::EventSender,
        failure: oneshot::Sender<SandboxError>,
    ) {
        let started = Instant::now();
        let mut slot = self.kernel.lock().await;
        let mut restarted = false;
        if slot.is_none() {
            match engine.start_kernel(self.spec.clone()).await {
                Ok(kernel) => {
                    *slot = Some(kernel);
                    restarted = true;
                    self.executions.store(0, Ordering::Relaxed);
                }
                Err(error) => {
                    let _ = failure.send(error.into());
                    return;
                }
            }
        }
        let Some(kernel) = slot.as_mut() else { return };
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
                    *slot = None;
                }
                let _ = failure.send(error.into());
            }
        }
    }
}

//! The one trait every backend implements.

use crate::kernel::{Kernel, KernelSpec};
use crate::language::Language;
use crate::process::{Machine, MachineSpec, RenderRequest, RenderedPage};
use crate::request::ExecRequest;
use crate::result::ExecResult;
use async_trait::async_trait;

/// A place code runs: the WebAssembly backend, or containers.
///
/// The engine validates a request before handing it over, so a backend may rely on
/// [`ExecRequest::validate`] having passed. A backend never panics on guest behaviour: whatever the
/// guest does becomes an [`ExecResult`] with the right [`crate::Outcome`]; an `Err` means the
/// backend could not run the request at all.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short stable name reported in results and logs (`wasm`, `container`); a request's
    /// [`crate::BackendKind`] picks the backend of that name.
    fn name(&self) -> &'static str;

    /// Whether this backend runs `language`.
    fn supports(&self, language: Language) -> bool;

    /// Runs one request to completion.
    async fn execute(&self, request: ExecRequest) -> Result<ExecResult, BackendError>;

    /// How busy the backend is: jobs admitted now (running plus queued) and the most it
    /// admits at once. `None` for a backend that does not say.
    fn load(&self) -> Option<BackendLoad> {
        None
    }

    /// Starts a stateful context (a kernel) for a sandbox. Backends without stateful contexts
    /// keep the default, which refuses.
    async fn start_kernel(&self, spec: KernelSpec) -> Result<Box<dyn Kernel>, BackendError> {
        Err(BackendError::Rejected(format!("the {} backend has no stateful {} contexts", self.name(), spec.language)))
    }

    /// Starts a machine for a sandbox's native processes. Backends without processes keep
    /// the default, which refuses.
    async fn start_machine(&self, spec: MachineSpec) -> Result<Box<dyn Machine>, BackendError> {
        let _ = spec;
        Err(BackendError::Rejected(format!("the {} backend runs no processes", self.name())))
    }

    /// Renders a page in a fresh headless browser. Backends without one keep the default.
    async fn render(&self, request: RenderRequest) -> Result<RenderedPage, BackendError> {
        let _ = request;
        Err(BackendError::Rejected(format!("the {} backend has no browser", self.name())))
    }
}

/// A backend's admission state, for gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendLoad {
    /// Jobs admitted now (running plus queued).
    pub in_use: usize,
    /// The most jobs admitted at once.
    pub capacity: usize,
    /// Stateful contexts alive (each holds an instance and its memory).
    pub contexts: usize,
}

/// Why a backend could not run a request.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Every execution slot and queue place is taken; retry later.
    #[error("busy: all {capacity} execution slots and queue places are taken; retry later")]
    Busy {
        /// Executions running plus waiting that the backend admits at once.
        capacity: usize,
    },
    /// The request is valid in general but this backend cannot honour it (a bad input file
    /// path, a fuel budget on a backend started without metering).
    #[error("{0}")]
    Rejected(String),
    /// The backend is not ready (runtimes missing, engine unavailable); the message says how to
    /// fix it.
    #[error("{0}")]
    Unavailable(String),
    /// A fault inside the backend, not caused by the guest.
    #[error("internal error: {0}")]
    Internal(String),
}

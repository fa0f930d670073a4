//! The one trait every backend implements.

use crate::capabilities::Capabilities;
use crate::kernel::{Kernel, KernelImage, KernelSpec};
use crate::process::{Machine, MachineSpec, RenderRequest, RenderedPage};
use crate::request::ExecRequest;
use crate::result::ExecResult;
use async_trait::async_trait;

/// A place code runs: the WebAssembly backend, containers, or one an embedder defines.
///
/// A backend says what it offers through [`Backend::capabilities`]; the engine routes by that
/// alone (see [`crate::Engine`]), so any number of backends, of any kind, can be added without
/// touching the engine. The methods a backend does not offer keep their defaults, which refuse.
///
/// The engine validates a request before handing it over, so a backend may rely on
/// [`ExecRequest::validate`] having passed. A backend never panics on guest behaviour: whatever the
/// guest does becomes an [`ExecResult`] with the right [`crate::Outcome`]; an `Err` means the
/// backend could not run the request at all.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short stable name reported in results and logs (`wasm`, `container`). Only for
    /// people: routing never looks at it.
    fn name(&self) -> &'static str;

    /// What this backend offers. Asked once, when the engine is built.
    fn capabilities(&self) -> Capabilities;

    /// Runs one request to completion.
    async fn execute(&self, request: ExecRequest) -> Result<ExecResult, BackendError>;

    /// How busy the backend is: jobs admitted now (running plus queued) and the most it
    /// admits at once. `None` for a backend that does not say.
    fn load(&self) -> Option<BackendLoad> {
        None
    }

    /// A hint that a job (an execution or a cell) is likely to arrive within the next fraction
    /// of a millisecond: a backend whose idle workers are parked may wake one now, so that the
    /// job does not wait for it (see [`crate::WorkerPool::rouse`]). Must not block. The
    /// default does nothing.
    fn expect_job(&self) {}

    /// Starts a stateful context (a kernel) for a sandbox. Backends without stateful contexts
    /// keep the default, which refuses.
    async fn start_kernel(&self, spec: KernelSpec) -> Result<Box<dyn Kernel>, BackendError> {
        Err(BackendError::Rejected(format!("the {} backend has no stateful {} contexts", self.name(), spec.language)))
    }

    /// Rebuilds a context from a [`KernelImage`] its own [`Kernel::checkpoint`] took (in this
    /// process or another). Backends without checkpoints keep the default, which refuses.
    ///
    /// [`Kernel::checkpoint`]: crate::kernel::Kernel::checkpoint
    async fn restore_kernel(&self, spec: KernelSpec, image: KernelImage) -> Result<Box<dyn Kernel>, BackendError> {
        let _ = image;
        Err(BackendError::NotCheckpointable(format!(
            "the {} backend cannot restore {} contexts",
            self.name(),
            spec.language
        )))
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
#[non_exhaustive]
pub struct BackendLoad {
    /// Jobs admitted now (running plus queued).
    pub in_use: usize,
    /// The most jobs admitted at once.
    pub capacity: usize,
    /// Stateful contexts alive (each holds an instance and its memory).
    pub contexts: usize,
}

impl BackendLoad {
    /// A load of `in_use` admitted jobs out of `capacity`, with `contexts` stateful contexts.
    pub fn new(in_use: usize, capacity: usize, contexts: usize) -> Self {
        BackendLoad { in_use, capacity, contexts }
    }
}

/// Why a backend could not run a request.
///
/// Serializable, so a backend that runs work in another process (the WebAssembly backend's
/// worker processes) hands the same typed error across its pipe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
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
    /// A context cannot be checkpointed as it is (it holds something a checkpoint cannot
    /// carry, such as an open file), or its backend has no checkpoints; the message says which.
    #[error("cannot checkpoint: {0}")]
    NotCheckpointable(String),
    /// A checkpoint failed its check (truncated, altered, or from another interpreter build)
    /// and was not loaded.
    #[error("{0}")]
    BadCheckpoint(String),
    /// A fault inside the backend, not caused by the guest.
    #[error("internal error: {0}")]
    Internal(String),
}

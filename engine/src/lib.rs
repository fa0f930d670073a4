//! SoulBox's engine: the public API every face of SoulBox (library, CLI, HTTP server) speaks.
//!
//! The engine knows *what* to run and under which limits, never *how*: backends do that.
//!
//! - [`ExecRequest`] says what to run: a [`Language`], code, stdin, argv, env, input files and
//!   [`Limits`], and optionally a [`NetworkPolicy`] for outbound HTTP.
//! - [`ExecResult`] says what happened: output, exit status, an [`Outcome`] that names any limit
//!   that tripped, duration, fuel, peak memory and the files the code wrote.
//! - [`Backend`] is the one trait every backend implements (the WebAssembly backend in
//!   `soulbox-runtimes-wasm`; the container backend later).
//! - [`Engine`] is the cheap-to-clone handle callers hold: it validates requests, routes each to
//!   the backend for its language and wraps every execution in a `tracing` span.
//! - [`WorkerPool`] is SoulBox's one async boundary: blocking guest work runs on its dedicated,
//!   big-stack threads, with bounded admission (excess work is refused with
//!   [`BackendError::Busy`], never queued without bound), queued per owner and served fairly
//!   between owners. A backend may start short work on its caller's task within the same
//!   admission and hand it over once it runs long ([`WorkerPool::admit`],
//!   [`WorkerPool::take_over`]): the WebAssembly backend's session cells.
//!
//! - [`sandbox::Sandboxes`] holds stateful sandboxes: a workspace plus Python/JavaScript
//!   contexts ([`kernel::Kernel`]s) that keep state between cells, with rich results, streamed
//!   events and file operations, and, on a backend with machines (containers), native
//!   processes, terminals and a headless browser ([`process`]).
//! - Routing is by [`Capabilities`], never by name: each backend declares its kind, the
//!   languages it runs, the contexts it keeps and whether it has machines and rendering, and
//!   the engine picks the first that fits (rules in [`Engine`]). With the two backends SoulBox
//!   ships, Python and JavaScript go to WebAssembly unless a request names the `container`
//!   kind ([`BackendKind`]); every other language goes to a container.
//!
//! Dependencies point one way: backends depend on this crate; this crate depends on no backend.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backend;
pub mod blobs;
mod capabilities;
pub mod checkpoints;
mod engine;
mod error;
pub mod events;
#[cfg(test)]
mod fakes;
pub mod guest_tree;
pub mod kernel;
mod language;
pub mod limits;
pub mod network;
pub mod packages;
pub mod process;
pub mod request;
pub mod result;
pub mod sandbox;
pub mod text;
mod worker_pool;

pub use backend::{Backend, BackendError, BackendLoad};
pub use capabilities::Capabilities;
pub use engine::{Engine, EngineBuilder};
pub use error::EngineError;
pub use kernel::{CellError, Execution, ExecutionEvent, RichResult, Template};
pub use language::{BackendKind, Language, UnknownLanguage};
pub use limits::{Limits, LimitsError, LimitsPatch};
pub use network::{NetworkPolicy, NetworkUsage};
/// The `object_store` crate this engine's [`blobs::Replica`] takes an `ObjectStore` of.
pub use object_store;
pub use request::{ExecRequest, InputFile, RequestError};
pub use result::{ExecResult, Outcome, OutputFile, base64_bytes};
pub use sandbox::{RunOptions, Sandbox, SandboxError, SandboxSpec, Sandboxes, SandboxesConfig};
pub use worker_pool::{
    Admitted, DEFAULT_QUEUE_PER_WORKER, DEFAULT_STACK_BYTES, EXTRA_THREAD_IDLE, JobAnswer, WorkerPool,
    WorkerPoolConfig, job_waiting, panic_message,
};

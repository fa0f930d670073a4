//! Errors of the WebAssembly backend.

use soulbox_engine::BackendError;
use std::path::{Path, PathBuf};

/// Why the WebAssembly backend could not set up or run a request.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A runtime has not been fetched into the home directory.
    #[error("the {runtime} runtime is not installed in {home}: run `soulbox runtimes fetch`")]
    NotInstalled {
        /// The runtime's id.
        runtime: String,
        /// The home directory searched.
        home: PathBuf,
    },
    /// A file's SHA-256 is not the pinned one.
    #[error(
        "{path} does not match its pinned SHA-256 (expected {expected}, got {got}); delete it and run `soulbox runtimes fetch` again"
    )]
    Tampered {
        /// The file.
        path: PathBuf,
        /// The pinned hash.
        expected: String,
        /// What the file hashes to.
        got: String,
    },
    /// Downloading or unpacking failed.
    #[error("fetching runtimes failed: {0}")]
    Fetch(String),
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// wasmtime refused a configuration, module or instance.
    #[error("wasmtime: {0}")]
    Wasm(String),
    /// The engine that runs guests could not be built, most often because its pool could
    /// not reserve its address space (other backends in this process hold theirs).
    #[error(
        "the WebAssembly engine could not be set up with {slots} guest slots ({address_space_gib} GiB of address space reserved): {message}; give it fewer slots (`pool_slots`) or open fewer backends in this process"
    )]
    EngineSetup {
        /// The pool's slots.
        slots: u32,
        /// Address space the pool asked for, in GiB.
        address_space_gib: u64,
        /// wasmtime's error.
        message: String,
    },
    /// Every instance slot of the engine's pool is in use (live contexts hold one each, and
    /// so does every running guest).
    #[error(
        "every instance slot of the WebAssembly engine is in use ({0}); retry when sandboxes or contexts have ended, or give the engine more slots"
    )]
    PoolFull(String),
    /// Building a pre-initialized snapshot failed.
    #[error("building the {runtime} snapshot failed: {message}")]
    Snapshot {
        /// The runtime's id.
        runtime: String,
        /// What went wrong.
        message: String,
    },
    /// The request asks for something this backend refuses.
    #[error("{0}")]
    Rejected(String),
    /// The guest's world could not be set up.
    #[error(transparent)]
    HostApi(#[from] soulbox_host_api::HostApiError),
    /// The guest's workspace could not be set up or read.
    #[error(transparent)]
    GuestRoot(#[from] soulbox_host_api::GuestRootError),
    /// The Python packages asked for could not be installed.
    #[error(transparent)]
    Packages(#[from] crate::packages::PackageError),
}

impl RuntimeError {
    /// An I/O error at `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        RuntimeError::Io { path: path.to_path_buf(), source }
    }

    /// A wasmtime error, flattened to text with its causes; [`RuntimeError::PoolFull`] when
    /// the pooling allocator had no slot left.
    pub fn wasm(error: &wasmtime::Error) -> Self {
        match error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
            Some(full) => RuntimeError::PoolFull(full.to_string()),
            None => RuntimeError::Wasm(format!("{error:#}")),
        }
    }
}

impl From<RuntimeError> for BackendError {
    fn from(error: RuntimeError) -> Self {
        use crate::packages::PackageError as P;
        use soulbox_host_api::GuestRootError as G;
        match error {
            RuntimeError::NotInstalled { .. } | RuntimeError::Tampered { .. } | RuntimeError::PoolFull(_) => {
                BackendError::Unavailable(error.to_string())
            }
            RuntimeError::Rejected(_)
            | RuntimeError::GuestRoot(G::Reserved(_) | G::Place { .. })
            | RuntimeError::Packages(P::Disabled | P::Unresolved { .. } | P::BadWheel { .. }) => {
                BackendError::Rejected(error.to_string())
            }
            RuntimeError::Packages(P::NoPip { .. }) => BackendError::Unavailable(error.to_string()),
            other => BackendError::Internal(other.to_string()),
        }
    }
}

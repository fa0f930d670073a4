//! [`ContainerError`]: what can go wrong on the container side, and what callers are told.

use soulbox_engine::BackendError;

/// The container backend's failures.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The Docker engine cannot be reached, or the circuit breaker is open after repeated
    /// failures, or the image is missing: nothing can run until an operator acts.
    #[error("container backend unavailable: {0}")]
    Unavailable(String),
    /// The Docker engine refused a call (the message is the engine's).
    #[error("the Docker engine refused to {op}: {message}")]
    Refused {
        /// What SoulBox asked for.
        op: &'static str,
        /// The HTTP status the engine answered, when it answered.
        status: Option<u16>,
        /// The engine's message.
        message: String,
    },
    /// The request cannot run on this backend as asked (the message says why).
    #[error("{0}")]
    Rejected(String),
    /// A fault on SoulBox's side (the message is for the log).
    #[error("{0}")]
    Internal(String),
    /// A host-side file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What SoulBox was doing.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl ContainerError {
    /// An I/O failure while doing `what`.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ContainerError::Io { what: what.into(), source }
    }

    /// Whether the engine answered "no such container/exec" (404).
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, ContainerError::Refused { status: Some(404), .. })
    }
}

impl From<ContainerError> for BackendError {
    fn from(error: ContainerError) -> Self {
        match error {
            ContainerError::Unavailable(_) => BackendError::Unavailable(error.to_string()),
            ContainerError::Rejected(message) => BackendError::Rejected(message),
            ContainerError::Refused { .. } | ContainerError::Io { .. } | ContainerError::Internal(_) => {
                BackendError::Internal(error.to_string())
            }
        }
    }
}

//! Errors from the engine's API.

use crate::backend::BackendError;
use crate::language::Language;
use crate::request::RequestError;

/// Why the engine did not produce an [`crate::ExecResult`].
///
/// Guest faults are never errors: they are results with an [`crate::Outcome`].
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request was refused before anything ran.
    #[error("invalid request: {0}")]
    InvalidRequest(#[from] RequestError),
    /// No configured backend runs this language.
    #[error("no backend is configured for {0}")]
    UnsupportedLanguage(Language),
    /// The backend could not run the request.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl EngineError {
    /// True when the request was refused for lack of capacity and may be retried.
    pub fn is_busy(&self) -> bool {
        matches!(self, EngineError::Backend(BackendError::Busy { .. }))
    }
}

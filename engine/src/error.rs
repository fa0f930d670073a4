//! Errors from the engine's API.

use crate::backend::BackendError;
use crate::language::{BackendKind, Language};
use crate::request::RequestError;

/// Why the engine did not produce an [`crate::ExecResult`].
///
/// Guest faults are never errors: they are results with an [`crate::Outcome`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The request was refused before anything ran.
    #[error("invalid request: {0}")]
    InvalidRequest(#[from] RequestError),
    /// No configured backend runs this language (on the backend asked for).
    #[error("{}", unsupported(*language, *backend))]
    UnsupportedLanguage {
        /// The language.
        language: Language,
        /// The backend the request named, if it named one.
        backend: Option<BackendKind>,
    },
    /// No backend keeps stateful contexts for this language.
    #[error("no configured backend keeps stateful {language} contexts")]
    NoContexts {
        /// The language.
        language: Language,
    },
    /// No backend that runs processes (containers) is configured.
    #[error("container backend unavailable: no container backend is configured (it needs a Docker engine)")]
    NoMachines,
    /// The backend could not run the request.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

fn unsupported(language: Language, backend: Option<BackendKind>) -> String {
    match backend {
        Some(BackendKind::Wasm) => {
            format!("the wasm backend does not run {language}; WebAssembly runs python, javascript and typescript")
        }
        Some(BackendKind::Container) if !language.runs_in_containers() => {
            format!(
                "{language} runs only in WebAssembly (its types are removed on the host): do not ask for the container backend"
            )
        }
        Some(BackendKind::Container) | None if !language.runs_in_wasm() => {
            format!("container backend unavailable: {language} needs the container backend, which is not configured")
        }
        Some(kind) => format!("no {kind} backend is configured for {language}"),
        None => format!("no backend is configured for {language}"),
    }
}

impl EngineError {
    /// True when the request was refused for lack of capacity and may be retried.
    pub fn is_busy(&self) -> bool {
        matches!(self, EngineError::Backend(BackendError::Busy { .. }))
    }
}

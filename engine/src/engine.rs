//! The [`Engine`] handle: validation, routing and per-execution tracing.

use crate::backend::Backend;
use crate::error::EngineError;
use crate::kernel::{Kernel, KernelSpec};
use crate::language::{BackendKind, Language};
use crate::process::{Machine, MachineSpec, RenderRequest, RenderedPage};
use crate::request::ExecRequest;
use crate::result::ExecResult;
use std::sync::Arc;
use tracing::Instrument;

/// The handle callers hold. Cheap to clone (`Arc` inside), `Send + Sync`.
#[derive(Clone)]
pub struct Engine {
    backends: Arc<[Arc<dyn Backend>]>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.backends.iter().map(|b| b.name()).collect();
        f.debug_struct("Engine").field("backends", &names).finish()
    }
}

/// Builds an [`Engine`]. Defaults: no backends (every request is refused with
/// [`EngineError::UnsupportedLanguage`] until one is added).
#[derive(Default)]
pub struct EngineBuilder {
    backends: Vec<Arc<dyn Backend>>,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder").field("backends", &self.backends.len()).finish()
    }
}

impl EngineBuilder {
    /// Adds a backend. For a language several backends support, the first added wins.
    pub fn backend(&mut self, backend: impl Backend) -> &mut Self {
        self.backends.push(Arc::new(backend));
        self
    }

    /// Adds a backend that is already shared.
    pub fn shared_backend(&mut self, backend: Arc<dyn Backend>) -> &mut Self {
        self.backends.push(backend);
        self
    }

    /// Finishes the engine.
    pub fn build(&mut self) -> Engine {
        Engine { backends: std::mem::take(&mut self.backends).into() }
    }
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The languages some backend runs.
    pub fn languages(&self) -> Vec<Language> {
        Language::ALL.into_iter().filter(|l| self.backend_for(*l, None).is_ok()).collect()
    }

    /// Validates `request`, runs it on the backend for its language, and returns the result.
    ///
    /// Guest misbehaviour (exceptions, exhausted limits, traps) is reported inside the
    /// [`ExecResult`]; `Err` means nothing ran.
    pub async fn execute(&self, request: ExecRequest) -> Result<ExecResult, EngineError> {
        request.validate()?;
        let language = request.language;
        let backend = self.backend_for(language, request.backend)?;
        let span = tracing::info_span!(
            "execute",
            %language,
            backend = backend.name(),
            code_bytes = request.code.len(),
        );
        async move {
            let result = backend.execute(request).await;
            match &result {
                Ok(r) => tracing::debug!(
                    outcome = r.outcome.name(),
                    exit_code = r.exit_code,
                    duration_us = r.duration.as_micros() as u64,
                    "executed"
                ),
                Err(e) => tracing::debug!(error = %e, "execution refused"),
            }
            Ok(result?)
        }
        .instrument(span)
        .await
    }

    /// Starts a stateful context on the backend for its language (used by
    /// [`crate::sandbox::Sandboxes`]; embedders normally go through sandboxes).
    pub async fn start_kernel(&self, spec: KernelSpec) -> Result<Box<dyn Kernel>, EngineError> {
        let language = spec.language;
        let backend = self.backend_for(language, Some(BackendKind::Wasm))?;
        let span = tracing::info_span!("start_kernel", %language, backend = backend.name(), preload = ?spec.preload);
        Ok(backend.start_kernel(spec).instrument(span).await?)
    }

    /// Each backend's name and load (backends that report one).
    pub fn load(&self) -> Vec<(&'static str, crate::backend::BackendLoad)> {
        self.backends.iter().filter_map(|b| b.load().map(|load| (b.name(), load))).collect()
    }

    /// Starts a machine (a container) for a sandbox's processes, on the first backend that
    /// runs processes.
    pub async fn start_machine(&self, spec: MachineSpec) -> Result<Box<dyn Machine>, EngineError> {
        let backend = self.backend_named(BackendKind::Container).ok_or(EngineError::NoMachines)?;
        let span = tracing::info_span!("start_machine", backend = backend.name(), sandbox = %spec.sandbox_id);
        Ok(backend.start_machine(spec).instrument(span).await?)
    }

    /// Renders a page in a fresh headless browser (the container backend's).
    pub async fn render(&self, request: RenderRequest) -> Result<RenderedPage, EngineError> {
        let backend = self.backend_named(BackendKind::Container).ok_or(EngineError::NoMachines)?;
        let span = tracing::info_span!("render", backend = backend.name());
        Ok(backend.render(request).instrument(span).await?)
    }

    /// Whether a backend of this kind is configured.
    pub fn has_backend(&self, kind: BackendKind) -> bool {
        self.backend_named(kind).is_some()
    }

    /// The backend for `language`: the one named by `choice`, else the first added that runs it.
    fn backend_for(&self, language: Language, choice: Option<BackendKind>) -> Result<&Arc<dyn Backend>, EngineError> {
        let found = match choice {
            Some(kind) => self.backend_named(kind).filter(|b| b.supports(language)),
            None => self.backends.iter().find(|b| b.supports(language)),
        };
        found.ok_or(EngineError::UnsupportedLanguage { language, backend: choice })
    }

    fn backend_named(&self, kind: BackendKind) -> Option<&Arc<dyn Backend>> {
        self.backends.iter().find(|b| b.name() == kind.name())
    }
}

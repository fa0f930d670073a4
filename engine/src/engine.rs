//! The [`Engine`] handle: validation, routing and per-execution tracing.
//!
//! # Routing
//!
//! Backends are kept in the order they were added, each with the [`Capabilities`] it declared
//! when the engine was built. The engine never compares names; the rules are:
//!
//! - a one-shot execution goes to the first backend that runs its language, or, when the
//!   request names a [`BackendKind`], to the first backend *of that kind* that runs it;
//! - a stateful context goes to the first backend with kernels for its language;
//! - a machine goes to the first backend with machines, a page render to the first with
//!   rendering.
//!
//! So an embedder adds a backend of its own (a remote runner, a second WebAssembly backend with
//! other settings) with [`EngineBuilder::backend`], and puts it first to prefer it.

use crate::backend::Backend;
use crate::capabilities::Capabilities;
use crate::error::EngineError;
use crate::kernel::{Kernel, KernelImage, KernelSpec};
use crate::language::{BackendKind, Language};
use crate::process::{Machine, MachineSpec, RenderRequest, RenderedPage};
use crate::request::ExecRequest;
use crate::result::ExecResult;
use std::sync::Arc;
use tracing::Instrument;

/// The handle callers hold. Cheap to clone (`Arc` inside), `Send + Sync`.
#[derive(Clone)]
pub struct Engine {
    backends: Arc<[Routed]>,
}

/// A backend and what it declared it offers.
struct Routed {
    backend: Arc<dyn Backend>,
    capabilities: Capabilities,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.backends.iter().map(|b| b.backend.name()).collect();
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
    /// Adds a backend. Where several backends offer the same thing, the first added wins.
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
        let backends = std::mem::take(&mut self.backends).into_iter();
        Engine { backends: backends.map(|backend| Routed { capabilities: backend.capabilities(), backend }).collect() }
    }
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The languages some backend runs one-shot.
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
        let backend = self.find(|c| c.has_kernel(language)).ok_or(EngineError::NoContexts { language })?;
        let span = tracing::info_span!("start_kernel", %language, backend = backend.name(), preload = ?spec.preload);
        Ok(backend.start_kernel(spec).instrument(span).await?)
    }

    /// Rebuilds a context from `image` on the backend that runs its language's contexts.
    pub async fn restore_kernel(&self, spec: KernelSpec, image: KernelImage) -> Result<Box<dyn Kernel>, EngineError> {
        let language = spec.language;
        let backend = self.find(|c| c.has_kernel(language)).ok_or(EngineError::NoContexts { language })?;
        let span = tracing::info_span!("restore_kernel", %language, backend = backend.name(), bytes = image.len());
        Ok(backend.restore_kernel(spec, image).instrument(span).await?)
    }

    /// Tells every backend that a job is likely to arrive shortly ([`Backend::expect_job`]):
    /// a server calls it as a request that may run code arrives, so that a parked worker wakes
    /// while the request is read. Never blocks; a hint that no job follows costs one worker a
    /// short spin.
    ///
    /// [`Backend::expect_job`]: crate::Backend::expect_job
    pub fn expect_job(&self) {
        for routed in self.backends.iter() {
            routed.backend.expect_job();
        }
    }

    /// Each backend's name and load (backends that report one).
    pub fn load(&self) -> Vec<(&'static str, crate::backend::BackendLoad)> {
        self.backends.iter().filter_map(|b| b.backend.load().map(|load| (b.backend.name(), load))).collect()
    }

    /// What each backend offers, in routing order, with its name.
    pub fn capabilities(&self) -> Vec<(&'static str, Capabilities)> {
        self.backends.iter().map(|b| (b.backend.name(), b.capabilities.clone())).collect()
    }

    /// Starts a machine (a container) for a sandbox's processes, on the first backend that
    /// runs processes.
    pub async fn start_machine(&self, spec: MachineSpec) -> Result<Box<dyn Machine>, EngineError> {
        let backend = self.find(|c| c.machines).ok_or(EngineError::NoMachines)?;
        let span = tracing::info_span!("start_machine", backend = backend.name(), sandbox = %spec.sandbox_id);
        Ok(backend.start_machine(spec).instrument(span).await?)
    }

    /// Renders a page in a fresh headless browser, on the first backend with rendering.
    pub async fn render(&self, request: RenderRequest) -> Result<RenderedPage, EngineError> {
        let backend = self.find(|c| c.rendering).ok_or(EngineError::NoMachines)?;
        let span = tracing::info_span!("render", backend = backend.name());
        Ok(backend.render(request).instrument(span).await?)
    }

    /// Whether some backend starts machines (native processes, terminals).
    pub fn has_machines(&self) -> bool {
        self.find(|c| c.machines).is_some()
    }

    /// Whether some backend runs `language` one-shot, on a backend of `kind` when given.
    pub fn runs(&self, language: Language, kind: Option<BackendKind>) -> bool {
        self.backend_for(language, kind).is_ok()
    }

    /// The backend for `language`: the first of kind `choice` (when given) that runs it.
    fn backend_for(&self, language: Language, choice: Option<BackendKind>) -> Result<&Arc<dyn Backend>, EngineError> {
        self.find(|c| c.runs(language) && choice.is_none_or(|kind| c.kind == kind))
            .ok_or(EngineError::UnsupportedLanguage { language, backend: choice })
    }

    /// The first backend, in the order added, whose capabilities pass `wanted`.
    fn find(&self, wanted: impl Fn(&Capabilities) -> bool) -> Option<&Arc<dyn Backend>> {
        self.backends.iter().find(|b| wanted(&b.capabilities)).map(|b| &b.backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::FakeBackend;

    fn backend(name: &'static str, capabilities: Capabilities) -> FakeBackend {
        FakeBackend::with(name, capabilities)
    }

    async fn ran_on(engine: &Engine, request: ExecRequest) -> String {
        engine.execute(request).await.unwrap().backend
    }

    #[tokio::test]
    async fn routes_by_capability_never_by_name() {
        let python = [Language::Python];
        // Named like the shipped backends but offering other things: names must not matter.
        let wasm = backend("container", Capabilities::new(BackendKind::Wasm).languages(python));
        let native = backend("wasm", Capabilities::new(BackendKind::Container).languages(Language::ALL).machines());
        let mut builder = Engine::builder();
        builder.backend(wasm).backend(native);
        let engine = builder.build();
        assert_eq!(ran_on(&engine, ExecRequest::new(Language::Python, "1")).await, "container", "first that runs it");
        let mut asked = ExecRequest::new(Language::Python, "1");
        asked.backend = Some(BackendKind::Container);
        assert_eq!(ran_on(&engine, asked).await, "wasm", "the kind asked for");
        assert_eq!(ran_on(&engine, ExecRequest::new(Language::Go, "1")).await, "wasm");
        let mut impossible = ExecRequest::new(Language::Go, "1");
        impossible.backend = Some(BackendKind::Wasm);
        assert!(matches!(engine.execute(impossible).await, Err(EngineError::UnsupportedLanguage { .. })));
        assert!(engine.has_machines());
        assert!(matches!(
            engine.start_kernel(crate::fakes::kernel_spec(Language::Python)).await,
            Err(EngineError::NoContexts { language: Language::Python })
        ));
    }

    #[tokio::test]
    async fn a_third_backend_added_first_is_preferred_and_others_still_serve_the_rest() {
        let ruby_only = backend("embedder", Capabilities::new(BackendKind::Container).languages([Language::Ruby]));
        let everything = FakeBackend::everything();
        let mut builder = Engine::builder();
        builder.backend(ruby_only.clone()).backend(everything.clone());
        let engine = builder.build();
        assert_eq!(ran_on(&engine, ExecRequest::new(Language::Ruby, "puts 1")).await, "embedder");
        assert_eq!(ran_on(&engine, ExecRequest::new(Language::Php, "1")).await, "fake");
        engine
            .start_kernel(crate::fakes::kernel_spec(Language::JavaScript))
            .await
            .expect("kernels from the one offering them");
        assert_eq!(everything.record.kernels_started.load(std::sync::atomic::Ordering::SeqCst), 1);
        let names: Vec<_> = engine.capabilities().into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["embedder", "fake"]);
        assert_eq!(engine.languages(), Language::ALL);
    }

    #[tokio::test]
    async fn no_backend_for_machines_or_rendering_is_a_typed_refusal() {
        let mut builder = Engine::builder();
        builder.backend(backend("plain", Capabilities::new(BackendKind::Wasm).languages([Language::Python])));
        let engine = builder.build();
        assert!(!engine.has_machines());
        let page = crate::process::RenderRequest {
            source: crate::process::PageSource::Html("<p>".into()),
            width: 100,
            height: 100,
            pdf: false,
        };
        assert!(matches!(engine.render(page).await, Err(EngineError::NoMachines)));
    }
}

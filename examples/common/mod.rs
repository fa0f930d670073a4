//! What every example starts with: an engine over SoulBox's WebAssembly backend.

use soulbox_engine::Engine;
use soulbox_runtimes_wasm::{WasmBackend, WasmConfig};

/// An engine over the WebAssembly backend, with the interpreters `soulbox runtimes fetch`
/// installed, its compiled modules loaded (blocking work, done off the async threads).
pub async fn wasm_engine() -> anyhow::Result<Engine> {
    tokio::task::spawn_blocking(|| {
        let backend = WasmBackend::open(WasmConfig::default())?;
        backend.prepare()?;
        Ok(Engine::builder().backend(backend).build())
    })
    .await?
}

//! Shared set-up for SoulBox's benchmarks: an engine over the real WebAssembly backend on the
//! machine's SoulBox home (prepared by `soulbox runtimes fetch`).

use soulbox_engine::{Engine, WorkerPoolConfig};
use soulbox_runtimes_wasm::{WasmBackend, WasmConfig};

/// An engine with the production defaults and a queue deep enough for the throughput runs.
pub fn engine() -> anyhow::Result<Engine> {
    let config =
        WasmConfig { pool: WorkerPoolConfig { queue: 256, ..WorkerPoolConfig::default() }, ..WasmConfig::default() };
    let backend = WasmBackend::open(config)?;
    backend.prepare()?;
    Ok(Engine::builder().backend(backend).build())
}

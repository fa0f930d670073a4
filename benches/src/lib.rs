//! Shared set-up for SoulBox's benchmarks: engines over the real WebAssembly backend on the
//! machine's SoulBox home (prepared by `soulbox runtimes fetch`).

use soulbox_engine::{Engine, WorkerPoolConfig};
use soulbox_runtimes_wasm::{WasmBackend, WasmConfig, Workers};

/// An engine with the production defaults (guests on worker threads) and a queue deep enough
/// for the throughput runs.
pub fn engine() -> anyhow::Result<Engine> {
    engine_with(Workers::Threads)
}

/// Like [`engine`], with guests where `workers` says.
pub fn engine_with(workers: Workers) -> anyhow::Result<Engine> {
    let pool = WorkerPoolConfig { queue: 256, ..WorkerPoolConfig::default() };
    let backend = WasmBackend::open(WasmConfig { pool, workers, ..WasmConfig::default() })?;
    backend.prepare()?;
    Ok(Engine::builder().backend(backend).build())
}

/// Guests in worker processes of the `soulbox` binary built beside the running benchmark.
pub fn worker_processes() -> anyhow::Result<Workers> {
    let program = std::env::current_exe()?.with_file_name("soulbox");
    anyhow::ensure!(program.exists(), "{} not found: run `cargo build --release --workspace` first", program.display());
    Ok(Workers::Processes { program, args: Vec::new() })
}

//! Shared by the worker-process tests: an engine whose guests run in `soulbox __worker`
//! children of this crate's binary.

use soulbox_engine::{Engine, WorkerPoolConfig};
use soulbox_runtimes_wasm::{EngineSettings, WasmBackend, WasmConfig, Workers};

pub fn process_engine() -> Engine {
    let workers = Workers::Processes { program: env!("CARGO_BIN_EXE_soulbox").into(), args: Vec::new() };
    let pool = WorkerPoolConfig { workers: 2, queue: 32, ..WorkerPoolConfig::default() };
    // A small pool: each test opens its own backend, and every pool reserves its slots'
    // address space up front.
    let settings = EngineSettings { pool_slots: 64, ..EngineSettings::default() };
    let backend = WasmBackend::open(WasmConfig { workers, pool, settings, ..WasmConfig::default() }).unwrap();
    Engine::builder().backend(backend).build()
}

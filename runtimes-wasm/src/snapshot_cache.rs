//! Pre-initialized modules (Wizer snapshots), built once per machine.
//!
//! A snapshot is stored under `cache/snapshots/` as `<runtime>-<hash of its content key>.wasm`
//! with a blake3 checksum beside it; one whose bytes no longer match the checksum is rebuilt,
//! and older snapshots of the same runtime are removed when a new one is stored. Building
//! drives wasmtime on a private tokio runtime, so it runs on a thread of its own (it must not
//! be nested in a caller's runtime). Python and JavaScript build theirs through [`load_or_build`].

use crate::engine_config::{EngineRole, EngineSettings};
use crate::error::RuntimeError;
use soulbox_host_api::{GuestLimits, GuestState, add_to_linker};
use std::path::Path;
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wizer::{ModuleContext, Wizer};

/// Limits while building a snapshot (SoulBox's own code runs, not a request's).
pub(crate) const BUILD_LIMITS: GuestLimits = GuestLimits {
    stdout_cap: 1 << 20,
    stderr_cap: 1 << 20,
    memory_cap: soulbox_engine::limits::MAX_MEMORY_BYTES,
    open_files: 256,
};

/// The snapshot of `runtime` for `content_key`: read from `cache_dir` if built before, else
/// built by `build` (on a thread of its own) and stored.
pub(crate) fn load_or_build(
    cache_dir: &Path,
    runtime: &str,
    content_key: &str,
    build: impl FnOnce() -> Result<Vec<u8>, RuntimeError> + Send + 'static,
) -> Result<Vec<u8>, RuntimeError> {
    let prefix = format!("{runtime}-");
    let name = format!("{prefix}{}.wasm", &blake3::hash(content_key.as_bytes()).to_hex()[..32]);
    let path = cache_dir.join(name);
    let checksum = cache_dir.join(format!("{}.b3", path.file_name().unwrap_or_default().to_string_lossy()));
    if let (Ok(bytes), Ok(expected)) = (std::fs::read(&path), std::fs::read_to_string(&checksum)) {
        if blake3::hash(&bytes).to_hex().as_str() == expected.trim() {
            return Ok(bytes);
        }
        tracing::warn!(path = %path.display(), "cached snapshot is corrupt; rebuilding");
    }
    let failed = || RuntimeError::Snapshot { runtime: runtime.into(), message: "the build panicked".into() };
    let bytes = std::thread::Builder::new()
        .name(format!("soulbox-snapshot-{runtime}"))
        .stack_size(crate::engine_config::ASYNC_STACK_BYTES * 2)
        .spawn(build)
        .map_err(|e| RuntimeError::io(cache_dir, e))?
        .join()
        .map_err(|_| failed())??;
    crate::module_cache::atomic_write(&path, &bytes)?;
    crate::module_cache::atomic_write(&checksum, blake3::hash(&bytes).to_hex().as_bytes())?;
    crate::module_cache::remove_stale(cache_dir, &prefix, &path);
    Ok(bytes)
}

/// A current-thread tokio runtime for driving a snapshot's build.
pub(crate) fn build_runtime(scratch: &Path) -> Result<tokio::runtime::Runtime, RuntimeError> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| RuntimeError::io(scratch, e))
}

/// A store for building a snapshot: the memory limiter, no deadline to speak of, unlimited fuel
/// when metering.
pub(crate) fn build_store(
    engine: &Engine,
    state: GuestState,
    settings: &EngineSettings,
) -> Result<Store<GuestState>, RuntimeError> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(u64::MAX / 2);
    if settings.fuel {
        store.set_fuel(u64::MAX).map_err(|e| RuntimeError::wasm(&e))?;
    }
    Ok(store)
}

/// A module instrumented by Wizer, compiled for building (unoptimized: it runs once) and
/// ready to instantiate with SoulBox's guest world linked.
pub(crate) struct Instrumented<'a> {
    pub(crate) wizer: Wizer,
    pub(crate) context: ModuleContext<'a>,
    pub(crate) engine: Engine,
    pub(crate) module: Module,
    pub(crate) linker: Linker<GuestState>,
}

/// Instruments `wasm` for `runtime`'s snapshot, compiles it and links the guest world.
pub(crate) fn instrument<'a>(
    runtime: &str,
    wasm: &'a [u8],
    settings: &EngineSettings,
) -> Result<Instrumented<'a>, RuntimeError> {
    let wizer = Wizer::new();
    let (context, instrumented) = wizer
        .instrument(wasm)
        .map_err(|e| RuntimeError::Snapshot { runtime: runtime.into(), message: format!("{e:#}") })?;
    let engine = settings.engine(EngineRole::BuildSnapshot)?;
    let module = Module::new(&engine, &instrumented).map_err(|e| RuntimeError::wasm(&e))?;
    drop(instrumented);
    let mut linker = Linker::new(&engine);
    add_to_linker(&mut linker).map_err(|e| RuntimeError::wasm(&e))?;
    Ok(Instrumented { wizer, context, engine, module, linker })
}

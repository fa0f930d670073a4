//! Shared helpers for SoulBox's integration tests: engines over the real WebAssembly backend,
//! opened once per test binary on the machine's SoulBox home (`$SOULBOX_HOME` or the default),
//! which `soulbox runtimes fetch` must have prepared.

#![forbid(unsafe_code)]

use soulbox_engine::{Engine, ExecRequest, ExecResult, Language, WorkerPoolConfig};
use soulbox_runtimes_wasm::{EngineSettings, WasmBackend, WasmConfig};
use std::sync::OnceLock;

/// Queue places in the shared test engines: enough for the concurrency tests.
const TEST_QUEUE: usize = 64;

/// Guest slots of a backend a test opens: far more than any test keeps alive (the most is
/// fifty sandboxes with a context or two each), and a sixteenth of the default's address
/// space. Tests run on as many threads as the machine has CPUs, each test may open its own
/// backend, and every backend's pool reserves its slots' address space up front: at the
/// default size eight of them fill a process's 128 TiB.
pub const TEST_POOL_SLOTS: u32 = 256;

/// Guest slots of the shared backends, which every test running at once may fill with its
/// sandboxes' contexts: a quarter of the default's address space.
const SHARED_POOL_SLOTS: u32 = 1024;

/// [`WasmConfig::default`] with a pool of [`TEST_POOL_SLOTS`] slots: what a test that
/// opens a backend of its own should start from.
pub fn wasm_config() -> WasmConfig {
    let settings = EngineSettings { pool_slots: TEST_POOL_SLOTS, ..EngineSettings::default() };
    WasmConfig { settings, ..WasmConfig::default() }
}

fn open(settings: EngineSettings) -> WasmBackend {
    let config = WasmConfig {
        settings: EngineSettings { pool_slots: SHARED_POOL_SLOTS, ..settings },
        pool: WorkerPoolConfig { queue: TEST_QUEUE, ..WorkerPoolConfig::default() },
        ..WasmConfig::default()
    };
    let backend = WasmBackend::open(config).expect("runtimes installed: run `soulbox runtimes fetch` first");
    backend.prepare().expect("modules compile");
    backend
}

/// The shared WebAssembly backend without fuel metering (the production default).
pub fn wasm_backend() -> &'static WasmBackend {
    static BACKEND: OnceLock<WasmBackend> = OnceLock::new();
    BACKEND.get_or_init(|| open(EngineSettings::default()))
}

/// The shared engine without fuel metering (the production default).
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::builder().backend(wasm_backend().clone()).build())
}

/// The shared engine with fuel metering.
pub fn metered_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::builder().backend(open(EngineSettings { fuel: true, ..EngineSettings::default() })).build()
    })
}

pub mod containers;

/// Decodes a PNG fully (every pixel); returns its width and height.
pub fn png_size(bytes: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).expect("PNG pixels decode");
    (info.width, info.height)
}

/// Runs Python `code` with default limits on the shared engine.
pub async fn python(code: &str) -> ExecResult {
    run(ExecRequest::new(Language::Python, code)).await
}

/// Runs JavaScript `code` with default limits on the shared engine.
pub async fn js(code: &str) -> ExecResult {
    run(ExecRequest::new(Language::JavaScript, code)).await
}

/// Runs `request` on the shared engine, panicking if the engine refuses it.
pub async fn run(request: ExecRequest) -> ExecResult {
    engine().execute(request).await.expect("the engine runs the request")
}

/// Asserts that the engine still runs a trivial program correctly in both languages.
pub async fn assert_host_healthy() {
    let py = python("print(6 * 7)").await;
    assert_eq!(py.stdout, "42\n", "python after a fault: {py:?}");
    let js = js("console.log(6 * 7)").await;
    assert_eq!(js.stdout, "42\n", "js after a fault: {js:?}");
}

/// A sandbox registry on the shared engine, its workspaces in a temporary directory. Call it
/// inside the test's runtime (the registry's reaper runs there).
pub fn sandboxes() -> soulbox_engine::Sandboxes {
    sandboxes_on(engine())
}

/// A sandbox registry on `engine`, as [`sandboxes`] (its checkpoints in a temporary directory
/// of its own).
pub fn sandboxes_on(engine: &Engine) -> soulbox_engine::Sandboxes {
    let config = soulbox_engine::SandboxesConfig {
        workspace_root: std::env::temp_dir().join(format!("soulbox-test-sandboxes-{}", std::process::id())),
        ..Default::default()
    };
    soulbox_engine::Sandboxes::new(engine.clone(), config).expect("a sandbox registry opens")
}

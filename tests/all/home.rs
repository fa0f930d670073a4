//! Home-directory hygiene: guest files of dead processes are swept; live ones are kept, even
//! when several backends in one process share a home.

use soulbox_runtimes_wasm::{SoulboxHome, WasmBackend};

#[test]
fn opening_a_backend_sweeps_guest_roots_of_dead_processes() {
    let home = SoulboxHome::from_env();
    // This process's claim first (it may take over a dead folder once, when first made), so
    // the folder below can only be swept.
    WasmBackend::open(soulbox_tests::wasm_config()).unwrap().wait_for_sweep();
    // A folder whose lock nobody holds belongs to a process that died.
    let dead = home.scratch_dir().join(u32::MAX.to_string());
    std::fs::create_dir_all(dead.join("guest-left/secret")).unwrap();
    std::fs::write(dead.with_extension("lock"), b"").unwrap();
    // This process's own folder is claimed (locked) by the backends the tests opened.
    WasmBackend::open(soulbox_tests::wasm_config()).unwrap().wait_for_sweep();
    wait_for_other_sweepers(&dead.with_extension("lock"));
    let mine = home.process_scratch_dir();
    assert!(!dead.exists(), "a dead process's guest files are removed");
    assert!(!dead.with_extension("lock").exists());
    WasmBackend::open(soulbox_tests::wasm_config()).unwrap().wait_for_sweep();
    assert!(mine.exists(), "a live process's folder is kept");
}

/// Waits until no other sweeper holds `lock` (another test's backend, opened meanwhile, may
/// have taken the folder first; this backend's sweep then passed over it; another process
/// starting may have taken it over, renaming it away).
fn wait_for_other_sweepers(lock: &std::path::Path) {
    if let Ok(file) = std::fs::OpenOptions::new().write(true).open(lock) {
        file.lock().unwrap();
    }
}

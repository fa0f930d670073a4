//! Home-directory hygiene: guest files of dead processes are swept; live ones are kept.

use soulbox_runtimes_wasm::{SoulboxHome, WasmBackend, WasmConfig};

#[test]
fn opening_a_backend_sweeps_guest_roots_of_dead_processes() {
    let home = SoulboxHome::from_env();
    let dead = home.scratch_dir().join(u32::MAX.to_string()); // no such pid
    std::fs::create_dir_all(dead.join("guest-left/secret")).unwrap();
    let alive = home.scratch_dir().join("1"); // init: always running
    std::fs::create_dir_all(&alive).unwrap();
    drop(WasmBackend::open(WasmConfig::default()).unwrap());
    assert!(!dead.exists(), "a dead process's guest files are removed");
    assert!(alive.exists(), "a live process's folder is kept");
    std::fs::remove_dir(&alive).unwrap();
}

//! Lays the `soulbox` binary's hot functions out first, in the order of `hot-symbols.txt`.
//!
//! A request that arrives after an idle gap finds the CPU's caches and TLBs emptied by the host,
//! and each page of code it runs costs a page walk before its lines come from memory. The
//! compiler leaves the functions a request runs (hyper, axum's layers, the handler, the engine,
//! wasmtime's entry into a guest) scattered over 35 MB of code (the `dist` build's); the linker
//! places those that `hot-symbols.txt` lists (mangled names, hottest first, profiled on the
//! `dist` build by `scripts/hot-functions/profile.sh`) next to each other at the start of the
//! code instead: one session cell then touches 744 KiB of the binary's code, not 1,292.
//! Names the binary lacks (code changed since the profile) are skipped without a warning, so a
//! stale list costs only what it no longer places.
//!
//! Only on Linux x86-64, whose default linker (LLD, Rust's own there) takes
//! `--symbol-ordering-file`; `SOULBOX_NO_SYMBOL_ORDERING=1` leaves it out (for a linker that
//! does not, such as GNU ld).

use std::env;
use std::path::PathBuf;

fn main() {
    let list = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("hot-symbols.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    println!("cargo:rerun-if-env-changed=SOULBOX_NO_SYMBOL_ORDERING");
    let linux_x86_64 = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64");
    let opted_out = env::var_os("SOULBOX_NO_SYMBOL_ORDERING").is_some_and(|v| !v.is_empty() && v != "0");
    let names_any = std::fs::read_to_string(&list)
        .is_ok_and(|text| text.lines().any(|line| !line.trim().is_empty() && !line.starts_with('#')));
    if linux_x86_64 && !opted_out && names_any {
        println!("cargo:rustc-link-arg-bin=soulbox=-Wl,--symbol-ordering-file={}", list.display());
        println!("cargo:rustc-link-arg-bin=soulbox=-Wl,--no-warn-symbol-ordering");
    }
}

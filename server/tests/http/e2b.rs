//! The E2B surface, driven by the official, unmodified E2B Python SDKs (`e2b` and
//! `e2b-code-interpreter` from PyPI, pinned) as an E2B user's code runs: sandboxes, the code
//! interpreter, files, commands, pause and connect, listing, two tenants, bad keys, and the
//! async API (`server/tests/python/e2b_sdk.py`).

use crate::support::{e2b_python, python_script, start_with_keys};
use std::process::Command;

#[test]
fn the_official_e2b_sdks_run_unchanged_against_soulbox() {
    let dir = tempfile::tempdir().unwrap();
    let (server, keys) = start_with_keys(dir.path(), &["e2b-user", "someone-else"], &[]);
    let out = Command::new(e2b_python())
        .arg(python_script("e2b_sdk.py"))
        .arg(server.url(""))
        .args(&keys)
        .output()
        .expect("the E2B SDK's Python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "{}\nstdout:\n{stdout}\nstderr:\n{}\nserver log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

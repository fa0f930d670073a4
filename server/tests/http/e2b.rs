//! The E2B surface, driven by the official, unmodified E2B Python SDKs (`e2b` and
//! `e2b-code-interpreter` from PyPI, pinned) as an E2B user's code runs: sandboxes, the code
//! interpreter, files, commands, pause and connect, listing, two tenants, bad keys, and the
//! async API (`server/tests/python/e2b_sdk.py`).

use crate::support::{e2b_python, run_python_checks, start_with_keys};

#[test]
fn the_official_e2b_sdks_run_unchanged_against_soulbox() {
    let dir = tempfile::tempdir().unwrap();
    let (server, keys) = start_with_keys(dir.path(), &["e2b-user", "someone-else"], &[]);
    let url = server.url("");
    run_python_checks(&e2b_python(), "e2b_sdk.py", &[&url, &keys[0], &keys[1]], &server);
}

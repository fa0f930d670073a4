//! An API fuzz run driven by the OpenAPI document with a real tool: Schemathesis (pinned in
//! `server/tests/python/fuzz-requirements.txt`) generates requests for every operation from
//! the schema (examples, boundary values, random data, and stateful sequences following the
//! links between operations) against a real server with an API key, and checks that no answer
//! is a 5xx. The number of cases is bounded (`--max-examples` per operation, deterministic
//! generation), and the server must still be alive and healthy afterwards.

use crate::support::start_with_keys;
use std::path::{Path, PathBuf};

/// Schemathesis in `target/fuzz-venv` (which `scripts/test.sh` makes).
fn schemathesis() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-venv/bin/schemathesis");
    assert!(
        path.exists(),
        "no Schemathesis at {}: run scripts/test.sh, or `python3 -m venv target/fuzz-venv && \
         target/fuzz-venv/bin/pip install -r server/tests/python/fuzz-requirements.txt`",
        path.display()
    );
    path
}

#[tokio::test]
async fn fuzzing_every_operation_from_the_openapi_document_finds_no_server_error() {
    let dir = tempfile::tempdir().unwrap();
    let sets = ["auth.requests_per_second=100000", "auth.burst=100000"];
    let (server, keys) = start_with_keys(dir.path(), &["fuzzer"], &sets);
    let key = &keys[0];
    let schema = server.url("/openapi.json");
    let authorization = format!("Authorization: Bearer {key}");
    // Blocking is fine here: the server is another process, and this test awaits nothing else.
    let run = std::process::Command::new(schemathesis())
        .args(["run", &schema, "--checks", "not_a_server_error", "--max-examples", "10"])
        .args(["--generation-deterministic", "--request-timeout", "120", "--header", &authorization])
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .output()
        .expect("schemathesis runs");
    let said = String::from_utf8_lossy(&run.stdout);
    let counted = |l: &&str| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.contains(" generated");
    let cases = said.lines().find(counted).unwrap_or("no count").trim().to_owned();
    eprintln!("schemathesis: {cases}");
    assert!(
        run.status.success(),
        "schemathesis found server errors:\n{said}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let health = reqwest::get(server.url("/health")).await.unwrap();
    assert_eq!(health.status(), 200, "the server survived the run");
    assert!(!server.log().contains("panicked"), "no handler panicked");
}

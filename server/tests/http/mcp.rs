//! The MCP endpoint, driven by the official MCP Python SDK (`mcp` from PyPI) as an agent would.

use crate::support::{Server, create_key, database_in, python_script, test_python};
use std::process::Command;

#[test]
fn the_official_python_sdk_lists_tools_runs_code_and_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let database = database_in(dir.path());
    let key = create_key(&database, "agents");
    let server = Server::start_with(&["--database-url", &database, "serve", "--addr", "127.0.0.1:0"]);
    let out = Command::new(test_python())
        .arg(python_script("mcp_client.py"))
        .arg(server.url("/mcp"))
        .arg(&key)
        .output()
        .expect("the test Python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "stdout:\n{stdout}\nstderr:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

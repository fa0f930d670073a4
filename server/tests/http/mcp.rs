//! The MCP endpoint, driven by the official MCP Python SDK (`mcp` from PyPI) as an agent would.

use crate::support::{Server, create_key, database_in, run_python_checks, test_python};

#[test]
fn the_official_python_sdk_lists_tools_runs_code_and_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let database = database_in(dir.path());
    let key = create_key(&database, "agents");
    let server = Server::start_with(&["--database-url", &database, "serve", "--addr", "127.0.0.1:0"]);
    run_python_checks(&test_python(), "mcp_client.py", &[&server.url("/mcp"), &key], &server);
}

//! The README's library example, kept compiling and passing.

use soulbox_engine::{Engine, ExecRequest, Language, Limits, Outcome};
use soulbox_runtimes_wasm::{WasmBackend, WasmConfig};
use std::time::Duration;

#[tokio::test]
async fn readme_library_example_works() -> anyhow::Result<()> {
    let backend = WasmBackend::open(WasmConfig::default())?;
    backend.prepare()?;
    let engine = Engine::builder().backend(backend).build();

    let request = ExecRequest::new(Language::Python, "import sys\nprint(sys.stdin.read().upper())")
        .with_stdin("hello")
        .with_file("data/in.csv", "a,b\n1,2\n")
        .with_limits(Limits { deadline: Duration::from_secs(2), ..Limits::default() });
    let result = engine.execute(request).await?;
    assert_eq!(result.outcome, Outcome::Completed);
    assert_eq!(result.stdout, "HELLO\n");
    Ok(())
}

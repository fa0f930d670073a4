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

/// The README's sandbox example, with the engine the tests share.
#[tokio::test]
async fn readme_sandbox_example_works() -> anyhow::Result<()> {
    use soulbox_engine::kernel::ExecutionEvent;
    use soulbox_engine::{RunOptions, SandboxSpec, Sandboxes, SandboxesConfig, Template};

    let engine = soulbox_tests::engine().clone();
    let config = SandboxesConfig {
        workspace_root: std::env::temp_dir().join(format!("soulbox-readme-{}", std::process::id())),
        ..SandboxesConfig::default()
    };
    let sandboxes = Sandboxes::new(engine, config)?;
    let spec = SandboxSpec { template: Template::DataScience, ..SandboxSpec::default() };
    let sandbox = sandboxes.create(spec).await?;

    sandbox.files()?.write("/data.csv", b"day,sales\n1,3\n2,5\n3,4\n").await?;
    sandbox.run_code("df = pd.read_csv('/data.csv')", RunOptions::default()).await?;
    let cell = sandbox.run_code("int(df.sales.sum())", RunOptions::default()).await?;
    assert_eq!(cell.text(), Some("12"));

    let plot = sandbox.run_code("df.plot(x='day', y='sales')\nplt.show()", RunOptions::default()).await?;
    let chart = plot.results[0].chart.as_ref().expect("chart data");
    assert_eq!(chart["type"], "line");

    let mut events = sandbox.run_code_stream("for i in range(3): print(i)", RunOptions::default()).await?;
    let mut printed = String::new();
    while let Some(event) = events.next_event().await {
        if let ExecutionEvent::Stdout { text } = event? {
            printed.push_str(&text);
        }
    }
    assert_eq!(printed, "0\n1\n2\n");
    sandboxes.kill(sandbox.id())?;
    Ok(())
}

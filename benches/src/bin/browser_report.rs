//! `browser-report`: rendering a small page in a sandbox's container, warm and cold, with the
//! Chromium command line measured in the same container in the same run as the baseline.
//!
//! - warm: a sandbox whose browser already runs renders a workspace page (PNG, title, text,
//!   links), with a second between renders (as tool calls come: the browser opens the next
//!   render's tab meanwhile) and back to back (it has not); the target is p50 <= 300 ms;
//! - cold sandbox: a new sandbox's first render (its container started, the browser launched);
//! - one-shot: `Engine::render` of inline HTML (a pool container, a browser launched for it);
//! - baseline: `chromium --headless --screenshot` of the same page as a command in the same
//!   running container (one browser launch per render, what a script would do by hand).

use soulbox_benches::{percentile, row};
use soulbox_engine::process::{PageSource, ProcessSpec, RenderRequest};
use soulbox_engine::{Engine, SandboxSpec, Sandboxes, SandboxesConfig};
use soulbox_fallback::{ContainerBackend, ContainerConfig};
use std::time::{Duration, Instant};

const WARM_RUNS: usize = 30;
const GAP: Duration = Duration::from_secs(1);
const COLD_RUNS: usize = 6;
const BASELINE_RUNS: usize = 10;
const PAGE: &str = "<html><head><title>Report</title></head><body><h1>Sales up 3%</h1>\
    <p id=js></p><a href='details.html'>Details</a>\
    <script>document.getElementById('js').textContent = 'rendered ' + (6 * 7);</script></body></html>";

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let measured = runtime.block_on(measure())?;
    println!(
        "Baseline: `chromium --headless --screenshot` of the same page, a command in the same running container\n"
    );
    println!("| measure | p50 | p99 | baseline p50 | ratio (baseline / SoulBox) |");
    println!("|---|---|---|---|---|");
    row("warm render, 1 s between renders (the sandbox's browser running)", &measured.spaced, Some(&measured.baseline));
    row("warm render, back to back", &measured.warm, Some(&measured.baseline));
    row("cold render (a new sandbox: container and browser started)", &measured.cold, Some(&measured.baseline));
    row(
        "one-shot render of inline HTML (pool container, browser started)",
        &measured.one_shot,
        Some(&measured.baseline),
    );
    row("baseline: `chromium --headless --screenshot` in the container", &measured.baseline, None);
    let p50 = |samples: &[Duration]| percentile(samples, 0.5).as_secs_f64() * 1000.0;
    println!(
        "\nwarm render p50 {:.1} ms with gaps, {:.1} ms back to back, against the 300 ms target",
        p50(&measured.spaced),
        p50(&measured.warm)
    );
    Ok(())
}

struct Measured {
    spaced: Vec<Duration>,
    warm: Vec<Duration>,
    cold: Vec<Duration>,
    one_shot: Vec<Duration>,
    baseline: Vec<Duration>,
}

async fn measure() -> anyhow::Result<Measured> {
    let backend = ContainerBackend::start(ContainerConfig { pool_size: 1, ..ContainerConfig::default() }).await?;
    let wasm = soulbox_benches::wasm_backend(soulbox_runtimes_wasm::Workers::Threads)?;
    let engine = Engine::builder().backend(wasm).backend(backend.clone()).build();
    let root = tempfile::tempdir()?;
    let config = SandboxesConfig { workspace_root: root.path().into(), ..Default::default() };
    let sandboxes = Sandboxes::new(engine.clone(), config)?;
    let page = || RenderRequest { source: PageSource::Path("/page.html".into()), width: 800, height: 600, pdf: false };

    let mut cold = Vec::with_capacity(COLD_RUNS);
    for _ in 0..COLD_RUNS {
        let sandbox = sandboxes.create(SandboxSpec::default()).await?;
        sandbox.files()?.write("/page.html", PAGE.as_bytes()).await?;
        let started = Instant::now();
        let rendered = sandbox.render(page()).await?;
        cold.push(started.elapsed());
        anyhow::ensure!(rendered.text.contains("rendered 42"), "unexpected page: {}", rendered.text);
        sandboxes.kill(sandbox.id())?.await;
    }

    let sandbox = sandboxes.create(SandboxSpec::default()).await?;
    sandbox.files()?.write("/page.html", PAGE.as_bytes()).await?;
    sandbox.render(page()).await?;
    let mut spaced = Vec::with_capacity(WARM_RUNS);
    let mut warm = Vec::with_capacity(WARM_RUNS);
    for (samples, gap) in [(&mut spaced, GAP), (&mut warm, Duration::ZERO)] {
        for _ in 0..WARM_RUNS {
            tokio::time::sleep(gap).await;
            let started = Instant::now();
            let rendered = sandbox.render(page()).await?;
            samples.push(started.elapsed());
            anyhow::ensure!(rendered.title == "Report" && rendered.links.len() == 1, "unexpected page: {rendered:?}");
        }
    }

    let screenshot = "chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
        --user-data-dir=/tmp/baseline-profile --window-size=800,600 --screenshot=/tmp/shot.png \
        file:///workspace/page.html >/dev/null 2>&1 && test -s /tmp/shot.png && rm /tmp/shot.png";
    let mut baseline = Vec::with_capacity(BASELINE_RUNS);
    for i in 0..=BASELINE_RUNS {
        let spec = ProcessSpec {
            command: screenshot.into(),
            deadline: Some(Duration::from_secs(60)),
            ..ProcessSpec::default()
        };
        let started = Instant::now();
        let ran = sandbox.run_command(spec).await?;
        let took = started.elapsed();
        anyhow::ensure!(ran.exit.exit_code == Some(0), "the baseline failed: {ran:?}");
        if i > 0 {
            baseline.push(took);
        }
    }
    sandboxes.kill(sandbox.id())?.await;

    let mut one_shot = Vec::with_capacity(COLD_RUNS);
    for _ in 0..COLD_RUNS {
        let inline = RenderRequest { source: PageSource::Html(PAGE.into()), ..page() };
        let started = Instant::now();
        let rendered = engine.render(inline).await?;
        one_shot.push(started.elapsed());
        anyhow::ensure!(rendered.text.contains("rendered 42"), "unexpected page: {}", rendered.text);
    }
    backend.shutdown().await;
    Ok(Measured { spaced, warm, cold, one_shot, baseline })
}

//! `container-report`: the container backend's latencies on the real Docker engine, with a
//! cold `docker run` of the same image measured in the same run as the baseline.
//!
//! - warm pool: a one-shot `echo hi` (bash) taken from a full pool (the run waits for the pool
//!   to refill between samples, as spaced tool calls would let it);
//! - no pool: the same through the backend with a pool of 0 (a container made and started for
//!   the run, removed after it);
//! - sandbox command: `echo hi` in a sandbox whose container already runs (one `docker exec`);
//! - baseline: `docker run --rm --network none <image> echo hi` through the Docker CLI.

use soulbox_benches::{percentile, row};
use soulbox_engine::process::ProcessSpec;
use soulbox_engine::{Engine, ExecRequest, Language, SandboxSpec, Sandboxes, SandboxesConfig};
use soulbox_fallback::{ContainerBackend, ContainerConfig};
use std::process::Command;
use std::time::{Duration, Instant};

const WARM_RUNS: usize = 60;
const COLD_RUNS: usize = 20;
const COMMAND_RUNS: usize = 200;
const POOL: usize = 2;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let (warm, cold, command) = runtime.block_on(measure())?;
    let image = soulbox_fallback::config::DEFAULT_IMAGE;
    let baseline = soulbox_benches::process_latencies(
        Command::new("docker").args(["run", "--rm", "--network", "none", image, "echo", "hi"]),
        COLD_RUNS,
    )?;
    println!("Baseline: `docker run --rm --network none {image} echo hi` (Docker CLI), a new container per run\n");
    println!("| measure | p50 | p99 | baseline p50 | ratio (baseline / SoulBox) |");
    println!("|---|---|---|---|---|");
    row("one-shot `echo hi`, warm pool", &warm, Some(&baseline));
    row("one-shot `echo hi`, no pool (a container started for the run)", &cold, Some(&baseline));
    row("sandbox command `echo hi` (container running)", &command, Some(&baseline));
    println!("\nwarm pool p50 {:.1} ms against the 30 ms target", percentile(&warm, 0.5).as_secs_f64() * 1000.0);
    Ok(())
}

async fn measure() -> anyhow::Result<(Vec<Duration>, Vec<Duration>, Vec<Duration>)> {
    let pooled = ContainerBackend::start(ContainerConfig { pool_size: POOL, ..ContainerConfig::default() }).await?;
    let unpooled = ContainerBackend::start(ContainerConfig { pool_size: 0, ..ContainerConfig::default() }).await?;
    let warm = one_shots(&pooled, WARM_RUNS, true).await?;
    let cold = one_shots(&unpooled, COLD_RUNS, false).await?;
    let command = sandbox_commands(&pooled).await?;
    pooled.shutdown().await;
    unpooled.shutdown().await;
    Ok((warm, cold, command))
}

/// `echo hi` `runs` times (after one unmeasured run); with `wait_for_pool`, each run starts
/// from a full pool.
async fn one_shots(backend: &ContainerBackend, runs: usize, wait_for_pool: bool) -> anyhow::Result<Vec<Duration>> {
    let engine = Engine::builder().backend(backend.clone()).build();
    let mut samples = Vec::with_capacity(runs);
    for i in 0..=runs {
        if wait_for_pool {
            let deadline = Instant::now() + Duration::from_secs(30);
            while backend.pool_ready() < POOL && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let started = Instant::now();
        let result = engine.execute(ExecRequest::new(Language::Bash, "echo hi")).await?;
        let took = started.elapsed();
        anyhow::ensure!(result.stdout == "hi\n", "unexpected result: {result:?}");
        if i > 0 {
            samples.push(took);
        }
    }
    Ok(samples)
}

/// `echo hi` as a command in one sandbox, back to back.
async fn sandbox_commands(backend: &ContainerBackend) -> anyhow::Result<Vec<Duration>> {
    let wasm = soulbox_benches::wasm_backend(soulbox_runtimes_wasm::Workers::Threads)?;
    let engine = Engine::builder().backend(wasm).backend(backend.clone()).build();
    let root = tempfile::tempdir()?;
    let sandboxes =
        Sandboxes::new(engine, SandboxesConfig { workspace_root: root.path().into(), ..Default::default() })?;
    let sandbox = sandboxes.create(SandboxSpec::default()).await?;
    let echo = || ProcessSpec { command: "echo hi".into(), ..ProcessSpec::default() };
    sandbox.run_command(echo()).await?;
    let mut samples = Vec::with_capacity(COMMAND_RUNS);
    for _ in 0..COMMAND_RUNS {
        let started = Instant::now();
        let result = sandbox.run_command(echo()).await?;
        samples.push(started.elapsed());
        anyhow::ensure!(result.stdout == "hi\n", "unexpected result: {result:?}");
    }
    sandboxes.kill(sandbox.id())?;
    Ok(samples)
}

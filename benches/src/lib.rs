//! Shared set-up for SoulBox's benchmarks: engines over the real WebAssembly backend on the
//! machine's SoulBox home (prepared by `soulbox runtimes fetch`).

#![forbid(unsafe_code)]

pub mod kept_alive;
pub mod moto;
pub mod peers;
pub mod wrk;

use anyhow::Context;
use soulbox_engine::{Engine, WorkerPoolConfig};
use soulbox_runtimes_wasm::{WasmBackend, WasmConfig, Workers};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// An engine with the production defaults (guests on worker threads) and a queue deep enough
/// for the throughput runs.
pub fn engine() -> anyhow::Result<Engine> {
    engine_with(Workers::Threads)
}

/// A sandbox registry on `engine` with `config`, opened inside `runtime` (its reaper runs there).
pub fn registry(
    runtime: &tokio::runtime::Runtime,
    engine: Engine,
    config: soulbox_engine::SandboxesConfig,
) -> anyhow::Result<soulbox_engine::Sandboxes> {
    let _inside = runtime.enter();
    Ok(soulbox_engine::Sandboxes::new(engine, config)?)
}

/// Like [`engine`], with guests where `workers` says.
pub fn engine_with(workers: Workers) -> anyhow::Result<Engine> {
    Ok(Engine::builder().backend(wasm_backend(workers)?).build())
}

/// The WebAssembly backend, prepared, with guests where `workers` says.
pub fn wasm_backend(workers: Workers) -> anyhow::Result<WasmBackend> {
    let pool = WorkerPoolConfig { queue: 256, ..WorkerPoolConfig::default() };
    let backend = WasmBackend::open(WasmConfig { pool, workers, ..WasmConfig::default() })?;
    backend.prepare()?;
    Ok(backend)
}

/// Guests in worker processes of the `soulbox` binary built beside the running benchmark.
pub fn worker_processes() -> anyhow::Result<Workers> {
    let program = soulbox_command()?.get_program().into();
    Ok(Workers::Processes { program, args: Vec::new() })
}

/// The `soulbox` binary built beside the running benchmark.
pub fn soulbox_command() -> anyhow::Result<Command> {
    let program = std::env::current_exe()?.with_file_name("soulbox");
    anyhow::ensure!(program.exists(), "{} not found: run `cargo build --release --workspace` first", program.display());
    Ok(Command::new(program))
}

/// A copy of the `soulbox` binary in a fresh temporary folder (kept while the returned guard
/// lives), as an install leaves it (`cargo install`, a package, a container image's `COPY`):
/// for rows that time whole processes against an installed interpreter.
///
/// Why not the linker's output itself: the same bytes start slower from the file the linker
/// wrote than from a copy, an effect of how that file's pages sit in the page cache, not of
/// SoulBox: measured 0.86 ms p50 slower (150 paired runs of `soulbox run -e 'print(1+1)'`,
/// 0.34 ms after dropping the page cache), which no installed binary pays.
pub fn installed_soulbox() -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let built = soulbox_command()?.get_program().to_owned();
    let folder = tempfile::tempdir()?;
    let installed = folder.path().join("soulbox");
    std::fs::copy(&built, &installed).with_context(|| format!("copying {}", PathBuf::from(&built).display()))?;
    Ok((folder, installed))
}

/// `soulbox serve --dev` on a free loopback port with the per-key rate limit and quota raised
/// out of a load test's way: the arguments for [`start_soulbox`].
pub const UNLIMITED_DEV_SERVER: [&str; 10] = [
    "serve",
    "--dev",
    "--addr",
    "127.0.0.1:0",
    "--set",
    "auth.requests_per_second=1000000",
    "--set",
    "auth.burst=1000000",
    "--set",
    "auth.max_concurrent_executions=1024",
];

/// Starts `soulbox ARGS...` (logging warnings only) and waits until it listens; returns the
/// process and its base URL (`http://127.0.0.1:PORT`). Its stderr is drained from then on.
pub fn start_soulbox<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
) -> anyhow::Result<(std::process::Child, String)> {
    use std::io::{BufRead, BufReader};
    let mut child = soulbox_command()?
        .args(args)
        .env("SOULBOX_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting soulbox")?;
    let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
    let base = loop {
        let line = lines.next().context("soulbox exited before listening")??;
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            break url.to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, base))
}

/// Runs `command` `runs` times (after one unmeasured run) and returns each wall time.
pub fn process_latencies(command: &mut Command, runs: usize) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(runs);
    for i in 0..=runs {
        let elapsed = time_process(command)?;
        if i > 0 {
            samples.push(elapsed);
        }
    }
    Ok(samples)
}

/// Runs `measured` and `baseline` `runs` times each, one after the other in turn, the first of
/// each pair alternating (after one unmeasured run of each), and returns their wall times,
/// pair by pair. Alternating cancels the drift of a shared machine, whose speed changes by tens
/// of percent within minutes, from the ratio of the two: the same binary measured 1.47 times
/// native one batch after the other, and 1.20 times in turn minutes later.
pub fn alternating_process_latencies(
    measured: &mut Command,
    baseline: &mut Command,
    runs: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let (mut a, mut b) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for i in 0..=runs {
        // Which goes first changes every run, so neither always runs right after the other.
        let (elapsed_a, elapsed_b) = match i % 2 {
            0 => (time_process(measured)?, time_process(baseline)?),
            _ => {
                let elapsed_b = time_process(baseline)?;
                (time_process(measured)?, elapsed_b)
            }
        };
        if i > 0 {
            a.push(elapsed_a);
            b.push(elapsed_b);
        }
    }
    Ok((a, b))
}

/// One run of `command` to its exit, which must be a success: its wall time.
fn time_process(command: &mut Command) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    let output = command.output().with_context(|| format!("running {command:?}"))?;
    anyhow::ensure!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
    Ok(started.elapsed())
}

/// The native baseline interpreter: `$SOULBOX_BASELINE_PYTHON`, else the system's own
/// `/usr/bin/python3`, else the real executable behind `python3` (resolved through
/// `sys.executable`, so a version-manager shim's start-up is not counted). The system's comes
/// first because a version manager's interpreter may carry site hooks (`.pth` files) that
/// make every start slower than CPython's own (seen: 60 ms instead of 10).
pub fn baseline_python() -> anyhow::Result<PathBuf> {
    if let Some(python) = std::env::var_os("SOULBOX_BASELINE_PYTHON") {
        return Ok(python.into());
    }
    let system = PathBuf::from("/usr/bin/python3");
    if system.exists() {
        return Ok(system);
    }
    let output = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output()?;
    anyhow::ensure!(output.status.success(), "python3 is needed for the native baseline");
    Ok(String::from_utf8(output.stdout)?.trim().into())
}

/// The `p` quantile (0..=1) of `samples`.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// `d` in milliseconds, three decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// Prints a table row: p50, p99, the baseline's p50 and the ratio baseline / SoulBox.
pub fn row(name: &str, samples: &[Duration], baseline: Option<&[Duration]>) {
    let p50 = percentile(samples, 0.5);
    let (native, ratio) = match baseline {
        Some(baseline) => {
            let native = percentile(baseline, 0.5);
            (ms(native), format!("{:.1}x", native.as_secs_f64() / p50.as_secs_f64()))
        }
        None => ("n/a".into(), "n/a".into()),
    };
    println!("| {name} | {} | {} | {native} | {ratio} |", ms(p50), ms(percentile(samples, 0.99)));
}

/// Runs `code` `runs` times on `engine` (after `runs / 10` unmeasured runs), waiting `gap`
/// before each (`None`: back-to-back), and returns each latency. Fails on a non-zero exit.
pub async fn execution_latencies(
    engine: &soulbox_engine::Engine,
    language: soulbox_engine::Language,
    code: &str,
    runs: usize,
    gap: Option<Duration>,
) -> anyhow::Result<Vec<Duration>> {
    request_latencies(engine, || soulbox_engine::ExecRequest::new(language, code), runs, gap).await
}

/// [`execution_latencies`] for the requests `request` makes.
pub async fn request_latencies(
    engine: &soulbox_engine::Engine,
    request: impl Fn() -> soulbox_engine::ExecRequest,
    runs: usize,
    gap: Option<Duration>,
) -> anyhow::Result<Vec<Duration>> {
    for _ in 0..runs / 10 {
        engine.execute(request()).await?;
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        if let Some(gap) = gap {
            tokio::time::sleep(gap).await;
        }
        let started = std::time::Instant::now();
        let result = engine.execute(request()).await?;
        samples.push(started.elapsed());
        anyhow::ensure!(result.exit_code == 0, "{}: {}", request().code, result.stderr);
    }
    Ok(samples)
}

/// Fresh Python `print(1 + 1)` executions per second on `engine` over `window`, with twice as
/// many in flight as the machine has cores.
pub async fn fresh_throughput(engine: &soulbox_engine::Engine, window: Duration) -> anyhow::Result<f64> {
    use soulbox_engine::{ExecRequest, Language};
    let concurrency = 2 * std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while started.elapsed() < window {
                let result = engine.execute(ExecRequest::new(Language::Python, "print(1 + 1)")).await?;
                anyhow::ensure!(result.stdout == "2\n");
                done += 1;
            }
            Ok(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

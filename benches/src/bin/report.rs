//! `report`: measures SoulBox's headline figures in one run and prints a Markdown table, with
//! native CPython (`python3 -c`) measured beside it as the baseline.

use anyhow::Context;
use soulbox_engine::{Engine, ExecRequest, Language};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const FRESH_RUNS: usize = 1000;
const IMPORT_RUNS: usize = 200;
const PROCESS_RUNS: usize = 30;
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(5);

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let engine = soulbox_benches::engine()?;
    if std::env::var_os("SB_ONLY").is_some() {
        let py = runtime.block_on(latencies(&engine, Language::Python, "print(1 + 1)", 300))?;
        println!("p50 {:?} p99 {:?}", percentile(&py, 0.5), percentile(&py, 0.99));
        return Ok(());
    }
    if std::env::var_os("SOULBOX_REPORT_ONLY_THROUGHPUT").is_some() {
        println!("{:.0}/s", runtime.block_on(throughput(&engine))?);
        return Ok(());
    }
    let py = runtime.block_on(latencies(&engine, Language::Python, "print(1 + 1)", FRESH_RUNS))?;
    let js = runtime.block_on(latencies(&engine, Language::JavaScript, "console.log(1 + 1)", FRESH_RUNS))?;
    let imports = runtime.block_on(latencies(&engine, Language::Python, "import numpy, pandas", IMPORT_RUNS))?;
    let df = runtime.block_on(latencies(
        &engine,
        Language::Python,
        "import pandas as pd\npd.DataFrame({'a': range(100)}).describe()",
        IMPORT_RUNS,
    ))?;
    let rate = runtime.block_on(throughput(&engine))?;
    let soulbox = soulbox_binary()?;
    let warm_start = process_latencies(Command::new(&soulbox).args(["run", "-e", "print(1 + 1)"]))?;
    let native = process_latencies(Command::new("python3").args(["-c", "print(1 + 1)"]))?;
    let native_np = process_latencies(Command::new("python3").args(["-c", "import numpy, pandas"])).ok();

    println!("| measure | p50 | p99 | vs native `python3 -c` p50 |");
    println!("|---|---|---|---|");
    row("fresh Python `print(1+1)` (in-process)", &py, &native);
    row("fresh JS `console.log(1+1)` (in-process)", &js, &native);
    row("fresh Python `import numpy, pandas`", &imports, native_np.as_ref().unwrap_or(&native));
    row("fresh Python `DataFrame.describe()`", &df, &native);
    row("warm process start `soulbox run -e 'print(1+1)'`", &warm_start, &native);
    row("native `python3 -c 'print(1+1)'` (baseline)", &native, &native);
    if let Some(np) = &native_np {
        row("native `python3 -c 'import numpy, pandas'`", np, &native);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "\nThroughput: {rate:.0} fresh Python executions/s on {cores} cores ({:.2} ms per execution per core)",
        1000.0 * cores as f64 / rate
    );
    Ok(())
}

async fn latencies(engine: &Engine, language: Language, code: &str, runs: usize) -> anyhow::Result<Vec<Duration>> {
    for _ in 0..runs / 10 {
        engine.execute(ExecRequest::new(language, code)).await?; // warm up
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        if let Some(ms) = std::env::var("SB_GAP_MS").ok().and_then(|v| v.parse().ok()) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let started = Instant::now();
        let result = engine.execute(ExecRequest::new(language, code)).await?;
        samples.push(started.elapsed());
        anyhow::ensure!(result.exit_code == 0, "{code}: {}", result.stderr);
    }
    Ok(samples)
}

async fn throughput(engine: &Engine) -> anyhow::Result<f64> {
    let concurrency = 2 * std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while started.elapsed() < THROUGHPUT_WINDOW {
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

fn process_latencies(command: &mut Command) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(PROCESS_RUNS);
    for i in 0..=PROCESS_RUNS {
        let started = Instant::now();
        let output = command.output().with_context(|| format!("running {command:?}"))?;
        anyhow::ensure!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
        if i > 0 {
            samples.push(started.elapsed());
        }
    }
    Ok(samples)
}

fn soulbox_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name("soulbox");
    anyhow::ensure!(path.exists(), "{} not found: run `cargo build --release --workspace` first", path.display());
    Ok(path)
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn row(name: &str, samples: &[Duration], baseline: &[Duration]) {
    let p50 = percentile(samples, 0.5);
    let ratio = percentile(baseline, 0.5).as_secs_f64() / p50.as_secs_f64();
    println!("| {name} | {} | {} | {ratio:.1}x faster |", ms(p50), ms(percentile(samples, 0.99)));
}

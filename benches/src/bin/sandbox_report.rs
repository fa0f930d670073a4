//! `sandbox-report`: the sandbox figures in one run, as a Markdown table, with native CPython
//! measured beside them as the baseline:
//!
//! - create a sandbox and run its first cell (a new `python3 -c` process is the baseline);
//! - a cell `x = x + 1` in a live context (baseline: a native Python process that `exec`s
//!   each line it reads from a pipe, the round trip of one line);
//! - a data-science sandbox's first `df.describe()` cell (baseline: `python3 -c` importing
//!   pandas and describing the same frame);
//! - private memory per idle sandbox (Private_Dirty of this process, before and after opening
//!   [`MEMORY_SANDBOXES`] of them; baseline: an idle native `python3` process, and one with
//!   numpy, pandas and matplotlib imported);
//! - [`MANY`] idle sandboxes open at once: time to open, memory, a cell in some of them, and
//!   memory after killing them.

use anyhow::Context;
use soulbox_benches::{baseline_python, ms, percentile, process_latencies, row};
use soulbox_engine::{Language, RunOptions, SandboxSpec, Sandboxes, SandboxesConfig, Template};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CREATE_RUNS: usize = 100;
const CELL_RUNS: usize = 3000;
const DESCRIBE_RUNS: usize = 30;
const PROCESS_RUNS: usize = 30;
const MEMORY_SANDBOXES: usize = 200;
const MANY: usize = 1000;
const DESCRIBE: &str = "pd.DataFrame({'a': range(100)}).describe()";

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let engine = soulbox_benches::engine()?;
    let root = tempfile::tempdir()?;
    let config = SandboxesConfig { workspace_root: root.path().into(), ..Default::default() };
    let sandboxes = soulbox_benches::registry(&runtime, engine, config)?;
    let python = baseline_python()?;

    let create_py = runtime.block_on(create_and_first_cell(&sandboxes, Template::Python, "1 + 1"))?;
    let create_ds = runtime.block_on(create_and_first_cell(&sandboxes, Template::DataScience, "1 + 1"))?;
    let create_js = runtime.block_on(create_and_first_cell(&sandboxes, Template::JavaScript, "1 + 1"))?;
    let cell_py = runtime.block_on(increments(&sandboxes, Template::Python))?;
    let cell_js = runtime.block_on(increments(&sandboxes, Template::JavaScript))?;
    let describe = runtime.block_on(first_describe(&sandboxes))?;
    let native_start = process_latencies(Command::new(&python).args(["-c", "print(1 + 1)"]), PROCESS_RUNS)?;
    let native_describe = process_latencies(
        Command::new(&python).args(["-c", &format!("import pandas as pd\nprint({DESCRIBE})")]),
        PROCESS_RUNS,
    )
    .ok();
    let native_cell = native_round_trips(&python)?;

    println!("Baseline: {} (native CPython)\n", python.display());
    println!("| measure | p50 | p99 | native baseline p50 | ratio (native / SoulBox) |");
    println!("|---|---|---|---|---|");
    row("create sandbox + first cell `1 + 1` (Python)", &create_py, Some(&native_start));
    row("create sandbox + first cell `1 + 1` (data-science)", &create_ds, Some(&native_start));
    row("create sandbox + first cell `1 + 1` (JavaScript)", &create_js, Some(&native_start));
    row("cell `x = x + 1` (Python context)", &cell_py, Some(&native_cell));
    row("cell `x = x + 1` (JavaScript context)", &cell_js, Some(&native_cell));
    row("data-science sandbox, first `df.describe()` cell", &describe, native_describe.as_deref());

    println!("\nMemory per idle sandbox ({MEMORY_SANDBOXES} open; Private_Dirty of the SoulBox process):\n");
    println!("| template | private memory per idle sandbox | native idle process (Private_Dirty) |");
    println!("|---|---|---|");
    let native_idle = native_idle_memory(&python, "")?;
    let native_ds = native_idle_memory(&python, "import numpy, pandas, matplotlib.pyplot").ok();
    for template in Template::ALL {
        let per = runtime.block_on(memory_per_sandbox(&sandboxes, template))?;
        let native = match template {
            Template::DataScience => native_ds.map_or("n/a".into(), mib),
            _ => mib(native_idle),
        };
        println!("| {template} | {} | {native} |", mib(per));
    }

    runtime.block_on(many(&sandboxes))?;
    Ok(())
}

async fn create_and_first_cell(sandboxes: &Sandboxes, template: Template, code: &str) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(CREATE_RUNS);
    for i in 0..CREATE_RUNS + CREATE_RUNS / 10 {
        let started = Instant::now();
        let sandbox = sandboxes.create(SandboxSpec { template, ..SandboxSpec::default() }).await?;
        let execution = sandbox.run_code(code, options(template)).await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(execution.text() == Some("2"), "{execution:?}");
        sandboxes.kill(sandbox.id())?;
        if i >= CREATE_RUNS / 10 {
            samples.push(elapsed);
        }
    }
    Ok(samples)
}

async fn increments(sandboxes: &Sandboxes, template: Template) -> anyhow::Result<Vec<Duration>> {
    let sandbox = sandboxes.create(SandboxSpec { template, ..SandboxSpec::default() }).await?;
    let start = if template == Template::JavaScript { "var x = 0" } else { "x = 0" };
    sandbox.run_code(start, options(template)).await?;
    let mut samples = Vec::with_capacity(CELL_RUNS);
    for _ in 0..CELL_RUNS {
        let started = Instant::now();
        let execution = sandbox.run_code("x = x + 1", options(template)).await?;
        samples.push(started.elapsed());
        anyhow::ensure!(execution.error.is_none(), "{execution:?}");
    }
    let end = sandbox.run_code("x", options(template)).await?;
    anyhow::ensure!(end.text() == Some(CELL_RUNS.to_string().as_str()), "{end:?}");
    sandboxes.kill(sandbox.id())?;
    Ok(samples)
}

async fn first_describe(sandboxes: &Sandboxes) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(DESCRIBE_RUNS);
    for _ in 0..DESCRIBE_RUNS {
        let spec = SandboxSpec { template: Template::DataScience, ..SandboxSpec::default() };
        let sandbox = sandboxes.create(spec).await?;
        let started = Instant::now();
        let execution = sandbox.run_code(DESCRIBE, RunOptions::default()).await?;
        samples.push(started.elapsed());
        let table = execution.main_result().context("describe() returns a frame")?;
        anyhow::ensure!(table.data.is_some() && table.html.is_some(), "{execution:?}");
        sandboxes.kill(sandbox.id())?;
    }
    Ok(samples)
}

async fn memory_per_sandbox(sandboxes: &Sandboxes, template: Template) -> anyhow::Result<u64> {
    settle().await;
    let before = private_dirty_kib(None)?;
    let mut open = Vec::with_capacity(MEMORY_SANDBOXES);
    for _ in 0..MEMORY_SANDBOXES {
        open.push(sandboxes.create(SandboxSpec { template, ..SandboxSpec::default() }).await?);
    }
    settle().await;
    let after = private_dirty_kib(None)?;
    for sandbox in &open {
        sandboxes.kill(sandbox.id())?;
    }
    Ok(after.saturating_sub(before) * 1024 / MEMORY_SANDBOXES as u64)
}

async fn many(sandboxes: &Sandboxes) -> anyhow::Result<()> {
    settle().await;
    let before = private_dirty_kib(None)?;
    let started = Instant::now();
    let mut open = Vec::with_capacity(MANY);
    for _ in 0..MANY {
        open.push(sandboxes.create(SandboxSpec::default()).await?);
    }
    let opened_in = started.elapsed();
    settle().await;
    let with_many = private_dirty_kib(None)?;
    let mut cells = Vec::new();
    for sandbox in open.iter().step_by(50) {
        let started = Instant::now();
        let execution = sandbox.run_code("sum(range(10))", RunOptions::default()).await?;
        cells.push(started.elapsed());
        anyhow::ensure!(execution.text() == Some("45"), "{execution:?}");
    }
    let open_now = sandboxes.len();
    let killing = Instant::now();
    for sandbox in &open {
        sandboxes.kill(sandbox.id())?;
    }
    let killed_in = killing.elapsed();
    settle().await;
    let after_kill = private_dirty_kib(None)?;
    // Freed slots keep their reset pages resident for the next instances (wasmtime's
    // keep-resident reset): opening as many again reuses them instead of growing.
    let mut again = Vec::with_capacity(MANY);
    for _ in 0..MANY {
        again.push(sandboxes.create(SandboxSpec::default()).await?);
    }
    settle().await;
    let reopened = private_dirty_kib(None)?;
    for sandbox in &again {
        sandboxes.kill(sandbox.id())?;
    }
    println!("\n{MANY} idle Python sandboxes open at once:\n");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| sandboxes open | {open_now} |");
    println!(
        "| time to open them, one after another | {:.2} s ({} per sandbox) |",
        opened_in.as_secs_f64(),
        ms(opened_in / MANY as u32)
    );
    println!(
        "| private memory with them open (over the process before) | {} ({} per sandbox) |",
        mib((with_many.saturating_sub(before)) * 1024),
        mib(with_many.saturating_sub(before) * 1024 / MANY as u64)
    );
    println!("| a cell `sum(range(10))` in every 50th of them, p50 | {} |", ms(percentile(&cells, 0.5)));
    println!("| time to kill them all | {} |", ms(killed_in));
    println!(
        "| private memory after killing them (over the process before; the pool keeps freed slots' pages for reuse) | {} |",
        mib(after_kill.saturating_sub(before) * 1024)
    );
    println!(
        "| private memory with {MANY} new ones open again (over the process before) | {} |",
        mib(reopened.saturating_sub(before) * 1024)
    );
    Ok(())
}

fn options(template: Template) -> RunOptions {
    let language = if template == Template::JavaScript { Language::JavaScript } else { Language::Python };
    RunOptions { language: Some(language), ..RunOptions::default() }
}

/// Lets worker threads finish their follow-up work (tearing down, starting the next guest).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Private_Dirty of a process (this one by default), in KiB.
fn private_dirty_kib(pid: Option<u32>) -> anyhow::Result<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/smaps_rollup"),
        None => "/proc/self/smaps_rollup".into(),
    };
    let rollup = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    rollup
        .lines()
        .filter(|l| l.starts_with("Private_Dirty:"))
        .find_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .context("no Private_Dirty line")
}

/// Private_Dirty of an idle native Python process that ran `setup`, in bytes.
fn native_idle_memory(python: &PathBuf, setup: &str) -> anyhow::Result<u64> {
    let code = format!("{setup}\nimport sys\nprint('ready', flush=True)\nsys.stdin.read()");
    let mut child = Command::new(python).args(["-c", &code]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let kib = private_dirty_kib(Some(child.id()));
    drop(child.stdin.take());
    child.wait()?;
    anyhow::ensure!(line.trim() == "ready", "the native baseline did not start: {line}");
    Ok(kib? * 1024)
}

/// Round trips of `x = x + 1` through a native Python process that `exec`s each line it reads.
fn native_round_trips(python: &PathBuf) -> anyhow::Result<Vec<Duration>> {
    let driver = "import sys\nns = {'x': 0}\nfor line in sys.stdin:\n    exec(line, ns)\n    sys.stdout.write('ok\\n')\n    sys.stdout.flush()";
    let mut child = Command::new(python).args(["-c", driver]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
    let mut samples = Vec::with_capacity(CELL_RUNS);
    let mut line = String::new();
    for _ in 0..CELL_RUNS {
        let started = Instant::now();
        stdin.write_all(b"x = x + 1\n")?;
        stdin.flush()?;
        line.clear();
        stdout.read_line(&mut line)?;
        samples.push(started.elapsed());
        anyhow::ensure!(line == "ok\n", "native kernel said {line:?}");
    }
    drop(stdin);
    child.wait()?;
    Ok(samples)
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

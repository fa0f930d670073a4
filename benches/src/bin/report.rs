//! `report`: measures SoulBox's headline figures in one run and prints a Markdown table, with
//! native CPython measured beside them as the baseline.
//!
//! The baseline interpreter is `$SOULBOX_BASELINE_PYTHON`, else the real executable behind
//! `python3` (resolved through `sys.executable`, so a version-manager shim's start-up is not
//! counted). Rows needing numpy/pandas natively say `n/a` when the baseline lacks them. The
//! `soulbox run` row and the baseline's `python3 -c` run in turn, run by run, so the machine's
//! drift does not enter their ratio.
//!
//! "Idle engine" rows leave [`IDLE_GAP`] between requests, as LLM tool calls do, so workers
//! have started their next Python guest; "back-to-back" rows send the next request the moment
//! the last one is answered.

use soulbox_benches::{baseline_python, percentile, row};
use soulbox_engine::{Engine, Language};
use std::process::Command;
use std::time::Duration;

const IN_PROCESS_RUNS: usize = 500;
const HEAVY_RUNS: usize = 100;
const PROCESS_RUNS: usize = 30;
const IDLE_GAP: Duration = Duration::from_millis(10);
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(5);

/// How requests are spaced.
#[derive(Clone, Copy)]
enum Pace {
    Idle,
    BackToBack,
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let engine = soulbox_benches::engine()?;
    let measure = |language, code, runs, pace| runtime.block_on(latencies(&engine, language, code, runs, pace));
    let py_idle = measure(Language::Python, "print(1 + 1)", IN_PROCESS_RUNS, Pace::Idle)?;
    let py_busy = measure(Language::Python, "print(1 + 1)", IN_PROCESS_RUNS, Pace::BackToBack)?;
    let js_idle = measure(Language::JavaScript, "console.log(1 + 1)", IN_PROCESS_RUNS, Pace::Idle)?;
    let js_busy = measure(Language::JavaScript, "console.log(1 + 1)", IN_PROCESS_RUNS, Pace::BackToBack)?;
    let imports = measure(Language::Python, "import numpy, pandas", HEAVY_RUNS, Pace::Idle)?;
    let describe = "import pandas as pd\nprint(pd.DataFrame({'a': range(100)}).describe())";
    let df = measure(Language::Python, describe, HEAVY_RUNS, Pace::Idle)?;
    let rate = runtime.block_on(throughput(&engine))?;
    let processes = soulbox_benches::engine_with(soulbox_benches::worker_processes()?)?;
    let process_rate = runtime.block_on(throughput(&processes))?;
    let py_processes =
        runtime.block_on(latencies(&processes, Language::Python, "print(1 + 1)", IN_PROCESS_RUNS, Pace::BackToBack))?;

    let python = baseline_python()?;
    let (_install, soulbox) = soulbox_benches::installed_soulbox()?;
    let (warm_start, native) = soulbox_benches::alternating_process_latencies(
        Command::new(&soulbox).args(["run", "-e", "print(1 + 1)"]),
        Command::new(&python).args(["-c", "print(1 + 1)"]),
        PROCESS_RUNS,
    )?;
    let native_np =
        soulbox_benches::process_latencies(Command::new(&python).args(["-c", "import numpy, pandas"]), PROCESS_RUNS)
            .ok();
    let native_df = soulbox_benches::process_latencies(Command::new(&python).args(["-c", describe]), PROCESS_RUNS).ok();

    println!("Baseline: {} (native CPython, a new process per run)\n", python.display());
    println!("| measure | p50 | p99 | native baseline p50 | ratio (native / SoulBox) |");
    println!("|---|---|---|---|---|");
    row("fresh Python `print(1+1)`, idle engine", &py_idle, Some(&native));
    row("fresh Python `print(1+1)`, back-to-back", &py_busy, Some(&native));
    row("fresh Python `print(1+1)`, back-to-back, worker processes", &py_processes, Some(&native));
    row("fresh JS `console.log(1+1)`, idle engine", &js_idle, Some(&native));
    row("fresh JS `console.log(1+1)`, back-to-back", &js_busy, Some(&native));
    row("fresh Python `import numpy, pandas`", &imports, native_np.as_deref());
    row("fresh Python `DataFrame.describe()`", &df, native_df.as_deref());
    row("process start + run: `soulbox run -e 'print(1+1)'`", &warm_start, Some(&native));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let native_rate = cores as f64 / percentile(&native, 0.5).as_secs_f64();
    println!("\nThroughput, fresh Python `print(1+1)` on {cores} cores, {} requests in flight:\n", 2 * cores);
    println!("| guests run in | executions/s |");
    println!("|---|---|");
    println!("| worker threads (default) | {rate:.0} |");
    println!("| worker processes (`Workers::Processes`) | {process_rate:.0} |");
    println!("| native CPython, a process per run on every core | {native_rate:.0} |");
    Ok(())
}

async fn latencies(
    engine: &Engine,
    language: Language,
    code: &str,
    runs: usize,
    pace: Pace,
) -> anyhow::Result<Vec<Duration>> {
    let gap = match pace {
        Pace::Idle => Some(IDLE_GAP),
        Pace::BackToBack => None,
    };
    soulbox_benches::execution_latencies(engine, language, code, runs, gap).await
}

async fn throughput(engine: &Engine) -> anyhow::Result<f64> {
    soulbox_benches::fresh_throughput(engine, THROUGHPUT_WINDOW).await
}

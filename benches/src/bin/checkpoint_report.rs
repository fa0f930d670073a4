//! `checkpoint-report`: what pausing and resuming a sandbox costs, in one run, as a Markdown
//! table, for a plain Python, a data-science (numpy and pandas loaded, a 10,000-row DataFrame)
//! and a JavaScript sandbox:
//!
//! - pause: every context checkpointed (changed memory pages, globals, clock) into the
//!   snapshot store (zstd, blake3, synced to disk) and released;
//! - resume: every context restored from the store into a fresh instance;
//! - the first cell after a pause (the cell restores its own context);
//! - the checkpoint's size on disk;
//! - fork: one sandbox cloned into 1, and into 10 (per fork), from a live source (every
//!   context checkpointed, the workspace copied, each fork's contexts restored and reseeded);
//! - resume after a restart: the registry closed and a new one opened on the same
//!   directories (a new process's view), then the paused sandbox resumed;
//!
//! and, in a second table, what durability after every cell costs: a checkpoint on demand
//! after one cell (only the ranges the cell changed are written) and the bytes it adds, and
//! the same small cell's time in a sandbox checkpointed only on pause and in one checkpointed
//! after every cell (the difference is the per-cell cost);
//!
//! and, in a third table, templates: saving the set-up sandbox as a template, and starting a
//! sandbox from it and running its first cell (the set-up's state is there, nothing re-run);
//!
//! and, in a fourth table, forks of 10 with one shared copy of the checkpoint's pages mapped
//! into every fork (the default) against a copy each (`share_fork_pages: false`): time and
//! memory per fork;
//!
//! and, last, the plain Python sandbox's pause and per-cell durability again with its
//! checkpoints also uploaded to an S3-compatible object store (moto's server on loopback,
//! from `target/moto-venv`, which `scripts/bench.sh` installs);
//!
//! with the baseline measured in the same run: creating a sandbox afresh and running its
//! set-up code again (what a client without pause/resume does to get the state back).
//! E2B's published figures are printed beside them for comparison (not measured here).

use soulbox_benches::{ms, percentile};
use soulbox_engine::blobs::Replica;
use soulbox_engine::sandbox::{CheckpointPolicy, TemplateRef};
use soulbox_engine::{Engine, Language, RunOptions, SandboxSpec, Sandboxes, SandboxesConfig, Template};
use std::time::{Duration, Instant};

const RUNS: usize = 50;
/// Rounds of the fork measurements (each makes sandboxes, so fewer).
const FORK_RUNS: usize = 10;

/// Each template's set-up code: the state a pause must keep.
fn setup(template: Template) -> &'static str {
    match template {
        Template::DataScience => {
            "import numpy as np, pandas as pd\ndf = pd.DataFrame({'x': np.arange(10_000), 'y': np.random.rand(10_000)})\nx = 0"
        }
        Template::JavaScript => "var x = 0; const table = Array.from({length: 10000}, (_, i) => ({i, y: i * 2}));",
        _ => "x = 0\nwords = {str(i): i for i in range(1000)}",
    }
}

fn options(template: Template) -> RunOptions {
    let language = if template == Template::JavaScript { Language::JavaScript } else { Language::Python };
    RunOptions { language: Some(language), ..RunOptions::default() }
}

struct Figures {
    pause: Vec<Duration>,
    resume: Vec<Duration>,
    cell_after_pause: Vec<Duration>,
    recreate: Vec<Duration>,
    fork_one: Vec<Duration>,
    fork_ten_each: Vec<Duration>,
    resume_after_restart: Vec<Duration>,
    stored_bytes: u64,
    checkpoint_after_cell: Vec<Duration>,
    new_bytes_per_cell: Vec<u64>,
    cell_on_pause: Vec<Duration>,
    cell_every_cell: Vec<Duration>,
    template_save: Vec<Duration>,
    from_template: Vec<Duration>,
}

/// The small cell each durability round runs: it changes the state a little.
const SMALL_CELL: &str = "x = x + 1";

async fn measure(engine: &Engine, dirs: &std::path::Path, template: Template) -> anyhow::Result<Figures> {
    let sandboxes = Sandboxes::new(engine.clone(), config(dirs))?;
    let sandboxes = &sandboxes;
    let sandbox = sandboxes.create(SandboxSpec { template, ..SandboxSpec::default() }).await?;
    sandbox.run_code(setup(template), options(template)).await?;
    let mut figures = Figures {
        pause: Vec::new(),
        resume: Vec::new(),
        cell_after_pause: Vec::new(),
        recreate: Vec::new(),
        fork_one: Vec::new(),
        fork_ten_each: Vec::new(),
        resume_after_restart: Vec::new(),
        stored_bytes: 0,
        checkpoint_after_cell: Vec::new(),
        new_bytes_per_cell: Vec::new(),
        cell_on_pause: Vec::new(),
        cell_every_cell: Vec::new(),
        template_save: Vec::new(),
        from_template: Vec::new(),
    };
    for _ in 0..RUNS {
        // Each round changes the state, so each pause writes a new checkpoint.
        sandbox.run_code(SMALL_CELL, options(template)).await?;
        let started = Instant::now();
        let report = sandbox.pause().await?;
        figures.pause.push(started.elapsed());
        figures.stored_bytes = report.stored_bytes;
        let started = Instant::now();
        sandbox.resume().await?;
        figures.resume.push(started.elapsed());
        sandbox.pause().await?;
        let started = Instant::now();
        let cell = sandbox.run_code("x", options(template)).await?;
        figures.cell_after_pause.push(started.elapsed());
        anyhow::ensure!(cell.error.is_none(), "{cell:?}");
    }
    sandbox.resume().await?;
    for (count, into) in [(1, &mut figures.fork_one), (10, &mut figures.fork_ten_each)] {
        for _ in 0..FORK_RUNS {
            let started = Instant::now();
            let forks = sandboxes.fork(&sandbox, count).await?;
            into.push(started.elapsed() / u32::try_from(count)?);
            for fork in forks {
                sandboxes.kill(fork.id())?;
            }
        }
    }
    for _ in 0..FORK_RUNS {
        let started = Instant::now();
        sandboxes.save_template(&sandbox, "bench").await?;
        figures.template_save.push(started.elapsed());
    }
    let from = SandboxSpec {
        from_template: Some(TemplateRef { name: "bench".into(), version: None }),
        ..SandboxSpec::default()
    };
    for _ in 0..RUNS.min(20) {
        let started = Instant::now();
        let made = sandboxes.create(from.clone()).await?;
        let cell = made.run_code("x", options(template)).await?;
        figures.from_template.push(started.elapsed());
        anyhow::ensure!(cell.error.is_none(), "{cell:?}");
        sandboxes.kill(made.id())?;
    }
    sandboxes.delete_template(None, "bench", None)?;
    let every_cell = SandboxSpec { template, checkpoint: CheckpointPolicy::EveryCell, ..SandboxSpec::default() };
    let durable = sandboxes.create(every_cell).await?;
    durable.run_code(setup(template), options(template)).await?;
    for _ in 0..RUNS {
        sandbox.run_code(SMALL_CELL, options(template)).await?;
        let started = Instant::now();
        let report = sandbox.checkpoint().await?;
        figures.checkpoint_after_cell.push(started.elapsed());
        figures.new_bytes_per_cell.push(report.new_bytes);
        let started = Instant::now();
        sandbox.run_code(SMALL_CELL, options(template)).await?;
        figures.cell_on_pause.push(started.elapsed());
        let started = Instant::now();
        durable.run_code(SMALL_CELL, options(template)).await?;
        figures.cell_every_cell.push(started.elapsed());
    }
    sandboxes.kill(durable.id())?;
    sandboxes.kill(sandbox.id())?;
    for _ in 0..RUNS.min(20) {
        let started = Instant::now();
        let fresh = sandboxes.create(SandboxSpec { template, ..SandboxSpec::default() }).await?;
        fresh.run_code(setup(template), options(template)).await?;
        figures.recreate.push(started.elapsed());
        sandboxes.kill(fresh.id())?;
    }
    // Another snapshot directory: this registry holds `dirs` until it is dropped.
    figures.resume_after_restart = resume_after_restart(engine, &dirs.join("restart"), template).await?;
    Ok(figures)
}

/// Resumes a sandbox paused by a registry that closed, in a new registry on the same
/// directories, [`FORK_RUNS`] times.
async fn resume_after_restart(
    engine: &Engine,
    dirs: &std::path::Path,
    template: Template,
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::new();
    for _ in 0..FORK_RUNS {
        let (id, sandboxes) = {
            let sandboxes = Sandboxes::new(engine.clone(), config(dirs))?;
            let sandbox = sandboxes.create(SandboxSpec { template, ..SandboxSpec::default() }).await?;
            sandbox.run_code(setup(template), options(template)).await?;
            sandbox.pause().await?;
            (sandbox.id().to_owned(), sandboxes)
        };
        drop(sandboxes);
        let sandboxes = Sandboxes::new(engine.clone(), config(dirs))?;
        let sandbox = sandboxes.get(&id)?;
        let started = Instant::now();
        sandbox.resume().await?;
        times.push(started.elapsed());
        sandboxes.kill(&id)?;
    }
    Ok(times)
}

/// Forks of 10 from a set-up sandbox on `engine`: the time per fork, and the memory each adds
/// (the process's proportional set size, which splits a page mapped by several forks between
/// them, measured before and after the forks, divided by 10), one sample per round.
async fn forks_of_ten(
    engine: &Engine,
    dirs: &std::path::Path,
    template: Template,
) -> anyhow::Result<(Vec<Duration>, Vec<f64>)> {
    let sandboxes = Sandboxes::new(engine.clone(), config(dirs))?;
    let sandbox = sandboxes.create(SandboxSpec { template, ..SandboxSpec::default() }).await?;
    sandbox.run_code(setup(template), options(template)).await?;
    let (mut times, mut memory) = (Vec::new(), Vec::new());
    for _ in 0..FORK_RUNS {
        let before = proportional_set_size()?;
        let started = Instant::now();
        let forks = sandboxes.fork(&sandbox, 10).await?;
        times.push(started.elapsed() / 10);
        memory.push((proportional_set_size()? - before) / 10.0);
        for fork in forks {
            sandboxes.kill(fork.id())?;
        }
    }
    sandboxes.kill(sandbox.id())?;
    Ok((times, memory))
}

/// This process's proportional set size, in MiB.
fn proportional_set_size() -> anyhow::Result<f64> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")?;
    let line = rollup.lines().find(|line| line.starts_with("Pss:")).ok_or_else(|| anyhow::anyhow!("no Pss"))?;
    let kib: f64 = line.trim_start_matches("Pss:").trim().trim_end_matches("kB").trim().parse()?;
    Ok(kib / 1024.0)
}

/// A plain Python sandbox's pauses and cells checkpointed after every cell, its checkpoints
/// also uploaded to `endpoint`'s bucket `bench`.
async fn with_replica(
    engine: &Engine,
    dirs: &std::path::Path,
    endpoint: &str,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_bucket_name("bench")
        .with_region("us-east-1")
        .with_access_key_id("moto")
        .with_secret_access_key("moto")
        .build()?;
    let replica = Replica::new(std::sync::Arc::new(store), "checkpoints")?;
    let sandboxes = Sandboxes::new(engine.clone(), SandboxesConfig { replica: Some(replica), ..config(dirs) })?;
    let template = Template::Python;
    let sandbox = sandboxes.create(SandboxSpec { template, ..SandboxSpec::default() }).await?;
    sandbox.run_code(setup(template), options(template)).await?;
    let every_cell = SandboxSpec { template, checkpoint: CheckpointPolicy::EveryCell, ..SandboxSpec::default() };
    let durable = sandboxes.create(every_cell).await?;
    durable.run_code(setup(template), options(template)).await?;
    let (mut pauses, mut cells) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        sandbox.run_code(SMALL_CELL, options(template)).await?;
        let started = Instant::now();
        sandbox.pause().await?;
        pauses.push(started.elapsed());
        let started = Instant::now();
        durable.run_code(SMALL_CELL, options(template)).await?;
        cells.push(started.elapsed());
    }
    Ok((pauses, cells))
}

fn config(dirs: &std::path::Path) -> SandboxesConfig {
    SandboxesConfig {
        workspace_root: dirs.join("sandboxes"),
        snapshot_dir: Some(dirs.join("checkpoints")),
        ..SandboxesConfig::default()
    }
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let engine = soulbox_benches::engine()?;
    let root = tempfile::tempdir()?;
    let pair = |s: &[Duration]| format!("{} / {}", ms(percentile(s, 0.5)), ms(percentile(s, 0.99)));
    let mut all = Vec::new();
    for template in [Template::Python, Template::DataScience, Template::JavaScript] {
        let dirs = root.path().join(template.to_string());
        all.push((template, runtime.block_on(measure(&engine, &dirs, template))?));
    }
    println!("Pause and resume ({RUNS} rounds each; p50 / p99; baseline: a new sandbox running the set-up again)\n");
    println!(
        "| sandbox | pause | resume | resume after a restart | first cell after a pause | fork of 1 | fork of 10, per fork | checkpoint on disk | baseline: recreate + set-up p50 | ratio (baseline / resume) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (template, f) in &all {
        let (resume, recreate) = (percentile(&f.resume, 0.5), percentile(&f.recreate, 0.5));
        println!(
            "| {template} | {} | {} | {} | {} | {} | {} | {:.2} MiB | {} | {:.1}x |",
            pair(&f.pause),
            pair(&f.resume),
            pair(&f.resume_after_restart),
            pair(&f.cell_after_pause),
            pair(&f.fork_one),
            pair(&f.fork_ten_each),
            f.stored_bytes as f64 / (1 << 20) as f64,
            ms(recreate),
            recreate.as_secs_f64() / resume.as_secs_f64(),
        );
    }
    println!("\nDurability after every cell ({RUNS} rounds; p50 / p99; the cell is `{SMALL_CELL}`)\n");
    println!(
        "| sandbox | checkpoint after a cell | bytes it adds, p50 | cell, checkpointed on pause | cell, checkpointed after every cell | cost per cell, p50 |"
    );
    println!("|---|---|---|---|---|---|");
    for (template, f) in &all {
        let mut added = f.new_bytes_per_cell.clone();
        added.sort_unstable();
        let overhead = percentile(&f.cell_every_cell, 0.5).saturating_sub(percentile(&f.cell_on_pause, 0.5));
        println!(
            "| {template} | {} | {:.0} KiB | {} | {} | {} |",
            pair(&f.checkpoint_after_cell),
            added.get(added.len() / 2).copied().unwrap_or(0) as f64 / 1024.0,
            pair(&f.cell_on_pause),
            pair(&f.cell_every_cell),
            ms(overhead),
        );
    }
    println!(
        "\nTemplates ({FORK_RUNS} saves, {} starts; p50 / p99; baseline: a new sandbox running the set-up)\n",
        RUNS.min(20)
    );
    println!("| sandbox | save as a template | start from it + first cell | baseline: recreate + set-up p50 | ratio |");
    println!("|---|---|---|---|---|");
    for (template, f) in &all {
        let (from, recreate) = (percentile(&f.from_template, 0.5), percentile(&f.recreate, 0.5));
        println!(
            "| {template} | {} | {} | {} | {:.1}x |",
            pair(&f.template_save),
            pair(&f.from_template),
            ms(recreate),
            recreate.as_secs_f64() / from.as_secs_f64(),
        );
    }
    let copying = {
        use soulbox_runtimes_wasm::{WasmBackend, WasmConfig};
        let backend = WasmBackend::open(WasmConfig { share_fork_pages: false, ..WasmConfig::default() })?;
        backend.prepare()?;
        Engine::builder().backend(backend).build()
    };
    println!(
        "\nForks of 10: one shared copy of the checkpoint's pages mapped into every fork, against a copy each ({FORK_RUNS} rounds; p50; memory: the process's proportional set size added per fork)\n"
    );
    println!("| sandbox | per fork, shared | per fork, copied | memory per fork, shared | memory per fork, copied |");
    println!("|---|---|---|---|---|");
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    for template in [Template::Python, Template::DataScience, Template::JavaScript] {
        let dirs = root.path().join(format!("forks-{template}"));
        let (shared, mut shared_memory) = runtime.block_on(forks_of_ten(&engine, &dirs.join("shared"), template))?;
        let (copied, mut copied_memory) = runtime.block_on(forks_of_ten(&copying, &dirs.join("copied"), template))?;
        println!(
            "| {template} | {} | {} | {:.2} MiB | {:.2} MiB |",
            ms(percentile(&shared, 0.5)),
            ms(percentile(&copied, 0.5)),
            median(&mut shared_memory),
            median(&mut copied_memory),
        );
    }
    let moto = soulbox_benches::moto::Moto::start("bench")?;
    let (pauses, cells) = runtime.block_on(with_replica(&engine, &root.path().join("replica"), &moto.endpoint))?;
    drop(moto);
    let local = &all.iter().find(|(template, _)| *template == Template::Python).expect("measured").1;
    println!(
        "\nA plain Python sandbox with its checkpoints also in an S3-compatible store (moto on loopback; {RUNS} rounds; p50 / p99)\n"
    );
    println!("| checkpoints | pause | cell, checkpointed after every cell | cost per cell, p50 |");
    println!("|---|---|---|---|");
    let on_pause = percentile(&local.cell_on_pause, 0.5);
    for (store, pause, cell) in
        [("local directory", &local.pause, &local.cell_every_cell), ("local + object store", &pauses, &cells)]
    {
        println!(
            "| {store} | {} | {} | {} |",
            pair(pause),
            pair(cell),
            ms(percentile(cell, 0.5).saturating_sub(on_pause))
        );
    }
    println!(
        "\nFor comparison (published by E2B, not measured here): pause about 4 s per GiB of memory, resume about 1 s."
    );
    Ok(())
}

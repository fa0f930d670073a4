//! `peers-report`: SoulBox beside its closest peers, every figure measured in the same run,
//! printed as one Markdown table.
//!
//! Columns: SoulBox in process (the library's default configuration), SoulBox over HTTP
//! (`soulbox serve --dev` on loopback, limits raised out of the way; latency rows from one
//! kept-alive connection of a plain HTTP/1.1 client, load from `wrk`), Grafana's Eryx (CPython on
//! WASI in wasmtime, `pyeryx`), Pydantic's Monty (a Rust interpreter for a subset of Python,
//! `pydantic-monty`) and native CPython. The peers are driven in process from Python by
//! `benches/peers/peers.py`, run with `$SOULBOX_PEERS_PYTHON` (default
//! `target/peers-venv/bin/python`, a Python 3.12 virtual environment holding the pinned
//! `benches/peers/requirements.txt`, which `scripts/bench.sh` makes). Native CPython is
//! `$SOULBOX_BASELINE_PYTHON` or the real executable behind `python3`.
//!
//! Rows are medians (p50) unless they say otherwise. "10 ms gaps" leaves 10 ms between requests,
//! as LLM tool calls arrive; "back-to-back" sends the next the moment the last is answered.
//!
//! A gapped row moves with the minute it is measured in on a shared machine (the host empties
//! the caches while a system waits), so SoulBox's in-process gapped rows and Eryx's and Monty's
//! are measured side by side ([`gapped_side_by_side`]): [`ROUNDS`] rounds, each a block of
//! [`BLOCK`] runs of every system in turn (the order rotating), with the peers kept running
//! between their blocks ([`PeerServer`]). The report gives each system's p50 over all its
//! samples and how many rounds SoulBox's block beat Eryx's.
//!
//! `peers-report --loop fresh|cell|throughput [--seconds N] [--gap-ms G]` instead runs one
//! SoulBox workload alone, back-to-back or with gaps, and prints its p50 (or, for `throughput`,
//! fresh executions/s with twice as many in flight as cores), for a profiler (`perf record -g
//! -- target/release/peers-report --loop fresh`); `--loop http-fresh|http-cell --url BASE` does
//! the same for an HTTP row against a server started by hand (several `BASE`s, comma-separated,
//! take turns; `--api-key KEY[,KEY...]` for servers that want one), and `--loop http-health` measures
//! that server's floor (`GET /health`).
//! `--help` prints this usage.

use anyhow::Context;
use soulbox_benches::kept_alive::KeptAlive;
use soulbox_benches::peers::{PeerServer, Workload};
use soulbox_benches::wrk::{Load, wrk};
use soulbox_benches::{baseline_python, ms, percentile};
use soulbox_engine::{Engine, ExecRequest, Language, SandboxSpec, Sandboxes, SandboxesConfig, Template};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 500;
const PROCESS_RUNS: usize = 200;
const GAP: Duration = Duration::from_millis(10);
/// Rounds of the side-by-side gapped rows, and runs per system in each.
const ROUNDS: usize = 10;
const BLOCK: usize = RUNS / ROUNDS;
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(5);
const IDLE_SESSIONS: usize = 100;
/// Beyond the trim delay, time for the trimming thread to get through every idle session.
const IDLE_SETTLE: Duration = Duration::from_millis(500);
const FRESH: &str = "print(1+1)";
const CELL: &str = "x = x + 1";
const USAGE: &str = "\
usage: peers-report                 the whole report (a Markdown table on stdout)
       peers-report --loop fresh|cell|throughput [--seconds N] [--gap-ms G]
       peers-report --loop http-fresh|http-cell|http-health --url BASE[,BASE...] [--api-key KEY[,KEY...]]
                    [--seconds N] [--gap-ms G]";

/// One system's figures, keyed as `peers.py` prints them: milliseconds, executions/s, MiB.
type Figures = BTreeMap<String, f64>;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    if let Some(at) = args.iter().position(|a| a == "--loop") {
        let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
        let seconds: u64 = flag("--seconds").map_or(Ok(10), |s| s.parse())?;
        let gap: u64 = flag("--gap-ms").map_or(Ok(0), |s| s.parse())?;
        let workload = args.get(at + 1).map(String::as_str).unwrap_or("fresh");
        if let Some(kind) = workload.strip_prefix("http-") {
            let base =
                flag("--url").context("--loop http-fresh|http-cell|http-health needs --url of a running server")?;
            let key = flag("--api-key").map(String::as_str);
            return http_loop(base, key, kind, Duration::from_secs(seconds), Duration::from_millis(gap));
        }
        return profile_loop(workload, Duration::from_secs(seconds), Duration::from_millis(gap));
    }
    let runtime = tokio::runtime::Runtime::new()?;
    eprintln!("SoulBox in process...");
    let mut in_process = runtime.block_on(in_process())?;
    eprintln!("Gapped rows side by side: SoulBox in process, eryx, monty...");
    let side_by_side = runtime.block_on(gapped_side_by_side())?;
    eprintln!("SoulBox over HTTP...");
    let http = over_http()?;
    let python = baseline_python()?;
    let mut peers = BTreeMap::new();
    for system in ["eryx", "monty", "native"] {
        eprintln!("{system}...");
        peers.insert(system, soulbox_benches::peers::figures(system, &python)?);
    }
    in_process.extend(side_by_side.figures(System::SoulBox));
    for (system, name) in [(System::Eryx, "eryx"), (System::Monty, "monty")] {
        peers.get_mut(name).expect("measured above").extend(side_by_side.figures(system));
    }
    let (_install, soulbox) = soulbox_benches::installed_soulbox()?;
    let (cli, native_c) = soulbox_benches::alternating_process_latencies(
        Command::new(soulbox).args(["run", "-e", "print(1+1)"]),
        Command::new(&python).args(["-c", "print(1+1)"]),
        PROCESS_RUNS,
    )?;

    println!("Peers: pyeryx 0.11.0 (Eryx), pydantic-monty 1.4.0 (Monty); native: {}\n", python.display());
    println!("| measure | SoulBox in process | SoulBox over HTTP | Eryx | Monty (subset) | native CPython |");
    println!("|---|---|---|---|---|---|");
    let columns = [&in_process, &http, &peers["eryx"], &peers["monty"], &peers["native"]];
    let line = |name: &str, key: &str, unit: Unit| {
        let cells: Vec<String> = columns.iter().map(|f| unit.show(f.get(key).copied())).collect();
        println!("| {name} | {} |", cells.join(" | "));
    };
    line("fresh `print(1+1)`, back-to-back p50", "fresh_b2b", Unit::Ms);
    line("fresh `print(1+1)`, 10 ms gaps p50", "fresh_gap", Unit::Ms);
    line("fresh executions/s, 2 cores", "fresh_per_s", Unit::PerSecond);
    line("create a session + first cell p50", "session_first", Unit::Ms);
    line("session cell `x = x + 1`, back-to-back p50", "cell_b2b", Unit::Ms);
    line("session cell `x = x + 1`, 10 ms gaps p50", "cell_gap", Unit::Ms);
    line("private memory per idle session, just after its cell", "idle_session_mib", Unit::MiB);
    let idle = format!("idle {} s", (soulbox_runtimes_wasm::TRIM_IDLE_AFTER + IDLE_SETTLE).as_secs_f64());
    line(&format!("private memory per idle session, {idle}"), "idle_session_mib_trimmed", Unit::MiB);
    line("private memory per idle data-science session, just after its cell", "idle_ds_session_mib", Unit::MiB);
    line(&format!("private memory per idle data-science session, {idle}"), "idle_ds_session_mib_trimmed", Unit::MiB);
    line("fresh `import numpy, pandas` p50", "numpy_pandas", Unit::Ms);
    println!(
        "\nOver HTTP at 32 connections (wrk): {:.0} executions/s, p99 {}, {} errors.",
        http["loaded_per_s"],
        Unit::Ms.show(Some(http["loaded_p99"])),
        http["loaded_errors"]
    );
    println!(
        "Whole process, `soulbox run -e 'print(1+1)'` (an installed copy): {} p50 ({} p99); native \
         `python3 -c 'print(1+1)'`: {} p50; median of the paired differences {:+.2} ms ({} runs of each, \
         in turn, run by run).",
        ms(percentile(&cli, 0.5)),
        ms(percentile(&cli, 0.99)),
        ms(percentile(&native_c, 0.5)),
        paired_median_ms(&cli, &native_c),
        cli.len()
    );
    println!("{}", side_by_side.summary());
    println!(
        "Monty runs a subset of Python in worker processes (each idle session holds one); Eryx and \
         Monty have no numpy or pandas; a native session is a `python3` process `exec`ing lines from a pipe."
    );
    Ok(())
}

#[derive(Clone, Copy)]
enum Unit {
    Ms,
    PerSecond,
    MiB,
}

impl Unit {
    fn show(self, value: Option<f64>) -> String {
        match (self, value) {
            (_, None) => "n/a".into(),
            (Unit::Ms, Some(v)) => format!("{v:.2} ms"),
            (Unit::PerSecond, Some(v)) => format!("{v:.0}"),
            (Unit::MiB, Some(v)) => format!("{v:.2} MiB"),
        }
    }
}

fn p50_ms(samples: &[Duration]) -> f64 {
    percentile(samples, 0.5).as_secs_f64() * 1e3
}

/// SoulBox as a library: the engine with its default configuration.
async fn in_process() -> anyhow::Result<Figures> {
    let engine = soulbox_benches::engine()?;
    let mut figures = Figures::new();
    figures.insert("fresh_b2b".into(), p50_ms(&fresh(&engine, FRESH, RUNS, None).await?));
    figures.insert("fresh_per_s".into(), throughput(&engine).await?);
    figures.insert("numpy_pandas".into(), p50_ms(&fresh(&engine, "import numpy, pandas", 100, Some(GAP)).await?));
    let root = tempfile::tempdir()?;
    let sandboxes =
        Sandboxes::new(engine, SandboxesConfig { workspace_root: root.path().into(), ..Default::default() })?;
    let mut firsts = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let sandbox = sandboxes.create(SandboxSpec { template: Template::Python, ..SandboxSpec::default() }).await?;
        cell(&sandbox, "x = 1").await?;
        firsts.push(started.elapsed());
        sandboxes.kill(sandbox.id())?.await;
    }
    figures.insert("session_first".into(), p50_ms(&firsts));
    let sandbox = sandboxes.create(SandboxSpec { template: Template::Python, ..SandboxSpec::default() }).await?;
    cell(&sandbox, "x = 1").await?;
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        cell(&sandbox, CELL).await?;
        samples.push(started.elapsed());
    }
    figures.insert("cell_b2b".into(), p50_ms(&samples));
    sandboxes.kill(sandbox.id())?.await;
    for (key, template) in [("idle_session_mib", Template::Python), ("idle_ds_session_mib", Template::DataScience)] {
        let before = private_dirty_kib()?;
        let mut open = Vec::new();
        for _ in 0..IDLE_SESSIONS {
            let sandbox = sandboxes.create(SandboxSpec { template, ..SandboxSpec::default() }).await?;
            cell(&sandbox, "x = 1").await?;
            open.push(sandbox);
        }
        let after = private_dirty_kib()?;
        figures.insert(key.into(), after.saturating_sub(before) as f64 / 1024.0 / IDLE_SESSIONS as f64);
        // Idle past the backend's trim delay, the sessions give back their unchanged pages.
        tokio::time::sleep(soulbox_runtimes_wasm::TRIM_IDLE_AFTER + IDLE_SETTLE).await;
        let trimmed = private_dirty_kib()?;
        let per_session = trimmed.saturating_sub(before) as f64 / 1024.0 / IDLE_SESSIONS as f64;
        figures.insert(format!("{key}_trimmed"), per_session);
        for sandbox in open {
            sandboxes.kill(sandbox.id())?.await;
        }
    }
    Ok(figures)
}

/// The systems whose gapped rows are measured side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum System {
    SoulBox,
    Eryx,
    Monty,
}

/// The gapped rows of [`gapped_side_by_side`]: every sample, and each round's p50, per system
/// and workload.
#[derive(Default)]
struct SideBySide {
    samples: BTreeMap<(System, Workload), Vec<Duration>>,
    rounds: BTreeMap<(System, Workload), Vec<f64>>,
}

impl SideBySide {
    fn add(&mut self, system: System, workload: Workload, block: Vec<Duration>) {
        self.rounds.entry((system, workload)).or_default().push(p50_ms(&block));
        self.samples.entry((system, workload)).or_default().extend(block);
    }

    /// `fresh_gap` and `cell_gap` of `system`: the p50 of all its samples.
    fn figures(&self, system: System) -> Figures {
        let row = |workload| match workload {
            Workload::Fresh => "fresh_gap",
            Workload::Cell => "cell_gap",
        };
        self.samples
            .iter()
            .filter(|((s, _), _)| *s == system)
            .map(|((_, workload), all)| (row(*workload).into(), p50_ms(all)))
            .collect()
    }

    /// Each system's spread of round p50s, and in how many rounds SoulBox's beat Eryx's.
    fn summary(&self) -> String {
        let mut lines = vec![format!(
            "Gapped rows of SoulBox in process, Eryx and Monty: {ROUNDS} rounds of {BLOCK} runs of each in turn, \
             the order rotating; p50 of each round's block:"
        )];
        for workload in [Workload::Fresh, Workload::Cell] {
            let spread = |system| {
                let rounds = &self.rounds[&(system, workload)];
                let (low, high) = rounds.iter().fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
                format!("{low:.2}-{high:.2} ms")
            };
            let ahead = self.rounds[&(System::SoulBox, workload)]
                .iter()
                .zip(&self.rounds[&(System::Eryx, workload)])
                .filter(|(soulbox, eryx)| soulbox < eryx)
                .count();
            lines.push(format!(
                "- {}: SoulBox {}, Eryx {}, Monty {}; SoulBox below Eryx in {ahead} of {ROUNDS} rounds.",
                workload.name(),
                spread(System::SoulBox),
                spread(System::Eryx),
                spread(System::Monty),
            ));
        }
        lines.join("\n")
    }
}

/// SoulBox in process (the library's defaults), Eryx and Monty, each timing [`BLOCK`] fresh
/// executions and [`BLOCK`] session cells 10 ms apart per round, in turn, for [`ROUNDS`] rounds.
async fn gapped_side_by_side() -> anyhow::Result<SideBySide> {
    let engine = soulbox_benches::engine()?;
    let root = tempfile::tempdir()?;
    let sandboxes =
        Sandboxes::new(engine.clone(), SandboxesConfig { workspace_root: root.path().into(), ..Default::default() })?;
    let sandbox = sandboxes.create(SandboxSpec { template: Template::Python, ..SandboxSpec::default() }).await?;
    cell(&sandbox, "x = 1").await?;
    for _ in 0..BLOCK {
        soulbox_run(&engine, &sandbox, Workload::Fresh).await?;
        soulbox_run(&engine, &sandbox, Workload::Cell).await?;
    }
    let mut peers = [(System::Eryx, PeerServer::start("eryx")?), (System::Monty, PeerServer::start("monty")?)];
    let mut measured = SideBySide::default();
    for round in 0..ROUNDS {
        for turn in 0..3 {
            let system = [System::SoulBox, System::Eryx, System::Monty][(round + turn) % 3];
            for workload in [Workload::Fresh, Workload::Cell] {
                let block = match peers.iter_mut().find(|(s, _)| *s == system) {
                    Some((_, peer)) => peer.gapped(workload, BLOCK)?,
                    None => {
                        let mut block = Vec::with_capacity(BLOCK);
                        for _ in 0..BLOCK {
                            tokio::time::sleep(GAP).await;
                            block.push(soulbox_run(&engine, &sandbox, workload).await?);
                        }
                        block
                    }
                };
                measured.add(system, workload, block);
            }
        }
    }
    sandboxes.kill(sandbox.id())?.await;
    Ok(measured)
}

/// One SoulBox run of `workload`, timed.
async fn soulbox_run(
    engine: &Engine,
    sandbox: &soulbox_engine::Sandbox,
    workload: Workload,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    match workload {
        Workload::Fresh => {
            let result = engine.execute(ExecRequest::new(Language::Python, FRESH)).await?;
            anyhow::ensure!(result.exit_code == 0, "{FRESH}: {}", result.stderr);
        }
        Workload::Cell => cell(sandbox, CELL).await?,
    }
    Ok(started.elapsed())
}

async fn fresh(engine: &Engine, code: &str, runs: usize, gap: Option<Duration>) -> anyhow::Result<Vec<Duration>> {
    soulbox_benches::execution_latencies(engine, Language::Python, code, runs, gap).await
}

async fn throughput(engine: &Engine) -> anyhow::Result<f64> {
    soulbox_benches::fresh_throughput(engine, THROUGHPUT_WINDOW).await
}

async fn cell(sandbox: &soulbox_engine::Sandbox, code: &str) -> anyhow::Result<()> {
    let result = sandbox.run_code(code, soulbox_engine::RunOptions::default()).await?;
    anyhow::ensure!(result.error.is_none(), "{code}: {:?}", result.error);
    Ok(())
}

/// SoulBox's HTTP server, one client on a kept-alive connection, then `wrk` at 32 connections.
fn over_http() -> anyhow::Result<Figures> {
    let (mut child, base) = soulbox_benches::start_soulbox(soulbox_benches::UNLIMITED_DEV_SERVER)?;
    let measured = measure_http(&base);
    let _ = child.kill();
    let _ = child.wait();
    measured
}

fn measure_http(base: &str) -> anyhow::Result<Figures> {
    // One kept-alive connection driven from this thread (see `KeptAlive` for why not reqwest).
    let mut client = KeptAlive::connect(base)?;
    use serde_json::json;
    let fresh = json!({"language": "python", "code": FRESH});
    let mut figures = Figures::new();
    figures.insert("fresh_b2b".into(), timed_posts(&mut client, "/v1/execute", &fresh, RUNS, None)?);
    figures.insert("fresh_gap".into(), timed_posts(&mut client, "/v1/execute", &fresh, RUNS, Some(GAP))?);
    let numpy = json!({"language": "python", "code": "import numpy, pandas"});
    figures.insert("numpy_pandas".into(), timed_posts(&mut client, "/v1/execute", &numpy, 100, Some(GAP))?);
    let mut firsts = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let created = client.post("/v1/sandboxes", &json!({}))?;
        let id = created["id"].as_str().context("a sandbox id")?.to_owned();
        client.post(&format!("/v1/sandboxes/{id}/execute"), &json!({"code": "x = 1"}))?;
        firsts.push(started.elapsed());
        client.delete(&format!("/v1/sandboxes/{id}"))?;
    }
    figures.insert("session_first".into(), p50_ms(&firsts));
    let created = client.post("/v1/sandboxes", &json!({}))?;
    let cell_path = format!("/v1/sandboxes/{}/execute", created["id"].as_str().context("a sandbox id")?);
    client.post(&cell_path, &json!({"code": "x = 1"}))?;
    let cell = json!({"code": CELL});
    figures.insert("cell_b2b".into(), timed_posts(&mut client, &cell_path, &cell, RUNS, None)?);
    figures.insert("cell_gap".into(), timed_posts(&mut client, &cell_path, &cell, RUNS, Some(GAP))?);
    let execute = format!("{base}/v1/execute");
    let scripts = tempfile::tempdir()?;
    let body = r#"{"language": "python", "code": "print(1+1)"}"#;
    let load = Load { url: execute.clone(), body: Some(body), connections: 32, bearer: None };
    let loaded = wrk(scripts.path(), &load)?;
    figures.insert("loaded_per_s".into(), loaded.per_second());
    figures.insert("loaded_p99".into(), loaded.p99_us / 1e3);
    figures.insert("loaded_errors".into(), loaded.errors as f64);
    Ok(figures)
}

/// The p50 of `runs` POSTs of `body` to `path` (after a tenth as many unmeasured), `gap` apart.
fn timed_posts(
    client: &mut KeptAlive,
    path: &str,
    body: &serde_json::Value,
    runs: usize,
    gap: Option<Duration>,
) -> anyhow::Result<f64> {
    for _ in 0..runs / 10 {
        client.post(path, body)?;
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        if let Some(gap) = gap {
            std::thread::sleep(gap);
        }
        let started = Instant::now();
        client.post(path, body)?;
        samples.push(started.elapsed());
    }
    Ok(p50_ms(&samples))
}

/// The median of `a[i] - b[i]`, in milliseconds: what one run of `a` costs beyond its pair's `b`.
fn paired_median_ms(a: &[Duration], b: &[Duration]) -> f64 {
    let mut differences: Vec<f64> = a.iter().zip(b).map(|(a, b)| (a.as_secs_f64() - b.as_secs_f64()) * 1e3).collect();
    differences.sort_by(f64::total_cmp);
    differences.get(differences.len() / 2).copied().unwrap_or(f64::NAN)
}

fn private_dirty_kib() -> anyhow::Result<u64> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")?;
    Ok(rollup
        .lines()
        .filter(|line| line.starts_with("Private_Dirty:"))
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum())
}

/// `--loop http-fresh|http-cell|http-health --url BASE[,BASE...]`: the HTTP latency row alone
/// (or, `http-health`, the server's floor: `GET /health`), against
/// servers started by hand (say, one under `perf record`, or two builds to compare): with
/// several, their requests take turns, so each sees the same moments of a noisy host. With
/// `--api-key KEY[,KEY...]`, requests carry a key (servers that are not `--dev`): one per
/// `BASE`, in order, or one for all.
fn http_loop(bases: &str, keys: Option<&str>, workload: &str, length: Duration, gap: Duration) -> anyhow::Result<()> {
    use serde_json::json;
    let keys: Vec<&str> = keys.map(|keys| keys.split(',').collect()).unwrap_or_default();
    let bases: Vec<&str> = bases.split(',').collect();
    anyhow::ensure!(
        keys.len() <= 1 || keys.len() == bases.len(),
        "--api-key: one key for every --url, or one per --url ({} given for {})",
        keys.len(),
        bases.len()
    );
    let mut targets = Vec::new();
    for (at, base) in bases.into_iter().enumerate() {
        let key = keys.get(at).or(keys.first()).copied();
        let mut client = KeptAlive::connect(base)?.with_api_key(key);
        let (path, body) = match workload {
            "fresh" => ("/v1/execute".to_owned(), Some(json!({"language": "python", "code": FRESH}))),
            "cell" => {
                let created = client.post("/v1/sandboxes", &json!({}))?;
                let path = format!("/v1/sandboxes/{}/execute", created["id"].as_str().context("a sandbox id")?);
                client.post(&path, &json!({"code": "x = 1"}))?;
                (path, Some(json!({"code": CELL})))
            }
            // The floor under both: a request that reaches no route behind the guard.
            "health" => ("/health".to_owned(), None),
            other => anyhow::bail!("unknown workload http-{other}: http-fresh, http-cell or http-health"),
        };
        targets.push((base, client, path, body, Vec::new()));
    }
    let started = Instant::now();
    while started.elapsed() < length {
        for (_, client, path, body, samples) in &mut targets {
            std::thread::sleep(gap);
            let run = Instant::now();
            match body {
                Some(body) => drop(client.post(path, body)?),
                None => drop(client.get(path)?),
            }
            samples.push(run.elapsed());
        }
    }
    for (base, _, _, _, samples) in &targets {
        eprintln!(
            "{base}: {} runs, p50 {}, p99 {}",
            samples.len(),
            ms(percentile(samples, 0.5)),
            ms(percentile(samples, 0.99))
        );
    }
    Ok(())
}

/// Runs one workload for `length`, `gap` apart, for a profiler; prints its p50.
fn profile_loop(workload: &str, length: Duration, gap: Duration) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let engine = soulbox_benches::engine()?;
    runtime.block_on(async {
        if workload == "throughput" {
            let rate = throughput(&engine).await?;
            eprintln!("{rate:.0} fresh executions/s");
            return Ok(());
        }
        let root = tempfile::tempdir()?;
        let sandboxes = Sandboxes::new(
            engine.clone(),
            SandboxesConfig { workspace_root: root.path().into(), ..Default::default() },
        )?;
        let sandbox = sandboxes.create(SandboxSpec::default()).await?;
        cell(&sandbox, "x = 1").await?;
        let started = Instant::now();
        let mut samples = Vec::new();
        while started.elapsed() < length {
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            let run = Instant::now();
            match workload {
                "fresh" => {
                    engine.execute(ExecRequest::new(Language::Python, FRESH)).await?;
                }
                "cell" => cell(&sandbox, CELL).await?,
                other => anyhow::bail!("unknown workload {other:?}: fresh, cell or throughput"),
            }
            samples.push(run.elapsed());
        }
        eprintln!(
            "{} runs, p50 {}, p99 {}",
            samples.len(),
            ms(percentile(&samples, 0.5)),
            ms(percentile(&samples, 0.99))
        );
        Ok(())
    })
}

//! `soulbox run`.

use crate::cli::Cli;
use anyhow::Context;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use clap::Args;
use soulbox_engine::{Backend, BackendKind, Engine, ExecRequest, ExecResult, Language, Limits, NetworkPolicy};
use soulbox_fallback::{ContainerBackend, ContainerConfig};
use soulbox_runtimes_wasm::WasmBackend;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The program file; `-` or nothing reads the program from stdin.
    pub file: Option<PathBuf>,
    /// Arguments for the program (after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
    /// The language (python, javascript, typescript, bash, c, cpp, go, java, ruby, php); guessed from the
    /// file extension, else Python.
    #[arg(long, short)]
    pub language: Option<Language>,
    /// Run this code instead of a file.
    #[arg(long, short = 'e', value_name = "CODE", conflicts_with = "file")]
    pub eval: Option<String>,
    /// Print the whole result as JSON instead of the program's output.
    #[arg(long)]
    pub json: bool,
    /// Wall-clock deadline in milliseconds.
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Guest memory cap in MiB.
    #[arg(long, value_name = "MIB")]
    pub memory_mib: Option<u64>,
    /// Fuel budget (needs --fuel-metering).
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Cap on stdout and on stderr, in bytes each.
    #[arg(long, value_name = "BYTES")]
    pub output_limit: Option<u64>,
    /// Environment variable for the guest, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Input file for the guest workspace: HOST_PATH, or GUEST_PATH=HOST_PATH (repeatable).
    #[arg(long = "file", value_name = "[GUEST=]HOST")]
    pub files: Vec<String>,
    /// Write the files the program created or changed into this directory (created if needed;
    /// paths cannot leave it, existing files are replaced).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Give the program no stdin. Otherwise, when the program comes from a file or `-e` and
    /// stdin is not a terminal, stdin is read to its end and given to the program.
    #[arg(long)]
    pub no_stdin: bool,
    /// Where to run: `wasm` or `container` (default: WebAssembly for Python and JavaScript, a
    /// Docker container for the other languages).
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// Let the program make HTTP requests to public addresses (WebAssembly: Python's urllib
    /// and http.client, JavaScript's fetch); the `--allow-*`/`--deny-*` options narrow or widen it.
    #[arg(long)]
    pub net: bool,
    /// With network: the only host names it may reach (`example.com`, `*.example.com`; repeatable).
    #[arg(long = "allow-domain", value_name = "PATTERN")]
    pub allow_domains: Vec<String>,
    /// With network: host names it may never reach (repeatable).
    #[arg(long = "deny-domain", value_name = "PATTERN")]
    pub deny_domains: Vec<String>,
    /// With network: non-public address ranges it may reach anyway (`127.0.0.1/32`; repeatable).
    #[arg(long = "allow-cidr", value_name = "CIDR")]
    pub allow_cidrs: Vec<String>,
    /// With network: address ranges it may never reach (repeatable).
    #[arg(long = "deny-cidr", value_name = "CIDR")]
    pub deny_cidrs: Vec<String>,
    /// A pure-Python package to install first, as a pip requirement (`requests==2.*`;
    /// repeatable; WebAssembly Python).
    #[arg(long = "package", value_name = "REQUIREMENT")]
    pub packages: Vec<String>,
}

impl RunArgs {
    /// The network policy the options ask for: none unless `--net` or a rule is given.
    fn network(&self) -> Option<NetworkPolicy> {
        let rules = [&self.allow_domains, &self.deny_domains, &self.allow_cidrs, &self.deny_cidrs];
        (self.net || rules.iter().any(|r| !r.is_empty())).then(|| NetworkPolicy {
            allow_domains: self.allow_domains.clone(),
            deny_domains: self.deny_domains.clone(),
            allow_cidrs: self.allow_cidrs.clone(),
            deny_cidrs: self.deny_cidrs.clone(),
            ..NetworkPolicy::default()
        })
    }
}

/// `--backend`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BackendArg {
    /// WebAssembly.
    Wasm,
    /// A Docker container.
    Container,
}

pub async fn run(cli: &Cli, config: &crate::config::Config, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let request = build_request(args)?;
    if request.language == Language::Python && request.backend != Some(BackendKind::Container) {
        // Megabytes of decoded tables to come (see the allocator's docs).
        crate::allocator::start_on_huge_pages();
    }
    let mut wasm = cli.wasm_config(config, std::io::stderr().is_terminal());
    // One execution: its guest's memory mapped for it (no pool to set up), no guest started
    // ahead for a next one, no context left to trim, and the spent guest left to the exit (its
    // guest root, if the program left nothing in it, adopted by the next process).
    wasm.settings.allocation = soulbox_runtimes_wasm::GuestAllocation::OnDemand;
    wasm.pool = soulbox_engine::WorkerPoolConfig { workers: 1, queue: 1, ..wasm.pool };
    wasm.prewarm = false;
    wasm.trim_idle_after = None;
    wasm.leave_spent_guests = true;
    // Opened on this thread, blocking it: the runtime has nothing else to run yet, and a
    // thread of the blocking pool would cost a thread start.
    let backend = WasmBackend::open(wasm)?;
    let offered = backend.capabilities();
    let mut engine = Engine::builder();
    engine.backend(backend);
    // A container only when the run needs one: one container, started for this run.
    let in_wasm = offered.runs(request.language) && request.backend.is_none_or(|kind| kind == offered.kind);
    let containers = match in_wasm {
        true => None,
        false => {
            let container_config = config.container_config().unwrap_or_default();
            Some(ContainerBackend::start(ContainerConfig { pool_size: 0, ..container_config }).await?)
        }
    };
    if let Some(containers) = &containers {
        engine.backend(containers.clone());
    }
    let engine = engine.build();
    let result = engine.execute(request).await;
    if let Some(containers) = containers {
        containers.shutdown().await;
    }
    let result = result?;
    if let Some(dir) = &args.out_dir {
        write_outputs(dir, &result)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        std::io::stdout().write_all(result.stdout.as_bytes())?;
        std::io::stderr().write_all(result.stderr.as_bytes())?;
        if let Some(error) = &result.error {
            eprintln!("soulbox: {error}");
        }
    }
    // The process ends next: the engine's teardown (the guest's memory, the worker's thread and
    // the guest's root, which the next process takes over) is left to the exit.
    std::mem::forget(engine);
    Ok(ExitCode::from(u8::try_from(result.exit_code.clamp(0, 255)).unwrap_or(1)))
}

fn build_request(args: &RunArgs) -> anyhow::Result<ExecRequest> {
    let from_stdin = args.eval.is_none() && args.file.as_deref().is_none_or(|f| f == Path::new("-"));
    let code = match (&args.eval, &args.file) {
        (Some(code), _) => code.clone(),
        _ if from_stdin => read_stdin().context("reading the program from stdin")?,
        (None, Some(file)) => std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?,
        (None, None) => unreachable!("covered by from_stdin"),
    };
    let language =
        args.language.or_else(|| args.file.as_deref().and_then(Language::from_path)).unwrap_or(Language::Python);
    let mut request = ExecRequest::new(language, code).with_args(args.args.clone()).with_limits(limits(args));
    request.backend = args.backend.map(|b| match b {
        BackendArg::Wasm => BackendKind::Wasm,
        BackendArg::Container => BackendKind::Container,
    });
    request.network = args.network();
    request.packages = args.packages.clone();
    if !from_stdin && !args.no_stdin && !std::io::stdin().is_terminal() {
        request = request.with_stdin(read_stdin_bytes()?);
    }
    for pair in &args.env {
        let (key, value) = pair.split_once('=').with_context(|| format!("--env `{pair}`: expected KEY=VALUE"))?;
        request = request.with_env(key, value);
    }
    for spec in &args.files {
        let (guest, host) = match spec.split_once('=') {
            Some((guest, host)) => (guest.to_owned(), PathBuf::from(host)),
            None => {
                let name = Path::new(spec).file_name().with_context(|| format!("--file `{spec}`: not a file"))?;
                (name.to_string_lossy().into_owned(), PathBuf::from(spec))
            }
        };
        let contents = std::fs::read(&host).with_context(|| format!("reading input file {}", host.display()))?;
        request = request.with_file(guest, contents);
    }
    Ok(request)
}

fn limits(args: &RunArgs) -> Limits {
    let mut limits = Limits::default();
    if let Some(ms) = args.timeout_ms {
        limits.deadline = Duration::from_millis(ms);
    }
    if let Some(mib) = args.memory_mib {
        limits.memory_bytes = mib.saturating_mul(1 << 20);
    }
    if let Some(bytes) = args.output_limit {
        limits.stdout_bytes = bytes;
        limits.stderr_bytes = bytes;
    }
    limits.fuel = args.fuel;
    limits
}

fn read_stdin() -> anyhow::Result<String> {
    let mut code = String::new();
    std::io::stdin().read_to_string(&mut code)?;
    Ok(code)
}

fn read_stdin_bytes() -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Writes the result's files under `dir` through cap-std, so no path (nor a symlink already in
/// `dir`) can lead outside it.
fn write_outputs(dir: &Path, result: &ExecResult) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let out = Dir::open_ambient_dir(dir, ambient_authority()).with_context(|| format!("opening {}", dir.display()))?;
    for file in &result.files {
        let path = Path::new(&file.path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            out.create_dir_all(parent)
                .with_context(|| format!("creating {} in {}", parent.display(), dir.display()))?;
        }
        out.write(path, &file.contents).with_context(|| format!("writing {} in {}", file.path, dir.display()))?;
    }
    if result.files_truncated {
        eprintln!("soulbox: only the first {} output files were returned", result.files.len());
    }
    Ok(())
}

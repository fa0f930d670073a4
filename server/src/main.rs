//! `soulbox`: the command line face of SoulBox.
//!
//! - `soulbox runtimes fetch` gets, verifies and installs the interpreters, then compiles them
//!   (and builds the Python snapshot) once, with progress on stderr.
//! - `soulbox run` runs a file, `-e` code or stdin in a fresh sandbox and exits with the guest's
//!   status; `--json` prints the whole result instead.
//! - `soulbox repl -l python|js` keeps one stateful context across inputs (a sandbox of the
//!   engine's, streaming output as it runs).
//! - `soulbox serve --dev` serves the HTTP API ([`http`]) on loopback.
//! - `soulbox sandboxes ...` and `soulbox templates ...` read the registry or act on a running
//!   server's sandboxes and templates ([`sandboxes_cli`], through [`client`]).

#![forbid(unsafe_code)]

mod cli;
mod client;
mod cluster;
mod config;
mod database;
mod http;
mod listener;
mod repl;
mod run;
mod sandboxes_cli;
mod serve;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let loaded = match cli.load_config() {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("soulbox: {error:#}");
            return ExitCode::from(2);
        }
    };
    init_tracing(matches!(cli.command, cli::Command::Serve(_)), &loaded.config.monitoring);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("soulbox: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::dispatch(cli, loaded)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("soulbox: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs on stderr: `SOULBOX_LOG` (an `EnvFilter`) or, for the server, the configured level
/// (`warn` when its request logs are off); one JSON object per line (with the request and
/// execution spans) when configured.
fn init_tracing(serving: bool, monitoring: &config::MonitoringSection) {
    let default = match (serving, monitoring.logs_enabled) {
        (true, true) => monitoring.log_level.as_str(),
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SOULBOX_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(default))
        .unwrap_or_else(|_| "warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match monitoring.log_format {
        config::LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).init(),
        config::LogFormat::Text => builder.init(),
    }
}

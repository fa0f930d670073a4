//! `soulbox`: the command line face of SoulBox.
//!
//! - `soulbox runtimes fetch` gets, verifies and installs the interpreters, then compiles them
//!   (and builds the Python snapshot) once, with progress on stderr.
//! - `soulbox run` runs a file, `-e` code or stdin in a fresh sandbox and exits with the guest's
//!   status; `--json` prints the whole result instead.
//! - `soulbox repl -l python|js` keeps one stateful context across inputs (a sandbox of the
//!   engine's, streaming output as it runs).
//! - `soulbox serve --dev` serves the HTTP API ([`http`]) on loopback.

mod cli;
mod database;
mod http;
mod repl;
mod run;
mod serve;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    init_tracing();
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("soulbox: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("soulbox: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SOULBOX_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

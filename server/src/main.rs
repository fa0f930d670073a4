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

#![deny(unsafe_code)]

mod allocator;
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
mod telemetry;

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
    let one_shot = matches!(cli.command, cli::Command::Run(_));
    if one_shot {
        allocator::one_shot_heap(); // before the runtime starts any thread
    }
    // `run` awaits one execution, which runs on a worker-pool thread: a runtime on the main
    // thread serves it, with no runtime threads to start (nor the CPU count to read for them).
    let runtime = match one_shot {
        true => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        false => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("soulbox: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let serving = matches!(cli.command, cli::Command::Serve(_));
    let exporter = match init_tracing(serving, &loaded.config, runtime.handle()) {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("soulbox: {error}");
            return ExitCode::from(2);
        }
    };
    let code = match runtime.block_on(cli::dispatch(cli, loaded)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("soulbox: {error:#}");
            ExitCode::from(2)
        }
    };
    // While the runtime still runs: the last spans' uploads run on it.
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
    code
}

/// Logs on stderr: `SOULBOX_LOG` (an `EnvFilter`) or, for the server, the configured level
/// (`warn` when its request logs are off); one JSON object per line (with the request and
/// execution spans) when configured. A server with an OTLP collector configured also exports
/// its spans ([`telemetry`]), uploading on `runtime`; the exporter is returned.
fn init_tracing(
    serving: bool,
    config: &config::Config,
    runtime: &tokio::runtime::Handle,
) -> Result<Option<telemetry::Exporter>, telemetry::TelemetryError> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let monitoring = &config.monitoring;
    let default = match (serving, monitoring.logs_enabled) {
        (true, true) => monitoring.log_level.as_str(),
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SOULBOX_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(default))
        .unwrap_or_else(|_| "warn".into());
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match monitoring.log_format {
        config::LogFormat::Json => logs.json().with_current_span(true).with_span_list(true).with_filter(filter).boxed(),
        config::LogFormat::Text => logs.with_filter(filter).boxed(),
    };
    let mut layers = vec![logs];
    let mut exporter = None;
    if serving && telemetry::wanted(monitoring.otlp_endpoint.as_deref()) {
        let instance = serve::instance_name(&config.cluster);
        let (traces, made) = telemetry::layer(monitoring.otlp_endpoint.as_deref(), &instance, runtime.clone())?;
        layers.push(traces);
        exporter = Some(made);
    }
    tracing_subscriber::registry().with(layers).init();
    Ok(exporter)
}

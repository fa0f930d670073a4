//! `soulbox serve`: the HTTP API on a socket, shut down gracefully on Ctrl-C or SIGTERM
//! (in-flight requests finish; new connections are refused).

use crate::cli::Cli;
use crate::http::{AppState, app};
use clap::Args;
use soulbox_engine::{Engine, Sandboxes, SandboxesConfig};
use soulbox_runtimes_wasm::WasmBackend;
use std::net::SocketAddr;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed on stderr).
    #[arg(long, default_value = "127.0.0.1:8080", env = "SOULBOX_ADDR")]
    pub addr: SocketAddr,
    /// Development mode: no API keys, so only a loopback address is accepted. API keys and
    /// tenants are not built yet, so this flag is required for now.
    #[arg(long)]
    pub dev: bool,
}

pub async fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    if !args.dev {
        anyhow::bail!("API keys are not available yet: run `soulbox serve --dev` (loopback only)");
    }
    if !args.addr.ip().is_loopback() {
        anyhow::bail!("--dev serves without API keys, so it binds to loopback only, not {}", args.addr.ip());
    }
    let config = cli.wasm_config(false);
    let backend = tokio::task::spawn_blocking(move || -> anyhow::Result<WasmBackend> {
        let backend = WasmBackend::open(config)?;
        backend.prepare()?;
        Ok(backend)
    })
    .await??;
    let engine = Engine::builder().backend(backend).build();
    let sandboxes = Sandboxes::new(engine.clone(), SandboxesConfig::default())?;
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    eprintln!("soulbox: listening on http://{} (development mode: no API keys)", listener.local_addr()?);
    axum::serve(listener, app(AppState { engine, sandboxes, metrics: Default::default() }))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    eprintln!("soulbox: stopped");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = interrupt.await;
            return;
        }
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}

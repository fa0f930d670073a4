//! `soulbox serve`: the HTTP API on a socket, with API keys from the database (or `--dev`:
//! none, loopback only), shut down gracefully on Ctrl-C or SIGTERM (in-flight requests
//! finish; new connections are refused).

use crate::cli::Cli;
use crate::http::{AppState, Auth, app};
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
    /// Development mode: no API keys (every caller is the tenant `dev`), so only a loopback
    /// address is accepted.
    #[arg(long)]
    pub dev: bool,
}

pub async fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    if args.dev && !args.addr.ip().is_loopback() {
        anyhow::bail!("--dev serves without API keys, so it binds to loopback only, not {}", args.addr.ip());
    }
    let db = cli.database().await?;
    let auth = if args.dev { Auth::dev(db) } else { Auth::keys(db) };
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
    let mode = if args.dev { "development mode: no API keys" } else { "API keys required" };
    eprintln!("soulbox: listening on http://{} ({mode})", listener.local_addr()?);
    axum::serve(listener, app(AppState { engine, sandboxes, metrics: Default::default(), auth }))
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

//! `soulbox serve`: the HTTP API on a socket.
//!
//! Start-up: the configuration (file, `SOULBOX__...` variables, `--set`, then `--addr` and
//! `--dev`) is loaded and validated, `[environment]` is resolved (secrets included), the
//! database opened, and the runtimes loaded (or compiled) before the server listens, so a
//! server that answers is ready. Without `--dev` every `/v1` and `/mcp` request needs an API
//! key; `--dev` has none and binds loopback only.
//!
//! The container backend (`[containers]`, on by default) starts beside the WebAssembly one;
//! without a Docker engine it only makes container requests fail with "container backend
//! unavailable".
//!
//! Connections go through [`crate::listener`]: a cap on open connections, a header-read and
//! keep-alive idle timeout, the open-file limit raised at start.
//!
//! Shutdown (Ctrl-C or SIGTERM): `/ready` turns 503, the listener stops accepting, idle
//! connections close, and in-flight requests (streamed cells included) get up to
//! `server.shutdown_timeout_ms` to finish; then queued usage records are written, every
//! container this server made is removed, and the process exits.

use crate::cli::{Cli, Loaded};
use crate::cluster::{Cluster, NodeHandovers, NodeSettings};
use crate::config::Environment;
use crate::config::ObjectStoreSection;
use crate::database::{SandboxRecorder, UsageRecorder};
use crate::http::{
    AppState, Audit, Auth, Budgets, E2b, Guard, Lifecycle, Metrics, SandboxTokens, Settings, SharedState, app,
    charge_closed_sandboxes,
};
use crate::listener::{ConnectionLimits, Server};
use anyhow::Context as _;
use clap::Args;
use object_store::aws::AmazonS3Builder;
use soulbox_engine::blobs::Replica;
use soulbox_engine::sandbox::ClosedSandbox;
use soulbox_engine::{Engine, Sandboxes, SandboxesConfig};
use soulbox_fallback::ContainerBackend;
use soulbox_runtimes_wasm::{WasmBackend, Workers};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Each workspace's disk quota, in MiB, when the configuration names none.
const DEFAULT_WORKSPACE_MB: u64 = 1024;
/// How often idle keys' rate-limit state is forgotten.
const GUARD_SHRINK_INTERVAL: Duration = Duration::from_secs(60);
/// How often the server looks whether it is quiet (no execution admitted by any backend) and,
/// if it is, gives its heap's free memory back ([`crate::allocator::give_back_free_heap`]).
const HEAP_TRIM_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, over `server.addr` (port 0 picks a free port; the address is
    /// printed on stderr).
    #[arg(long, env = "SOULBOX_ADDR")]
    pub addr: Option<SocketAddr>,
    /// Development mode: no API keys (every caller is the tenant `dev`), so only a loopback
    /// address is accepted. Same as `auth.dev = true`.
    #[arg(long)]
    pub dev: bool,
}

pub async fn serve(cli: &Cli, loaded: &Loaded, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = loaded.config.clone();
    if let Some(addr) = args.addr {
        config.server.addr = addr;
    }
    config.auth.dev |= args.dev;
    let addr = config.server.addr;
    if config.auth.dev && !addr.ip().is_loopback() {
        anyhow::bail!("--dev serves without API keys, so it binds to loopback only, not {}", addr.ip());
    }
    // A cluster node's name, known before anything is opened under it.
    let node = match config.cluster.enabled {
        true => Some(node_name(&config.cluster)?),
        false => None,
    };
    let env = Environment::resolve(&config.environment, config.security.secrets_file.as_deref(), |name| {
        std::env::var(name).ok()
    })?;
    if config.cluster.enabled && !cli.database_url(&config).starts_with("postgres") {
        anyhow::bail!("cluster.enabled: a cluster's nodes share one database; give a postgres:// database URL");
    }
    let db = cli.database(&config).await?;
    let auth = if config.auth.dev { Auth::dev(db.clone()) } else { Auth::keys(db.clone()) };
    let backend = open_backend(cli, &config).await?;
    let containers = match config.container_config() {
        Some(container_config) => Some(ContainerBackend::start(container_config).await?),
        None => None,
    };
    let mut engine = Engine::builder();
    engine.backend(backend);
    if let Some(containers) = &containers {
        engine.backend(containers.clone());
    }
    let engine = engine.build();
    let mut sandboxes_config = SandboxesConfig {
        max_per_owner: config.auth.max_sandboxes_per_tenant,
        workspace_bytes: workspace_quota(&config),
        max_snapshot_bytes_per_owner: Some(config.storage.snapshot_bytes_per_tenant()),
        paused_lifetime: Some(config.storage.paused_lifetime()),
        replica: config
            .storage
            .object_store
            .as_ref()
            .map(|store| checkpoint_replica(store, node.as_deref()))
            .transpose()?,
        ..SandboxesConfig::default()
    };
    // Both under the home by default: a paused sandbox's workspace outlives the process, and
    // only this server (which holds the snapshot directory) may sweep its workspace root.
    let home = cli.home(&config).root().to_path_buf();
    sandboxes_config.workspace_root = config.storage.workspace_root.clone().unwrap_or_else(|| home.join("workspaces"));
    sandboxes_config.snapshot_dir =
        Some(config.storage.snapshot_dir.clone().unwrap_or_else(|| home.join("checkpoints")));
    // A cluster node hands its sandboxes over through the shared object store.
    match (&node, &sandboxes_config.replica) {
        (Some(node), Some(_)) => {
            sandboxes_config.handover = Some(Arc::new(NodeHandovers { db: db.clone(), node: node.clone() }));
        }
        (Some(_), None) => tracing::warn!("a cluster without [storage.object_store]: a node's sandboxes die with it"),
        (None, _) => {}
    }
    // The registry reports every sandbox's state to the database as it changes.
    let registry_record = SandboxRecorder::start(db.clone(), node.as_deref());
    sandboxes_config.ledger = Some(Arc::new(registry_record.clone()));
    let sandboxes = Sandboxes::new(engine.clone(), sandboxes_config)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let cluster = match node {
        Some(node) => {
            Some(join_cluster(&config, node, cli.database_url(&config), db.clone(), &sandboxes, local).await?)
        }
        None => None,
    };
    let stale = db.settle_sandboxes(cluster.as_ref().map(Cluster::node), |id| sandboxes.knows(id)).await?;
    if stale > 0 {
        tracing::warn!(stale, "sandboxes the database had as open that this server does not know are marked lost");
    }
    let secret = db.secret(SandboxTokens::SECRET_NAME).await?;
    let tokens = SandboxTokens::from_secret(&secret).context("the database's sandbox token key is damaged")?;
    let fd_limit = crate::listener::raise_fd_limit();
    tracing::info!(fd_limit, "open-file limit");
    let budgets = Budgets::new(config.auth.execution_seconds_per_day, config.auth.sandbox_hours_per_day);
    budgets.seed(db.execution_us_since(Budgets::today_ms()).await?);
    tokio::spawn(charge_closed_sandboxes(budgets.clone(), sandboxes.subscribe_closed()));
    let stop = shutdown_signal();
    let public_url = config.server.public_url.clone().unwrap_or_else(|| format!("http://{local}"));
    let state = AppState::new(SharedState {
        engine,
        sandboxes,
        metrics: cluster.as_ref().map_or_else(Metrics::default, |cluster| Metrics::for_node(cluster.node())),
        auth,
        usage: UsageRecorder::start(db.clone()),
        audit: Audit::start(db.clone()),
        budgets: budgets.clone(),
        settings: Arc::new(Settings::from_config(&config, env, public_url)),
        guard: Guard::new(config.auth.requests_per_second, config.auth.burst, config.auth.max_concurrent_executions),
        lifecycle: Lifecycle::default(),
        e2b: E2b::new(tokens),
        cluster: cluster.clone(),
    });
    tokio::spawn(shrink_guard(state.guard.clone()));
    tokio::spawn(give_back_heap_when_quiet(state.engine.clone(), state.metrics.clone()));
    let mode = if config.auth.dev { "development mode: no API keys" } else { "API keys required" };
    let file = loaded.file.as_ref().map(|f| format!(", config {}", f.display())).unwrap_or_default();
    eprintln!("soulbox: listening on http://{local} ({mode}{file})");
    let limits = config.server.connection_limits();
    let stopped = run_until_drained(listener, state.clone(), limits, config.server.shutdown_timeout(), stop).await;
    // Every sandbox is paused on the way out, so the next start takes them back.
    match tokio::time::timeout(config.server.shutdown_timeout(), state.sandboxes.pause_all()).await {
        Ok((paused, 0)) => eprintln!("soulbox: paused {paused} sandboxes for the next start"),
        Ok((paused, refused)) => eprintln!("soulbox: paused {paused} sandboxes; {refused} could not be (see the log)"),
        Err(_) => eprintln!("soulbox: pausing the sandboxes took longer than the shutdown timeout; the rest are lost"),
    }
    state.usage.close().await;
    state.audit.close().await;
    registry_record.close().await;
    if let Some(cluster) = &cluster {
        // Its sandboxes stay this node's: it adopts them back when it starts again.
        cluster.leave().await;
    }
    if let Some(containers) = containers {
        containers.shutdown().await;
    }
    match stopped {
        Ok(()) => eprintln!("soulbox: stopped"),
        Err(error) => eprintln!("soulbox: {error}; stopped anyway"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Joins the cluster as `[cluster]` says, adopting the sandboxes the registry took back from
/// disk; keeps the lease and follows closed sandboxes from then on.
async fn join_cluster(
    config: &crate::config::Config,
    node: String,
    database_url: String,
    db: crate::database::Database,
    sandboxes: &Sandboxes,
    local: SocketAddr,
) -> anyhow::Result<Cluster> {
    let section = &config.cluster;
    let url = match section.advertise_url.clone().or_else(|| config.server.public_url.clone()) {
        Some(url) => url,
        None if local.ip().is_unspecified() => {
            anyhow::bail!("cluster.advertise_url: the server listens on {local}; say where the other nodes reach it")
        }
        None => format!("http://{local}"),
    };
    let capacity = config.server.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let settings = NodeSettings {
        node,
        url,
        lease: Duration::from_millis(section.lease_ms),
        capacity: i64::try_from(capacity).unwrap_or(i64::MAX),
        max_sandboxes_per_tenant: config.auth.max_sandboxes_per_tenant,
    };
    let local_sandboxes = sandboxes.list(&Default::default()).into_iter().map(|info| info.id).collect();
    // The lease gets connections of its own.
    let leases = crate::database::Database::open(&database_url).await?;
    let cluster = Cluster::join(db, leases, settings, local_sandboxes).await?;
    tokio::spawn(cluster.clone().keep_lease(sandboxes.clone()));
    tokio::spawn(cluster.clone().give_back_idle_slots());
    tokio::spawn(cluster.clone().reap_gone_nodes(sandboxes.clone()));
    tokio::spawn(release_closed(cluster.clone(), sandboxes.subscribe_closed()));
    eprintln!("soulbox: cluster node {} at {}", cluster.node(), cluster.url());
    Ok(cluster)
}

/// This node's name: `cluster.node_id`, else the host's name.
fn node_name(section: &crate::config::ClusterSection) -> anyhow::Result<String> {
    match &section.node_id {
        Some(node) => Ok(node.clone()),
        None => host_name().context("cluster.node_id is not set and the host's name is not a usable node name"),
    }
}

/// The name this process's traces carry: `cluster.node_id`, else the host's name.
pub fn instance_name(section: &crate::config::ClusterSection) -> String {
    section.node_id.clone().or_else(host_name).unwrap_or_else(|| "soulbox".into())
}

/// The host's name, up to its first dot, when it is a plain name.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().split('.').next()?.to_owned();
    soulbox_engine::sandbox::is_plain_name(&name).then_some(name)
}

/// Tells the cluster of each sandbox that closes, for as long as the registry lives.
async fn release_closed(cluster: Cluster, mut closed: tokio::sync::broadcast::Receiver<ClosedSandbox>) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match closed.recv().await {
            Ok(sandbox) => cluster.release(&sandbox.id),
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "missed closed sandboxes; the cluster's database has them as killed anyway");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// The object store that keeps a copy of every checkpoint (`[storage.object_store]`). A
/// cluster's nodes share it (one takes over another's sandboxes from it), so a node does not
/// delete the blobs it collects: blobs are named by their content, and another node's
/// sandboxes may name the same ones.
fn checkpoint_replica(section: &ObjectStoreSection, node: Option<&str>) -> anyhow::Result<Replica> {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(&section.bucket).with_allow_http(section.allow_http);
    if let Some(endpoint) = &section.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let region = section.region.clone().or_else(|| std::env::var("AWS_REGION").ok());
    builder = builder.with_region(region.unwrap_or_else(|| "us-east-1".into()));
    let store = builder.build().context("storage.object_store")?;
    let replica = Replica::new(Arc::new(store), &section.prefix)?;
    Ok(if node.is_some() { replica.without_deletes() } else { replica })
}

/// Loads (or compiles) the runtimes; one-shot guests run in worker processes when configured.
async fn open_backend(cli: &Cli, config: &crate::config::Config) -> anyhow::Result<WasmBackend> {
    let mut wasm = cli.wasm_config(config, false);
    // A server installs packages (requests', sandboxes', `%pip install` in cells) only when its
    // operator says so.
    wasm.packages = config.packages.source(false);
    if let Some(workers) = config.server.workers {
        wasm.pool.workers = workers;
        wasm.pool.queue = workers * soulbox_engine::DEFAULT_QUEUE_PER_WORKER;
    }
    if let Some(queue) = config.server.queue {
        wasm.pool.queue = queue;
    }
    if config.server.worker_processes {
        wasm.workers = Workers::Processes { program: std::env::current_exe()?, args: vec![] };
    }
    let backend = tokio::task::spawn_blocking(move || -> anyhow::Result<WasmBackend> {
        let backend = WasmBackend::open(wasm)?;
        backend.prepare()?;
        Ok(backend)
    })
    .await??;
    Ok(backend)
}

/// Serves until a shutdown signal, then drains for at most `grace`.
async fn run_until_drained(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: ConnectionLimits,
    grace: Duration,
    stop: impl Future<Output = ()>,
) -> Result<(), String> {
    let lifecycle = state.lifecycle.clone();
    let server = Server::start(listener, app(state), limits);
    tokio::select! {
        () = stop => {}
        () = lifecycle.shutdown.cancelled() => {}
    }
    eprintln!("soulbox: shutting down; draining in-flight requests");
    lifecycle.drain();
    match server.drain(grace).await {
        true => Ok(()),
        false => Err(format!("in-flight requests did not finish within {} ms", grace.as_millis())),
    }
}

/// Each workspace's disk quota: `resources.disk_mb`, else [`DEFAULT_WORKSPACE_MB`] where it
/// can be enforced (SoulBox runs as root).
fn workspace_quota(config: &crate::config::Config) -> Option<u64> {
    match config.resources.disk_mb {
        Some(mb) => Some(mb << 20),
        None if soulbox_engine::sandbox::quota::can_enforce() => Some(DEFAULT_WORKSPACE_MB << 20),
        None => {
            tracing::warn!("workspaces have no disk quota: it needs SoulBox to run as root");
            None
        }
    }
}

async fn shrink_guard(guard: Guard) {
    let mut tick = tokio::time::interval(GUARD_SHRINK_INTERVAL);
    loop {
        tick.tick().await;
        guard.shrink();
    }
}

/// Every [`HEAP_TRIM_INTERVAL`], when no backend has an execution admitted, gives the heap's
/// free memory back (on a blocking thread: it takes each allocator arena's lock in turn). A
/// busy server skips it (its freed memory is soon taken again); after a burst, the first quiet
/// look returns what the burst's threads freed, and the looks after it return what the extra
/// worker threads held once they leave.
async fn give_back_heap_when_quiet(engine: Engine, metrics: Metrics) {
    let mut tick = tokio::time::interval(HEAP_TRIM_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if engine.load().iter().any(|(_, load)| load.in_use > 0) {
            continue;
        }
        let started = std::time::Instant::now();
        match tokio::task::spawn_blocking(crate::allocator::give_back_free_heap).await {
            Ok(gave_back) => {
                metrics.heap_trimmed();
                tracing::debug!(gave_back, took_us = started.elapsed().as_micros() as u64, "heap trimmed");
            }
            Err(error) => tracing::warn!(%error, "could not trim the heap"),
        }
    }
}

/// Listens for Ctrl-C and SIGTERM from now on (call it before the server answers anything: a
/// signal that came earlier would kill the process undrained) and resolves on the first.
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            (Ok(mut only), Err(error)) | (Err(error), Ok(mut only)) => {
                tracing::warn!(%error, "cannot listen for one of SIGINT and SIGTERM");
                only.recv().await;
            }
            (Err(error), Err(_)) => {
                tracing::warn!(%error, "cannot listen for SIGINT or SIGTERM; stop with SIGKILL");
                std::future::pending::<()>().await;
            }
        }
    }
}

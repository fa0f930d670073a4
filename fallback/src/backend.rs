//! [`ContainerBackend`]: the engine's backend for what WebAssembly cannot run.

use crate::browser;
use crate::config::ContainerConfig;
use crate::confinement::Labels;
use crate::containers::Containers;
use crate::docker::DockerEngine;
use crate::error::ContainerError;
use crate::machine::DockerMachine;
use crate::pool::WarmPool;
use async_trait::async_trait;
use soulbox_engine::process::{Machine, MachineSpec, RenderRequest, RenderedPage};
use soulbox_engine::{
    Backend, BackendError, BackendKind, BackendLoad, Capabilities, ExecRequest, ExecResult, Language,
};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// One-shot executions running at once (each holds a container), when not configured.
pub const DEFAULT_MAX_RUNNING: usize = 16;
/// Memory of the container a one-shot render runs in (Chromium is hungry).
pub const RENDER_MEMORY_BYTES: u64 = 1536 << 20;

/// Docker containers: every language of the image, shells, processes, terminals, a browser.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct ContainerBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    containers: Arc<Containers>,
    pool: Arc<WarmPool>,
    running: Arc<Semaphore>,
    max_running: usize,
}

impl ContainerBackend {
    /// Opens the backend: connects to the engine (lazily: a missing engine is not an error
    /// here, only for the requests that need it), removes what dead SoulBox processes left
    /// behind, and starts filling the warm pool. Call inside a tokio runtime.
    pub async fn start(config: ContainerConfig) -> Result<Self, ContainerError> {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        crate::confinement::check_container_uid(&passwd).map_err(ContainerError::Unavailable)?;
        let docker = Arc::new(DockerEngine::connect(config.docker_host.as_deref()));
        let instance = format!(
            "{:016x}",
            getrandom::u64().map_err(|e| ContainerError::Unavailable(format!("no randomness: {e}")))?
        );
        let pool_size = config.pool_size;
        let containers = Arc::new(Containers {
            docker,
            config,
            labels: Labels::for_this_process(instance),
            egress: tokio::sync::OnceCell::new(),
        });
        match containers.docker.ping().await {
            Ok(()) => {
                crate::janitor::sweep(&containers).await;
            }
            Err(error) => {
                tracing::warn!(%error, "the Docker engine is not reachable; container requests will fail until it is")
            }
        }
        let pool = WarmPool::start(Arc::clone(&containers), pool_size);
        let max_running = DEFAULT_MAX_RUNNING;
        Ok(ContainerBackend {
            inner: Arc::new(Inner { containers, pool, running: Arc::new(Semaphore::new(max_running)), max_running }),
        })
    }

    /// Whether the Docker engine answers now.
    pub async fn available(&self) -> bool {
        self.inner.containers.docker.ping().await.is_ok()
    }

    /// Warm containers ready now.
    pub fn pool_ready(&self) -> usize {
        self.inner.pool.ready()
    }

    /// This backend's instance id (the `soulbox.instance` label of its containers).
    pub fn instance(&self) -> &str {
        &self.inner.containers.labels.instance
    }

    /// Removes every container this backend made (the pool's, and sandboxes' still open).
    pub async fn shutdown(&self) {
        self.inner.pool.drain().await;
        let removed = self.inner.containers.remove_all_of_this_instance().await;
        tracing::info!(removed, "container backend shut down");
    }

    fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, BackendError> {
        Arc::clone(&self.inner.running)
            .try_acquire_owned()
            .map_err(|_| BackendError::Busy { capacity: self.inner.max_running })
    }
}

#[async_trait]
impl Backend for ContainerBackend {
    fn name(&self) -> &'static str {
        "container"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(BackendKind::Container)
            .languages(Language::ALL.into_iter().filter(|language| language.runs_in_containers()))
            .machines()
            .rendering()
    }

    async fn execute(&self, request: ExecRequest) -> Result<ExecResult, BackendError> {
        if request.network.is_some() {
            // A one-shot container has no network at all; its policy could not be enforced.
            return Err(BackendError::Rejected(
                "a network policy applies to WebAssembly executions only: a one-shot container has no network".into(),
            ));
        }
        if !request.packages.is_empty() {
            return Err(BackendError::Rejected(
                "`packages` are installed for WebAssembly Python only: in a container, install them with pip in a sandbox's command".into(),
            ));
        }
        let _running = self.admit()?;
        Ok(crate::oneshot::execute(&self.inner.pool, &self.inner.containers, request).await?)
    }

    fn load(&self) -> Option<BackendLoad> {
        let in_use = self.inner.max_running - self.inner.running.available_permits();
        Some(BackendLoad::new(in_use, self.inner.max_running, 0))
    }

    async fn start_machine(&self, spec: MachineSpec) -> Result<Box<dyn Machine>, BackendError> {
        Ok(Box::new(DockerMachine::new(Arc::clone(&self.inner.containers), spec)?))
    }

    async fn render(&self, request: RenderRequest) -> Result<RenderedPage, BackendError> {
        let _running = self.admit()?;
        if let soulbox_engine::process::PageSource::Url(url) = &request.source
            && !url.starts_with("file:")
            && !url.starts_with("data:")
        {
            return Err(BackendError::Rejected(
                "a one-shot render has no network: render web pages in a sandbox created with network access".into(),
            ));
        }
        let slot = self.inner.pool.take().await?;
        self.inner.containers.set_memory(&slot.id, RENDER_MEMORY_BYTES).await?;
        Ok(browser::render_once(&self.inner.containers, &slot.id, request).await?)
    }
}

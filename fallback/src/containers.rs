//! [`Containers`]: making, starting, resizing and removing SoulBox's containers.

use crate::config::ContainerConfig;
use crate::confinement::{ContainerSpec, EGRESS_NETWORK, INSTANCE_LABEL, Labels, MANAGED_LABEL, create_body};
use crate::docker::{DockerEngine, Retry};
use crate::egress::EgressProxy;
use crate::error::ContainerError;
use crate::exec::{Input, Output};
use crate::host_fence::HostFence;
use bollard::models::{ContainerUpdateBody, NetworkCreateRequest};
use bollard::query_parameters::{
    AttachContainerOptions, KillContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Container operations under one configuration and one set of labels.
#[derive(Debug)]
pub struct Containers {
    /// The engine.
    pub docker: Arc<DockerEngine>,
    /// How containers are made.
    pub config: ContainerConfig,
    /// Who makes them.
    pub labels: Labels,
    /// The egress proxy, once a container with network needed it.
    pub egress: tokio::sync::OnceCell<Arc<EgressProxy>>,
}

impl Containers {
    /// Makes and starts a container; returns its id. A container that does not start is
    /// removed.
    pub async fn start(&self, spec: &ContainerSpec<'_>) -> Result<String, ContainerError> {
        let body = create_body(&self.config, &self.labels, spec);
        let created = self
            .docker
            .call("create a container", Retry::No, |d| {
                let body = body.clone();
                async move { d.create_container(None, body).await }
            })
            .await
            .map_err(|e| self.missing_image(e))?;
        let id = created.id;
        let id_ref = id.as_str();
        let started = self
            .docker
            .call("start a container", Retry::Yes, |d| async move { d.start_container(id_ref, None).await })
            .await;
        if let Err(error) = started {
            self.remove(&id).await;
            return Err(error);
        }
        Ok(id)
    }

    /// Attaches to a container's stdin, stdout and stderr (its main process's).
    pub async fn attach(&self, id: &str) -> Result<Session, ContainerError> {
        let options =
            AttachContainerOptions { stream: true, stdin: true, stdout: true, stderr: true, ..Default::default() };
        let attached = self
            .docker
            .call("attach to a container", Retry::No, |d| {
                let options = options.clone();
                async move { d.attach_container(id, Some(options)).await }
            })
            .await?;
        Ok(Session { output: attached.output, input: attached.input })
    }

    /// The egress proxy containers with network go through, started on first use (with
    /// [`EGRESS_NETWORK`], made if missing, whose gateway it listens on), and the host fenced
    /// off from that network but for the proxy ([`crate::host_fence`], unless configured off).
    pub async fn egress_proxy(&self) -> Result<Arc<EgressProxy>, ContainerError> {
        let proxy = self
            .egress
            .get_or_try_init(|| async {
                let EgressNetwork { gateway, bridge } = self.egress_network().await?;
                let proxy = EgressProxy::start(gateway)
                    .await
                    .map_err(|e| ContainerError::io("starting the egress proxy", e))?;
                let (port, fence_host) = (proxy.port(), self.config.fence_host);
                let raised = tokio::task::spawn_blocking(move || match fence_host {
                    true => HostFence::raise(&bridge, gateway, port).map(Some),
                    false => Ok(HostFence::open_if_fenced(gateway, port)),
                })
                .await
                .map_err(|e| ContainerError::Internal(format!("raising the host fence: {e}")))?;
                if let Some(fence) = raised.map_err(|e| ContainerError::Unavailable(e.to_string()))? {
                    proxy.keep_fence(fence);
                }
                Ok::<_, ContainerError>(Arc::new(proxy))
            })
            .await?;
        Ok(Arc::clone(proxy))
    }

    /// Makes [`EGRESS_NETWORK`] if it is missing; its gateway address (the host's, on it) and
    /// its bridge's interface name.
    async fn egress_network(&self) -> Result<EgressNetwork, ContainerError> {
        let inspect = || {
            self.docker
                .call("inspect a network", Retry::Yes, |d| async move { d.inspect_network(EGRESS_NETWORK, None).await })
        };
        let network = match inspect().await {
            Ok(network) => network,
            Err(error) if !error.is_not_found() => return Err(error),
            Err(_) => {
                self.create_egress_network().await?;
                inspect().await?
            }
        };
        if network.internal != Some(true) {
            return Err(ContainerError::Internal(format!(
                "the Docker network `{EGRESS_NETWORK}` exists but is not internal: remove it (`docker network rm {EGRESS_NETWORK}`) and SoulBox makes it again"
            )));
        }
        if network.enable_ipv6 == Some(true) {
            return Err(ContainerError::Internal(format!(
                "the Docker network `{EGRESS_NETWORK}` has IPv6, which the host fence does not cover: remove it (`docker network rm {EGRESS_NETWORK}`) and SoulBox makes it again"
            )));
        }
        let bridge = bridge_name(&network).ok_or_else(|| {
            ContainerError::Internal(format!("the Docker network `{EGRESS_NETWORK}` has no id to name its bridge by"))
        })?;
        let configs = network.ipam.and_then(|ipam| ipam.config).unwrap_or_default();
        let gateway = configs
            .iter()
            .filter_map(|c| c.gateway.as_deref()?.parse::<IpAddr>().ok())
            .find(IpAddr::is_ipv4)
            .ok_or_else(|| {
                ContainerError::Internal(format!("the Docker network `{EGRESS_NETWORK}` has no IPv4 gateway"))
            })?;
        Ok(EgressNetwork { gateway, bridge })
    }

    async fn create_egress_network(&self) -> Result<(), ContainerError> {
        let request = NetworkCreateRequest {
            name: EGRESS_NETWORK.into(),
            driver: Some("bridge".into()),
            internal: Some(true),
            // The host fence is IPv4: no IPv6, whatever the daemon's default network options.
            enable_ipv6: Some(false),
            options: Some(HashMap::from([("com.docker.network.bridge.enable_icc".to_owned(), "false".to_owned())])),
            labels: Some(HashMap::from([(MANAGED_LABEL.to_owned(), "true".to_owned())])),
            ..NetworkCreateRequest::default()
        };
        let created = self
            .docker
            .call("create a network", Retry::No, |d| {
                let request = request.clone();
                async move { d.create_network(request).await }
            })
            .await;
        match created {
            // Made meanwhile by another SoulBox on this engine.
            Err(ContainerError::Refused { status: Some(409), .. }) => Ok(()),
            other => other.map(drop),
        }
    }

    /// The address of container `id` on [`EGRESS_NETWORK`].
    pub async fn egress_address(&self, id: &str) -> Result<IpAddr, ContainerError> {
        let id = id.to_owned();
        let inspected = self
            .docker
            .call("inspect a container", Retry::Yes, |d| {
                let id = id.clone();
                async move { d.inspect_container(&id, None).await }
            })
            .await?;
        inspected
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut networks| networks.remove(EGRESS_NETWORK))
            .and_then(|endpoint| endpoint.ip_address)
            .and_then(|ip| ip.parse().ok())
            .ok_or_else(|| {
                ContainerError::Internal(format!("container {} has no address on {EGRESS_NETWORK}", short(&id)))
            })
    }

    /// A missing image is an operator's job: say which command builds it.
    fn missing_image(&self, error: ContainerError) -> ContainerError {
        match error {
            ContainerError::Refused { status: Some(404), message, .. } if message.contains("image") => {
                ContainerError::Unavailable(format!(
                    "the image {} is not on the Docker engine; build it with scripts/build-images.sh",
                    self.config.image
                ))
            }
            other => other,
        }
    }

    /// Removes a container (and its anonymous volumes), running or not. Never fails: a
    /// container already gone is fine, and a failure is logged (the janitor retries later).
    pub async fn remove(&self, id: &str) {
        let options = RemoveContainerOptions { force: true, v: true, ..RemoveContainerOptions::default() };
        let removed = self
            .docker
            .call("remove a container", Retry::Yes, |d| {
                let options = options.clone();
                async move { d.remove_container(id, Some(options)).await }
            })
            .await;
        match removed {
            Ok(()) => {}
            Err(error) if error.is_not_found() => {}
            Err(error) => tracing::warn!(container = %short(id), %error, "could not remove a container"),
        }
    }

    /// Kills a container's processes at once (SIGKILL to its init).
    pub async fn kill(&self, id: &str) -> Result<(), ContainerError> {
        let options = KillContainerOptions { signal: "KILL".into() };
        let killed = self
            .docker
            .call("kill a container", Retry::Yes, |d| {
                let options = options.clone();
                async move { d.kill_container(id, Some(options)).await }
            })
            .await;
        match killed {
            Err(error)
                if !error.is_not_found() && !matches!(&error, ContainerError::Refused { status: Some(409), .. }) =>
            {
                Err(error)
            }
            _ => Ok(()),
        }
    }

    /// Sets a container's memory cap (memory plus swap: no swap).
    pub async fn set_memory(&self, id: &str, bytes: u64) -> Result<(), ContainerError> {
        let memory = i64::try_from(bytes).unwrap_or(i64::MAX);
        let body =
            ContainerUpdateBody { memory: Some(memory), memory_swap: Some(memory), ..ContainerUpdateBody::default() };
        self.docker
            .call("update a container's memory", Retry::Yes, |d| {
                let body = body.clone();
                async move { d.update_container(id, body).await }
            })
            .await
    }

    /// Whether a container is running.
    pub async fn is_running(&self, id: &str) -> Result<bool, ContainerError> {
        let inspected = self
            .docker
            .call("inspect a container", Retry::Yes, |d| async move { d.inspect_container(id, None).await })
            .await;
        match inspected {
            Ok(info) => Ok(info.state.and_then(|s| s.running).unwrap_or(false)),
            Err(error) if error.is_not_found() => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Whether the Docker engine saw the container's cgroup run out of memory (its
    /// `State.OOMKilled`): the verdict when the cgroup itself is gone (the OOM killer took the
    /// container's first process, so the container stopped). `None` when it cannot tell.
    pub async fn oom_killed(&self, id: &str) -> Option<bool> {
        let inspected = self
            .docker
            .call("inspect a container", Retry::Yes, |d| async move { d.inspect_container(id, None).await })
            .await
            .ok()?;
        inspected.state.and_then(|state| state.oom_killed)
    }

    /// SoulBox containers matching `labels` (`key=value` each), running or not: `(id, labels)`.
    pub async fn list(&self, labels: &[String]) -> Result<Vec<(String, HashMap<String, String>)>, ContainerError> {
        let mut filter = vec![format!("{MANAGED_LABEL}=true")];
        filter.extend(labels.iter().cloned());
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_owned(), filter)])),
            ..ListContainersOptions::default()
        };
        let listed = self
            .docker
            .call("list containers", Retry::Yes, |d| {
                let options = options.clone();
                async move { d.list_containers(Some(options)).await }
            })
            .await?;
        Ok(listed.into_iter().filter_map(|c| Some((c.id?, c.labels.unwrap_or_default()))).collect())
    }

    /// Removes every container this instance made.
    pub async fn remove_all_of_this_instance(&self) -> usize {
        let mine = format!("{INSTANCE_LABEL}={}", self.labels.instance);
        let Ok(listed) = self.list(&[mine]).await else { return 0 };
        let count = listed.len();
        futures_util::future::join_all(listed.iter().map(|(id, _)| self.remove(id))).await;
        count
    }
}

/// An attachment to a container's main process.
pub struct Session {
    /// Its stdout and stderr.
    pub output: Output,
    /// Its stdin.
    pub input: Input,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

/// A container id's first 12 characters, as Docker shows them.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The egress network as the host sees it.
struct EgressNetwork {
    /// The host's address on it, where the egress proxy listens.
    gateway: IpAddr,
    /// Its Linux bridge interface.
    bridge: String,
}

/// A Docker bridge network's interface on the host: the name its options give, else Docker's
/// default, `br-` and the network id's first 12 characters.
fn bridge_name(network: &bollard::models::NetworkInspect) -> Option<String> {
    let named = network.options.as_ref().and_then(|options| options.get("com.docker.network.bridge.name"));
    match named {
        Some(name) => Some(name.clone()),
        None => network.id.as_deref().filter(|id| id.len() >= 12).map(|id| format!("br-{}", &id[..12])),
    }
}

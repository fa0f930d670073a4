//! [`ContainerConfig`]: how the container backend reaches Docker and confines its containers.

use std::path::PathBuf;

/// The image SoulBox builds with `scripts/build-images.sh`.
pub const DEFAULT_IMAGE: &str = "soulbox/runtime:bookworm";
/// Warm containers kept ready, when the configuration names no other number.
pub const DEFAULT_POOL_SIZE: usize = 2;
/// Processes (and threads) a container may hold at once: a fork bomb stops here. A headless
/// Chromium holds about 150 (a sandbox's warm browser, and another a Playwright script
/// launches, must fit beside the sandbox's own processes).
pub const DEFAULT_PIDS_LIMIT: i64 = 1024;
/// Size of each container's `/tmp` (memory-backed; counts against its memory).
pub const DEFAULT_TMP_BYTES: u64 = 512 << 20;
/// Memory of a sandbox's container (one-shot executions take their request's limit).
pub const DEFAULT_MACHINE_MEMORY_BYTES: u64 = 1 << 30;
/// The user processes run as when SoulBox itself runs as root: the image's `soulbox` user,
/// numbered above the ranges distributions give to accounts and to subordinate ids, so that
/// no host account owns what containers write (checked at start).
pub const CONTAINER_UID: u32 = 1_700_000_000;

/// How to open a [`crate::ContainerBackend`].
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    /// The Docker engine: `unix:///var/run/docker.sock`, `tcp://...`. Default: `$DOCKER_HOST`,
    /// else the default socket. The engine must run on this host: workspaces are shared with
    /// containers through bind mounts.
    pub docker_host: Option<String>,
    /// The image every container starts from. Default [`DEFAULT_IMAGE`].
    pub image: String,
    /// Started containers kept ready for one-shot executions. Default [`DEFAULT_POOL_SIZE`];
    /// 0 disables the pool (every execution starts a container).
    pub pool_size: usize,
    /// CPUs each container may use (fractions allowed). Default 1.
    pub cpus: f64,
    /// Memory of a sandbox's container. Default [`DEFAULT_MACHINE_MEMORY_BYTES`].
    pub machine_memory_bytes: u64,
    /// Processes per container. Default [`DEFAULT_PIDS_LIMIT`].
    pub pids_limit: i64,
    /// Size of each container's `/tmp`. Default [`DEFAULT_TMP_BYTES`].
    pub tmp_bytes: u64,
    /// Whether a sandbox may ask for network access. Default false: no container has a
    /// network.
    pub allow_network: bool,
    /// Whether SoulBox fences the host off from networked containers with iptables
    /// ([`crate::host_fence`]): they reach the egress proxy on the host and nothing else there.
    /// Default true; needs root and iptables (a networked container is refused when the fence
    /// cannot be raised). Turn it off only with a firewall of your own doing the same.
    pub fence_host: bool,
    /// Where one-shot executions' workspaces are made on the host. Default:
    /// `$TMPDIR/soulbox-containers`.
    pub state_dir: PathBuf,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        ContainerConfig {
            docker_host: None,
            image: DEFAULT_IMAGE.into(),
            pool_size: DEFAULT_POOL_SIZE,
            cpus: 1.0,
            machine_memory_bytes: DEFAULT_MACHINE_MEMORY_BYTES,
            pids_limit: DEFAULT_PIDS_LIMIT,
            tmp_bytes: DEFAULT_TMP_BYTES,
            allow_network: false,
            fence_host: true,
            state_dir: std::env::temp_dir().join("soulbox-containers"),
        }
    }
}

//! `soulbox.toml`: the server's configuration.
//!
//! A configuration is built in layers, each overriding the one before: built-in defaults, the
//! file (`--config` / `SOULBOX_CONFIG`, else `./soulbox.toml` when present), environment
//! variables named `SOULBOX__<SECTION>__<KEY>` (for example `SOULBOX__SERVER__ADDR`), and
//! `--set section.key=value` flags. Every layer goes through the same typed parse, so an unknown
//! key or a value of the wrong type is refused with a message naming it, wherever it came from.
//!
//! The sections follow the product's original `soulbox.toml` spec where it applies to SoulBox
//! (`resources`, `environment`, `network`, `security`, `monitoring`, part of `storage`), plus
//! SoulBox's own (`server`, `auth`). Sections and keys of that spec that SoulBox does not
//! implement (`project`, `template`, `commands`, `scaling`, ...) are refused with the reason
//! ([`unsupported`]), never ignored.
//!
//! Invariants: a loaded [`Config`] has passed [`Config::validate`]; the environment it hands
//! to guests ([`Environment`]) has every `$VAR` and `$SECRET_NAME` resolved, and its values are
//! never printed by `Debug`.

mod environment;
mod layers;
mod unsupported;

pub use environment::{DynamicEnv, Environment, SecretsError};
pub use layers::{ConfigSource, env_overrides, load};

use serde::Deserialize;
use soulbox_engine::limits::{MAX_DEADLINE, MAX_MEMORY_BYTES};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The file looked for in the working directory when no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "soulbox.toml";

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed, a key is unknown or a value has the wrong type (the message names
    /// the key and, for the file, its line).
    #[error("{origin}: {message}")]
    Parse {
        /// Which layer: the file's path, an environment variable or `--set`.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A key of the product spec that SoulBox does not implement.
    #[error("`{key}` is not supported: {reason}")]
    Unsupported {
        /// The dotted key.
        key: String,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// A value is out of range or inconsistent with another.
    #[error("`{key}`: {message}")]
    Invalid {
        /// The dotted key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An `environment` value names a variable or secret that is not set.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

/// The whole configuration. Every section is optional; unknown keys are refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where and how the HTTP server listens.
    pub server: ServerSection,
    /// API keys: development mode, per-key rate limit and concurrency quota.
    pub auth: AuthSection,
    /// Where SoulBox keeps its data.
    pub storage: StorageSection,
    /// What each execution and sandbox may use.
    pub resources: ResourcesSection,
    /// Environment variables every guest sees (values may be `$VAR` or `$SECRET_NAME`).
    pub environment: EnvironmentSection,
    /// Network access of guests.
    pub network: NetworkSection,
    /// Python packages guests may ask for.
    pub packages: PackagesSection,
    /// Confinement switches and the secrets file.
    pub security: SecuritySection,
    /// Metrics and logs.
    pub monitoring: MonitoringSection,
    /// The container backend (Docker).
    pub containers: ContainersSection,
    /// Several servers sharing one PostgreSQL database ([`crate::cluster`]).
    pub cluster: ClusterSection,
}

/// `[cluster]`: this server as one node of several sharing `storage.database_url` (which must
/// then be PostgreSQL). Each node registers itself with a lease it renews; a sandbox is served
/// by the live node that owns it, and a request for it reaching another node is forwarded
/// there.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// Join a cluster (the database must then be PostgreSQL). Default false: one server is
    /// the whole service.
    pub enabled: bool,
    /// This node's name, stable across restarts (a StatefulSet pod's name). Default: the
    /// host's name. 1-64 letters, digits, `-` or `_`.
    pub node_id: Option<String>,
    /// The URL the other nodes forward requests to (`http://soulbox-1.soulbox-nodes:8080`).
    /// Default: `server.public_url`, else `http://` plus the listening address, which must
    /// then not be a wildcard address.
    pub advertise_url: Option<String>,
    /// How long a node's lease lasts without being renewed; it is renewed three times per
    /// lease. A node that cannot renew its lease in time stops serving sandboxes before
    /// the others may consider it gone. Default 10 000 ms; 1 000-600 000.
    pub lease_ms: u64,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection { enabled: false, node_id: None, advertise_url: None, lease_ms: 10_000 }
    }
}

/// `[containers]`: the Docker backend for shells, native languages, processes and the
/// browser.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainersSection {
    /// Start the container backend. Default true (requests for it fail with "container
    /// backend unavailable" while no Docker engine answers).
    pub enabled: bool,
    /// The Docker engine (`unix:///var/run/docker.sock`, `tcp://...`). Default:
    /// `$DOCKER_HOST`, else the default socket. It must run on this host.
    pub docker_host: Option<String>,
    /// The image. Default `soulbox/runtime:bookworm` (`scripts/build-images.sh`).
    pub image: String,
    /// Started containers kept ready for one-shot runs. Default 2.
    pub pool_size: usize,
    /// Memory of a sandbox's container, in MiB. Default 1024.
    pub sandbox_memory_mb: u64,
    /// Processes per container. Default 256.
    pub pids_limit: i64,
    /// Size of a container's `/tmp`, in MiB. Default 512.
    pub tmp_mb: u64,
    /// Fence the host off from networked containers with iptables, so that they reach the
    /// egress proxy and none of the host's other services. Default true (needs root); turn
    /// it off only behind a firewall of your own that does the same.
    pub fence_host: bool,
}

impl Default for ContainersSection {
    fn default() -> Self {
        ContainersSection {
            enabled: true,
            docker_host: None,
            image: soulbox_fallback::config::DEFAULT_IMAGE.into(),
            pool_size: soulbox_fallback::config::DEFAULT_POOL_SIZE,
            sandbox_memory_mb: soulbox_fallback::config::DEFAULT_MACHINE_MEMORY_BYTES >> 20,
            pids_limit: soulbox_fallback::config::DEFAULT_PIDS_LIMIT,
            tmp_mb: soulbox_fallback::config::DEFAULT_TMP_BYTES >> 20,
            fence_host: true,
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address to listen on. Default `127.0.0.1:8080`; port 0 picks a free port.
    pub addr: SocketAddr,
    /// How long a request may take to produce its response (a streamed body may go on after).
    /// Default 300 000 ms. Execution deadlines may not exceed it.
    pub request_timeout_ms: u64,
    /// On shutdown, how long in-flight requests may take to finish before the server exits
    /// anyway. Default 30 000 ms.
    pub shutdown_timeout_ms: u64,
    /// Requests handled at once; past it, new requests get 503 with `Retry-After` at once.
    /// Default 512.
    pub max_in_flight_requests: usize,
    /// Connections open at once; past it, a new connection gets 503 and is closed. Default
    /// 10 000 (the soft open-file limit is raised to the hard one at start).
    pub max_connections: usize,
    /// Time a connection has to send a request's headers from their first byte (and a new
    /// connection its first byte). Default 10 000 ms.
    pub header_read_timeout_ms: u64,
    /// The longest a kept-alive connection may sit idle between requests. Default 620 000 ms:
    /// longer than clients' pools keep idle connections (the E2B SDK 300 s, Go 90 s), so the
    /// client closes an idle connection first and never sends a request on one the server is
    /// closing.
    pub keep_alive_timeout_ms: u64,
    /// Largest JSON body in bytes. Default 96 MiB (a request carries up to 64 MiB of inputs,
    /// base64-encoded).
    pub json_body_limit_bytes: usize,
    /// Largest file upload in bytes (streamed to disk). Default 1 GiB.
    pub upload_limit_bytes: u64,
    /// The URL clients reach this server at, for `$SOULBOX_SANDBOX_URL`. Default: `http://`
    /// plus the listening address.
    pub public_url: Option<String>,
    /// Run one-shot guests in worker processes (one per worker thread) rather than on the
    /// server's worker threads, so a guest that crashes the process takes down only its child
    /// (sandboxes' contexts run on the threads either way). Default false: guests are rewound
    /// in place after each execution, so threads take no page faults per execution and skip
    /// the processes' pipe round trip (on 2 cores, 2,550 against 1,950 fresh Python executions/s
    /// and 4,900 against 3,100 JavaScript; see the README).
    pub worker_processes: bool,
    /// Guests running at once (worker threads, each with its process when
    /// `worker_processes`). Default: the number of CPUs.
    pub workers: Option<usize>,
    /// Executions that may wait for a worker, beyond those running; past it, 503 `busy`.
    /// Default: 16 per worker.
    pub queue: Option<usize>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout_ms: 300_000,
            shutdown_timeout_ms: 30_000,
            max_in_flight_requests: 512,
            max_connections: 10_000,
            header_read_timeout_ms: 10_000,
            keep_alive_timeout_ms: 620_000,
            json_body_limit_bytes: 96 << 20,
            upload_limit_bytes: 1 << 30,
            public_url: None,
            worker_processes: false,
            workers: None,
            queue: None,
        }
    }
}

impl ServerSection {
    /// [`ServerSection::request_timeout_ms`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The listener's bounds on connections.
    pub fn connection_limits(&self) -> crate::listener::ConnectionLimits {
        crate::listener::ConnectionLimits {
            max_connections: self.max_connections,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            keep_alive_timeout: Duration::from_millis(self.keep_alive_timeout_ms),
        }
    }

    /// [`ServerSection::shutdown_timeout_ms`] as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Development mode: no API keys, every caller is the tenant `dev`, and the server only
    /// binds a loopback address. Default false.
    pub dev: bool,
    /// Requests per second each API key may make (a token bucket). Default 100.
    pub requests_per_second: u32,
    /// Requests a key may make at once above its rate. Default 200.
    pub burst: u32,
    /// Executions (one-shot runs and cells) each key may have running at once. Default 16.
    pub max_concurrent_executions: u32,
    /// Sandboxes each tenant may have open at once (across a cluster's nodes, in one).
    /// Default 100.
    pub max_sandboxes_per_tenant: usize,
    /// Execution seconds (one-shot runs, cells and commands, wall time) each tenant may spend
    /// per UTC day; past it, 429 `budget_exhausted`. Default 0: no budget.
    pub execution_seconds_per_day: u64,
    /// Sandbox hours (time sandboxes are open) each tenant may spend per UTC day; past it, new
    /// sandboxes get 429 `budget_exhausted`. Default 0: no budget.
    pub sandbox_hours_per_day: f64,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            dev: false,
            requests_per_second: 100,
            burst: 200,
            max_concurrent_executions: 16,
            max_sandboxes_per_tenant: 100,
            execution_seconds_per_day: 0,
            sandbox_hours_per_day: 0.0,
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Runtimes, compiled modules and the default database. Default: `$SOULBOX_HOME`, else the
    /// user data directory.
    pub home: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://...`. Default: `soulbox.db` in the home directory.
    pub database_url: Option<String>,
    /// Where sandbox workspaces are made (paused sandboxes' workspaces stay there across
    /// restarts). Default: `workspaces` in the home directory.
    pub workspace_root: Option<PathBuf>,
    /// Where paused sandboxes' checkpoints are kept. Default: `checkpoints` in the home
    /// directory.
    pub snapshot_dir: Option<PathBuf>,
    /// MiB of checkpoints one tenant may keep (its sandboxes' latest checkpoints and its
    /// templates'); past it, pauses, checkpoints, forks and template saves are refused (429
    /// `quota_exceeded`) until it kills sandboxes or deletes templates. Default:
    /// [`DEFAULT_SNAPSHOT_MB_PER_TENANT`].
    pub snapshot_mb_per_tenant: Option<u64>,
    /// Hours a paused sandbox is kept, from its pause, instead of until its lifetime ends (a
    /// sandbox that resumes takes back the lifetime it had left). Default:
    /// [`DEFAULT_PAUSED_LIFETIME_HOURS`]; at most [`MAX_PAUSED_LIFETIME_HOURS`].
    pub paused_lifetime_hours: Option<u64>,
    /// An S3 or S3-compatible object store that keeps a copy of every checkpoint.
    pub object_store: Option<ObjectStoreSection>,
}

/// `[storage.object_store]`: where every checkpoint blob is also kept. A pause or a checkpoint
/// on demand returns once its blobs are uploaded; one missing or damaged in `storage.snapshot_dir` is fetched
/// from it. Credentials come from the environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), never from this file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectStoreSection {
    /// The bucket (required; it must exist).
    pub bucket: String,
    /// An S3-compatible server's URL (MinIO, Ceph, moto...). Default: AWS's, for the region.
    pub endpoint: Option<String>,
    /// The region. Default: `AWS_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Where in the bucket the blobs go. Default: `soulbox/checkpoints`. A cluster's nodes
    /// share it, and do not delete blobs from it.
    pub prefix: String,
    /// Whether `endpoint` may be plain HTTP (a server on loopback). Default false.
    pub allow_http: bool,
}

impl Default for ObjectStoreSection {
    fn default() -> Self {
        ObjectStoreSection {
            bucket: String::new(),
            endpoint: None,
            region: None,
            prefix: "soulbox/checkpoints".into(),
            allow_http: false,
        }
    }
}

/// Hours a paused sandbox is kept unless `storage.paused_lifetime_hours` says otherwise.
pub const DEFAULT_PAUSED_LIFETIME_HOURS: u64 = 7 * 24;
/// The longest `storage.paused_lifetime_hours` may be (90 days).
pub const MAX_PAUSED_LIFETIME_HOURS: u64 = 90 * 24;

/// MiB of checkpoints a tenant may keep unless `storage.snapshot_mb_per_tenant` says otherwise
/// (a paused plain Python sandbox takes about 1 MiB, a data-science one about 1.5).
pub const DEFAULT_SNAPSHOT_MB_PER_TENANT: u64 = 4096;

impl StorageSection {
    /// The bound on one tenant's checkpoints, in bytes.
    pub fn snapshot_bytes_per_tenant(&self) -> u64 {
        self.snapshot_mb_per_tenant.unwrap_or(DEFAULT_SNAPSHOT_MB_PER_TENANT).saturating_mul(1 << 20)
    }

    /// How long a paused sandbox is kept.
    pub fn paused_lifetime(&self) -> Duration {
        Duration::from_secs(self.paused_lifetime_hours.unwrap_or(DEFAULT_PAUSED_LIFETIME_HOURS) * 3600)
    }
}

/// `[resources]`: each value is both the default for a request that names none and the most
/// a request may ask for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourcesSection {
    /// CPU cores each container may use (fractions allowed; default 1). A WebAssembly guest
    /// is single-threaded: it never uses more than one core.
    pub cpu_cores: Option<f64>,
    /// Memory per execution, in MiB. Default: 512.
    pub memory_mb: Option<u64>,
    /// Wall-clock deadline per execution or cell, in seconds. Default: 30 (at most the request
    /// timeout).
    pub timeout_seconds: Option<u64>,
    /// A sandbox's lifetime, in hours. Default: 1; at most 24.
    pub total_timeout_hours: Option<f64>,
    /// Stdout and stderr kept per execution, in bytes each. Default: 1 MiB.
    pub output_bytes: Option<u64>,
    /// Disk each sandbox's workspace may hold, in MiB (a size-limited tmpfs per workspace,
    /// which needs SoulBox to run as root). Default: 1024 when SoulBox runs as root; otherwise
    /// none, and naming it refuses the start.
    pub disk_mb: Option<u64>,
    /// GPUs: SoulBox has none to give; only 0 is accepted.
    pub gpu_count: Option<u32>,
    /// GPU memory: only 0 is accepted.
    pub gpu_memory_mb: Option<u64>,
    /// `[resources.policy]`.
    pub policy: ResourcePolicy,
}

/// `[resources.policy]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourcePolicy {
    /// Guests never swap: only `false` is accepted.
    pub memory_swap: Option<bool>,
}

/// `[environment]`: `NAME = "value"`, `NAME = "$VAR"` (from SoulBox's environment) or
/// `NAME = "$SECRET_NAME"` (from the secrets file, else the environment). `$$` is a literal `$`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EnvironmentSection {
    /// `[environment.dynamic]`: per-sandbox values, `$SOULBOX_SANDBOX_ID`,
    /// `$SOULBOX_INSTANCE_ID` (the same id), `$SOULBOX_SANDBOX_URL`, `$SOULBOX_TENANT` or
    /// `$SOULBOX_TEMPLATE`.
    pub dynamic: std::collections::BTreeMap<String, String>,
    /// The static variables.
    #[serde(flatten)]
    pub vars: std::collections::BTreeMap<String, String>,
}

/// `[network]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSection {
    /// Whether a request or sandbox may ask for network access: a sandbox's container gets a
    /// network (`"network": true`), a WebAssembly guest HTTP under its network policy. Default
    /// false.
    pub allow_internet: Option<bool>,
    /// Whether a WebAssembly guest's network policy may allow the host's loopback (127.0.0.0/8,
    /// ::1); otherwise it is denied whatever the policy says. Default false. (Private and
    /// link-local ranges, the cloud metadata address among them, are always denied to tenants.)
    pub allow_localhost: Option<bool>,
}

/// `[packages]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PackagesSection {
    /// Whether requests and sandboxes may name Python packages to install (pure-Python wheels,
    /// resolved with the host's pip). Default false.
    pub enabled: Option<bool>,
    /// Resolve from this directory of wheels only, instead of pip's configured index.
    pub wheels_dir: Option<std::path::PathBuf>,
}

impl PackagesSection {
    /// Where packages come from: nowhere unless `enabled` (which defaults to
    /// `enabled_by_default`: true for a local user's `soulbox run` and `repl`, false for
    /// `soulbox serve`), else `wheels_dir` or pip's configuration.
    pub fn source(&self, enabled_by_default: bool) -> soulbox_runtimes_wasm::PackageSource {
        use soulbox_runtimes_wasm::PackageSource;
        match (self.enabled.unwrap_or(enabled_by_default), &self.wheels_dir) {
            (false, _) => PackageSource::Disabled,
            (true, Some(dir)) => PackageSource::Directory(dir.clone()),
            (true, None) => PackageSource::Pip,
        }
    }
}

/// `[security]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySection {
    /// Docker inside a sandbox: only `false` is accepted.
    pub allow_docker: Option<bool>,
    /// sudo inside a sandbox: only `false` is accepted.
    pub allow_sudo: Option<bool>,
    /// A read-only root: always the case for the interpreters' files; only `true` is accepted.
    pub read_only_root: Option<bool>,
    /// No privilege gain: always the case; only `true` is accepted.
    pub no_new_privileges: Option<bool>,
    /// A TOML file of `NAME = "value"` secrets for `$SECRET_NAME` values in `[environment]`.
    /// It must not be readable by other users.
    pub secrets_file: Option<PathBuf>,
    /// `[security.seccomp]`.
    pub seccomp: Seccomp,
}

/// `[security.seccomp]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Seccomp {
    /// Only `default` is accepted: WebAssembly guests make no system calls of their own.
    pub profile: Option<String>,
}

/// `[monitoring]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringSection {
    /// Serve `GET /metrics`. Default true.
    pub metrics_enabled: bool,
    /// Log each request. Default true.
    pub logs_enabled: bool,
    /// `tracing` spans per request and execution in the logs: always on; only `true` is
    /// accepted.
    pub traces_enabled: Option<bool>,
    /// `text` (default) or `json` log lines.
    pub log_format: LogFormat,
    /// The default log filter (`SOULBOX_LOG` overrides it). Default `info`.
    pub log_level: String,
    /// `[monitoring.sampling]`: every value must be 1.0 (everything is recorded).
    pub sampling: Sampling,
    /// The OTLP collector `soulbox serve` exports its traces to: its base URL (`http://` or
    /// `https://`, e.g. `http://127.0.0.1:4318`; traces go to `/v1/traces` under it, as
    /// HTTP/protobuf). Default none: no traces exported, unless OpenTelemetry's own
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` names one.
    pub otlp_endpoint: Option<String>,
}

impl Default for MonitoringSection {
    fn default() -> Self {
        MonitoringSection {
            metrics_enabled: true,
            logs_enabled: true,
            traces_enabled: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            sampling: Sampling::default(),
            otlp_endpoint: None,
        }
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[monitoring.sampling]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sampling {
    /// Fraction of metrics kept: only 1.0.
    pub metrics: Option<f64>,
    /// Fraction of logs kept: only 1.0.
    pub logs: Option<f64>,
    /// Fraction of traces kept: only 1.0.
    pub traces: Option<f64>,
}

/// Default memory per execution when `resources.memory_mb` is not set.
const DEFAULT_MEMORY_MB: u64 = 512;
/// Default deadline per execution when `resources.timeout_seconds` is not set.
const DEFAULT_TIMEOUT_SECONDS: u64 = 30;

impl Config {
    /// Checks ranges and the switches only one value of which SoulBox implements.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_server()?;
        self.validate_auth()?;
        self.validate_resources()?;
        self.validate_fixed_switches()?;
        self.validate_containers()?;
        if self.storage.object_store.as_ref().is_some_and(|store| store.bucket.trim().is_empty()) {
            return invalid("storage.object_store.bucket", "must name the bucket");
        }
        if self.storage.paused_lifetime_hours.is_some_and(|hours| !(1..=MAX_PAUSED_LIFETIME_HOURS).contains(&hours)) {
            return invalid("storage.paused_lifetime_hours", "must be between 1 and 2160 (90 days)");
        }
        if self.monitoring.log_level.trim().is_empty() {
            return invalid("monitoring.log_level", "must name a level such as `info`");
        }
        let plain_http = |url: &str| {
            (url.starts_with("http://") || url.starts_with("https://")) && url.parse::<axum::http::Uri>().is_ok()
        };
        if self.monitoring.otlp_endpoint.as_deref().is_some_and(|url| !plain_http(url)) {
            return invalid(
                "monitoring.otlp_endpoint",
                "must be an http:// or https:// URL, such as http://127.0.0.1:4318",
            );
        }
        self.validate_cluster()
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let cluster = &self.cluster;
        if !(1_000..=600_000).contains(&cluster.lease_ms) {
            return invalid("cluster.lease_ms", "must be between 1000 and 600000");
        }
        if cluster.node_id.as_deref().is_some_and(|id| !soulbox_engine::sandbox::is_plain_name(id)) {
            return invalid("cluster.node_id", "use 1-64 letters, digits, `-` or `_`");
        }
        if let Some(url) = &cluster.advertise_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return invalid("cluster.advertise_url", "must be an http:// or https:// URL");
        }
        if cluster.enabled && self.auth.dev {
            return invalid("cluster.enabled", "development mode (no API keys) serves one process; use API keys");
        }
        Ok(())
    }

    fn validate_server(&self) -> Result<(), ConfigError> {
        let server = &self.server;
        if !(1_000..=MAX_DEADLINE.as_millis() as u64 * 2).contains(&server.request_timeout_ms) {
            return invalid("server.request_timeout_ms", "must be between 1000 and 7200000");
        }
        if server.shutdown_timeout_ms > 3_600_000 {
            return invalid("server.shutdown_timeout_ms", "must be at most 3600000");
        }
        if server.workers.is_some_and(|n| !(1..=256).contains(&n)) {
            return invalid("server.workers", "must be between 1 and 256");
        }
        if server.queue.is_some_and(|n| n > 65_536) {
            return invalid("server.queue", "must be at most 65536");
        }
        if server.max_in_flight_requests == 0 {
            return invalid("server.max_in_flight_requests", "must be at least 1");
        }
        if !(1..=1_000_000).contains(&server.max_connections) {
            return invalid("server.max_connections", "must be between 1 and 1000000");
        }
        if !(100..=600_000).contains(&server.header_read_timeout_ms) {
            return invalid("server.header_read_timeout_ms", "must be between 100 and 600000");
        }
        if !(100..=3_600_000).contains(&server.keep_alive_timeout_ms) {
            return invalid("server.keep_alive_timeout_ms", "must be between 100 and 3600000");
        }
        if server.json_body_limit_bytes < 1024 {
            return invalid("server.json_body_limit_bytes", "must be at least 1024");
        }
        if server.upload_limit_bytes == 0 {
            return invalid("server.upload_limit_bytes", "must be at least 1");
        }
        if let Some(url) = &server.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return invalid("server.public_url", "must start with http:// or https://");
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        if auth.requests_per_second == 0 {
            return invalid("auth.requests_per_second", "must be at least 1");
        }
        if auth.burst == 0 {
            return invalid("auth.burst", "must be at least 1");
        }
        if auth.max_concurrent_executions == 0 {
            return invalid("auth.max_concurrent_executions", "must be at least 1");
        }
        if auth.max_sandboxes_per_tenant == 0 {
            return invalid("auth.max_sandboxes_per_tenant", "must be at least 1");
        }
        if !(0.0..=24.0 * 100_000.0).contains(&auth.sandbox_hours_per_day) {
            return invalid("auth.sandbox_hours_per_day", "must be between 0 (no budget) and 2400000");
        }
        Ok(())
    }

    fn validate_resources(&self) -> Result<(), ConfigError> {
        let resources = &self.resources;
        if let Some(cores) = resources.cpu_cores
            && !(cores > 0.0 && cores <= 1024.0)
        {
            return invalid("resources.cpu_cores", "must be more than 0 and at most 1024");
        }
        let max_mb = MAX_MEMORY_BYTES >> 20;
        if let Some(mb) = resources.memory_mb
            && !(16..=max_mb).contains(&mb)
        {
            return invalid("resources.memory_mb", &format!("must be between 16 and {max_mb}"));
        }
        if let Some(seconds) = resources.timeout_seconds {
            let most = self.deadline_ceiling().as_secs();
            if seconds == 0 || seconds > most {
                return invalid(
                    "resources.timeout_seconds",
                    &format!("must be between 1 and {most} (90% of the server's request timeout)"),
                );
            }
        }
        if resources.disk_mb.is_some_and(|mb| !(1..=1 << 20).contains(&mb)) {
            return invalid("resources.disk_mb", "must be between 1 and 1048576");
        }
        if let Some(hours) = resources.total_timeout_hours
            && !(hours > 0.0 && hours <= 24.0)
        {
            return invalid("resources.total_timeout_hours", "must be more than 0 and at most 24");
        }
        if let Some(bytes) = resources.output_bytes
            && !(1..=soulbox_engine::limits::MAX_OUTPUT_BYTES).contains(&bytes)
        {
            return invalid("resources.output_bytes", "must be between 1 and 67108864");
        }
        if resources.gpu_count.is_some_and(|n| n > 0) || resources.gpu_memory_mb.is_some_and(|n| n > 0) {
            return Err(ConfigError::Unsupported {
                key: "resources.gpu_count".into(),
                reason: "SoulBox has no GPUs to give; set 0 or leave it out",
            });
        }
        Ok(())
    }

    fn validate_containers(&self) -> Result<(), ConfigError> {
        let containers = &self.containers;
        if containers.image.trim().is_empty() {
            return invalid("containers.image", "must name an image");
        }
        if containers.pool_size > 64 {
            return invalid("containers.pool_size", "must be at most 64");
        }
        if !(64..=1 << 20).contains(&containers.sandbox_memory_mb) {
            return invalid("containers.sandbox_memory_mb", "must be between 64 and 1048576");
        }
        if !(16..=1 << 20).contains(&containers.pids_limit) {
            return invalid("containers.pids_limit", "must be between 16 and 1048576");
        }
        if !(1..=1 << 20).contains(&containers.tmp_mb) {
            return invalid("containers.tmp_mb", "must be between 1 and 1048576");
        }
        Ok(())
    }

    /// The container backend's configuration, or `None` when it is disabled.
    pub fn container_config(&self) -> Option<soulbox_fallback::ContainerConfig> {
        let section = &self.containers;
        section.enabled.then(|| soulbox_fallback::ContainerConfig {
            docker_host: section.docker_host.clone(),
            image: section.image.clone(),
            pool_size: section.pool_size,
            cpus: self.resources.cpu_cores.unwrap_or(1.0),
            machine_memory_bytes: section.sandbox_memory_mb << 20,
            pids_limit: section.pids_limit,
            tmp_bytes: section.tmp_mb << 20,
            allow_network: self.network.allow_internet.unwrap_or(false),
            fence_host: section.fence_host,
            ..soulbox_fallback::ContainerConfig::default()
        })
    }

    /// Switches whose only implemented value is SoulBox's fixed behaviour.
    fn validate_fixed_switches(&self) -> Result<(), ConfigError> {
        let fixed: [(&str, Option<bool>, bool, &'static str); 6] = [
            ("resources.policy.memory_swap", self.resources.policy.memory_swap, false, "guests never swap"),
            ("security.allow_docker", self.security.allow_docker, false, "sandboxes cannot run Docker"),
            ("security.allow_sudo", self.security.allow_sudo, false, "guests have no privileges to gain"),
            (
                "security.read_only_root",
                self.security.read_only_root,
                true,
                "guests' roots are always read-only (containers too; /workspace and /tmp are writable)",
            ),
            ("security.no_new_privileges", self.security.no_new_privileges, true, "guests never gain privileges"),
            (
                "monitoring.traces_enabled",
                self.monitoring.traces_enabled,
                true,
                "request and execution spans are always kept",
            ),
        ];
        for (key, value, only, reason) in fixed {
            if value.is_some_and(|v| v != only) {
                return Err(ConfigError::Unsupported { key: format!("{key} = {}", !only), reason });
            }
        }
        if self.security.seccomp.profile.as_deref().is_some_and(|p| p != "default") {
            return Err(ConfigError::Unsupported {
                key: "security.seccomp.profile".into(),
                reason: "only `default` is supported: WebAssembly guests make no system calls of their own and \
                         containers run under Docker's default profile",
            });
        }
        let sampling = &self.monitoring.sampling;
        for (key, value) in [
            ("monitoring.sampling.metrics", sampling.metrics),
            ("monitoring.sampling.logs", sampling.logs),
            ("monitoring.sampling.traces", sampling.traces),
        ] {
            if value.is_some_and(|v| v != 1.0) {
                return Err(ConfigError::Unsupported {
                    key: key.into(),
                    reason: "SoulBox records everything; only 1.0 is accepted",
                });
            }
        }
        Ok(())
    }

    /// Memory per execution in bytes: the default and the most a request may ask for.
    pub fn memory_bytes(&self) -> u64 {
        self.resources.memory_mb.unwrap_or(DEFAULT_MEMORY_MB) << 20
    }

    /// The default deadline of an execution or cell.
    pub fn default_deadline(&self) -> Duration {
        Duration::from_secs(self.resources.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS))
    }

    /// The longest deadline a request may ask for: `resources.timeout_seconds` when set, else
    /// [`Config::deadline_ceiling`].
    pub fn max_deadline(&self) -> Duration {
        match self.resources.timeout_seconds {
            Some(seconds) => Duration::from_secs(seconds),
            None => self.deadline_ceiling(),
        }
    }

    /// 90% of the request timeout (the rest is for queueing, restarting a context and sending
    /// the answer), and at most the engine's longest deadline: an execution that uses its whole
    /// deadline still answers before the request times out.
    pub fn deadline_ceiling(&self) -> Duration {
        (self.server.request_timeout() * 9 / 10).min(MAX_DEADLINE)
    }

    /// A sandbox's default lifetime, when `resources.total_timeout_hours` is set.
    pub fn sandbox_lifetime(&self) -> Option<Duration> {
        self.resources.total_timeout_hours.map(|h| Duration::from_secs_f64(h * 3600.0))
    }
}

fn invalid<T>(key: &'static str, message: &str) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid { key, message: message.to_owned() })
}

#[cfg(test)]
mod tests;

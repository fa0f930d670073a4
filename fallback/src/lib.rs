//! SoulBox's container backend: what WebAssembly cannot run (a shell, native compilers and
//! interpreters, subprocesses, terminals, a headless browser) in Docker containers driven
//! through the Docker Engine API (bollard), behind the engine's one `Backend` trait.
//!
//! - [`ContainerBackend`] implements `soulbox_engine::Backend`: one-shot executions in any
//!   language of the image ([`languages`]), machines (a sandbox's container,
//!   [`machine::DockerMachine`]) for processes and PTYs, and page rendering ([`browser`]).
//! - [`pool`]: started containers kept ready, each used once and destroyed.
//! - [`confinement`]: how every container is made (no network, non-root, no capabilities, no
//!   privilege gain, read-only root, capped memory/CPU/pids, labels) and how the workspace is
//!   shared with it.
//! - [`exec`]: processes in containers, under a wrapper that records their pid, gives them a
//!   process group and enforces their deadline inside the container.
//! - [`agent`]: a process inside a sandbox's container that starts its processes for it, a
//!   message each instead of a `docker exec` each.
//! - [`docker`]: the engine connection (`DOCKER_HOST` honoured, API version negotiated),
//!   retries with backoff and a circuit breaker ([`breaker`]); a dead engine makes container
//!   requests fail fast with "container backend unavailable" while WebAssembly keeps working.
//! - [`egress`]: the proxy that is a networked container's only way out, applying its
//!   sandbox's network policy.
//! - [`janitor`]: removes containers and workspaces that SoulBox processes which died left.
//!
//! Invariants: every container carries the `soulbox.managed` label and is removed when its
//! use ends (one-shot: after the run; machine: with its sandbox; all of an instance: on
//! [`ContainerBackend::shutdown`]); no container serves two tenants; the engine must run on
//! this host, since workspaces are bind mounts.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod agent;
mod backend;
pub mod breaker;
pub mod browser;
pub mod cgroup;
pub mod config;
pub mod confinement;
mod containers;
pub mod docker;
pub mod egress;
pub mod error;
pub mod exec;
pub mod host_fence;
pub mod janitor;
pub mod languages;
pub mod machine;
pub mod oneshot;
pub mod pool;

pub use backend::{ContainerBackend, DEFAULT_MAX_RUNNING};
pub use config::ContainerConfig;
pub use containers::Containers;
pub use error::ContainerError;

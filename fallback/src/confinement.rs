//! How every SoulBox container is made: the confinement is not optional.
//!
//! No network (unless a sandbox asked and the service allows it), a non-root user, every
//! capability dropped, no privilege gain, a read-only root with the workspace writable at
//! [`MACHINE_WORKSPACE`] and a size-capped `/tmp`, memory (without swap), CPU and process
//! limits, and an init (`--init`) that reaps orphans. Each container carries
//! [`labels`](Labels): `soulbox.managed`, the owning process and instance, and its purpose, so
//! leftovers can be found and removed.

/// The CFS period of a container's CPU quota, in microseconds (Docker's default is 100 ms).
pub const CPU_PERIOD_US: i64 = 10_000;

use crate::config::{CONTAINER_UID, ContainerConfig};
use bollard::models::{ContainerCreateBody, HostConfig};
use soulbox_engine::process::MACHINE_WORKSPACE;
use std::collections::HashMap;
use std::path::Path;

/// The network of containers allowed network access: an `internal` bridge (no route beyond
/// the host) without traffic between its containers (`enable_icc=false`), so one tenant's
/// container cannot reach another's, and the only way out is the egress proxy on its gateway
/// ([`crate::egress`]).
pub const EGRESS_NETWORK: &str = "soulbox-egress";
/// The resolver a container with network is given: nothing answers there, so names are
/// resolved by the egress proxy only (no lookups leaving through Docker's resolver).
pub const NO_RESOLVER: &str = "127.0.0.1";

/// The label every SoulBox container carries.
pub const MANAGED_LABEL: &str = "soulbox.managed";
/// The label naming the host process that made the container (`hostname:pid`).
pub const OWNER_LABEL: &str = "soulbox.owner";
/// The label naming the backend instance that made it.
pub const INSTANCE_LABEL: &str = "soulbox.instance";
/// The label naming what it is for (`pool`, or `sandbox:<id>`).
pub const PURPOSE_LABEL: &str = "soulbox.purpose";

/// Who made a container.
#[derive(Debug, Clone)]
pub struct Labels {
    /// `hostname:pid` of this process.
    pub owner: String,
    /// This backend's instance id.
    pub instance: String,
}

impl Labels {
    /// Labels for this process and instance.
    pub fn for_this_process(instance: String) -> Self {
        Labels { owner: format!("{}:{}", hostname(), std::process::id()), instance }
    }

    fn with_purpose(&self, purpose: &str) -> HashMap<String, String> {
        HashMap::from([
            (MANAGED_LABEL.to_owned(), "true".to_owned()),
            (OWNER_LABEL.to_owned(), self.owner.clone()),
            (INSTANCE_LABEL.to_owned(), self.instance.clone()),
            (PURPOSE_LABEL.to_owned(), purpose.to_owned()),
        ])
    }
}

/// The host's name (for owner labels).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".into())
}

/// One container to make.
#[derive(Debug)]
pub struct ContainerSpec<'a> {
    /// The host directory mounted at [`MACHINE_WORKSPACE`].
    pub workspace: &'a Path,
    /// Memory cap (and memory plus swap: no swap).
    pub memory_bytes: u64,
    /// Network access.
    pub network: bool,
    /// Environment variables of the container (every process sees them).
    pub env: Vec<String>,
    /// `pool` or `sandbox:<id>`.
    pub purpose: &'a str,
    /// Run [`ONE_SHOT_AGENT`] as the main process, its stdin open for one attached client
    /// (pooled containers), instead of idling for `docker exec`s (sandbox containers).
    pub agent: bool,
}

/// The main process of a pooled container (bash): it waits for a line `<nonce> <length>
/// <deadline in seconds>` on its stdin, then `<length>` bytes of shell script; runs the script
/// in a subshell of its own process group (which reads the rest of stdin), with a timer that
/// kills that whole group at the deadline (a fork bomb included: its processes stay in the
/// group); then writes `\n<nonce> <exit status>\n` on stdout and stderr. So a one-shot run is
/// one write to an attachment made in advance, starts no process before the program's own,
/// and ends when the marker arrives: no `docker exec`, no waiting for the container to stop
/// (each costs tens of milliseconds in the container runtime). The timer dies with the rest
/// and is reaped with stderr discarded, so bash's "Killed" notice never reaches the program's
/// output.
pub const ONE_SHOT_AGENT: &str = r#"export LC_ALL=C
read -r nonce length deadline || exit 125
read -r -N "$length" script || exit 125
set -m
( set +m; unset LC_ALL; eval "$script" ) &
child=$!
( sleep "$deadline"; kill -KILL -- "-$child" ) 2>/dev/null &
timer=$!
set +m
wait "$child"
status=$?
disown -a
kill -KILL -1 2>/dev/null
tries=0
while [ "$tries" -lt 100000 ]; do
  others=
  for p in /proc/[0-9]*; do case ${p#/proc/} in 1|$$) ;; *) others=1; break;; esac; done
  [ -z "$others" ] && break
  kill -KILL -1 2>/dev/null
  tries=$((tries + 1))
done
printf '\n%s %s\n' "$nonce" "$status"
printf '\n%s %s\n' "$nonce" "$status" >&2"#;

/// The user containers run as: this process's own (non-root) user, or [`CONTAINER_UID`] when it
/// runs as root (a uid no host account has: see [`check_container_uid`]).
pub fn container_user() -> (u32, u32) {
    let (uid, gid) = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
    if uid == 0 { (CONTAINER_UID, CONTAINER_UID) } else { (uid, gid) }
}

/// Refuses to run containers as root's stand-in uid when a host account has it: files a
/// container writes in a workspace are that uid's, and must belong to nobody on the host.
/// Reads `passwd` (the host's `/etc/passwd`).
pub fn check_container_uid(passwd: &str) -> Result<(), String> {
    let (uid, _) = container_user();
    if uid != CONTAINER_UID {
        return Ok(());
    }
    for line in passwd.lines() {
        let mut fields = line.split(':');
        let (name, uid_field) = (fields.next(), fields.nth(1));
        if uid_field.and_then(|u| u.parse::<u32>().ok()) == Some(CONTAINER_UID) {
            let name = name.unwrap_or_default();
            return Err(format!(
                "host account `{name}` has uid {CONTAINER_UID}, the uid SoulBox's containers run as; \
                 it would own every file containers write: remove or renumber that account"
            ));
        }
    }
    Ok(())
}

/// The create request for `spec`.
pub fn create_body(config: &ContainerConfig, labels: &Labels, spec: &ContainerSpec<'_>) -> ContainerCreateBody {
    let (uid, gid) = container_user();
    let memory = i64::try_from(spec.memory_bytes).unwrap_or(i64::MAX);
    let tmp = format!("rw,exec,nosuid,nodev,size={},mode=1777", config.tmp_bytes);
    ContainerCreateBody {
        image: Some(config.image.clone()),
        cmd: Some(match spec.agent {
            true => vec!["bash".into(), "-c".into(), ONE_SHOT_AGENT.into()],
            false => vec!["sleep".into(), "infinity".into()],
        }),
        open_stdin: Some(spec.agent),
        stdin_once: Some(spec.agent),
        attach_stdin: Some(spec.agent),
        attach_stdout: Some(spec.agent),
        attach_stderr: Some(spec.agent),
        user: Some(format!("{uid}:{gid}")),
        working_dir: Some(MACHINE_WORKSPACE.into()),
        env: Some(spec.env.clone()),
        labels: Some(labels.with_purpose(spec.purpose)),
        network_disabled: Some(!spec.network),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{}:{MACHINE_WORKSPACE}:rw", spec.workspace.display())]),
            network_mode: Some(if spec.network { EGRESS_NETWORK } else { "none" }.into()),
            dns: spec.network.then(|| vec![NO_RESOLVER.to_owned()]),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([("/tmp".to_owned(), tmp)])),
            memory: Some(memory),
            memory_swap: Some(memory),
            // The CPU limit as a quota per CPU_PERIOD_US: the same average as `--cpus`, but a
            // multi-process burst (a browser loading a page) that spends its quota early waits
            // at most a short period for the next, not Docker's default 100 ms.
            cpu_period: Some(CPU_PERIOD_US),
            cpu_quota: Some((config.cpus * CPU_PERIOD_US as f64) as i64),
            pids_limit: Some(config.pids_limit),
            init: Some(true),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

/// Gives the entries of `dir` (a workspace) to the containers' user, so a process in a
/// container may change what the host (a WebAssembly context, an upload) wrote. Only when
/// SoulBox runs as root. Race-safe against a container swapping a directory for a link while
/// it runs: it descends only through directory handles opened without following links, and
/// changes ownership relative to them without following links. Bounded by
/// [`MAX_CHOWN_ENTRIES`] entries and [`MAX_CHOWN_DEPTH`] levels. Blocking: call it off the
/// async runtime's threads.
pub fn share_with_containers(dir: &Path) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let (uid, gid) = container_user();
    let owner = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid));
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let root = rustix::fs::open(dir, flags, Mode::empty())?;
    if rustix::fs::fstat(&root)?.st_uid != uid {
        rustix::fs::fchown(&root, Some(owner.0), Some(owner.1))?;
    }
    let mut seen = 0;
    share_below(&root, owner, 0, &mut seen)
}

/// Entries [`share_with_containers`] looks at, at most.
pub const MAX_CHOWN_ENTRIES: usize = 100_000;
/// Directory levels [`share_with_containers`] descends, at most.
pub const MAX_CHOWN_DEPTH: usize = 64;

fn share_below(
    dir: &rustix::fd::OwnedFd,
    owner: (rustix::fs::Uid, rustix::fs::Gid),
    depth: usize,
    seen: &mut usize,
) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    if depth >= MAX_CHOWN_DEPTH {
        return Ok(());
    }
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        *seen += 1;
        if *seen > MAX_CHOWN_ENTRIES {
            return Ok(());
        }
        let Ok(stat) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else { continue };
        if stat.st_uid != owner.0.as_raw() {
            // Gone or swapped since it was listed: skip it, the next walk sees it again.
            let _ = rustix::fs::chownat(dir, name, Some(owner.0), Some(owner.1), AtFlags::SYMLINK_NOFOLLOW);
        }
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            if let Ok(child) = rustix::fs::openat(dir, name, flags, Mode::empty()) {
                share_below(&child, owner, depth + 1, seen)?;
            }
        }
    }
    Ok(())
}

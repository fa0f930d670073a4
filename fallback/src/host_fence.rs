//! The host fence: sandbox containers may reach the egress proxy on the host, nothing else there.
//!
//! A container on [`EGRESS_NETWORK`](crate::confinement::EGRESS_NETWORK) reaches its bridge's
//! gateway address, which is the host's: without a fence, every host service listening on all
//! addresses (a database, SoulBox's own API, an SSH daemon) answers it, whatever its sandbox's
//! network policy says. The fence is an iptables chain, [`CHAIN`], which `INPUT` jumps to for
//! packets arriving on the bridge. It accepts replies to connections the host opened, TCP to each
//! running egress proxy's port on the gateway, and drops everything else.
//!
//! Each proxy adds its own port's rule ([`HostFence::raise`], tagged with the comment [`TAG`])
//! and removes it when dropped; a rule left by a process that died without dropping it (its
//! port no longer listened on) is removed by the next raise. The jump, the replies' rule and the
//! final drop are shared by every SoulBox process on the host and stay (each is added only when
//! `iptables -C` does not find it, so raising is idempotent; two processes racing may add one
//! twice, which changes nothing). A process with the fence turned off still opens its proxy's
//! port when it finds the chain ([`HostFence::open_if_fenced`]), so a fence another process
//! raised does not cut it off. To take the fence down: `iptables -D INPUT -i <bridge> -j
//! SOULBOX-EGRESS-IN; iptables -F SOULBOX-EGRESS-IN; iptables -X SOULBOX-EGRESS-IN`. A firewall
//! reload that flushes the tables (firewalld, ufw, `iptables-restore`) takes it down too: the
//! next SoulBox process raises it again. iptables waits for its lock
//! (`-w`), so processes raising fences at once do not fail. Where iptables cannot be run (not
//! root, not installed), raising fails with what iptables said: a networked container is then
//! refused, not started unfenced, unless the operator turned the fence off
//! (`ContainerConfig::fence_host`) because a firewall of their own does the same.

use std::net::IpAddr;
use std::process::Command;

/// The chain every fenced bridge's incoming packets go through.
pub const CHAIN: &str = "SOULBOX-EGRESS-IN";
/// The comment on every proxy's opening, which tells them from the shared rules.
pub const TAG: &str = "soulbox-egress-proxy";
/// Seconds iptables waits for another process's lock on the tables.
const LOCK_WAIT_SECONDS: &str = "10";

/// Why the fence could not be raised.
#[derive(Debug, thiserror::Error)]
#[error(
    "could not fence the host off from sandbox containers: `iptables {command}` failed: {message}. SoulBox needs root (CAP_NET_ADMIN) and iptables for networked containers, or `containers.fence_host = false` with a firewall of your own that keeps the `soulbox-egress` bridge from the host's services"
)]
pub struct FenceError {
    /// The iptables arguments that failed.
    pub command: String,
    /// What iptables said, or why it could not run.
    pub message: String,
}

/// One egress proxy's opening in the fence; dropping it closes the opening.
#[derive(Debug)]
pub struct HostFence {
    opening: Vec<String>,
}

impl HostFence {
    /// Fences the host off from packets arriving on `bridge` (a Linux interface name), except
    /// TCP to `gateway:port`, the egress proxy's address. Blocking: a few iptables runs.
    pub fn raise(bridge: &str, gateway: IpAddr, port: u16) -> Result<HostFence, FenceError> {
        if !exists(&["-S", CHAIN]) {
            // Another process may make it meanwhile: then `-N` fails and the chain is there.
            run(&["-N", CHAIN]).or_else(|failed| if exists(&["-S", CHAIN]) { Ok(()) } else { Err(failed) })?;
        }
        ensure(&["INPUT", "-i", bridge, "-j", CHAIN], Placement::First)?;
        ensure(&[CHAIN, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"], Placement::First)?;
        ensure(&[CHAIN, "-j", "DROP"], Placement::Last)?;
        remove_dead_openings();
        let fence = open(gateway, port)?;
        tracing::info!(%bridge, %gateway, port, "host fenced off from sandbox containers but for the egress proxy");
        Ok(fence)
    }

    /// For a process with the fence turned off: opens its proxy's port in a fence another
    /// process raised, if there is one (a fence it cannot see or change is logged, not an error).
    pub fn open_if_fenced(gateway: IpAddr, port: u16) -> Option<HostFence> {
        if !exists(&["-S", CHAIN]) {
            return None;
        }
        open(gateway, port).inspect_err(|error| tracing::warn!(%error, "could not open the host fence")).ok()
    }
}

/// Inserts the opening for the proxy at `gateway:port`.
fn open(gateway: IpAddr, port: u16) -> Result<HostFence, FenceError> {
    let opening = opening(gateway, port);
    let rule: Vec<&str> = opening.iter().map(String::as_str).collect();
    run(&[&["-I", CHAIN, "1"], &rule[1..]].concat())?;
    Ok(HostFence { opening })
}

/// Removes the openings whose port nothing listens on any more (their process died without
/// closing them): where a bind to the port succeeds, no proxy holds it.
fn remove_dead_openings() {
    let Ok(listed) = iptables(&["-S", CHAIN]) else { return };
    for line in String::from_utf8_lossy(&listed.stdout).lines().filter(|line| line.contains(TAG)) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |flag: &str| words.iter().position(|w| *w == flag).and_then(|i| words.get(i + 1));
        let address = after("-d").and_then(|d| d.split('/').next()?.parse::<IpAddr>().ok());
        let port = after("--dport").and_then(|p| p.parse::<u16>().ok());
        let (Some(address), Some(port)) = (address, port) else { continue };
        if std::net::TcpListener::bind((address, port)).is_ok() && words.first() == Some(&"-A") {
            let removed = run(&[&["-D"], &words[1..]].concat());
            tracing::info!(%address, port, ok = removed.is_ok(), "removed a dead egress proxy's opening in the host fence");
        }
    }
}

impl Drop for HostFence {
    fn drop(&mut self) {
        let rule: Vec<&str> = self.opening.iter().map(String::as_str).collect();
        if let Err(error) = run(&[&["-D"], &rule[..]].concat()) {
            tracing::warn!(%error, "could not close the egress proxy's opening in the host fence");
        }
    }
}

/// Where a shared rule goes when it is missing.
enum Placement {
    First,
    Last,
}

/// The rule (chain first) that lets TCP through to the proxy at `gateway:port`.
fn opening(gateway: IpAddr, port: u16) -> Vec<String> {
    let (gateway, port) = (gateway.to_string(), port.to_string());
    [CHAIN, "-p", "tcp", "-d", &gateway, "--dport", &port, "-m", "comment", "--comment", TAG, "-j", "ACCEPT"]
        .map(str::to_owned)
        .to_vec()
}

/// Adds `rule` (chain first) where `placement` says unless iptables finds it already.
fn ensure(rule: &[&str], placement: Placement) -> Result<(), FenceError> {
    if exists(&[&["-C"], rule].concat()) {
        return Ok(());
    }
    match placement {
        Placement::First => run(&[&["-I", rule[0], "1"], &rule[1..]].concat()),
        Placement::Last => run(&[&["-A"], rule].concat()),
    }
}

/// Whether an iptables check (`-C`, `-L`) succeeds.
fn exists(args: &[&str]) -> bool {
    iptables(args).is_ok_and(|output| output.status.success())
}

/// Runs iptables with `args`; an error says what it printed.
fn run(args: &[&str]) -> Result<(), FenceError> {
    let output = iptables(args).map_err(|e| error(args, e.to_string()))?;
    match output.status.success() {
        true => Ok(()),
        false => Err(error(args, String::from_utf8_lossy(&output.stderr).trim().to_owned())),
    }
}

fn iptables(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("iptables").args(["-w", LOCK_WAIT_SECONDS]).args(args).output()
}

fn error(args: &[&str], message: String) -> FenceError {
    FenceError { command: args.join(" "), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opening_is_tcp_to_the_proxy_alone() {
        let rule = opening("172.18.0.1".parse().unwrap(), 41234).join(" ");
        assert_eq!(
            rule,
            "SOULBOX-EGRESS-IN -p tcp -d 172.18.0.1 --dport 41234 -m comment --comment soulbox-egress-proxy -j ACCEPT"
        );
    }
}

//! Keys of the product's original `soulbox.toml` spec that SoulBox does not implement.
//!
//! They are refused with the reason and what to do instead, never ignored: a configuration
//! that asks for a firewall rule or a GPU must not start a server without it. Keys nobody ever
//! specified are refused by the typed parse instead (`deny_unknown_fields`).

use super::ConfigError;
use toml::Table;

/// Spec keys SoulBox refuses, with why.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("project", "SoulBox is configured per server, not per project; remove the section"),
    (
        "template",
        "custom images are not built from soulbox.toml; sandboxes use the built-in templates \
         (python, data-science, javascript) named when a sandbox is created",
    ),
    ("runtime", "the interpreters are pinned by SoulBox (`soulbox runtimes fetch`); versions cannot be chosen"),
    ("commands", "lifecycle commands and hooks are not run; call the API to run code in a sandbox"),
    ("scaling", "autoscaling is the orchestrator's (a Kubernetes HPA); run several servers as one with `[cluster]`"),
    ("metadata", "give metadata per sandbox when creating it (`metadata` in the request)"),
    ("features", "GPU, Jupyter, SSH and VNC access are not available"),
    ("resources.policy.cpu_burst", "CPU bursting is not configurable"),
    ("resources.policy.disk_quota_hard", "the workspace quota (`resources.disk_mb`) is always hard; remove the key"),
    ("network.ports", "sandboxes expose no ports"),
    ("network.domains", "sandboxes have no domains; put SoulBox behind your own reverse proxy for TLS"),
    ("network.firewall", "there is no per-sandbox firewall: containers have no network unless allowed"),
    (
        "security.user",
        "containers run as SoulBox's own user, or uid 1700000000 (no host account) when SoulBox runs as root",
    ),
    ("security.seccomp.custom_profile", "custom seccomp profiles are not supported"),
    ("storage.volumes", "sandboxes have one workspace each; persistent or shared volumes are not available"),
    ("storage.backup", "SoulBox does not back up; back up the database and workspace root yourself"),
];

/// Refuses the first unsupported key present in `table`.
pub fn check(table: &Table) -> Result<(), ConfigError> {
    for (key, reason) in UNSUPPORTED {
        if lookup(table, key) {
            return Err(ConfigError::Unsupported { key: (*key).to_owned(), reason });
        }
    }
    Ok(())
}

/// Whether the dotted `key` is present.
fn lookup(table: &Table, key: &str) -> bool {
    let mut at = table;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        match at.get(part) {
            None => return false,
            Some(_) if parts.peek().is_none() => return true,
            Some(toml::Value::Table(inner)) => at = inner,
            Some(_) => return false,
        }
    }
    false
}

//! Cleaning up after SoulBox processes that died: their containers (found by label) and the
//! workspaces of their pooled containers (named after their pid).
//!
//! A container is another process's leftover when its owner label names this host and a pid
//! that no longer runs. Containers of live SoulBox processes, and of other hosts sharing the
//! engine, are left alone.

use crate::confinement::{OWNER_LABEL, hostname};
use crate::containers::Containers;
use std::path::Path;

/// Removes leftovers; returns how many containers it removed.
pub async fn sweep(containers: &Containers) -> usize {
    let host = hostname();
    let listed = match containers.list(&[]).await {
        Ok(listed) => listed,
        Err(error) => {
            tracing::debug!(%error, "could not look for leftover containers");
            return 0;
        }
    };
    let mut removed = 0;
    for (id, labels) in listed {
        let Some((owner_host, pid)) = labels.get(OWNER_LABEL).and_then(|o| o.rsplit_once(':')) else { continue };
        if owner_host == host && pid.parse().is_ok_and(|pid: u32| !alive(pid)) {
            containers.remove(&id).await;
            removed += 1;
        }
    }
    sweep_workspaces(&containers.config.state_dir);
    if removed > 0 {
        tracing::info!(removed, "removed containers left by SoulBox processes that died");
    }
    removed
}

/// Removes pooled workspaces (`<pid>-...`) of processes that no longer run.
fn sweep_workspaces(state_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(state_dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether a process with this pid runs on this host.
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

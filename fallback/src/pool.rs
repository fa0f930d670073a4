//! [`WarmPool`]: started containers kept ready, so a one-shot command starts in milliseconds.
//!
//! Each pooled container has a fresh workspace directory of its own on the host (in the state
//! directory, named after this process so the janitor can sweep the leftovers of a process
//! that died). A container serves exactly one execution, for one tenant, and is destroyed
//! after it: nothing a run leaves behind can reach another. Taking one wakes the refill task,
//! which starts replacements in the background, one at a time, up to the pool's size; when the
//! pool is empty (or sized 0) a container is started on the spot.

use crate::confinement::{ContainerSpec, share_with_containers};
use crate::containers::{Containers, Session};
use crate::error::ContainerError;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

/// The memory a pooled container starts with (a request asking otherwise is resized).
pub const POOL_MEMORY_BYTES: u64 = soulbox_engine::limits::DEFAULT_MEMORY_BYTES;
/// How long shutdown waits for removals in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the refill task waits before trying again after the engine failed it.
const REFILL_RETRY: Duration = Duration::from_secs(2);

/// A started container with its own workspace, used once: dropping the slot destroys both
/// (in the background), however the run ended, even when its caller gave up midway.
#[derive(Debug)]
pub struct Slot {
    /// The container's id.
    pub id: String,
    /// Its workspace on the host (mounted at `/workspace`).
    pub dir: PathBuf,
    /// Its memory cap now.
    pub memory_bytes: u64,
    /// The attachment to its agent (taken by the run; behind a lock so a slot is `Sync`).
    pub session: Mutex<Option<Session>>,
    /// Who destroys it.
    reaper: Reaper,
}

/// What a slot needs to destroy itself.
#[derive(Debug, Clone)]
struct Reaper {
    containers: Arc<Containers>,
    tasks: TaskTracker,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (id, dir) = (std::mem::take(&mut self.id), std::mem::take(&mut self.dir));
        let containers = Arc::clone(&self.reaper.containers);
        // Outside a runtime (the process is ending) the janitor of the next start removes it.
        if tokio::runtime::Handle::try_current().is_ok() {
            self.reaper.tasks.spawn(async move { destroy(&containers, &id, dir).await });
        }
    }
}

/// The pool. Shared behind an `Arc`; its refill task stops when the last `Arc` drops.
#[derive(Debug)]
pub struct WarmPool {
    containers: Arc<Containers>,
    size: usize,
    ready: Mutex<VecDeque<Slot>>,
    /// Wakes the refill task (also when the pool drops, so the task sees it gone and ends).
    wake: Arc<Notify>,
    /// Set by [`WarmPool::drain`]: no more refills.
    closed: AtomicBool,
    /// The refill task and background removals, waited for by [`WarmPool::drain`].
    tasks: TaskTracker,
}

impl Drop for WarmPool {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

impl WarmPool {
    /// A pool of `size` containers, filled in the background.
    pub fn start(containers: Arc<Containers>, size: usize) -> Arc<Self> {
        let wake = Arc::new(Notify::new());
        let pool = Arc::new(WarmPool {
            containers,
            size,
            ready: Mutex::default(),
            wake: Arc::clone(&wake),
            closed: AtomicBool::new(false),
            tasks: TaskTracker::new(),
        });
        if size > 0 {
            pool.tasks.spawn(refill(Arc::downgrade(&pool), wake));
        }
        pool
    }

    /// A ready container, or a new one when none is ready.
    pub async fn take(&self) -> Result<Slot, ContainerError> {
        let ready = self.ready.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
        self.wake.notify_one();
        match ready {
            Some(slot) => Ok(slot),
            None => self.new_slot().await,
        }
    }

    /// Containers ready now.
    pub fn ready(&self) -> usize {
        self.ready.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Stops refilling, destroys the ready containers and waits for removals in flight (at
    /// shutdown).
    pub async fn drain(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        drop(self.ready.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect::<Vec<Slot>>());
        self.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.tasks.wait()).await.is_err() {
            tracing::warn!("container removals still running at shutdown; the janitor will finish them");
        }
    }

    async fn new_slot(&self) -> Result<Slot, ContainerError> {
        let dir = slot_dir(&self.containers.config.state_dir)?;
        share_with_containers(&dir).map_err(|e| ContainerError::io("sharing a workspace", e))?;
        let spec = ContainerSpec {
            workspace: &dir,
            memory_bytes: POOL_MEMORY_BYTES,
            network: false,
            env: vec![],
            purpose: "pool",
            agent: true,
        };
        let started = async {
            let id = self.containers.start(&spec).await?;
            match self.containers.attach(&id).await {
                Ok(session) => Ok((id, session)),
                Err(error) => {
                    self.containers.remove(&id).await;
                    Err(error)
                }
            }
        };
        match started.await {
            Ok((id, session)) => {
                let reaper = Reaper { containers: Arc::clone(&self.containers), tasks: self.tasks.clone() };
                Ok(Slot { id, dir, memory_bytes: POOL_MEMORY_BYTES, session: Mutex::new(Some(session)), reaper })
            }
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(error)
            }
        }
    }
}

/// Keeps the pool full while it lives (holding it only while it works).
async fn refill(pool: Weak<WarmPool>, wake: Arc<Notify>) {
    loop {
        let full = {
            let Some(pool) = pool.upgrade() else { return };
            if pool.closed.load(Ordering::SeqCst) {
                return;
            }
            while pool.ready() < pool.size && !pool.closed.load(Ordering::SeqCst) {
                match pool.new_slot().await {
                    Ok(slot) if pool.closed.load(Ordering::SeqCst) => drop(slot),
                    Ok(slot) => pool.ready.lock().unwrap_or_else(|e| e.into_inner()).push_back(slot),
                    Err(error) => {
                        tracing::debug!(%error, "could not refill the container pool");
                        break;
                    }
                }
            }
            pool.ready() >= pool.size || pool.closed.load(Ordering::SeqCst)
        };
        if full {
            wake.notified().await;
        } else {
            tokio::time::sleep(REFILL_RETRY).await;
        }
    }
}

async fn destroy(containers: &Containers, id: &str, dir: PathBuf) {
    containers.remove(id).await;
    let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err((error, dir)),
        _ => Ok(()),
    });
    if let Ok(Err((error, dir))) = removed.await {
        tracing::warn!(%error, dir = %dir.display(), "could not remove a container workspace");
    }
}

/// A new, empty workspace directory in `state_dir`, named `<pid>-<random>`.
/// Both private to the server (0700; the container's user is given the workspace itself).
fn slot_dir(state_dir: &Path) -> Result<PathBuf, ContainerError> {
    use std::os::unix::fs::PermissionsExt;
    soulbox_engine::sandbox::prepare_workspace_root(state_dir)
        .map_err(|e| ContainerError::io("making the state directory", e))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(soulbox_engine::sandbox::PRIVATE_DIR_MODE))
        .tempdir_in(state_dir)
        .map_err(|e| ContainerError::io("making a container workspace", e))?;
    Ok(dir.keep())
}

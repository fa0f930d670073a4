//! Forks: one sandbox cloned into independent sandboxes ([`Sandboxes::fork`]).
//!
//! A fork is made from checkpoints. Every context of the source is captured once (a live
//! context after the cell it runs, if any; a paused one's checkpoint is read from the store);
//! then, for each fork, the workspace is copied and every context restored from the same
//! captures and given fresh entropy ([`crate::kernel::Kernel::diverge`]), so that forks draw
//! different random numbers. Afterwards a fork shares nothing with its source or its
//! siblings: its own id, workspace, kernels and stop signal; the same owner, template,
//! metadata, environment, network setting and timeouts. Processes are not forked: a fork
//! starts with none, like a resumed sandbox.
//!
//! All or nothing: the places for every fork are reserved (within the registry's bound and
//! the owner's quota) before any work, and if one fork fails, those made before it are
//! removed and the error returned.

use super::context::{Context, ContextCopy};
use super::{Clock, Identity, Registry, Sandbox, SandboxError, Sandboxes, Unopened, Workspace, new_sandbox_id};
use crate::language::Language;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tracing::Instrument;

/// The most forks one call may make.
pub const MAX_FORKS: usize = 100;

/// What every fork of one source (a sandbox, or a saved template) starts from.
pub(super) struct Source {
    /// What the forks share of their identity (each gets its own id and creation time).
    pub identity: Identity,
    pub idle_timeout: std::time::Duration,
    pub ends_at: Instant,
    pub contexts: Vec<ContextCopy>,
    pub defaults: Vec<(Language, String)>,
}

impl Sandboxes {
    /// Clones `source` (live or paused) into `count` new, independent sandboxes of the same
    /// owner, template, metadata, environment and timeouts: every context restored from a
    /// checkpoint of the source's and reseeded, the workspace copied, no processes. `count` is
    /// 1 to [`MAX_FORKS`]; places for all of them are reserved first (all or none). A context
    /// that cannot be checkpointed (it holds an open file) fails the fork with an error naming
    /// why.
    pub async fn fork(&self, source: &Sandbox, count: usize) -> Result<Vec<Sandbox>, SandboxError> {
        if !(1..=MAX_FORKS).contains(&count) {
            return Err(SandboxError::Invalid(format!("a fork makes 1 to {MAX_FORKS} sandboxes, not {count}")));
        }
        let _active = source.shared.begin()?;
        source.shared.check_snapshot_room()?;
        let reservation = self.reserve(source.owner(), None, count)?;
        let span = tracing::info_span!("sandbox_fork", sandbox = %source.id(), count);
        let forks = async {
            let mut from = source.fork_source().await?;
            if count > 1 {
                // Every fork restores the same images: a backend may back them with one copy.
                for copy in &mut from.contexts {
                    copy.image = copy.image.take().map(crate::kernel::KernelImage::into_shared);
                }
            }
            // Forks made so far are shut if a later one fails (or the caller gives up).
            let mut forks: Vec<Unopened> = Vec::with_capacity(count);
            for _ in 0..count {
                let identity =
                    Identity { id: new_sandbox_id(), created_at: SystemTime::now(), ..from.identity.clone() };
                forks.push(self.fork_one(&source.shared.workspace, &from, identity).await?);
            }
            Ok::<_, SandboxError>(forks)
        }
        .instrument(span)
        .await?;
        let forks: Vec<Sandbox> = {
            let mut open = self.registry.open.lock().unwrap_or_else(|e| e.into_inner());
            forks
                .into_iter()
                .map(|fork| {
                    let fork = fork.opened();
                    open.by_id.insert(fork.id().to_owned(), fork.clone());
                    fork
                })
                .collect()
        };
        drop(reservation);
        for fork in &forks {
            fork.shared.record(Vec::new()).await;
        }
        tracing::info!(sandbox = %source.id(), count, "sandbox forked");
        Ok(forks)
    }

    /// A sandbox `identity` made from `from`, with a copy of `files` (not yet in the registry:
    /// dropped, it is shut).
    pub(super) async fn fork_one(
        &self,
        files: &Workspace,
        from: &Source,
        identity: Identity,
    ) -> Result<Unopened, SandboxError> {
        let workspace = self.registry.new_workspace()?;
        let clock = Clock {
            idle_timeout: from.idle_timeout,
            ends_at: from.ends_at,
            lifetime_left: None,
            last_active: Instant::now(),
            busy: 0,
        };
        let fork = Unopened::new(Sandbox {
            shared: Arc::new(Registry::shared(&self.registry, identity, workspace, clock, false)),
        });
        async {
            files.copy_into(&fork.shared.workspace).await?;
            for copy in &from.contexts {
                let spec = fork.shared.kernel_spec(copy.language, copy.preload);
                let context = Context::fork(&fork.shared.engine, copy, spec).await?;
                let mut contexts = fork.shared.contexts.lock().unwrap_or_else(|e| e.into_inner());
                contexts.by_id.insert(context.id.clone(), Arc::new(context));
            }
            fork.shared.contexts.lock().unwrap_or_else(|e| e.into_inner()).defaults =
                from.defaults.iter().cloned().collect();
            Ok::<_, SandboxError>(())
        }
        .await?;
        Ok(fork)
    }
}

impl Sandbox {
    /// Captures what its forks start from.
    pub(super) async fn fork_source(&self) -> Result<Source, SandboxError> {
        let shared = &self.shared;
        let (contexts, defaults) = {
            let contexts = shared.contexts.lock().unwrap_or_else(|e| e.into_inner());
            let defaults: Vec<(Language, String)> =
                contexts.defaults.iter().map(|(language, id)| (*language, id.clone())).collect();
            (contexts.by_id.values().cloned().collect::<Vec<_>>(), defaults)
        };
        let mut copies = Vec::with_capacity(contexts.len());
        for context in &contexts {
            copies.push(context.copy(&shared.checkpoints).await?);
        }
        let (idle_timeout, ends_at) = {
            let clock = shared.clock.lock().unwrap_or_else(|e| e.into_inner());
            // A paused source's forks run: they get the lifetime it would take back.
            (clock.idle_timeout, clock.lifetime_left.map_or(clock.ends_at, |left| Instant::now() + left))
        };
        Ok(Source { identity: shared.identity.clone(), idle_timeout, ends_at, contexts: copies, defaults })
    }
}

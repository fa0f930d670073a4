//! The ledger: a record, outside the registry, of every sandbox's state as it changes:
//! running, paused (with the checkpoints that hold it), killed, or lost by an earlier process.
//! SoulBox's server keeps it in its database ([`SandboxesConfig::ledger`]), where operators and
//! other machines read it.
//!
//! The registry's own truth stays its manifests on disk, which are local and crash-safe; the
//! ledger is told after each change they record, and is never asked. Entries are handed over
//! synchronously and must not block ([`SandboxLedger::record`] queues them); one sandbox's
//! entries are handed over in the order of its changes (each is sent under the lock that
//! orders them), and `killed` is the last entry a sandbox gets.
//!
//! [`SandboxesConfig::ledger`]: super::SandboxesConfig::ledger

use super::{Shared, epoch_ms};
use crate::kernel::Template;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// Where a registry reports its sandboxes' states (see the module's documentation).
pub trait SandboxLedger: Send + Sync + std::fmt::Debug {
    /// Takes one change. Called on the registry's paths (a cell's end, a pause): queue it,
    /// never block or fail.
    fn record(&self, entry: LedgerEntry);
}

/// A sandbox's state as the ledger knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LedgerState {
    /// Open, its contexts live (its checkpoints, if any, may be older than its state).
    Running,
    /// Paused: its checkpoints hold its state, and it costs disk only.
    Paused,
    /// Killed or expired: gone for good.
    Killed,
    /// Left running by a process that died: it cannot come back (`why` says why).
    Lost,
}

impl LedgerState {
    /// The state's name (`running`, `paused`, `killed`, `lost`).
    pub fn name(self) -> &'static str {
        match self {
            LedgerState::Running => "running",
            LedgerState::Paused => "paused",
            LedgerState::Killed => "killed",
            LedgerState::Lost => "lost",
        }
    }
}

/// One change of one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LedgerEntry {
    /// The sandbox's id.
    pub id: String,
    /// Its owner (the tenant, in SoulBox's server).
    pub owner: Option<String>,
    /// The built-in template it was made from.
    pub template: Template,
    /// Its state after the change.
    pub state: LedgerState,
    /// Its contexts' latest checkpoints (ids in the snapshot store), as its manifest names
    /// them; empty when it has none.
    pub checkpoints: Vec<String>,
    /// When it was created, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// When the change happened, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Why, for a lost sandbox.
    pub why: Option<String>,
}

impl Shared {
    /// Tells the registry's ledger, if it has one, that this sandbox is now `state`.
    pub(super) fn report(&self, state: LedgerState) {
        let Some(ledger) = &self.ledger else {
            return;
        };
        let checkpoints = self
            .context_handles()
            .iter()
            .filter_map(|context| context.record().checkpoint.map(|id| id.to_string()))
            .collect();
        ledger.record(LedgerEntry {
            id: self.identity.id.clone(),
            owner: self.identity.owner.clone(),
            template: self.identity.template,
            state,
            checkpoints,
            created_at_ms: epoch_ms(self.identity.created_at),
            at_ms: epoch_ms(SystemTime::now()),
            why: None,
        });
    }
}

/// The entry of a sandbox an earlier process left and this one cannot take back.
pub(super) fn lost(id: String, owner: Option<String>, why: String) -> LedgerEntry {
    LedgerEntry {
        id,
        owner,
        // The template is in the manifest the entry could not be read from; the ledger keeps
        // the one it had.
        template: Template::default(),
        state: LedgerState::Lost,
        checkpoints: Vec::new(),
        created_at_ms: 0,
        at_ms: epoch_ms(SystemTime::now()),
        why: Some(why),
    }
}

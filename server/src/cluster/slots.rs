//! An API key's bound on running executions, held across the cluster: each execution takes a
//! slot counted in the shared database (`crate::database`'s `execution_slots`, one round trip
//! that takes the slot only while the live nodes run fewer than the bound for the key) and
//! gives it back when it ends, off the request's path.
//!
//! A slot's count belongs to this node's incarnation: if the node dies, or its lease runs out
//! and it registers again, its counts stop counting at once. A give-back that fails is tried
//! [`RELEASE_ATTEMPTS`] times; one that never lands keeps a slot counted until this node's
//! next incarnation (logged).

use super::{Cluster, ClusterError};
use std::time::Duration;

/// Tries to give a slot back before giving up (logged).
const RELEASE_ATTEMPTS: u32 = 3;
/// The pause before the next try, times the attempt's number.
const RELEASE_BACKOFF: Duration = Duration::from_millis(200);

/// One running execution of a key, counted across the cluster; dropping it gives the slot
/// back (in a task of its own).
pub struct ClusterSlot {
    cluster: Cluster,
    key: String,
    incarnation: String,
    /// Dropped once the slot is given back (the node's own slot, so the node's count never
    /// falls below the database's).
    keep: Option<Box<dyn Send>>,
}

impl std::fmt::Debug for ClusterSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSlot").field("key", &self.key).finish_non_exhaustive()
    }
}

impl ClusterSlot {
    /// Holds `thing` until the slot has been given back.
    pub fn keep_until_released(&mut self, thing: impl Send + 'static) {
        self.keep = Some(Box::new(thing));
    }
}

impl Cluster {
    /// A slot for one more execution of key `key`, unless the live nodes already run `max` of
    /// its executions ([`ClusterError::KeyBusy`]).
    pub async fn take_execution_slot(&self, key: &str, max: usize) -> Result<ClusterSlot, ClusterError> {
        if !self.is_live() {
            return Err(ClusterError::NotLive);
        }
        let incarnation = self.membership().incarnation.clone();
        let bound = i64::try_from(max).unwrap_or(i64::MAX);
        if !self.bounded(self.0.db.take_execution_slot(key, self.node(), &incarnation, bound)).await? {
            return Err(ClusterError::KeyBusy(max));
        }
        Ok(ClusterSlot { cluster: self.clone(), key: key.to_owned(), incarnation, keep: None })
    }

    /// Gives a slot of key `key` back, retrying a database that fails.
    async fn release_execution_slot(&self, key: &str, incarnation: &str) {
        for attempt in 1..=RELEASE_ATTEMPTS {
            match self.bounded(self.0.db.release_execution_slot(key, self.node(), incarnation)).await {
                Ok(()) => return,
                Err(error) if attempt == RELEASE_ATTEMPTS => {
                    tracing::warn!(%error, key, "an execution slot could not be given back; it counts until this node registers again");
                }
                Err(_) => tokio::time::sleep(RELEASE_BACKOFF * attempt).await,
            }
        }
    }
}

impl Drop for ClusterSlot {
    fn drop(&mut self) {
        let cluster = self.cluster.clone();
        let (key, incarnation, keep) =
            (std::mem::take(&mut self.key), std::mem::take(&mut self.incarnation), self.keep.take());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(key, "an execution slot dropped outside the runtime is not given back");
            return;
        };
        runtime.spawn(async move {
            cluster.release_execution_slot(&key, &incarnation).await;
            drop(keep);
        });
    }
}

//! An API key's bound on running executions, held across the cluster: the slots are counted
//! in the shared database (`crate::database`'s `execution_slots`: one round trip takes a slot
//! only while the live nodes hold fewer than the bound for the key).
//!
//! A node keeps the slots it took: an execution that ends hands its slot back to the node,
//! and the key's next execution here reuses it without a database round trip (a session's
//! cells one after another, a steady load). Slots the node has held unused for [`KEEP_IDLE`]
//! are given back to the database by a task of the node's ([`Cluster::give_back_idle_slots`]),
//! so another node can take them: a key is never over its bound, and a node that stopped using
//! its slots keeps them from the others for [`KEEP_IDLE`] at most.
//!
//! A slot's count belongs to this node's incarnation: if the node dies, or its lease runs out
//! and it registers again, its counts stop counting at once (and what it held is forgotten).

use super::{Cluster, ClusterError};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a node keeps slots it does not use before giving them back.
pub const KEEP_IDLE: Duration = Duration::from_millis(500);

/// The slots this node holds, per key.
#[derive(Debug, Default)]
pub(super) struct HeldSlots {
    keys: HashMap<String, Held>,
}

/// One key's slots on this node.
#[derive(Debug)]
struct Held {
    /// The incarnation the database counts them for.
    incarnation: String,
    /// Slots taken in the database and not given back.
    held: usize,
    /// Of those, slots of executions running now.
    in_use: usize,
    /// Since when some held slot has gone unused (none: all in use).
    spare_since: Option<Instant>,
}

/// One running execution of a key, counted across the cluster; dropping it hands the slot
/// back to the node.
pub struct ClusterSlot {
    cluster: Cluster,
    key: String,
    incarnation: String,
}

impl std::fmt::Debug for ClusterSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSlot").field("key", &self.key).finish_non_exhaustive()
    }
}

impl Cluster {
    /// A slot for one more execution of key `key`: one this node holds unused, else one more
    /// from the database unless the live nodes already hold `max` of the key's
    /// ([`ClusterError::KeyBusy`]).
    pub async fn take_execution_slot(&self, key: &str, max: usize) -> Result<ClusterSlot, ClusterError> {
        if !self.is_live() {
            return Err(ClusterError::NotLive);
        }
        let incarnation = self.membership().incarnation.clone();
        let slot = || ClusterSlot { cluster: self.clone(), key: key.to_owned(), incarnation: incarnation.clone() };
        if self.reuse_held_slot(key, &incarnation) {
            return Ok(slot());
        }
        let bound = i64::try_from(max).unwrap_or(i64::MAX);
        if !self.bounded(self.0.db.take_execution_slot(key, self.node(), &incarnation, bound)).await? {
            return Err(ClusterError::KeyBusy(max));
        }
        let mut slots = self.held_slots();
        let held = slots.keys.entry(key.to_owned()).or_insert_with(|| Held::new(&incarnation));
        if held.incarnation != incarnation {
            *held = Held::new(&incarnation);
        }
        held.held += 1;
        held.in_use += 1;
        Ok(slot())
    }

    /// Takes an unused slot this node holds for `key` under `incarnation`, if there is one.
    fn reuse_held_slot(&self, key: &str, incarnation: &str) -> bool {
        let mut slots = self.held_slots();
        match slots.keys.get_mut(key) {
            Some(held) if held.incarnation == incarnation && held.in_use < held.held => {
                held.in_use += 1;
                if held.in_use == held.held {
                    held.spare_since = None;
                }
                true
            }
            _ => false,
        }
    }

    /// Gives back to the database, every [`KEEP_IDLE`] / 2, the slots held unused for
    /// [`KEEP_IDLE`], until the node leaves. Spawn it.
    pub async fn give_back_idle_slots(self) {
        let mut tick = tokio::time::interval(KEEP_IDLE / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.0.left.load(std::sync::atomic::Ordering::SeqCst) {
            tick.tick().await;
            for (key, incarnation, spare) in self.idle_slots(Instant::now()) {
                if let Err(error) =
                    self.bounded(self.0.db.release_execution_slots(&key, self.node(), &incarnation, spare)).await
                {
                    tracing::warn!(%error, key, spare, "execution slots could not be given back; they count until this node registers again");
                }
            }
        }
    }

    /// Takes out of what this node holds the slots unused since before `now - KEEP_IDLE`: per
    /// key, its incarnation and how many.
    fn idle_slots(&self, now: Instant) -> Vec<(String, String, i64)> {
        let mut slots = self.held_slots();
        let mut idle = Vec::new();
        slots.keys.retain(|key, held| {
            if held.spare_since.is_some_and(|since| now.duration_since(since) >= KEEP_IDLE) {
                let spare = held.held - held.in_use;
                idle.push((key.clone(), held.incarnation.clone(), i64::try_from(spare).unwrap_or(i64::MAX)));
                held.held = held.in_use;
                held.spare_since = None;
            }
            held.held > 0
        });
        idle
    }

    fn held_slots(&self) -> std::sync::MutexGuard<'_, HeldSlots> {
        self.0.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Held {
    fn new(incarnation: &str) -> Held {
        Held { incarnation: incarnation.to_owned(), held: 0, in_use: 0, spare_since: None }
    }
}

impl Drop for ClusterSlot {
    fn drop(&mut self) {
        let mut slots = self.cluster.held_slots();
        if let Some(held) = slots.keys.get_mut(&self.key)
            && held.incarnation == self.incarnation
            && held.in_use > 0
        {
            held.in_use -= 1;
            held.spare_since.get_or_insert_with(Instant::now);
        }
    }
}

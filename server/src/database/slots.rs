//! Executions running per API key across a cluster: the `execution_slots` table, one row per
//! key and node, counting the slots that node holds for that key (its running executions,
//! and slots it keeps a moment for the next: `crate::cluster`'s `ClusterSlot`).
//!
//! Taking a slot is one round trip: [`TAKE_SLOT`], a PL/pgSQL function, takes a lock per key
//! (a transaction-scoped advisory lock, so two nodes taking the key's last slot at once are
//! serialized), sums the key's running executions over the live nodes, and counts one more
//! for this node if the sum is under the bound. Each statement of the function reads what
//! committed before it, so the sum after the lock sees every slot taken before.
//!
//! Invariants:
//! - Only live nodes' counts are summed: the count of a node that died (its lease ran out)
//!   or that registered again (a new incarnation) drops out at once, so a crash never leaks
//!   a key's slots.
//! - A row's count belongs to the incarnation it names; a node's first slot for a key under
//!   a new incarnation starts the count again from one.

use super::nodes::NOW_MS;
use super::{Database, DatabaseError};
use sqlx::Row;

/// The table of running executions per key and node.
pub(super) const SLOTS_TABLE: &str = "CREATE TABLE IF NOT EXISTS execution_slots (key_id TEXT NOT NULL, \
     node TEXT NOT NULL, incarnation TEXT NOT NULL, running BIGINT NOT NULL, PRIMARY KEY (key_id, node))";

/// The function that takes a slot (see the module's documentation).
pub(super) fn take_slot_function() -> String {
    format!(
        "CREATE OR REPLACE FUNCTION soulbox_take_execution_slot(p_key TEXT, p_node TEXT, p_incarnation TEXT, \
         p_max BIGINT) RETURNS BOOLEAN LANGUAGE plpgsql AS $fn$ \
         DECLARE running_now BIGINT; \
         BEGIN \
           PERFORM pg_advisory_xact_lock(hashtext('execution_slots'), hashtext(p_key)); \
           SELECT COALESCE(SUM(s.running), 0) INTO running_now FROM execution_slots s JOIN nodes n \
             ON n.id = s.node AND n.incarnation = s.incarnation AND n.lease_until_ms > {NOW_MS} \
             WHERE s.key_id = p_key; \
           IF running_now >= p_max THEN RETURN FALSE; END IF; \
           INSERT INTO execution_slots (key_id, node, incarnation, running) VALUES (p_key, p_node, p_incarnation, 1) \
             ON CONFLICT (key_id, node) DO UPDATE SET running = CASE \
               WHEN execution_slots.incarnation = excluded.incarnation THEN execution_slots.running + 1 ELSE 1 END, \
               incarnation = excluded.incarnation; \
           RETURN TRUE; \
         END $fn$"
    )
}

impl Database {
    /// Counts one more execution of key `key` on node `node`'s `incarnation`, unless the live
    /// nodes already run `max` executions of that key; false then.
    pub async fn take_execution_slot(
        &self,
        key: &str,
        node: &str,
        incarnation: &str,
        max: i64,
    ) -> Result<bool, DatabaseError> {
        let row = sqlx::query("SELECT soulbox_take_execution_slot($1, $2, $3, $4) AS taken")
            .bind(key)
            .bind(node)
            .bind(incarnation)
            .bind(max)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("taken")?)
    }

    /// Counts `slots` slots of key `key` fewer on node `node`, if `incarnation` still holds its
    /// row (a newer one started its count again).
    pub async fn release_execution_slots(
        &self,
        key: &str,
        node: &str,
        incarnation: &str,
        slots: i64,
    ) -> Result<(), DatabaseError> {
        sqlx::query(
            "UPDATE execution_slots SET running = GREATEST(running - $1, 0) \
             WHERE key_id = $2 AND node = $3 AND incarnation = $4",
        )
        .bind(slots)
        .bind(key)
        .bind(node)
        .bind(incarnation)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

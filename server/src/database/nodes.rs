//! A cluster's shared state ([`crate::cluster`]): the `nodes` table (one row per node: its URL,
//! its incarnation, its lease, its load) and each sandbox's owner (three columns of the
//! `sandboxes` table: `node`, `incarnation`, `owner_epoch`).
//!
//! Times are the database's clock (`clock_timestamp()`), never a node's, so nodes whose clocks
//! disagree still agree on whose lease has run out. These statements are PostgreSQL's: a
//! cluster needs a database every node reaches, and the configuration refuses SQLite for one.
//!
//! Invariants:
//! - A node's row names its current incarnation (a fresh id each time the process registers).
//!   Its lease is renewed only while it has not run out: a node that let it lapse registers
//!   again, as a new incarnation, and adopts each sandbox it held back (compare-and-swap on
//!   the node's name), so a sandbox another node has taken in the meantime stays taken.
//! - A sandbox is owned by the node and incarnation its row names; the owner is live while
//!   that node's row still has that incarnation and an unexpired lease. Every change of owner
//!   increments `owner_epoch`.

use super::{Database, DatabaseError};
use serde::Serialize;
use sqlx::Row;

/// The database's clock, in Unix milliseconds.
pub(super) const NOW_MS: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

/// The table of nodes.
const NODES_TABLE: &str = "CREATE TABLE IF NOT EXISTS nodes (id TEXT PRIMARY KEY, url TEXT NOT NULL, \
     incarnation TEXT NOT NULL, started_ms BIGINT NOT NULL, lease_until_ms BIGINT NOT NULL, \
     capacity BIGINT NOT NULL DEFAULT 0, load BIGINT NOT NULL DEFAULT 0)";

/// A node as the database has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRow {
    /// Its name.
    pub id: String,
    /// Where the other nodes forward its sandboxes' requests.
    pub url: String,
    /// The process that registered it last.
    pub incarnation: String,
    /// When that process registered (Unix ms, the database's clock).
    pub started_ms: i64,
    /// When its lease runs out unless renewed (Unix ms, the database's clock).
    pub lease_until_ms: i64,
    /// Whether its lease runs now.
    pub live: bool,
    /// Guests it runs at once.
    pub capacity: i64,
    /// Sandboxes it held at its last renewal.
    pub load: i64,
    /// The open sandboxes it owns.
    pub sandboxes: Vec<String>,
}

/// Who owns a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxOwner {
    /// The owning node.
    pub node: String,
    /// Its URL.
    pub url: String,
    /// Whether its lease runs, for the incarnation that owns the sandbox.
    pub live: bool,
}

/// A sandbox that was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostSandbox {
    /// Its tenant.
    pub tenant: String,
    /// Why it was lost, when that was recorded.
    pub why: Option<String>,
}

/// A new sandbox a node claims.
#[derive(Debug, Clone, Copy)]
pub struct NewSandbox<'a> {
    /// Its id.
    pub id: &'a str,
    /// Its tenant.
    pub tenant: &'a str,
    /// Its template's name.
    pub template: &'a str,
}

/// Outcome of claiming a new sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// The node owns it.
    Owned,
    /// Another node owns it.
    AlreadyOwned,
    /// Its tenant has as many open sandboxes as it may across the cluster.
    OverQuota,
}

/// Outcome of trying to take a sandbox over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TakeOver {
    /// Taken: its hand-over (the manifest blob's id).
    From(String),
    /// Its owner died and left nothing to take it over from: it is lost, for this reason.
    Lost(&'static str),
    /// Its owner stopped without a hand-over less than the grace ago: it is kept for that
    /// node to come back and adopt it (a restart), and neither taken nor lost yet.
    Awaited,
    /// Its owner is live again, or another node took it first.
    Raced,
}

/// Whether the owner of the sandbox row `sandboxes` names has been gone for `grace` (a SQL
/// placeholder, in ms) or longer: its node has no row, or its lease ran out that long ago, or
/// it registered anew (a new incarnation) that long ago and did not adopt the sandbox. Until
/// then a sandbox without a hand-over waits for its node (a restart adopts it back).
fn gone_for(sandboxes: &str, grace: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = {sandboxes}.node AND n.lease_until_ms >= {NOW_MS} - {grace} \
         AND (n.incarnation = {sandboxes}.incarnation OR n.started_ms >= {NOW_MS} - {grace}))"
    )
}

/// Why a sandbox whose node died without a hand-over is lost.
const NO_HANDOVER: &str = "its node stopped without a checkpoint of its latest state (pause it, or \
     checkpoint it after every cell, for it to outlive its node)";

/// Outcome of registering a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// Registered; its lease runs out at this time (Unix ms, the database's clock).
    Until(i64),
    /// Another live process holds this node's name until then.
    Taken(i64),
}

impl Database {
    /// Creates the cluster's tables and functions if they are missing (one process at a time,
    /// under the schema lock: nodes starting together race on the catalog otherwise).
    pub async fn open_cluster(&self) -> Result<(), DatabaseError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)::text")
            .bind(super::SCHEMA_LOCK)
            .execute(&mut *transaction)
            .await?;
        for statement in
            [NODES_TABLE.to_owned(), super::slots::SLOTS_TABLE.to_owned(), super::slots::take_slot_function()]
        {
            sqlx::query(&statement).execute(&mut *transaction).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Registers node `id` as `incarnation`, with a lease of `lease_ms`, unless another
    /// incarnation's lease on the name still runs.
    pub async fn register_node(
        &self,
        id: &str,
        url: &str,
        incarnation: &str,
        capacity: i64,
        lease_ms: i64,
    ) -> Result<Registered, DatabaseError> {
        let registered = sqlx::query(&format!(
            "INSERT INTO nodes (id, url, incarnation, started_ms, lease_until_ms, capacity, load) \
             VALUES ($1, $2, $3, {NOW_MS}, {NOW_MS} + $4, $5, 0) \
             ON CONFLICT (id) DO UPDATE SET url = excluded.url, incarnation = excluded.incarnation, \
             started_ms = excluded.started_ms, lease_until_ms = excluded.lease_until_ms, \
             capacity = excluded.capacity, load = 0 \
             WHERE nodes.lease_until_ms <= {NOW_MS} OR nodes.incarnation = excluded.incarnation \
             RETURNING lease_until_ms"
        ))
        .bind(id)
        .bind(url)
        .bind(incarnation)
        .bind(lease_ms)
        .bind(capacity)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = registered {
            return Ok(Registered::Until(row.try_get("lease_until_ms")?));
        }
        let held = sqlx::query("SELECT lease_until_ms FROM nodes WHERE id = $1").bind(id).fetch_one(&self.pool).await?;
        Ok(Registered::Taken(held.try_get("lease_until_ms")?))
    }

    /// Renews node `id`'s lease for `incarnation`, with its current load; returns how many
    /// nodes are live (this one included), or `None` when the lease ran out (or another
    /// process registered the name) first.
    pub async fn renew_node(
        &self,
        id: &str,
        incarnation: &str,
        lease_ms: i64,
        load: i64,
    ) -> Result<Option<i64>, DatabaseError> {
        let renewed = sqlx::query(&format!(
            "UPDATE nodes SET lease_until_ms = {NOW_MS} + $1, load = $2 \
             WHERE id = $3 AND incarnation = $4 AND lease_until_ms > {NOW_MS} \
             RETURNING (SELECT COUNT(*) FROM nodes WHERE lease_until_ms > {NOW_MS}) AS live"
        ))
        .bind(lease_ms)
        .bind(load)
        .bind(id)
        .bind(incarnation)
        .fetch_optional(&self.pool)
        .await?;
        renewed.map(|row| row.try_get("live")).transpose().map_err(DatabaseError::from)
    }

    /// Ends node `id`'s lease now (a node leaving cleanly), if `incarnation` still holds it.
    pub async fn leave_node(&self, id: &str, incarnation: &str) -> Result<(), DatabaseError> {
        sqlx::query(&format!(
            "UPDATE nodes SET lease_until_ms = {NOW_MS}, load = 0 WHERE id = $1 AND incarnation = $2"
        ))
        .bind(id)
        .bind(incarnation)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every node, by name, with the open sandboxes each owns.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, DatabaseError> {
        let rows = sqlx::query(&format!(
            "SELECT id, url, incarnation, started_ms, lease_until_ms, capacity, load, \
             lease_until_ms > {NOW_MS} AS live FROM nodes ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        let owned = sqlx::query(
            "SELECT s.node, s.id FROM sandboxes s JOIN nodes n ON n.id = s.node AND n.incarnation = s.incarnation \
             WHERE s.state IN ('running', 'paused') ORDER BY s.created_ms, s.id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut nodes = rows
            .iter()
            .map(|row| {
                Ok(NodeRow {
                    id: row.try_get("id")?,
                    url: row.try_get("url")?,
                    incarnation: row.try_get("incarnation")?,
                    started_ms: row.try_get("started_ms")?,
                    lease_until_ms: row.try_get("lease_until_ms")?,
                    live: row.try_get("live")?,
                    capacity: row.try_get("capacity")?,
                    load: row.try_get("load")?,
                    sandboxes: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>, DatabaseError>>()?;
        for row in owned {
            let node: String = row.try_get("node")?;
            if let Some(holder) = nodes.iter_mut().find(|n| n.id == node) {
                holder.sandboxes.push(row.try_get("id")?);
            }
        }
        Ok(nodes)
    }

    /// Makes node `node`'s `incarnation` the owner of the new sandbox `id` of `tenant`, unless
    /// it already has an owner or `tenant` already has `max_per_tenant` other open sandboxes
    /// across the cluster (counted and claimed under a lock per tenant, so nodes claiming at
    /// once cannot both pass the bound).
    pub async fn claim_new_sandbox(
        &self,
        claim: &NewSandbox<'_>,
        node: &str,
        incarnation: &str,
        max_per_tenant: usize,
    ) -> Result<Claimed, DatabaseError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))::text")
            .bind(claim.tenant)
            .execute(&mut *transaction)
            .await?;
        let open: i64 = sqlx::query(
            "SELECT COUNT(*) AS open FROM sandboxes WHERE tenant = $1 AND id <> $2 AND state IN ('running', 'paused')",
        )
        .bind(claim.tenant)
        .bind(claim.id)
        .fetch_one(&mut *transaction)
        .await?
        .try_get("open")?;
        if usize::try_from(open).unwrap_or(usize::MAX) >= max_per_tenant {
            return Ok(Claimed::OverQuota);
        }
        // The registry's recorder may have written the row first (without an owner).
        let claimed = sqlx::query(&format!(
            "INSERT INTO sandboxes (id, tenant, template, created_ms, state, updated_ms, node, incarnation, owner_epoch) \
             VALUES ($1, $2, $3, {NOW_MS}, 'running', {NOW_MS}, $4, $5, 1) \
             ON CONFLICT (id) DO UPDATE SET node = excluded.node, incarnation = excluded.incarnation, \
             owner_epoch = sandboxes.owner_epoch + 1 WHERE sandboxes.node IS NULL"
        ))
        .bind(claim.id)
        .bind(claim.tenant)
        .bind(claim.template)
        .bind(node)
        .bind(incarnation)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(if claimed.rows_affected() == 1 { Claimed::Owned } else { Claimed::AlreadyOwned })
    }

    /// Makes node `node`'s `incarnation` the owner of open sandbox `id` again (a node that
    /// registered anew: a restart, or a lease that ran out) if it is still the node's, or no
    /// node's; false when another node holds it (or it ended).
    pub async fn adopt_sandbox(&self, id: &str, node: &str, incarnation: &str) -> Result<bool, DatabaseError> {
        let adopted = sqlx::query(
            "UPDATE sandboxes SET node = $1, incarnation = $2, owner_epoch = owner_epoch + 1 \
             WHERE id = $3 AND state IN ('running', 'paused') AND (node IS NULL OR node = $1)",
        )
        .bind(node)
        .bind(incarnation)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(adopted.rows_affected() == 1)
    }

    /// Up to `limit` open sandboxes whose owner has been gone for `grace_ms` at least: its lease
    /// ran out that long ago, or it registered anew that long ago and did not adopt them.
    pub async fn abandoned_sandboxes(&self, grace_ms: i64, limit: i64) -> Result<Vec<String>, DatabaseError> {
        let rows = sqlx::query(&format!(
            "SELECT s.id FROM sandboxes s WHERE s.state IN ('running', 'paused') AND s.node IS NOT NULL \
             AND {} ORDER BY s.updated_ms, s.id LIMIT $2",
            gone_for("s", "$1")
        ))
        .bind(grace_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| row.try_get("id").map_err(DatabaseError::from)).collect()
    }

    /// Makes node `node`'s `incarnation` the owner of open sandbox `id` if its owner's lease
    /// has run out, returning the hand-over to take it from; marks it lost (with why) if its
    /// owner died without one and has been gone for `grace_ms` ([`TakeOver::Awaited`] until
    /// then: a node that restarts adopts its sandboxes back from its own disk).
    pub async fn take_over_sandbox(
        &self,
        id: &str,
        node: &str,
        incarnation: &str,
        grace_ms: i64,
    ) -> Result<TakeOver, DatabaseError> {
        let owner_dead = format!(
            "NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = sandboxes.node AND n.incarnation = sandboxes.incarnation \
             AND n.lease_until_ms > {NOW_MS})"
        );
        let mut transaction = self.pool.begin().await?;
        // The owner's row, locked: a renewal in flight commits before the checks below read it
        // (they then see the renewed lease) or waits until this takeover committed (and then
        // finds the lease run out), never beside it.
        sqlx::query("SELECT n.id FROM nodes n JOIN sandboxes s ON s.node = n.id WHERE s.id = $1 FOR UPDATE OF n")
            .bind(id)
            .fetch_optional(&mut *transaction)
            .await?;
        let taken = sqlx::query(&format!(
            "UPDATE sandboxes SET node = $1, incarnation = $2, owner_epoch = owner_epoch + 1 \
             WHERE id = $3 AND state IN ('running', 'paused') AND manifest IS NOT NULL AND {owner_dead} \
             RETURNING manifest"
        ))
        .bind(node)
        .bind(incarnation)
        .bind(id)
        .fetch_optional(&mut *transaction)
        .await?;
        if let Some(row) = taken {
            let manifest = row.try_get("manifest")?;
            transaction.commit().await?;
            return Ok(TakeOver::From(manifest));
        }
        let lost = sqlx::query(&format!(
            "UPDATE sandboxes SET state = 'lost', why = $1, updated_ms = {NOW_MS} \
             WHERE id = $2 AND state IN ('running', 'paused') AND manifest IS NULL AND {}",
            gone_for("sandboxes", "$3")
        ))
        .bind(NO_HANDOVER)
        .bind(id)
        .bind(grace_ms)
        .execute(&mut *transaction)
        .await?;
        let outcome = if lost.rows_affected() == 1 {
            TakeOver::Lost(NO_HANDOVER)
        } else {
            let awaited = sqlx::query(&format!(
                "SELECT 1 FROM sandboxes WHERE id = $1 AND state IN ('running', 'paused') AND manifest IS NULL \
                 AND {owner_dead}"
            ))
            .bind(id)
            .fetch_optional(&mut *transaction)
            .await?;
            if awaited.is_some() { TakeOver::Awaited } else { TakeOver::Raced }
        };
        transaction.commit().await?;
        Ok(outcome)
    }

    /// Marks open sandbox `id`, which node `node` owns, lost with `why` (a takeover that failed).
    pub async fn mark_lost(&self, id: &str, node: &str, why: &str) -> Result<(), DatabaseError> {
        sqlx::query(&format!(
            "UPDATE sandboxes SET state = 'lost', why = $1, updated_ms = {NOW_MS} \
             WHERE id = $2 AND node = $3 AND state IN ('running', 'paused')"
        ))
        .bind(why)
        .bind(id)
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records open sandbox `id`'s latest hand-over (`None`: none holds its state), if node
    /// `node` owns it.
    pub async fn record_handover(&self, id: &str, node: &str, manifest: Option<&str>) -> Result<(), DatabaseError> {
        sqlx::query(
            "UPDATE sandboxes SET manifest = $1 WHERE id = $2 AND node = $3 AND state IN ('running', 'paused')",
        )
        .bind(manifest)
        .bind(id)
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live node holding the fewest open sandboxes (by name among equals), with that
    /// number, and how many `node` holds.
    pub async fn least_loaded_node(&self, node: &str) -> Result<(Option<(String, String, i64)>, i64), DatabaseError> {
        let rows = sqlx::query(&format!(
            "SELECT n.id, n.url, (SELECT COUNT(*) FROM sandboxes s WHERE s.node = n.id AND s.incarnation = n.incarnation \
             AND s.state IN ('running', 'paused')) AS open FROM nodes n WHERE n.lease_until_ms > {NOW_MS} ORDER BY open, n.id"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut least = None;
        let mut own = 0;
        for row in &rows {
            let (id, open): (String, i64) = (row.try_get("id")?, row.try_get("open")?);
            if id == node {
                own = open;
            }
            if least.is_none() {
                least = Some((id, row.try_get("url")?, open));
            }
        }
        Ok((least, own))
    }

    /// Sandbox `id`'s tenant and why it was lost, if it was.
    pub async fn lost_sandbox(&self, id: &str) -> Result<Option<LostSandbox>, DatabaseError> {
        let row = sqlx::query("SELECT tenant, why FROM sandboxes WHERE id = $1 AND state = 'lost'")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok(LostSandbox { tenant: row.try_get("tenant")?, why: row.try_get("why")? })).transpose()
    }

    /// Who owns open sandbox `id`, if anyone.
    pub async fn sandbox_owner(&self, id: &str) -> Result<Option<SandboxOwner>, DatabaseError> {
        let row = sqlx::query(&format!(
            "SELECT s.node, n.url, (n.lease_until_ms > {NOW_MS} AND n.incarnation = s.incarnation) AS live \
             FROM sandboxes s JOIN nodes n ON n.id = s.node \
             WHERE s.id = $1 AND s.state IN ('running', 'paused')"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(SandboxOwner { node: row.try_get("node")?, url: row.try_get("url")?, live: row.try_get("live")? })
        })
        .transpose()
    }
}

#[cfg(test)]
impl Database {
    /// Ends node `id`'s lease now, whoever holds it (a lease that ran out, without waiting).
    pub(crate) async fn expire_node(&self, id: &str) {
        sqlx::query(&format!("UPDATE nodes SET lease_until_ms = {NOW_MS} - 1 WHERE id = $1"))
            .bind(id)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// Ends node `id`'s lease an hour ago (a node long gone).
    pub(crate) async fn expire_node_long_ago(&self, id: &str) {
        sqlx::query(&format!("UPDATE nodes SET lease_until_ms = {NOW_MS} - 3600000 WHERE id = $1"))
            .bind(id)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// Gives open sandbox `id` to node `node`'s current incarnation (another node's takeover).
    pub(crate) async fn hand_sandbox_to(&self, id: &str, node: &str) {
        sqlx::query(
            "UPDATE sandboxes SET node = $1, incarnation = (SELECT incarnation FROM nodes WHERE id = $1), \
             owner_epoch = owner_epoch + 1 WHERE id = $2",
        )
        .bind(node)
        .bind(id)
        .execute(&self.pool)
        .await
        .unwrap();
    }
}

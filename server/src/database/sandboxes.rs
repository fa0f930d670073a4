//! The sandbox registry in the database: one row per sandbox, with its tenant, template,
//! state (`running`, `paused`, `killed`, `lost`), the checkpoints that hold it, and when it
//! last changed. The engine's registry reports every change through its ledger
//! ([`soulbox_engine::sandbox::SandboxLedger`], fed by a [`super::SandboxRecorder`]); rows are
//! upserted in the order of the changes, and a killed sandbox's row no longer changes.
//!
//! A database made by an earlier version (the table with its first four columns only) gains
//! the others when it opens.

use super::{Database, DatabaseError};
use serde::Serialize;
use soulbox_engine::sandbox::LedgerState;
use sqlx::Row;

/// The most rows one listing returns (the newest).
pub const MAX_LISTED: i64 = 10_000;

/// Columns added after the table's first version, with their definitions.
const ADDED_COLUMNS: [(&str, &str); 8] = [
    ("state", "TEXT NOT NULL DEFAULT 'running'"),
    ("checkpoints", "TEXT NOT NULL DEFAULT ''"),
    ("updated_ms", "BIGINT NOT NULL DEFAULT 0"),
    ("why", "TEXT"),
    // Its owner in a cluster (see `super::nodes`); NULL on a server that is not a node.
    ("node", "TEXT"),
    ("incarnation", "TEXT"),
    ("owner_epoch", "BIGINT NOT NULL DEFAULT 0"),
    // The blob another node takes it over from, while its checkpoints hold its latest state
    // (written by its node as it checkpoints: `super::nodes`).
    ("manifest", "TEXT"),
];

/// One sandbox as the database records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SandboxRow {
    /// Its id.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// Its built-in template.
    pub template: String,
    /// `running`, `paused`, `killed` or `lost`.
    pub state: String,
    /// The checkpoints holding it (ids in the snapshot store).
    pub checkpoints: Vec<String>,
    /// When it was created (Unix ms).
    pub created_ms: i64,
    /// When its state last changed (Unix ms).
    pub updated_ms: i64,
    /// Why it was lost.
    pub why: Option<String>,
}

impl Database {
    /// Adds the columns an earlier version's `sandboxes` table lacks.
    pub(super) async fn upgrade_sandboxes(
        &self,
        transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> Result<(), DatabaseError> {
        for (column, definition) in ADDED_COLUMNS {
            // Asked of the catalog, not by a failing statement (which would abort PostgreSQL's
            // transaction).
            let probe = format!("SELECT {column} FROM sandboxes WHERE 1 = 0");
            let exists = match self.is_postgres() {
                true => sqlx::query(
                    "SELECT 1 FROM information_schema.columns WHERE table_name = 'sandboxes' AND column_name = $1 \
                     AND table_schema = current_schema()",
                )
                .bind(column)
                .fetch_optional(&mut **transaction)
                .await?
                .is_some(),
                false => sqlx::query(&probe).fetch_optional(&mut **transaction).await.is_ok(),
            };
            if !exists {
                sqlx::query(&format!("ALTER TABLE sandboxes ADD COLUMN {column} {definition}"))
                    .execute(&mut **transaction)
                    .await?;
                tracing::info!(column, "added a column to the sandbox registry");
            }
        }
        Ok(())
    }

    /// Records sandboxes' changes, in order, in one transaction. A change reaches a row only
    /// if the server that made it owns the sandbox (the row names its node; no node, for a
    /// server that is not one): a node's stale copy of a sandbox another node took over never
    /// overwrites it.
    pub async fn record_sandboxes(&self, changes: &[super::RegistryChange]) -> Result<(), DatabaseError> {
        let mut transaction = self.pool.begin().await?;
        for super::RegistryChange { node, entry } in changes {
            sqlx::query(
                "INSERT INTO sandboxes (id, tenant, template, created_ms, state, checkpoints, updated_ms, why, node) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL) \
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, checkpoints = excluded.checkpoints, \
                 updated_ms = excluded.updated_ms, why = excluded.why \
                 WHERE sandboxes.state <> 'killed' AND (sandboxes.node IS NULL OR sandboxes.node = $9)",
            )
            .bind(&entry.id)
            .bind(entry.owner.as_deref().unwrap_or("-"))
            .bind(entry.template.name())
            .bind(millis(entry.created_at_ms))
            .bind(entry.state.name())
            .bind(entry.checkpoints.join(" "))
            .bind(millis(entry.at_ms))
            .bind(entry.why.as_deref())
            .bind(node.as_deref().unwrap_or(""))
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// The recorded sandboxes, newest first (at most [`MAX_LISTED`]): one tenant's or all,
    /// in one state or all.
    pub async fn sandboxes(
        &self,
        tenant: Option<&str>,
        state: Option<LedgerState>,
    ) -> Result<Vec<SandboxRow>, DatabaseError> {
        let rows = sqlx::query(
            "SELECT id, tenant, template, state, checkpoints, created_ms, updated_ms, why FROM sandboxes \
             WHERE ($1 = '' OR tenant = $1) AND ($2 = '' OR state = $2) \
             ORDER BY created_ms DESC, id LIMIT $3",
        )
        .bind(tenant.unwrap_or(""))
        .bind(state.map_or("", LedgerState::name))
        .bind(MAX_LISTED)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let checkpoints: String = row.try_get("checkpoints")?;
                Ok(SandboxRow {
                    id: row.try_get("id")?,
                    tenant: row.try_get("tenant")?,
                    template: row.try_get("template")?,
                    state: row.try_get("state")?,
                    checkpoints: checkpoints.split_whitespace().map(str::to_owned).collect(),
                    created_ms: row.try_get("created_ms")?,
                    updated_ms: row.try_get("updated_ms")?,
                    why: row.try_get("why")?,
                })
            })
            .collect()
    }
}

impl Database {
    /// Marks lost every sandbox recorded as running or paused that `known` says the registry
    /// does not know: its last change never reached the database (the server was killed
    /// before its recorder wrote it). Only this server's: a cluster node's (`node`), or, on a
    /// server that is not a node, those no node owns. Returns how many.
    pub async fn settle_sandboxes(
        &self,
        node: Option<&str>,
        known: impl Fn(&str) -> bool,
    ) -> Result<usize, DatabaseError> {
        let open = sqlx::query(
            "SELECT id FROM sandboxes WHERE state IN ('running', 'paused') \
             AND (($1 = '' AND node IS NULL) OR node = $1)",
        )
        .bind(node.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        let mut settled = 0;
        for row in open {
            let id: String = row.try_get("id")?;
            if known(&id) {
                continue;
            }
            sqlx::query(
                "UPDATE sandboxes SET state = 'lost', updated_ms = $1, why = $2 \
                 WHERE id = $3 AND state IN ('running', 'paused')",
            )
            .bind(super::now_ms())
            .bind(STALE)
            .bind(&id)
            .execute(&self.pool)
            .await?;
            settled += 1;
        }
        Ok(settled)
    }
}

/// Why a sandbox the registry does not know is marked lost.
const STALE: &str = "the server that had it stopped before recording its last change (it was killed or lost)";

fn millis(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A change as a server that is not a node would report it (an entry's fields are not
    /// public to build).
    fn entry(id: &str, state: LedgerState, checkpoints: &[&str], at_ms: u64) -> crate::database::RegistryChange {
        let entry = serde_json::from_value(serde_json::json!({
            "id": id, "owner": "acme", "template": "data-science", "state": state,
            "checkpoints": checkpoints, "created_at_ms": 1_000, "at_ms": at_ms, "why": null,
        }))
        .unwrap();
        crate::database::RegistryChange { node: None, entry }
    }

    /// Run against SQLite and PostgreSQL by the database tests.
    pub(in crate::database) async fn the_registry_follows_each_sandbox_and_a_killed_one_stays_killed(db: &Database) {
        use LedgerState::{Killed, Lost, Paused, Running};
        db.record_sandboxes(&[
            entry("sbx-a", Running, &[], 1_001),
            entry("sbx-b", Running, &[], 1_002),
            entry("sbx-a", Paused, &["c1", "c2"], 1_003),
            entry("sbx-b", Killed, &[], 1_004),
        ])
        .await
        .unwrap();
        db.record_sandboxes(&[entry("sbx-b", Running, &[], 1_005), entry("sbx-c", Lost, &[], 1_006)]).await.unwrap();
        let rows = db.sandboxes(Some("acme"), None).await.unwrap();
        let states: Vec<(&str, &str)> = rows.iter().map(|r| (r.id.as_str(), r.state.as_str())).collect();
        assert_eq!(states, [("sbx-a", "paused"), ("sbx-b", "killed"), ("sbx-c", "lost")], "a killed row stays so");
        let paused = &db.sandboxes(None, Some(Paused)).await.unwrap()[0];
        assert_eq!(
            (paused.checkpoints.as_slice(), paused.updated_ms),
            (["c1".to_owned(), "c2".to_owned()].as_slice(), 1_003)
        );
        assert_eq!(paused.template, "data-science");
        assert!(db.sandboxes(Some("other"), None).await.unwrap().is_empty());
        // What the registry no longer knows is stale: lost, with why; killed rows stay killed.
        assert_eq!(db.settle_sandboxes(None, |id| id == "sbx-nothing").await.unwrap(), 1);
        let states: Vec<String> = db.sandboxes(None, None).await.unwrap().into_iter().map(|r| r.state).collect();
        assert_eq!(states, ["lost", "killed", "lost"]);
        let settled = &db.sandboxes(None, Some(Lost)).await.unwrap()[0];
        assert_eq!(settled.why.as_deref(), Some(STALE));
    }
}

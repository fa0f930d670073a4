//! [`Database`]: tenants, API keys, the sandbox registry ([`sandboxes`]) and usage records, in SQLite by
//! default or PostgreSQL when a `postgres://` URL is given, through the same sqlx code (the
//! `Any` driver; portable SQL only, `$n` placeholders, ids as text, times as Unix
//! milliseconds).
//!
//! API keys are `sbk_` + 64 hex digits of OS randomness; only their blake3 hash is stored, with
//! a short prefix to recognise them in listings. A key is shown once, when it is created. On
//! SQLite, the live keys looked up are kept ([`key_cache`]): a revocation reaches every server
//! on the database through a notice file, so it still takes effect at once.
//!
//! Usage records and audit events are written in batches by a recorder ([`UsageRecorder`],
//! [`AuditRecorder`]), off the request path. SQLite runs
//! in WAL mode with `synchronous = NORMAL` (a crash may lose the last records, never corrupt
//! the file) so reads of keys never wait for a write.

mod key_cache;
mod nodes;
mod recorder;
mod sandboxes;
mod slots;

pub use nodes::{Claimed, LostSandbox, NewSandbox, NodeRow, Registered, SandboxOwner, TakeOver};
pub use recorder::{AuditRecorder, RegistryChange, SandboxRecorder, UsageRecorder};

use key_cache::{KeyCache, Lookup};
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor, Row};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What every key starts with.
pub const KEY_PREFIX: &str = "sbk_";
/// Characters of a key kept in clear, to tell keys apart in listings.
const SHOWN_PREFIX_CHARS: usize = 12;
/// Connections in the pool.
const MAX_CONNECTIONS: u32 = 8;
/// The PostgreSQL advisory lock held while the tables are made.
const SCHEMA_LOCK: i64 = 0x0073_6f75_6c62_6f78; // "soulbox" in ASCII

const SCHEMA: [&str; 8] = [
    "CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, \
     prefix TEXT NOT NULL, created_ms BIGINT NOT NULL, revoked_ms BIGINT)",
    "CREATE TABLE IF NOT EXISTS sandboxes (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, template TEXT NOT NULL, \
     created_ms BIGINT NOT NULL, state TEXT NOT NULL DEFAULT 'running', checkpoints TEXT NOT NULL DEFAULT '', \
     updated_ms BIGINT NOT NULL DEFAULT 0, why TEXT, node TEXT, incarnation TEXT, owner_epoch BIGINT NOT NULL DEFAULT 0, \
     manifest TEXT)",
    "CREATE TABLE IF NOT EXISTS usage (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, kind TEXT NOT NULL, \
     language TEXT NOT NULL, outcome TEXT NOT NULL, duration_us BIGINT NOT NULL, fuel BIGINT, at_ms BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS usage_by_tenant ON usage (tenant, at_ms)",
    "CREATE TABLE IF NOT EXISTS usage_network (usage_id TEXT PRIMARY KEY, requests BIGINT NOT NULL, \
     refused BIGINT NOT NULL, bytes_sent BIGINT NOT NULL, bytes_received BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, key_id TEXT NOT NULL, \
     event TEXT NOT NULL, route TEXT NOT NULL, outcome TEXT NOT NULL, at_ms BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit (tenant, at_ms)",
    "CREATE TABLE IF NOT EXISTS server_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
];

/// The most audit events one listing returns (the newest).
pub const MAX_AUDIT_EVENTS: i64 = 10_000;

/// A security-relevant event: who (tenant and key), what, where, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// The tenant (`-` when the caller was not recognised).
    pub tenant: String,
    /// The API key's id (`-` when none was recognised).
    pub key_id: String,
    /// `key.used`, `key.created`, `key.revoked`, `sandbox.created`, `sandbox.killed`,
    /// `access.refused`, `limit.tripped`.
    pub event: String,
    /// The route (`POST /v1/sandboxes`), or `cli` for the command line.
    pub route: String,
    /// How it ended: a status and error code (`429 rate_limited`), or an outcome.
    pub outcome: String,
    /// When (Unix ms).
    pub at_ms: i64,
}

/// Database failures. Messages name what failed, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// sqlx failed.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// No key has this id.
    #[error("no API key with id `{0}`")]
    NoSuchKey(String),
    /// The tenant name is empty or unusual.
    #[error("invalid tenant name `{0}`: use 1-64 letters, digits, `-` or `_`")]
    InvalidTenant(String),
    /// A key was revoked, but the servers on this database could not be told at once.
    #[error(
        "the key is revoked, but running servers could not be told at once (they refuse it within {keep} s): {0}",
        keep = key_cache::KEEP_FOR.as_secs()
    )]
    RevocationNotice(#[source] std::io::Error),
}

impl DatabaseError {
    /// Whether the database could not be reached (no connection, or none in time), as
    /// opposed to a statement that failed.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            DatabaseError::Sql(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_)
            )
        )
    }
}

/// A key as listed (never the secret).
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// Its id.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// Its first characters.
    pub prefix: String,
    /// When it was made (Unix ms).
    pub created_ms: i64,
    /// When it was revoked (Unix ms), if it was.
    pub revoked_ms: Option<i64>,
}

/// One row of a tenant's usage summary.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UsageRow {
    /// `stateless` or `cell`.
    pub kind: String,
    /// The language.
    pub language: String,
    /// The outcome.
    pub outcome: String,
    /// Executions.
    pub executions: i64,
    /// Their total duration in microseconds.
    pub duration_us: i64,
    /// Their total fuel, where metered.
    pub fuel: i64,
    /// HTTP requests their guests made through a network policy (redirect hops included).
    pub http_requests: i64,
    /// Request body bytes those requests sent.
    pub http_bytes_sent: i64,
    /// Response body bytes they received.
    pub http_bytes_received: i64,
}

/// A live API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveKey {
    /// Its id (`key_...`).
    pub id: String,
    /// Its tenant.
    pub tenant: String,
}

/// One execution to record.
#[derive(Debug, Clone)]
pub struct Usage {
    /// Whose.
    pub tenant: String,
    /// `stateless` or `cell`.
    pub kind: &'static str,
    /// The language.
    pub language: &'static str,
    /// The outcome.
    pub outcome: &'static str,
    /// Its duration in microseconds.
    pub duration_us: i64,
    /// Fuel used, when metered.
    pub fuel: Option<i64>,
    /// What its guest's HTTP used, for an execution with a network policy.
    pub network: Option<soulbox_engine::NetworkUsage>,
    /// When it ended (Unix ms).
    pub at_ms: i64,
}

/// The database handle. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    /// PostgreSQL (else SQLite).
    postgres: bool,
    /// The live keys looked up, for a SQLite database in a file ([`key_cache`]).
    key_cache: Option<Arc<KeyCache>>,
}

impl Database {
    /// Connects to `url` (`sqlite://path` is created if missing; `postgres://...`) and creates
    /// the tables that are missing.
    pub async fn open(url: &str) -> Result<Self, DatabaseError> {
        install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let url = if sqlite && !url.contains('?') { format!("{url}?mode=rwc") } else { url.into() };
        let pool = AnyPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if sqlite {
                        connection.execute("PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        if sqlite {
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        let key_cache =
            if sqlite { sqlite_file(&pool).await?.map(|file| Arc::new(KeyCache::new(&file))) } else { None };
        let db = Database { pool, postgres: !sqlite, key_cache };
        // PostgreSQL: processes opening one database at once (a cluster's nodes starting
        // together) make its tables one after the other (`CREATE TABLE IF NOT EXISTS` races
        // on its catalog otherwise), under a lock held for the transaction.
        let mut transaction = db.pool.begin().await?;
        if !sqlite {
            sqlx::query("SELECT pg_advisory_xact_lock($1)::text").bind(SCHEMA_LOCK).execute(&mut *transaction).await?;
        }
        for statement in SCHEMA {
            sqlx::query(statement).execute(&mut *transaction).await?;
        }
        db.upgrade_sandboxes(&mut transaction).await?;
        transaction.commit().await?;
        Ok(db)
    }

    /// Whether the database is PostgreSQL (else SQLite).
    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// Makes a key for `tenant`; returns its id and the secret (shown once).
    pub async fn create_key(&self, tenant: &str) -> Result<(String, String), DatabaseError> {
        if !soulbox_engine::sandbox::is_plain_name(tenant) {
            return Err(DatabaseError::InvalidTenant(tenant.to_owned()));
        }
        let secret = format!("{KEY_PREFIX}{}", random_hex::<32>());
        let id = format!("key_{}", random_hex::<8>());
        sqlx::query("INSERT INTO api_keys (id, tenant, hash, prefix, created_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(&id)
            .bind(tenant)
            .bind(hash(&secret))
            .bind(&secret[..SHOWN_PREFIX_CHARS])
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        self.record_audit(&[AuditEvent::cli(tenant, &id, "key.created")]).await?;
        Ok((id, secret))
    }

    /// The server's secret called `name` (64 hex digits), made at its first use and the same
    /// for every process on this database ever after: what per-sandbox tokens are derived
    /// from, so a token handed out before a restart still works after it.
    pub async fn secret(&self, name: &str) -> Result<String, DatabaseError> {
        sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(random_hex::<32>())
            .execute(&self.pool)
            .await?;
        let row =
            sqlx::query("SELECT value FROM server_secrets WHERE name = $1").bind(name).fetch_one(&self.pool).await?;
        Ok(row.try_get("value")?)
    }

    /// Every key, oldest first.
    pub async fn keys(&self) -> Result<Vec<KeyInfo>, DatabaseError> {
        let rows =
            sqlx::query("SELECT id, tenant, prefix, created_ms, revoked_ms FROM api_keys ORDER BY created_ms, id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(KeyInfo {
                    id: row.try_get("id")?,
                    tenant: row.try_get("tenant")?,
                    prefix: row.try_get("prefix")?,
                    created_ms: row.try_get("created_ms")?,
                    revoked_ms: row.try_get("revoked_ms")?,
                })
            })
            .collect()
    }

    /// Revokes a key: it stops working at once, on every server using this database (each
    /// server's [`KeyCache`] is told once the revocation has committed).
    pub async fn revoke(&self, id: &str) -> Result<(), DatabaseError> {
        let done = sqlx::query("UPDATE api_keys SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(DatabaseError::NoSuchKey(id.to_owned()));
        }
        let told = self.key_cache.as_deref().map_or(Ok(()), KeyCache::notice_revocation);
        let audited = self.audit_revocation(id).await;
        told.map_err(DatabaseError::RevocationNotice)?;
        audited
    }

    async fn audit_revocation(&self, id: &str) -> Result<(), DatabaseError> {
        let tenant: String = sqlx::query("SELECT tenant FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?
            .try_get("tenant")?;
        self.record_audit(&[AuditEvent::cli(&tenant, id, "key.revoked")]).await
    }

    /// The id and tenant of a live key, if `secret` is one: from the [`KeyCache`] when it
    /// holds the key, else queried (and kept, for SQLite in a file).
    pub async fn key_of(&self, secret: &str) -> Result<Option<LiveKey>, DatabaseError> {
        if !secret.starts_with(KEY_PREFIX) {
            return Ok(None);
        }
        let hash = hash(secret);
        let seen = match self.key_cache.as_deref().map(|cache| cache.get(&hash)) {
            Some(Lookup::Hit(key)) => return Ok(Some(key)),
            Some(Lookup::Miss(seen)) => Some(seen),
            None => None,
        };
        let row = sqlx::query("SELECT id, tenant FROM api_keys WHERE hash = $1 AND revoked_ms IS NULL")
            .bind(&hash)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let key = LiveKey { id: row.try_get("id")?, tenant: row.try_get("tenant")? };
        if let (Some(cache), Some(seen)) = (&self.key_cache, seen) {
            cache.keep(hash, key.clone(), seen);
        }
        Ok(Some(key))
    }

    /// Records executions, in one transaction.
    pub async fn record_usage(&self, records: &[Usage]) -> Result<(), DatabaseError> {
        let mut transaction = self.pool.begin().await?;
        for usage in records {
            let id = random_hex::<16>();
            sqlx::query(
                "INSERT INTO usage (id, tenant, kind, language, outcome, duration_us, fuel, at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&id)
            .bind(&usage.tenant)
            .bind(usage.kind)
            .bind(usage.language)
            .bind(usage.outcome)
            .bind(usage.duration_us)
            .bind(usage.fuel)
            .bind(usage.at_ms)
            .execute(&mut *transaction)
            .await?;
            if let Some(network) = usage.network {
                let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                sqlx::query(
                    "INSERT INTO usage_network (usage_id, requests, refused, bytes_sent, bytes_received) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&id)
                .bind(count(network.requests))
                .bind(count(network.refused))
                .bind(count(network.bytes_sent))
                .bind(count(network.bytes_received))
                .execute(&mut *transaction)
                .await?;
            }
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Records audit events, in one transaction.
    pub async fn record_audit(&self, events: &[AuditEvent]) -> Result<(), DatabaseError> {
        let mut transaction = self.pool.begin().await?;
        for event in events {
            sqlx::query(
                "INSERT INTO audit (id, tenant, key_id, event, route, outcome, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(random_hex::<16>())
            .bind(&event.tenant)
            .bind(&event.key_id)
            .bind(&event.event)
            .bind(&event.route)
            .bind(&event.outcome)
            .bind(event.at_ms)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// A tenant's audit events since `since_ms`, oldest first (at most [`MAX_AUDIT_EVENTS`],
    /// the newest).
    pub async fn audit(&self, tenant: &str, since_ms: i64) -> Result<Vec<AuditEvent>, DatabaseError> {
        let rows = sqlx::query(
            "SELECT tenant, key_id, event, route, outcome, at_ms FROM audit WHERE tenant = $1 AND at_ms >= $2 \
             ORDER BY at_ms DESC, id LIMIT $3",
        )
        .bind(tenant)
        .bind(since_ms)
        .bind(MAX_AUDIT_EVENTS)
        .fetch_all(&self.pool)
        .await?;
        let mut events = rows
            .iter()
            .map(|row| {
                Ok(AuditEvent {
                    tenant: row.try_get("tenant")?,
                    key_id: row.try_get("key_id")?,
                    event: row.try_get("event")?,
                    route: row.try_get("route")?,
                    outcome: row.try_get("outcome")?,
                    at_ms: row.try_get("at_ms")?,
                })
            })
            .collect::<Result<Vec<_>, DatabaseError>>()?;
        events.reverse();
        Ok(events)
    }

    /// Every tenant's execution time since `since_ms`, in microseconds.
    pub async fn execution_us_since(
        &self,
        since_ms: i64,
    ) -> Result<std::collections::HashMap<String, i64>, DatabaseError> {
        let rows = sqlx::query(
            "SELECT tenant, CAST(SUM(duration_us) AS BIGINT) AS duration_us FROM usage WHERE at_ms >= $1 GROUP BY tenant",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok((row.try_get("tenant")?, row.try_get("duration_us")?))).collect()
    }

    /// A tenant's usage since `since_ms`, by kind, language and outcome.
    pub async fn usage(&self, tenant: &str, since_ms: i64) -> Result<Vec<UsageRow>, DatabaseError> {
        let rows = sqlx::query(
            "SELECT u.kind, u.language, u.outcome, COUNT(*) AS executions, \
             CAST(SUM(u.duration_us) AS BIGINT) AS duration_us, CAST(COALESCE(SUM(u.fuel), 0) AS BIGINT) AS fuel, \
             CAST(COALESCE(SUM(n.requests), 0) AS BIGINT) AS http_requests, \
             CAST(COALESCE(SUM(n.bytes_sent), 0) AS BIGINT) AS http_bytes_sent, \
             CAST(COALESCE(SUM(n.bytes_received), 0) AS BIGINT) AS http_bytes_received \
             FROM usage u LEFT JOIN usage_network n ON n.usage_id = u.id WHERE u.tenant = $1 AND u.at_ms >= $2 \
             GROUP BY u.kind, u.language, u.outcome ORDER BY u.kind, u.language, u.outcome",
        )
        .bind(tenant)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UsageRow {
                    kind: row.try_get("kind")?,
                    language: row.try_get("language")?,
                    outcome: row.try_get("outcome")?,
                    executions: row.try_get("executions")?,
                    duration_us: row.try_get("duration_us")?,
                    fuel: row.try_get("fuel")?,
                    http_requests: row.try_get("http_requests")?,
                    http_bytes_sent: row.try_get("http_bytes_sent")?,
                    http_bytes_received: row.try_get("http_bytes_received")?,
                })
            })
            .collect()
    }
}

impl AuditEvent {
    /// An event of the command line's (keys made and revoked).
    fn cli(tenant: &str, key_id: &str, event: &str) -> Self {
        AuditEvent {
            tenant: tenant.into(),
            key_id: key_id.into(),
            event: event.into(),
            route: "cli".into(),
            outcome: "done".into(),
            at_ms: now_ms(),
        }
    }
}

/// The file SQLite opened for `pool`'s main database, as SQLite reports it, links resolved: the
/// command line and a server may name it differently, and must agree on where the revocation
/// notice is. `None` for an in-memory database, or a file whose path cannot be resolved (its
/// keys are then queried on every request).
async fn sqlite_file(pool: &AnyPool) -> Result<Option<std::path::PathBuf>, DatabaseError> {
    let databases = sqlx::query("PRAGMA database_list").fetch_all(pool).await?;
    let main = databases.iter().find(|row| row.try_get::<String, _>("name").is_ok_and(|name| name == "main"));
    let Some(file) = main.and_then(|row| row.try_get::<String, _>("file").ok()).filter(|file| !file.is_empty()) else {
        return Ok(None);
    };
    match std::fs::canonicalize(&file) {
        Ok(file) => Ok(Some(file)),
        Err(error) => {
            tracing::warn!(%error, file, "the database file's path cannot be resolved: API keys are looked up on every request");
            Ok(None)
        }
    }
}

/// The stored form of a key.
fn hash(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// `N` random bytes from the OS, as hex.
fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// A PostgreSQL schema of its own on `$SOULBOX_TEST_POSTGRES_URL` (which `scripts/test.sh`
/// sets up with `scripts/postgres.sh`), for a test. Without the variable the test fails: it
/// never passes by skipping.
#[cfg(test)]
pub(crate) struct ScratchSchema {
    admin: AnyPool,
    name: String,
    /// A URL whose connections use the schema.
    pub url: String,
}

#[cfg(test)]
impl ScratchSchema {
    pub(crate) async fn new() -> ScratchSchema {
        let url = std::env::var("SOULBOX_TEST_POSTGRES_URL").expect(
            "SOULBOX_TEST_POSTGRES_URL names a PostgreSQL server (scripts/test.sh starts one with scripts/postgres.sh)",
        );
        let name = format!("test_{}", random_hex::<6>());
        install_default_drivers();
        let admin = AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA {name}")).execute(&admin).await.unwrap();
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}options=-c%20search_path%3D{name}");
        ScratchSchema { admin, name, url }
    }

    /// Drops the schema.
    pub(crate) async fn drop_schema(self) {
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name)).execute(&self.admin).await.unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_tenants_and_usage_in_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        keys_tenants_and_usage(&format!("sqlite://{}", dir.path().join("t.db").display())).await;
    }

    /// The same code against a real PostgreSQL server: `$SOULBOX_TEST_POSTGRES_URL` (which
    /// `scripts/test.sh` sets up with `scripts/postgres.sh`), in a schema of its own. Without
    /// it the test fails: it never passes by skipping.
    #[tokio::test]
    async fn keys_tenants_and_usage_in_postgres() {
        let schema = ScratchSchema::new().await;
        keys_tenants_and_usage(&schema.url).await;
        schema.drop_schema().await;
    }

    #[tokio::test]
    async fn an_earlier_versions_sandbox_table_gains_the_registry_columns() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        install_default_drivers();
        let old = AnyPoolOptions::new().max_connections(1).connect(&format!("{url}?mode=rwc")).await.unwrap();
        sqlx::query("CREATE TABLE sandboxes (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, template TEXT NOT NULL, created_ms BIGINT NOT NULL)")
            .execute(&old)
            .await
            .unwrap();
        sqlx::query("INSERT INTO sandboxes VALUES ('sbx-old', 'acme', 'python', 5)").execute(&old).await.unwrap();
        old.close().await;
        let db = Database::open(&url).await.unwrap();
        let rows = db.sandboxes(Some("acme"), None).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].id.as_str(), rows[0].state.as_str(), rows[0].created_ms), ("sbx-old", "running", 5));
    }

    async fn keys_tenants_and_usage(url: &str) {
        let db = Database::open(url).await.unwrap();
        let (id, key) = db.create_key("acme").await.unwrap();
        assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 64);
        let live = Some(LiveKey { id: id.clone(), tenant: "acme".into() });
        assert_eq!(db.key_of(&key).await.unwrap(), live);
        assert_eq!(db.key_cache.is_some(), !db.is_postgres(), "a SQLite file keeps its live keys");
        assert_eq!(db.key_of(&key).await.unwrap(), live, "again (in SQLite, from the key cache)");
        assert_eq!(db.key_of("sbk_wrong").await.unwrap(), None);
        let secret = db.secret("tokens").await.unwrap();
        assert_eq!(secret.len(), 64);
        assert_eq!(Database::open(url).await.unwrap().secret("tokens").await.unwrap(), secret, "made once, then kept");
        assert_ne!(db.secret("another").await.unwrap(), secret);
        let listed = db.keys().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(!format!("{listed:?}").contains(&secret), "the secret is never listed");
        let usage = Usage {
            tenant: "acme".into(),
            kind: "stateless",
            language: "python",
            outcome: "completed",
            duration_us: 700,
            fuel: None,
            network: None,
            at_ms: now_ms(),
        };
        let fetched = soulbox_engine::NetworkUsage { requests: 2, refused: 1, bytes_sent: 10, bytes_received: 300 };
        let with_network = Usage { network: Some(fetched), ..usage.clone() };
        db.record_usage(&[usage, with_network]).await.unwrap();
        let rows = db.usage("acme", 0).await.unwrap();
        assert_eq!((rows[0].executions, rows[0].duration_us), (2, 1400));
        assert_eq!((rows[0].http_requests, rows[0].http_bytes_sent, rows[0].http_bytes_received), (2, 10, 300));
        assert_eq!(db.execution_us_since(0).await.unwrap().get("acme"), Some(&1400));
        assert!(db.usage("other", 0).await.unwrap().is_empty());
        let elsewhere = Database::open(url).await.unwrap(); // another server on the same database
        assert_eq!(elsewhere.key_of(&key).await.unwrap(), live);
        db.revoke(&id).await.unwrap();
        assert_eq!(db.key_of(&key).await.unwrap(), None, "revoked: refused at once");
        assert_eq!(elsewhere.key_of(&key).await.unwrap(), None, "by every server on the database");
        let audit = db.audit("acme", 0).await.unwrap();
        let events: Vec<&str> = audit.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(events, ["key.created", "key.revoked"]);
        assert!(audit.iter().all(|e| e.key_id == id));
        assert!(db.audit("other", 0).await.unwrap().is_empty());
        assert!(matches!(db.revoke(&id).await, Err(DatabaseError::NoSuchKey(_))));
        assert!(matches!(db.create_key("no spaces").await, Err(DatabaseError::InvalidTenant(_))));
        sandboxes::tests::the_registry_follows_each_sandbox_and_a_killed_one_stays_killed(&db).await;
        // Reopening keeps everything.
        let again = Database::open(url).await.unwrap();
        assert_eq!(again.keys().await.unwrap().len(), 1);
        assert_eq!(again.sandboxes(None, None).await.unwrap().len(), 3);
    }
}

//! The audit log: security-relevant events, recorded in the database off the request path
//! (batched, like usage) and readable by each tenant for itself (`GET /v1/audit`).
//!
//! Recorded: a key's use (at most once per key per [`KEY_USED_EVERY`], so a busy key does not
//! flood the log), sandboxes created and killed, access refused (401: the tenant is unknown, so
//! only operators see these, in the database), limits tripped (429 rate limits and quotas, 503
//! busy, and executions stopped by a limit), keys created and revoked (by the command line).

use super::auth::Caller;
use super::execute::Since;
use super::{ApiError, ApiJson, ApiQuery, AppState};
use crate::database::{AuditEvent, AuditRecorder, Database, now_ms};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use soulbox_engine::Outcome;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A key's use is recorded at most this often.
pub const KEY_USED_EVERY: Duration = Duration::from_secs(60);
/// Keys whose last recorded use is remembered, at most (older entries are forgotten first).
const MAX_REMEMBERED_KEYS: usize = 100_000;
/// Who an unrecognised caller is, in the log.
const UNKNOWN: &str = "-";

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/audit", get(list))
}

/// Records audit events. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Audit {
    recorder: AuditRecorder,
    last_used: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Audit {
    /// Starts the writer (inside a tokio runtime).
    pub fn start(db: Database) -> Self {
        Audit { recorder: AuditRecorder::start(db), last_used: Arc::default() }
    }

    /// Records `event` for `caller` (`None`: not recognised) on `route`, ended as `outcome`.
    pub fn record(&self, caller: Option<&Caller>, event: &str, route: &str, outcome: &str) {
        let (tenant, key_id) = caller.map_or((UNKNOWN, UNKNOWN), |c| (c.tenant.0.as_str(), c.key.as_str()));
        self.recorder.record(AuditEvent {
            tenant: tenant.into(),
            key_id: key_id.into(),
            event: event.into(),
            route: route.into(),
            outcome: outcome.into(),
            at_ms: now_ms(),
        });
    }

    /// Records that `caller`'s key was used (`method` on `route`), unless it was within
    /// [`KEY_USED_EVERY`]: on every request, so it costs a map lookup and nothing more.
    pub fn key_used(&self, caller: &Caller, method: &str, route: &str) {
        let now = Instant::now();
        {
            let mut last = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
            if last.get(&caller.key).is_some_and(|at| now.duration_since(*at) < KEY_USED_EVERY) {
                return;
            }
            if last.len() >= MAX_REMEMBERED_KEYS {
                last.retain(|_, at| now.duration_since(*at) < KEY_USED_EVERY);
            }
            last.insert(caller.key.clone(), now);
        }
        self.record(Some(caller), "key.used", &format!("{method} {route}"), "ok");
    }

    /// Records an execution a limit stopped (deadline, memory, output, fuel, open files).
    pub fn execution_ended(&self, caller: &Caller, kind: &str, outcome: Outcome) {
        let tripped = matches!(
            outcome,
            Outcome::DeadlineExceeded
                | Outcome::FuelExhausted
                | Outcome::MemoryExceeded
                | Outcome::OutputLimitExceeded
                | Outcome::OpenFileLimitExceeded
        );
        if tripped {
            self.record(Some(caller), "limit.tripped", kind, outcome.name());
        }
    }

    /// Records what a response says about a request: refusals, limits, sandboxes made and
    /// killed.
    pub fn response(&self, caller: Option<&Caller>, method: &str, route: &str, status: u16, code: Option<&str>) {
        let event = match (status, method, route) {
            (401, ..) => "access.refused",
            (429 | 503, ..) => "limit.tripped",
            (201, "POST", "/v1/sandboxes") => "sandbox.created",
            (204, "DELETE", "/v1/sandboxes/{id}") => "sandbox.killed",
            _ => return,
        };
        let outcome = match code {
            Some(code) => format!("{status} {code}"),
            None => status.to_string(),
        };
        self.record(caller, event, &format!("{method} {route}"), &outcome);
    }

    /// Writes what is queued and stops.
    pub async fn close(&self) {
        self.recorder.close().await;
    }
}

/// The caller's tenant's audit events, oldest first (at most the newest 10,000): keys used
/// (once a minute at most), created and revoked, sandboxes created and killed, limits tripped.
#[utoipa::path(get, path = "/v1/audit", tag = "usage", params(Since),
    responses((status = 200, body = Vec<AuditEvent>), super::openapi::ErrorResponses))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(since): ApiQuery<Since>,
) -> Result<ApiJson<Vec<AuditEvent>>, ApiError> {
    Ok(ApiJson(state.auth.db().audit(&caller.tenant.0, since.since_ms).await?))
}

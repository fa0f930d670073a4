//! [`Budgets`]: what each tenant may spend per UTC day, execution seconds and sandbox hours;
//! once spent, requests that would spend more get 429 `budget_exhausted` with a `Retry-After`
//! to midnight UTC.
//!
//! Execution time is charged when an execution ends (one-shot runs, cells, commands: their
//! durations); it is seeded at start from the day's usage records, so a restart does not hand
//! out a fresh budget. Sandbox time is charged when a sandbox closes (killed or expired, from
//! the engine's closings) plus, at each check, what the tenant's open sandboxes have lived
//! today. A budget of zero is no budget. A check comes before the work, so the request that
//! crosses the line still completes: a budget bounds spending to within one execution.

use super::ApiError;
use super::auth::Tenant;
use crate::database::now_ms;
use soulbox_engine::sandbox::{ClosedSandbox, SandboxInfo};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Daily budgets per tenant. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Budgets {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Execution microseconds a tenant may spend per day (0: no budget).
    execution_us: u64,
    /// Sandbox milliseconds a tenant may spend per day (0: no budget).
    sandbox_ms: u64,
    spent: Mutex<HashMap<String, Spent>>,
}

/// One tenant's spending on one day.
#[derive(Debug, Default, Clone, Copy)]
struct Spent {
    day: i64,
    execution_us: u64,
    closed_sandbox_ms: u64,
}

impl Budgets {
    /// Budgets of `execution_seconds` and `sandbox_hours` per tenant per day (0: none).
    pub fn new(execution_seconds: u64, sandbox_hours: f64) -> Self {
        Budgets {
            inner: Arc::new(Inner {
                execution_us: execution_seconds.saturating_mul(1_000_000),
                sandbox_ms: (sandbox_hours * 3_600_000.0).round() as u64,
                spent: Mutex::default(),
            }),
        }
    }

    /// Counts what tenants already spent today (from the usage records).
    pub fn seed(&self, execution_us_today: HashMap<String, i64>) {
        let today = today();
        let mut spent = self.inner.spent.lock().unwrap_or_else(|e| e.into_inner());
        for (tenant, us) in execution_us_today {
            let entry = spent.entry(tenant).or_default();
            *entry = Spent { day: today, execution_us: u64::try_from(us).unwrap_or(0), closed_sandbox_ms: 0 };
        }
    }

    /// The start of today (UTC), in Unix milliseconds.
    pub fn today_ms() -> i64 {
        today() * DAY_MS
    }

    /// Refuses an execution when `tenant`'s execution time for today is spent.
    pub fn check_execution(&self, tenant: &Tenant) -> Result<(), ApiError> {
        let budget = self.inner.execution_us;
        if budget == 0 || self.spent(tenant).execution_us < budget {
            return Ok(());
        }
        Err(exhausted(format!("this tenant's {} execution seconds for today are spent", budget / 1_000_000)))
    }

    /// Refuses a new sandbox when `tenant`'s sandbox time for today (closed ones, plus its open
    /// sandboxes, which `open` lists only when there is a budget) is spent.
    pub fn check_sandbox(&self, tenant: &Tenant, open: impl FnOnce() -> Vec<SandboxInfo>) -> Result<(), ApiError> {
        let budget = self.inner.sandbox_ms;
        if budget == 0 {
            return Ok(());
        }
        let (now, day_start) = (now_ms(), Self::today_ms());
        let living: u64 = open()
            .iter()
            .map(|info| u64::try_from(now - (info.created_at_ms as i64).max(day_start)).unwrap_or(0))
            .sum();
        if self.spent(tenant).closed_sandbox_ms + living < budget {
            return Ok(());
        }
        Err(exhausted(format!("this tenant's {:.3} sandbox hours for today are spent", budget as f64 / 3_600_000.0)))
    }

    /// Charges an execution's time.
    pub fn charge_execution(&self, tenant: &Tenant, took: Duration) {
        if self.inner.execution_us > 0 {
            let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            self.update(&tenant.0, |spent| spent.execution_us = spent.execution_us.saturating_add(took));
        }
    }

    /// Charges a closed sandbox's time today.
    pub fn charge_sandbox(&self, closed: &ClosedSandbox) {
        let Some(owner) = &closed.owner else { return };
        if self.inner.sandbox_ms == 0 {
            return;
        }
        let (created, closed_at) = (epoch_ms(closed.created_at).max(Self::today_ms()), epoch_ms(closed.closed_at));
        let lived = u64::try_from(closed_at - created).unwrap_or(0);
        self.update(owner, |spent| spent.closed_sandbox_ms = spent.closed_sandbox_ms.saturating_add(lived));
    }

    fn spent(&self, tenant: &Tenant) -> Spent {
        let spent = self.inner.spent.lock().unwrap_or_else(|e| e.into_inner());
        spent.get(&tenant.0).copied().filter(|s| s.day == today()).unwrap_or_default()
    }

    fn update(&self, tenant: &str, change: impl FnOnce(&mut Spent)) {
        let today = today();
        let mut spent = self.inner.spent.lock().unwrap_or_else(|e| e.into_inner());
        let entry = spent.entry(tenant.to_owned()).or_default();
        if entry.day != today {
            *entry = Spent { day: today, ..Spent::default() };
        }
        change(entry);
    }
}

/// Charges every sandbox that closes to its owner's budget, until the registry goes away.
pub async fn charge_closed_sandboxes(budgets: Budgets, mut closed: tokio::sync::broadcast::Receiver<ClosedSandbox>) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match closed.recv().await {
            Ok(sandbox) => budgets.charge_sandbox(&sandbox),
            Err(RecvError::Lagged(missed)) => tracing::warn!(missed, "sandbox closings missed by the budgets"),
            Err(RecvError::Closed) => return,
        }
    }
}

fn exhausted(what: String) -> ApiError {
    let until_midnight = Budgets::today_ms() + DAY_MS - now_ms();
    ApiError::BudgetExhausted {
        message: format!("{what}; the budget renews at 00:00 UTC"),
        retry_after: Duration::from_millis(u64::try_from(until_midnight).unwrap_or(0)),
    }
}

/// Days since the Unix epoch (UTC).
fn today() -> i64 {
    now_ms().div_euclid(DAY_MS)
}

fn epoch_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_budget_refuses_until_the_day_turns_and_zero_is_no_budget() {
        let (tenant, other) = (Tenant("t".into()), Tenant("u".into()));
        let budgets = Budgets::new(1, 0.0);
        budgets.check_execution(&tenant).unwrap();
        budgets.charge_execution(&tenant, Duration::from_millis(1500));
        let Err(ApiError::BudgetExhausted { retry_after, .. }) = budgets.check_execution(&tenant) else {
            panic!("spent")
        };
        assert!(retry_after <= Duration::from_secs(24 * 3600));
        budgets.check_execution(&other).unwrap();
        budgets.check_sandbox(&tenant, Vec::new).unwrap();
        let unlimited = Budgets::new(0, 0.0);
        unlimited.charge_execution(&tenant, Duration::from_secs(1_000_000));
        unlimited.check_execution(&tenant).unwrap();
    }

    #[test]
    fn closed_sandboxes_count_from_the_start_of_the_day() {
        let tenant = Tenant("t".into());
        let budgets = Budgets::new(0, 1.0);
        let now = SystemTime::now();
        let closed = ClosedSandbox {
            id: "s".into(),
            owner: Some("t".into()),
            created_at: now - Duration::from_secs(48 * 3600),
            closed_at: now,
        };
        budgets.charge_sandbox(&closed);
        let lived_today = u64::try_from(now_ms() - Budgets::today_ms()).unwrap();
        let expected = lived_today >= 3_600_000;
        assert_eq!(budgets.check_sandbox(&tenant, Vec::new).is_err(), expected, "only today's hours count");
    }
}

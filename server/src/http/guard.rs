//! [`Guard`]: what keeps one caller, or all of them, from overwhelming the server.
//!
//! - Per key, a rate limit (a GCRA token bucket: `requests_per_second`, with `burst` allowed
//!   at once) applied to every authenticated request; past it, 429 `rate_limited` with the
//!   `Retry-After` the bucket computes.
//! - Per key, a quota of executions running at once (one-shot runs and cells, streamed or
//!   not, REST or MCP); past it, 429 `quota_exceeded`. The permit lives as long as the
//!   execution, to the end of a streamed response.
//! - Globally, a bound on requests in flight ([`overloaded`] answers 503 `busy` when it is
//!   reached, at once, instead of queueing) and the worker pool's own admission bound (also
//!   503 `busy`), and a timeout on producing each response (504 `timeout`).
//!
//! Nothing here queues without bound: every refusal is immediate and says when to retry.

use super::ApiError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Per-key limits. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    rate: DefaultKeyedRateLimiter<String>,
    executions: Mutex<HashMap<String, Arc<Semaphore>>>,
    max_executions: usize,
}

/// The right to run one execution for a key; dropping it frees the slot.
#[derive(Debug)]
pub struct ExecutionPermit {
    _permit: OwnedSemaphorePermit,
}

impl Guard {
    /// Limits of `per_second` requests (with `burst` at once) and `max_executions` running
    /// executions per key. Zero values are raised to one.
    pub fn new(per_second: u32, burst: u32, max_executions: u32) -> Self {
        let one = NonZeroU32::MIN;
        let quota = Quota::per_second(NonZeroU32::new(per_second).unwrap_or(one))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(one));
        Guard {
            inner: Arc::new(Inner {
                rate: RateLimiter::keyed(quota),
                executions: Mutex::default(),
                max_executions: max_executions.max(1) as usize,
            }),
        }
    }

    /// Takes one request from `key`'s bucket, or says when the next is allowed.
    pub fn check_rate(&self, key: &str) -> Result<(), ApiError> {
        match self.inner.rate.check_key(&key.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(ApiError::RateLimited {
                    message: "too many requests for this API key; slow down".into(),
                    retry_after: wait.max(Duration::from_secs(1)),
                })
            }
        }
    }

    /// A slot for one execution by `key`, or 429 when all of the key's are taken.
    pub fn execution_slot(&self, key: &str) -> Result<ExecutionPermit, ApiError> {
        let semaphore = {
            let mut all = self.inner.executions.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(all.entry(key.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(self.inner.max_executions))))
        };
        semaphore.try_acquire_owned().map(|permit| ExecutionPermit { _permit: permit }).map_err(|_| {
            ApiError::QuotaExceeded(format!(
                "this API key already has {} executions running, the most allowed; retry when one ends",
                self.inner.max_executions
            ))
        })
    }

    /// Forgets idle keys' rate state (called now and then; memory stays bounded by active keys).
    pub fn shrink(&self) {
        self.inner.rate.retain_recent();
        let mut all = self.inner.executions.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|_, semaphore| semaphore.available_permits() < self.inner.max_executions);
    }
}

/// Answers a request the in-flight bound shed.
pub async fn overloaded(_: tower::BoxError) -> ApiError {
    ApiError::Busy("the server is at its limit of requests in flight; retry shortly".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_is_per_key_and_says_when_to_retry() {
        let guard = Guard::new(1, 2, 1);
        assert!(guard.check_rate("a").is_ok());
        assert!(guard.check_rate("a").is_ok());
        let Err(ApiError::RateLimited { retry_after, .. }) = guard.check_rate("a") else { panic!("limited") };
        assert!(retry_after >= Duration::from_secs(1));
        assert!(guard.check_rate("b").is_ok(), "another key has its own bucket");
    }

    #[test]
    fn executions_are_counted_per_key_until_the_permit_drops() {
        let guard = Guard::new(100, 100, 2);
        let first = guard.execution_slot("a").unwrap();
        let _second = guard.execution_slot("a").unwrap();
        assert!(matches!(guard.execution_slot("a"), Err(ApiError::QuotaExceeded(_))));
        assert!(guard.execution_slot("b").is_ok());
        drop(first);
        assert!(guard.execution_slot("a").is_ok());
        guard.shrink();
    }
}

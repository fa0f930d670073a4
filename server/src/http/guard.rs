//! [`Guard`]: what keeps one caller, or all of them, from overwhelming the server.
//!
//! - Per key, a rate limit (a GCRA token bucket: `requests_per_second`, with `burst` allowed
//!   at once) applied to every authenticated request; past it, 429 `rate_limited` with the
//!   `Retry-After` the bucket computes. In a cluster each node enforces its share: the limit
//!   and the burst divided by the live nodes (at least one each), so the key's total across
//!   the cluster stays within the limit; a change in the live nodes starts the buckets anew.
//! - Per key, a quota of executions running at once (one-shot runs and cells, streamed or
//!   not, REST or MCP); past it, 429 `quota_exceeded`. The permit lives as long as the
//!   execution, to the end of a streamed response. In a cluster the quota holds across the
//!   nodes: past the node's own count, each execution also takes a slot counted in the shared
//!   database, which the node keeps a moment to reuse ([`crate::cluster::ClusterSlot`]).
//! - Globally, a bound on requests in flight ([`overloaded`] answers 503 `busy` when it is
//!   reached, at once, instead of queueing) and the worker pool's own admission bound (also
//!   503 `busy`), and a timeout on producing each response (504 `timeout`).
//!
//! Nothing here queues without bound: every refusal is immediate and says when to retry.

use super::ApiError;
use crate::cluster::{Cluster, ClusterError, ClusterSlot};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Per-key limits. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    per_second: NonZeroU32,
    burst: NonZeroU32,
    rate: RwLock<SharedRate>,
    executions: Mutex<HashMap<String, Arc<Semaphore>>>,
    max_executions: usize,
}

/// The buckets of this node's share of the rate limit.
#[derive(Debug)]
struct SharedRate {
    /// The live nodes the limit is shared by.
    nodes: u32,
    limiter: DefaultKeyedRateLimiter<String>,
}

impl SharedRate {
    /// `per_second` (with `burst`) shared by `nodes`: each gets its part, at least one.
    fn new(per_second: NonZeroU32, burst: NonZeroU32, nodes: u32) -> SharedRate {
        let part = |total: NonZeroU32| NonZeroU32::new(total.get() / nodes.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(part(per_second)).allow_burst(part(burst));
        SharedRate { nodes, limiter: RateLimiter::keyed(quota) }
    }
}

/// The right to run one execution for a key; dropping it frees the slot (in a cluster, the
/// node keeps the cluster's slot a moment for the key's next execution).
#[derive(Debug)]
pub struct ExecutionPermit {
    _local: OwnedSemaphorePermit,
    _cluster: Option<ClusterSlot>,
}

impl Guard {
    /// Limits of `per_second` requests (with `burst` at once) and `max_executions` running
    /// executions per key. Zero values are raised to one.
    pub fn new(per_second: u32, burst: u32, max_executions: u32) -> Self {
        let one = NonZeroU32::MIN;
        let (per_second, burst) = (NonZeroU32::new(per_second).unwrap_or(one), NonZeroU32::new(burst).unwrap_or(one));
        Guard {
            inner: Arc::new(Inner {
                per_second,
                burst,
                rate: RwLock::new(SharedRate::new(per_second, burst, 1)),
                executions: Mutex::default(),
                max_executions: max_executions.max(1) as usize,
            }),
        }
    }

    /// Takes one request from `key`'s bucket (this node's share of the limit, with `nodes`
    /// live nodes sharing it), or says when the next is allowed.
    pub fn check_rate(&self, key: &str, nodes: u32) -> Result<(), ApiError> {
        let nodes = nodes.max(1);
        let shared = self.inner.rate.read().unwrap_or_else(|e| e.into_inner());
        if shared.nodes == nodes {
            return limited(&shared.limiter, key);
        }
        drop(shared);
        let mut shared = self.inner.rate.write().unwrap_or_else(|e| e.into_inner());
        if shared.nodes != nodes {
            *shared = SharedRate::new(self.inner.per_second, self.inner.burst, nodes);
        }
        limited(&shared.limiter, key)
    }

    /// A slot for one execution by `key`, or 429 when all of the key's are taken: on this
    /// node, and in `cluster`'s database when the server is one of its nodes.
    pub async fn execution_slot(&self, key: &str, cluster: Option<&Cluster>) -> Result<ExecutionPermit, ApiError> {
        let local = self.local_slot(key)?;
        let Some(cluster) = cluster else { return Ok(ExecutionPermit { _local: local, _cluster: None }) };
        match cluster.take_execution_slot(key, self.inner.max_executions).await {
            Ok(slot) => Ok(ExecutionPermit { _local: local, _cluster: Some(slot) }),
            Err(ClusterError::KeyBusy(max)) => Err(ApiError::QuotaExceeded(format!(
                "this API key already has {max} executions running across the cluster, the most allowed; retry when one ends"
            ))),
            Err(ClusterError::NotLive) => Err(ApiError::Unavailable(ClusterError::NotLive.to_string())),
            Err(error) => {
                tracing::warn!(%error, "could not count an execution in the cluster's database");
                Err(ApiError::Unavailable("the cluster's database did not answer; retry".into()))
            }
        }
    }

    /// This node's slot for one execution by `key`.
    fn local_slot(&self, key: &str) -> Result<OwnedSemaphorePermit, ApiError> {
        let semaphore = {
            let mut all = self.inner.executions.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(all.entry(key.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(self.inner.max_executions))))
        };
        semaphore.try_acquire_owned().map_err(|_| {
            ApiError::QuotaExceeded(format!(
                "this API key already has {} executions running, the most allowed; retry when one ends",
                self.inner.max_executions
            ))
        })
    }

    /// Forgets idle keys' rate state (called now and then; memory stays bounded by active keys).
    pub fn shrink(&self) {
        self.inner.rate.read().unwrap_or_else(|e| e.into_inner()).limiter.retain_recent();
        let mut all = self.inner.executions.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|_, semaphore| semaphore.available_permits() < self.inner.max_executions);
    }
}

/// Takes one request from `key`'s bucket in `limiter`, or says when the next is allowed.
fn limited(limiter: &DefaultKeyedRateLimiter<String>, key: &str) -> Result<(), ApiError> {
    limiter.check_key(&key.to_owned()).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        ApiError::RateLimited {
            message: "too many requests for this API key; slow down".into(),
            retry_after: wait.max(Duration::from_secs(1)),
        }
    })
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
        assert!(guard.check_rate("a", 1).is_ok());
        assert!(guard.check_rate("a", 1).is_ok());
        let Err(ApiError::RateLimited { retry_after, .. }) = guard.check_rate("a", 1) else { panic!("limited") };
        assert!(retry_after >= Duration::from_secs(1));
        assert!(guard.check_rate("b", 1).is_ok(), "another key has its own bucket");
    }

    #[test]
    fn live_nodes_share_the_rate_limit() {
        let guard = Guard::new(100, 6, 1);
        let allowed = |nodes: u32| (0..10).take_while(|_| guard.check_rate("a", nodes).is_ok()).count();
        assert_eq!(allowed(3), 2, "a third of the burst on each of three nodes");
        assert_eq!(allowed(2), 3, "the buckets start anew when the live nodes change");
        let lone = Guard::new(100, 2, 1);
        assert!(lone.check_rate("a", 5).is_ok(), "at least one each, however many nodes");
    }

    #[tokio::test]
    async fn executions_are_counted_per_key_until_the_permit_drops() {
        let guard = Guard::new(100, 100, 2);
        let first = guard.execution_slot("a", None).await.unwrap();
        let _second = guard.execution_slot("a", None).await.unwrap();
        assert!(matches!(guard.execution_slot("a", None).await, Err(ApiError::QuotaExceeded(_))));
        assert!(guard.execution_slot("b", None).await.is_ok());
        drop(first);
        assert!(guard.execution_slot("a", None).await.is_ok());
        guard.shrink();
    }
}

//! [`Cluster`]: this server as one node of several that share a PostgreSQL database
//! (`[cluster]` in the configuration).
//!
//! Membership: a node registers itself (its name, the URL the others reach it at, a fresh
//! incarnation id) with a lease of `cluster.lease_ms` that it renews [`RENEWALS_PER_LEASE`]
//! times per lease. The database's clock decides when a lease has run out
//! ([`crate::database::NodeRow`]); the node's own clock only decides when it stops serving: a
//! renewal sent at local time `t` makes the node live until `t + lease - lease /
//! [`SAFETY_DIVISOR`]`, which is before any other node can see the lease expire, since the
//! database stamped it after `t`. A node that cannot reach its database therefore stops serving
//! its sandboxes (503, and `/ready` fails) before they could be anyone else's.
//!
//! Ownership: each sandbox has one owner, the node and incarnation its database row names. A
//! node serves a sandbox only while it is live and owns it ([`Cluster::serves`]); a request for
//! any other sandbox is routed (`crate::http`'s cluster layer): forwarded to the live owner, or refused while its
//! owner is not live. A node that let its lease lapse registers again as a new incarnation and
//! adopts each of its sandboxes back by compare-and-swap on its name, so one another node has
//! taken in the meantime stays taken.
//!
//! Take-over: once a node's lease has run out, another node takes its sandboxes over from
//! their hand-overs (in the shared object store) at once ([`Cluster::take_over`]). One without
//! a hand-over is kept for its node for a lease more ([`TakeOver::Awaited`]: requests for it
//! get 503), because a node that restarts (drained, its sandboxes paused on its own disk)
//! adopts them back; after that it is lost, reported to its tenant with why.
//!
//! What this node owns is kept in memory ([`Membership::owned`]), so serving a local sandbox
//! costs no database round trip; looking up another node's sandbox costs one.
//!
//! Limits across the cluster: a tenant's open sandboxes are counted when one is claimed
//! ([`Cluster::claim`]); an API key's running executions take slots in the database, which
//! each node keeps while it reuses them ([`ClusterSlot`]); the live nodes, counted at each renewal ([`Cluster::live_nodes`]), share
//! a key's request rate.

mod forward;
mod slots;

pub use forward::FORWARDED_BY;
pub use slots::ClusterSlot;

use crate::database::{Claimed, Database, DatabaseError, NewSandbox, NodeRow, Registered, SandboxOwner, TakeOver};
use soulbox_engine::Sandboxes;
use soulbox_engine::blobs::BlobId;
use soulbox_engine::sandbox::HandoverLog;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The header a request forwarded by a node carries beside [`FORWARDED_BY`]: a hash of a
/// secret every node of the cluster reads from the database, so a client cannot pass for a
/// node (a forwarded request is served where it lands, ownership unchecked).
pub const FORWARD_TOKEN: &str = "x-soulbox-forward-token";
/// The name of that secret in the database.
const FORWARDING_SECRET: &str = "cluster_forwarding";
/// Lease renewals per lease: two may fail before the lease runs out.
pub const RENEWALS_PER_LEASE: u32 = 3;
/// A node stops serving a `1 / SAFETY_DIVISOR` of a lease before its lease could run out.
pub const SAFETY_DIVISOR: u32 = 10;
/// Sandboxes of gone nodes one node takes over (or finds lost) per sweep.
const REAPED_PER_SWEEP: i64 = 8;
/// The longest a node waits at start for another process's lease on its name to run out, in
/// leases.
const NAME_WAIT_LEASES: u32 = 3;

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The shared database failed.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// The database did not answer in time.
    #[error("the cluster's database did not answer within {0} ms")]
    DatabaseTimeout(u128),
    /// Another live process holds this node's name.
    #[error("node name `{0}` is held by another live process (its lease did not run out); give each node its own name")]
    NameTaken(String),
    /// This node's lease has run out.
    #[error(
        "this node's cluster lease has run out (it cannot reach the cluster's database); it serves no sandbox until it can"
    )]
    NotLive,
    /// The sandbox already has an owner.
    #[error("sandbox `{0}` already has an owner")]
    AlreadyOwned(String),
    /// The tenant has as many open sandboxes as it may, across the cluster.
    #[error("{0} sandboxes of this owner may be open at once across the cluster; kill some first")]
    TenantQuota(usize),
    /// An API key runs as many executions as it may, across the cluster.
    #[error("{0} executions of this API key may run at once across the cluster")]
    KeyBusy(usize),
    /// The owning node could not be reached.
    #[error("node `{node}`, which holds this sandbox, could not be reached: {why}")]
    Unreachable {
        /// The node.
        node: String,
        /// What failed.
        why: String,
    },
}

/// What a node says about itself.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Its name.
    pub node: String,
    /// Where the others reach it.
    pub url: String,
    /// Its lease.
    pub lease: Duration,
    /// Guests it runs at once.
    pub capacity: i64,
    /// Open sandboxes a tenant may have across the cluster.
    pub max_sandboxes_per_tenant: usize,
}

/// This node's membership in its cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster(Arc<Inner>);

struct Inner {
    settings: NodeSettings,
    db: Database,
    /// The lease's own connections: requests that look sandboxes up never delay a renewal.
    leases: Database,
    membership: Mutex<Membership>,
    client: reqwest::Client,
    /// Held while this node takes a sandbox over: one at a time, so two requests for the same
    /// dead node's sandbox take it once.
    taking_over: tokio::sync::Mutex<()>,
    /// Set once the node leaves: its lease is no longer renewed.
    left: std::sync::atomic::AtomicBool,
    /// What a request forwarded by another node of the cluster carries ([`FORWARD_TOKEN`]).
    forward_token: String,
    /// The live nodes at the last renewal, this one included.
    live_nodes: std::sync::atomic::AtomicU32,
    /// The execution slots this node holds, per key.
    slots: Mutex<slots::HeldSlots>,
}

/// What this process holds in the cluster.
struct Membership {
    incarnation: String,
    /// Until when this node may serve its sandboxes (from its last renewal).
    live_until: Instant,
    /// The sandboxes this incarnation owns.
    owned: HashSet<String>,
    /// This process's copies of sandboxes it could not adopt (another node holds them now, or
    /// they ended): [`Cluster::keep_lease`] closes them here.
    stale: Vec<String>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.0.settings.node).finish_non_exhaustive()
    }
}

impl Cluster {
    /// Registers this node (waiting, a few leases at most, for an earlier process's lease on
    /// its name to run out) and adopts the sandboxes of `local` (those this process took back
    /// from disk) that are still this node's. Call [`Cluster::keep_lease`] next.
    pub async fn join(
        db: Database,
        leases: Database,
        settings: NodeSettings,
        local: Vec<String>,
    ) -> Result<Cluster, ClusterError> {
        db.open_cluster().await?;
        let forward_token = blake3::hash(db.secret(FORWARDING_SECRET).await?.as_bytes()).to_hex().to_string();
        let incarnation = uuid::Uuid::new_v4().simple().to_string();
        let sent = register(&leases, &settings, &incarnation).await?;
        let cluster = Cluster(Arc::new(Inner {
            membership: Mutex::new(Membership {
                incarnation: incarnation.clone(),
                live_until: live_until(sent, settings.lease),
                owned: HashSet::new(),
                stale: Vec::new(),
            }),
            client: forward::client(),
            taking_over: tokio::sync::Mutex::new(()),
            left: std::sync::atomic::AtomicBool::new(false),
            forward_token,
            live_nodes: std::sync::atomic::AtomicU32::new(1),
            slots: Mutex::default(),
            settings,
            db,
            leases,
        }));
        let adopted = cluster.adopt(local, &incarnation).await?;
        // At once rather than a renewal period later: the live nodes (for the shared limits).
        cluster.renew(i64::try_from(adopted).unwrap_or(i64::MAX)).await?;
        tracing::info!(node = %cluster.node(), %incarnation, adopted, "joined the cluster");
        Ok(cluster)
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.0.settings.node
    }

    /// Where the other nodes reach it.
    pub fn url(&self) -> &str {
        &self.0.settings.url
    }

    /// How long a node's lease lasts: also how long a node that stopped without handing its
    /// sandboxes over has to come back for them before they are lost.
    pub fn lease(&self) -> Duration {
        self.0.settings.lease
    }

    /// Whether this node's lease runs (it may serve its sandboxes and take new ones).
    pub fn is_live(&self) -> bool {
        Instant::now() < self.membership().live_until
    }

    /// How many nodes were live at this node's last renewal, this one included (at least 1).
    pub fn live_nodes(&self) -> u32 {
        self.0.live_nodes.load(std::sync::atomic::Ordering::Relaxed).max(1)
    }

    /// Whether this node serves sandbox `id`: it is live and owns it.
    pub fn serves(&self, id: &str) -> bool {
        let membership = self.membership();
        Instant::now() < membership.live_until && membership.owned.contains(id)
    }

    /// Makes this node the owner of its new sandbox, within its tenant's bound across the
    /// cluster.
    pub async fn claim(&self, sandbox: NewSandbox<'_>) -> Result<(), ClusterError> {
        if !self.is_live() {
            return Err(ClusterError::NotLive);
        }
        let incarnation = self.membership().incarnation.clone();
        let max = self.0.settings.max_sandboxes_per_tenant;
        match self.bounded(self.0.db.claim_new_sandbox(&sandbox, self.node(), &incarnation, max)).await? {
            Claimed::Owned => self.hold(sandbox.id, &incarnation),
            Claimed::AlreadyOwned => Err(ClusterError::AlreadyOwned(sandbox.id.to_owned())),
            Claimed::OverQuota => Err(ClusterError::TenantQuota(max)),
        }
    }

    /// Takes sandbox `id` over if its owner's lease has run out: `open` opens it here from
    /// its hand-over (the manifest blob's id), and this node owns it from then on. `Ok(None)`
    /// when there was nothing to take (its owner is live again, another node took it, or
    /// this node holds it now); [`TakeOver::Awaited`] when its owner stopped without a
    /// hand-over less than a lease ago (it may be restarting, and adopt it back);
    /// [`TakeOver::Lost`] when it has been gone longer, or `open` failed (then it is marked
    /// lost, with why).
    pub async fn take_over<F, Fut>(&self, id: &str, open: F) -> Result<Option<TakeOver>, ClusterError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let _one_at_a_time = self.0.taking_over.lock().await;
        if self.serves(id) {
            return Ok(None);
        }
        if !self.is_live() {
            return Err(ClusterError::NotLive);
        }
        let incarnation = self.membership().incarnation.clone();
        let grace = millis(self.0.settings.lease);
        let manifest = match self.bounded(self.0.db.take_over_sandbox(id, self.node(), &incarnation, grace)).await? {
            TakeOver::From(manifest) => manifest,
            TakeOver::Raced => return Ok(None),
            other @ (TakeOver::Lost(_) | TakeOver::Awaited) => return Ok(Some(other)),
        };
        if let Err(why) = open(manifest.clone()).await {
            tracing::warn!(sandbox = %id, %why, "a sandbox taken over could not be opened; it is lost");
            self.bounded(self.0.db.mark_lost(id, self.node(), &why)).await?;
            return Ok(Some(TakeOver::Lost("its hand-over could not be opened on the node that took it over")));
        }
        self.hold(id, &incarnation)?;
        Ok(Some(TakeOver::From(manifest)))
    }

    /// Takes over, or finds lost, up to [`REAPED_PER_SWEEP`] sandboxes whose node has been
    /// gone for a lease or more, each as a request for it would ([`Cluster::take_over`], with
    /// `open`); returns how many it settled. So a node that never comes back neither keeps its
    /// sandboxes from their tenants' bounds nor hides that they were lost.
    pub async fn reap_once<F, Fut>(&self, open: F) -> Result<usize, ClusterError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        if !self.is_live() {
            return Ok(0);
        }
        let grace = millis(self.0.settings.lease);
        let abandoned = self.bounded(self.0.db.abandoned_sandboxes(grace, REAPED_PER_SWEEP)).await?;
        let mut settled = 0;
        for id in abandoned {
            match self.take_over(&id, &open).await? {
                Some(TakeOver::From(_)) => tracing::info!(sandbox = %id, "took over a sandbox whose node is gone"),
                Some(TakeOver::Lost(why)) => tracing::info!(sandbox = %id, why, "a sandbox whose node is gone is lost"),
                _ => continue,
            }
            settled += 1;
        }
        Ok(settled)
    }

    /// Every lease, takes over the sandboxes of nodes gone for a lease ([`Cluster::reap_once`]),
    /// opening them in `sandboxes`, until the node leaves. Spawn it.
    pub async fn reap_gone_nodes(self, sandboxes: Sandboxes) {
        let mut tick = tokio::time::interval(self.0.settings.lease);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.0.left.load(std::sync::atomic::Ordering::SeqCst) {
            tick.tick().await;
            if let Err(error) = self.reap_once(|manifest| open_handover(&sandboxes, manifest)).await {
                tracing::warn!(%error, "could not take over the sandboxes of nodes that are gone");
            }
        }
    }

    /// Adds `id` to what this node serves, if `incarnation` (the one its row names) is still
    /// this process's: a node that registered again meanwhile must adopt it first.
    fn hold(&self, id: &str, incarnation: &str) -> Result<(), ClusterError> {
        let mut membership = self.membership();
        if membership.incarnation != incarnation {
            return Err(ClusterError::NotLive);
        }
        membership.owned.insert(id.to_owned());
        Ok(())
    }

    /// Whether `token` (a request's [`FORWARD_TOKEN`]) shows it was forwarded by a node of this
    /// cluster (compared in constant time).
    pub fn forwarded_by_a_node(&self, token: &[u8]) -> bool {
        let expected = self.0.forward_token.as_bytes();
        token.len() == expected.len() && token.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// Forgets sandbox `id` (it closed).
    pub fn release(&self, id: &str) {
        self.membership().owned.remove(id);
    }

    /// Sandbox `id`'s tenant and why it was lost, if it was.
    pub async fn lost(&self, id: &str) -> Result<Option<crate::database::LostSandbox>, ClusterError> {
        self.bounded(self.0.db.lost_sandbox(id)).await
    }

    /// Who owns sandbox `id`, if it is open.
    pub async fn owner_of(&self, id: &str) -> Result<Option<SandboxOwner>, ClusterError> {
        self.bounded(self.0.db.sandbox_owner(id)).await
    }

    /// Where a new sandbox should go: the live node holding the fewest open sandboxes, when
    /// that is another node holding fewer than this one (name and URL); `None`: here.
    pub async fn placement(&self) -> Result<Option<(String, String)>, ClusterError> {
        let (least, own) = self.bounded(self.0.db.least_loaded_node(self.node())).await?;
        Ok(least.filter(|(node, _, open)| node != self.node() && *open < own).map(|(node, url, _)| (node, url)))
    }

    /// Every node, with its lease and the sandboxes it owns.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, ClusterError> {
        self.bounded(self.0.db.nodes()).await
    }

    /// Renews the lease until the process ends, reporting how many sandboxes `sandboxes` holds
    /// each time; registers again when it ran out. Closes this process's copies of sandboxes
    /// it could not adopt back (their rows are another node's: what closing them reports does
    /// not reach them). Spawn it.
    pub async fn keep_lease(self, sandboxes: Sandboxes) {
        let period = self.0.settings.lease / RENEWALS_PER_LEASE;
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is now: the lease was just taken
        self.close_stale(&sandboxes);
        loop {
            tick.tick().await;
            if self.0.left.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            if let Err(error) = self.renew(i64::try_from(sandboxes.len()).unwrap_or(i64::MAX)).await {
                tracing::warn!(%error, node = %self.node(), "could not renew this node's cluster lease");
            }
            self.close_stale(&sandboxes);
        }
    }

    /// Closes the stale copies [`Cluster::adopt`] found.
    fn close_stale(&self, sandboxes: &Sandboxes) {
        let stale = std::mem::take(&mut self.membership().stale);
        for id in stale {
            if sandboxes.kill(&id).is_ok() {
                tracing::info!(sandbox = %id, "closed this node's stale copy of a sandbox it no longer holds");
            }
        }
    }

    /// Ends this node's lease now (a clean shutdown, after its sandboxes were paused), so
    /// that its name is free at once.
    pub async fn leave(&self) {
        self.0.left.store(true, std::sync::atomic::Ordering::SeqCst);
        let incarnation = self.membership().incarnation.clone();
        self.membership().live_until = Instant::now();
        if let Err(error) = self.bounded(self.0.leases.leave_node(self.node(), &incarnation)).await {
            tracing::warn!(%error, "could not end this node's cluster lease; it runs out by itself");
        }
    }

    /// One renewal.
    async fn renew(&self, load: i64) -> Result<(), ClusterError> {
        let sent = Instant::now();
        let incarnation = self.membership().incarnation.clone();
        let lease_ms = millis(self.0.settings.lease);
        let renewed = self.bounded(self.0.leases.renew_node(self.node(), &incarnation, lease_ms, load)).await?;
        if let Some(live) = renewed {
            self.membership().live_until = live_until(sent, self.0.settings.lease);
            let live = u32::try_from(live).unwrap_or(u32::MAX);
            self.0.live_nodes.store(live, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        // The lease ran out before this renewal reached the database: register again, and
        // adopt back what no other node took meanwhile (unless the node is leaving).
        if self.0.left.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        tracing::warn!(node = %self.node(), "this node's cluster lease ran out; registering again");
        let incarnation = uuid::Uuid::new_v4().simple().to_string();
        let sent = register(&self.0.leases, &self.0.settings, &incarnation).await?;
        let held: Vec<String> = {
            let mut membership = self.membership();
            membership.incarnation = incarnation.clone();
            membership.live_until = live_until(sent, self.0.settings.lease);
            membership.owned.drain().collect()
        };
        self.adopt(held, &incarnation).await?;
        Ok(())
    }

    /// Adopts each of `ids` that is still this node's (or no node's) as `incarnation`'s;
    /// returns how many.
    async fn adopt(&self, ids: Vec<String>, incarnation: &str) -> Result<usize, ClusterError> {
        let mut adopted = 0;
        for id in ids {
            if self.bounded(self.0.db.adopt_sandbox(&id, self.node(), incarnation)).await? {
                self.membership().owned.insert(id);
                adopted += 1;
            } else {
                tracing::warn!(sandbox = %id, "another node holds this sandbox now; this node no longer serves it");
                self.membership().stale.push(id);
            }
        }
        Ok(adopted)
    }

    /// `call`, bounded by a renewal period (a database that stopped answering must not hold a
    /// request, or the renewals, for longer).
    async fn bounded<T>(&self, call: impl Future<Output = Result<T, DatabaseError>>) -> Result<T, ClusterError> {
        let limit = self.0.settings.lease / RENEWALS_PER_LEASE;
        match tokio::time::timeout(limit, call).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ClusterError::DatabaseTimeout(limit.as_millis())),
        }
    }

    fn membership(&self) -> std::sync::MutexGuard<'_, Membership> {
        self.0.membership.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A node's [`HandoverLog`]: each of its sandboxes' latest hand-over, in the database, where
/// the node that takes the sandbox over finds it ([`Cluster::take_over`]).
#[derive(Debug)]
pub struct NodeHandovers {
    /// The shared database.
    pub db: Database,
    /// This node's name.
    pub node: String,
}

#[async_trait::async_trait]
impl HandoverLog for NodeHandovers {
    async fn handed_over(&self, sandbox: &str, manifest: Option<&BlobId>) -> Result<(), String> {
        let manifest = manifest.map(BlobId::as_str);
        self.db.record_handover(sandbox, &self.node, manifest).await.map_err(|e| e.to_string())
    }
}

/// Opens in `sandboxes` the sandbox whose hand-over is the manifest blob `manifest` (a
/// takeover's `open`).
pub async fn open_handover(sandboxes: &Sandboxes, manifest: String) -> Result<(), String> {
    let blob = BlobId::try_from(manifest).map_err(|why| format!("its hand-over is not a blob id ({why})"))?;
    sandboxes.take_over(&blob).await.map(drop).map_err(|error| error.to_string())
}

/// Registers `incarnation` under the node's name, waiting while another process's lease on it
/// runs; returns when the registration was sent.
async fn register(db: &Database, settings: &NodeSettings, incarnation: &str) -> Result<Instant, ClusterError> {
    let give_up = Instant::now() + settings.lease * NAME_WAIT_LEASES;
    loop {
        let sent = Instant::now();
        let registered =
            db.register_node(&settings.node, &settings.url, incarnation, settings.capacity, millis(settings.lease));
        match registered.await? {
            Registered::Until(_) => return Ok(sent),
            Registered::Taken(until_ms) if Instant::now() < give_up => {
                let left = until_ms.saturating_sub(crate::database::now_ms()).clamp(100, 1_000);
                tracing::info!(node = %settings.node, "an earlier process's lease on this node's name still runs; waiting");
                tokio::time::sleep(Duration::from_millis(left as u64)).await;
            }
            Registered::Taken(_) => return Err(ClusterError::NameTaken(settings.node.clone())),
        }
    }
}

/// Until when a lease renewed at `sent` lets this node serve.
fn live_until(sent: Instant, lease: Duration) -> Instant {
    sent + lease - lease / SAFETY_DIVISOR
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;

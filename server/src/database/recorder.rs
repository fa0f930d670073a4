//! [`Recorder`]: records written in batches off the request path: [`UsageRecorder`] (one usage
//! record per execution), [`AuditRecorder`] (security-relevant events) and [`SandboxRecorder`]
//! (the sandbox registry's changes: it is the engine's [`SandboxLedger`]).
//!
//! Handlers hand a record to a bounded channel and return at once; one writer task inserts
//! whatever has queued up (up to [`BATCH`] rows) in a single transaction. Usage records and
//! audit events linger first ([`Record::LINGER`]): the writer waits that long after the first
//! record of a batch for others to join it, so a steady trickle of requests (one execution every
//! few milliseconds) costs one transaction per [`LINGER`] instead of one per request. Measured
//! on 2 cores, a session cell over HTTP back-to-back: the database's writer threads took about a
//! fifth of the server's CPU with one transaction per cell. Registry changes do not linger (other
//! nodes and a restarted server read them). A crash loses what is queued, lingering or not: the
//! window grows by at most [`LINGER`]. A full queue (the
//! database far behind) drops the record and counts it rather than slowing requests or growing
//! without bound; the warning is logged at most once per [`WARN_EVERY`]. On shutdown,
//! [`UsageRecorder::close`] writes what is queued and waits for the writer.

use super::{AuditEvent, Database, DatabaseError, Usage};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use soulbox_engine::sandbox::{LedgerEntry, SandboxLedger};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Records waiting for the writer, at most.
pub const QUEUE: usize = 16_384;
/// Records per transaction, at most.
pub const BATCH: usize = 512;
/// How long usage records and audit events wait for others to share their transaction.
pub const LINGER: Duration = Duration::from_millis(100);
/// Dropped-record warnings are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A kind of record the database takes in batches.
pub trait Record: Send + Sync + std::fmt::Debug + 'static {
    /// What the records are, for logs.
    const WHAT: &'static str;

    /// How long the writer waits, after the first record of a batch, for more to join it
    /// (zero: it writes what has queued at once).
    const LINGER: Duration;

    /// Inserts `batch` in one transaction.
    fn write(db: &Database, batch: &[Self]) -> impl Future<Output = Result<(), DatabaseError>> + Send
    where
        Self: Sized;
}

impl Record for Usage {
    const WHAT: &'static str = "usage records";
    const LINGER: Duration = LINGER;

    fn write(db: &Database, batch: &[Self]) -> impl Future<Output = Result<(), DatabaseError>> + Send {
        db.record_usage(batch)
    }
}

impl Record for AuditEvent {
    const WHAT: &'static str = "audit events";
    const LINGER: Duration = LINGER;

    fn write(db: &Database, batch: &[Self]) -> impl Future<Output = Result<(), DatabaseError>> + Send {
        db.record_audit(batch)
    }
}

/// A change of the sandbox registry, as one server (a cluster node, or a server that is not
/// one) saw it: it is written only to rows that server owns ([`Database::record_sandboxes`]).
#[derive(Debug, Clone)]
pub struct RegistryChange {
    /// The node that made it, in a cluster.
    pub node: Option<Arc<str>>,
    /// The change.
    pub entry: LedgerEntry,
}

impl Record for RegistryChange {
    const WHAT: &'static str = "sandbox registry changes";
    const LINGER: Duration = Duration::ZERO;

    fn write(db: &Database, batch: &[Self]) -> impl Future<Output = Result<(), DatabaseError>> + Send {
        db.record_sandboxes(batch)
    }
}

/// Queues usage records for the database.
pub type UsageRecorder = Recorder<Usage>;
/// Queues the sandbox registry's changes for the database, in order.
#[derive(Debug, Clone)]
pub struct SandboxRecorder {
    changes: Recorder<RegistryChange>,
    node: Option<Arc<str>>,
}

impl SandboxRecorder {
    /// Starts the writer; `node` is this server's name in a cluster.
    pub fn start(db: Database, node: Option<&str>) -> Self {
        SandboxRecorder { changes: Recorder::start(db), node: node.map(Arc::from) }
    }

    /// Writes what is queued and waits for the writer.
    pub async fn close(&self) {
        self.changes.close().await;
    }
}

impl SandboxLedger for SandboxRecorder {
    fn record(&self, entry: LedgerEntry) {
        self.changes.record(RegistryChange { node: self.node.clone(), entry });
    }
}
/// Queues audit events for the database.
pub type AuditRecorder = Recorder<AuditEvent>;

/// Queues records of one kind for the database. Cheap to clone.
#[derive(Debug)]
pub struct Recorder<T: Record> {
    inner: Arc<Inner<T>>,
}

impl<T: Record> Clone for Recorder<T> {
    fn clone(&self) -> Self {
        Recorder { inner: Arc::clone(&self.inner) }
    }
}

#[derive(Debug)]
struct Inner<T> {
    sender: Mutex<Option<mpsc::Sender<T>>>,
    /// Cancelled by [`Recorder::close`]: a lingering writer writes at once.
    closing: CancellationToken,
    writer: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    dropped: AtomicU64,
    warn: DefaultDirectRateLimiter,
}

impl<T: Record> Recorder<T> {
    /// Starts the writer task (inside a tokio runtime).
    pub fn start(db: Database) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let closing = CancellationToken::new();
        let writer = tokio::spawn(write_batches(db, receiver, closing.clone()));
        let period = Quota::with_period(WARN_EVERY).expect("a non-zero period");
        Recorder {
            inner: Arc::new(Inner {
                sender: Mutex::new(Some(sender)),
                closing,
                writer: tokio::sync::Mutex::new(Some(writer)),
                dropped: AtomicU64::new(0),
                warn: RateLimiter::direct(period),
            }),
        }
    }

    /// Queues a record; never waits.
    pub fn record(&self, record: T) {
        let sender = self.inner.sender.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let refused = match sender {
            Some(sender) => sender.try_send(record).is_err(),
            None => true,
        };
        if refused {
            let dropped = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if self.inner.warn.check().is_ok() {
                tracing::warn!(dropped, what = T::WHAT, "records dropped: the database is not keeping up or is closed");
            }
        }
    }

    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Stops taking records, writes those queued and waits for the writer.
    pub async fn close(&self) {
        self.inner.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.inner.closing.cancel();
        if let Some(writer) = self.inner.writer.lock().await.take()
            && let Err(error) = writer.await
        {
            tracing::error!(%error, what = T::WHAT, "a record writer failed");
        }
    }
}

async fn write_batches<T: Record>(db: Database, mut receiver: mpsc::Receiver<T>, closing: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        linger::<T>(&mut receiver, &mut batch, &closing).await;
        if let Err(error) = T::write(&db, &batch).await {
            tracing::error!(%error, records = batch.len(), what = T::WHAT, "could not write records");
        }
        batch.clear();
    }
}

/// Waits [`Record::LINGER`] (less if the recorder closes meanwhile), then adds to `batch` what
/// has queued, up to [`BATCH`] records (the rest waits for the next batch). It sleeps rather
/// than listening to the channel: each record that arrived would wake it, one more thread
/// wake-up per request, which is what lingering saves.
async fn linger<T: Record>(receiver: &mut mpsc::Receiver<T>, batch: &mut Vec<T>, closing: &CancellationToken) {
    if T::LINGER.is_zero() || batch.len() >= BATCH {
        return;
    }
    tokio::select! {
        () = tokio::time::sleep(T::LINGER) => {}
        () = closing.cancelled() => {}
    }
    while batch.len() < BATCH {
        match receiver.try_recv() {
            Ok(record) => batch.push(record),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::now_ms;

    /// A record that notes the size of each batch it is written in, lingering an hour.
    #[derive(Debug)]
    struct Probe;

    static PROBE_BATCHES: Mutex<Vec<usize>> = Mutex::new(Vec::new());

    impl Record for Probe {
        const WHAT: &'static str = "probes";
        const LINGER: Duration = Duration::from_secs(3600);

        fn write(_: &Database, batch: &[Self]) -> impl Future<Output = Result<(), DatabaseError>> + Send {
            PROBE_BATCHES.lock().unwrap().push(batch.len());
            std::future::ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn lingering_records_share_a_transaction_and_closing_writes_them_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&format!("sqlite://{}", dir.path().join("p.db").display())).await.unwrap();
        let recorder = Recorder::<Probe>::start(db);
        recorder.record(Probe);
        tokio::task::yield_now().await; // the writer takes the first and lingers
        recorder.record(Probe);
        // An hour's linger: only `close` cancelling it lets this end (the bound guards a hang).
        tokio::time::timeout(Duration::from_secs(60), recorder.close()).await.expect("close cancels the linger");
        assert_eq!(*PROBE_BATCHES.lock().unwrap(), [2], "both records in one transaction");
    }

    #[tokio::test]
    async fn records_arrive_in_batches_and_close_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&format!("sqlite://{}", dir.path().join("u.db").display())).await.unwrap();
        let recorder = UsageRecorder::start(db.clone());
        for n in 0..1000 {
            recorder.record(Usage {
                tenant: "acme".into(),
                kind: "stateless",
                language: "python",
                outcome: "completed",
                duration_us: n,
                fuel: None,
                network: None,
                at_ms: now_ms(),
            });
        }
        recorder.close().await;
        let rows = db.usage("acme", 0).await.unwrap();
        assert_eq!((rows[0].executions, rows[0].duration_us), (1000, 999 * 1000 / 2));
        assert_eq!(recorder.dropped(), 0);
        recorder.record(Usage {
            tenant: "acme".into(),
            kind: "cell",
            language: "python",
            outcome: "completed",
            duration_us: 1,
            fuel: None,
            network: None,
            at_ms: now_ms(),
        });
        assert_eq!(recorder.dropped(), 1, "a closed recorder counts what it could not take");
    }
}

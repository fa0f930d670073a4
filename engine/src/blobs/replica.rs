//! [`Replica`]: a copy of a [`super::BlobStore`]'s blobs in an object store (S3 or any
//! S3-compatible server, through the `object_store` crate), so that checkpoints outlive the
//! local disk.
//!
//! The local directory stays the write path and the cache: a new blob is written there, and
//! its upload (compressed, as stored) starts in the background; [`super::BlobStore::sync`]
//! (which a durable checkpoint, a pause, ends with) waits for every upload started, retrying
//! a failed one from the local copy, so a checkpoint the registry reports durable is in the
//! object store too, and a checkpoint after every cell (written, not synced) does not wait
//! for the network. A blob that is missing or damaged
//! locally is fetched, checked (it must decompress to content with its id's checksum, as a
//! local one must) and cached again. Blobs collected locally are deleted from the object store
//! too, unless the replica is shared ([`Replica::without_deletes`]). Object names are
//! `<prefix>/<id>`.
//!
//! The store's calls are async and the blob store's are blocking. The replica has a small
//! runtime of its own (one worker) that its calls run on, each awaited from a short-lived
//! thread, so a call is safe from any thread: a blocking one, or (rarely: reading a
//! checkpoint's index after a restart) a worker of the caller's runtime, current-thread
//! ones included, which could not drive the call itself.

use super::{BlobError, BlobId};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use std::sync::{Arc, Mutex};

/// An object store holding a copy of every blob (see the module's documentation). Cheap to
/// clone.
#[derive(Clone)]
pub struct Replica {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// Whether blobs collected locally are deleted from the store too.
    deletes: bool,
    driver: Arc<Driver>,
    uploads: Arc<Mutex<Uploads>>,
}

/// Uploads not yet waited for.
#[derive(Default)]
struct Uploads {
    /// Started and not known to have ended (finished ones are dropped as new ones start).
    running: Vec<tokio::task::JoinHandle<()>>,
    /// Failed (an upload task adds its blob when it fails), to retry at the next flush.
    failed: Vec<BlobId>,
}

/// The replica's own runtime, shut down without waiting when the last replica goes (a
/// runtime dropped in async code would otherwise panic).
struct Driver(Option<tokio::runtime::Runtime>);

impl Driver {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("the runtime lives until the driver drops")
    }

    /// Runs `work` to completion on the replica's runtime, from a thread of its own.
    fn run<T: Send>(&self, work: impl Future<Output = T> + Send) -> T {
        std::thread::scope(|scope| {
            scope.spawn(|| self.runtime().block_on(work)).join().expect("an object store call does not panic")
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("store", &self.store.to_string()).field("prefix", &self.prefix).finish()
    }
}

impl Replica {
    /// Blobs under `prefix` in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self, BlobError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("soulbox-replica")
            .enable_all()
            .build()
            .map_err(|e| remote(format!("starting its runtime: {e}")))?;
        let driver = Arc::new(Driver(Some(runtime)));
        Ok(Replica { store, prefix: ObjectPath::from(prefix), deletes: true, driver, uploads: Arc::default() })
    }

    /// This replica without deletes: blobs collected locally stay in the object store. For a
    /// store several registries share (a cluster's nodes, which may take each other's
    /// sandboxes over): blobs are named by their content, so a blob one registry no longer
    /// needs may be another's. Nothing collects them there yet.
    pub fn without_deletes(mut self) -> Self {
        self.deletes = false;
        self
    }

    fn path(&self, id: &BlobId) -> ObjectPath {
        self.prefix.child(id.as_str())
    }

    /// Starts uploading blob `id`'s stored (compressed) bytes; [`Replica::flush`] waits.
    pub(super) fn upload_later(&self, id: &BlobId, compressed: Vec<u8>) {
        let (store, path, name, uploads) =
            (Arc::clone(&self.store), self.path(id), id.clone(), Arc::clone(&self.uploads));
        let task = self.driver.runtime().spawn(async move {
            if let Err(error) = store.put(&path, compressed.into()).await {
                tracing::warn!(id = %name, %error, "a checkpoint blob's upload failed; the next flush retries it");
                uploads.lock().unwrap_or_else(|e| e.into_inner()).failed.push(name);
            }
        });
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        uploads.running.retain(|task| !task.is_finished());
        uploads.running.push(task);
    }

    /// Waits for every upload started (blocking); one that failed is retried with its bytes
    /// from `local`. An upload that fails again is kept for the next flush and its error
    /// returned.
    pub(super) fn flush(&self, local: impl Fn(&BlobId) -> Option<Vec<u8>>) -> Result<(), BlobError> {
        let running = std::mem::take(&mut self.uploads.lock().unwrap_or_else(|e| e.into_inner()).running);
        if !running.is_empty() {
            self.driver.run(async {
                for task in running {
                    // Failures are recorded by the task itself (object_store returns errors,
                    // it does not panic).
                    let _ = task.await;
                }
            });
        }
        let failed = std::mem::take(&mut self.uploads.lock().unwrap_or_else(|e| e.into_inner()).failed);
        let mut error = None;
        let mut still = Vec::new();
        for id in failed {
            // A blob collected meanwhile has nothing left to upload.
            let Some(bytes) = local(&id) else { continue };
            if let Err(e) = self.upload(&id, bytes) {
                error.get_or_insert(e);
                still.push(id);
            }
        }
        self.uploads.lock().unwrap_or_else(|e| e.into_inner()).failed.extend(still);
        error.map_or(Ok(()), Err)
    }

    /// Uploads blob `id`'s stored (compressed) bytes (blocking).
    fn upload(&self, id: &BlobId, compressed: Vec<u8>) -> Result<(), BlobError> {
        let path = self.path(id);
        self.driver
            .run(self.store.put(&path, compressed.into()))
            .map(drop)
            .map_err(|e| remote(format!("uploading {id}: {e}")))
    }

    /// Blob `id`'s stored bytes, or `None` when the object store has no such blob (blocking).
    pub(super) fn download(&self, id: &BlobId) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.path(id);
        let fetched = self.driver.run(async {
            match self.store.get(&path).await {
                Ok(object) => object.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(error) => Err(error),
            }
        });
        fetched.map(|bytes| bytes.map(|b| b.to_vec())).map_err(|e| remote(format!("fetching {id}: {e}")))
    }

    /// Deletes `ids` from the object store (blocking; a failure is logged: the blob is only
    /// left behind).
    pub(super) fn delete(&self, ids: Vec<BlobId>) {
        if !self.deletes {
            return;
        }
        let paths: Vec<ObjectPath> = ids.iter().map(|id| self.path(id)).collect();
        self.driver.run(async {
            for path in paths {
                if let Err(error) = self.store.delete(&path).await {
                    tracing::warn!(%path, %error, "could not delete a collected checkpoint blob from the object store");
                }
            }
        });
    }
}

fn remote(why: String) -> BlobError {
    BlobError::Remote(why)
}

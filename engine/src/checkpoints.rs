//! [`Checkpoints`]: kernel images in a [`BlobStore`], part by part, and the collection of the
//! parts nothing names any more.
//!
//! A checkpoint is an index blob (JSON: its language and its parts' ids) naming one blob per
//! part of the [`KernelImage`]. Parts are content-addressed, so a part equal to one stored
//! before costs a hash and nothing else: a checkpoint after a cell writes only what the cell
//! changed, and forks, templates and the checkpoints of one context share what they have in
//! common. The index's id is the checkpoint's id.
//!
//! Sharing means no checkpoint can delete its parts when it is replaced. What nothing names
//! is collected instead ([`Checkpoints::collect`]): every blob that is not a named checkpoint,
//! a part of one, or pinned goes. A checkpoint being written is safe from a collection: the
//! writer holds the store's gate ([`Checkpoints::writing`]) from its first part until its
//! checkpoint is named where the collector looks (a context's latest checkpoint), or pinned
//! ([`Pin`]) until the manifest naming it is on disk.

use crate::blobs::{BlobError, BlobId, BlobStore};
use crate::kernel::KernelImage;
use crate::language::Language;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// The index format this code writes and reads.
const INDEX_FORMAT: u32 = 1;

/// A checkpoint's index: what its parts are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    format: u32,
    language: Language,
    parts: Vec<BlobId>,
}

/// Kernel images in a blob store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    blobs: BlobStore,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Read-held while a checkpoint is written and named; write-held by a collection.
    gate: Arc<tokio::sync::RwLock<()>>,
    /// Something may have become garbage since the last collection.
    garbage: std::sync::atomic::AtomicBool,
    /// Checkpoints kept whatever else names them, with how many pins each.
    pinned: Mutex<HashMap<BlobId, usize>>,
    /// Indexes read or written, by checkpoint (they never change; pruned by a collection).
    indexes: Mutex<HashMap<BlobId, Arc<Index>>>,
}

/// Held while a checkpoint is written and named (see the module's documentation).
#[derive(Debug)]
pub struct Writing {
    _gate: tokio::sync::OwnedRwLockReadGuard<()>,
}

/// Keeps a checkpoint from collection while it lives.
#[derive(Debug)]
pub struct Pin {
    shared: Arc<Shared>,
    id: BlobId,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut pinned = self.shared.pinned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = pinned.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                pinned.remove(&self.id);
            }
        }
    }
}

/// A checkpoint just stored.
#[derive(Debug)]
pub struct Stored {
    /// Its id.
    pub id: BlobId,
    /// Its parts' ids, in order.
    pub parts: Vec<BlobId>,
    /// Compressed bytes this store added (parts it already had cost nothing).
    pub new_bytes: u64,
    /// Keeps it until it is named.
    pub pin: Pin,
}

/// What a collection keeps.
#[derive(Debug, Default)]
pub struct Named {
    /// Checkpoints: each is kept with its parts.
    pub checkpoints: HashSet<BlobId>,
    /// Other blobs, kept as they are (a sandbox's hand-over: its manifest and files).
    pub blobs: HashSet<BlobId>,
}

impl Checkpoints {
    /// Checkpoints in `blobs`.
    pub fn new(blobs: BlobStore) -> Self {
        Checkpoints { blobs, shared: Arc::default() }
    }

    /// The blob store the checkpoints are in.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Holds off collections while a checkpoint is written and named.
    pub async fn writing(&self) -> Writing {
        Writing { _gate: Arc::clone(&self.shared.gate).read_owned().await }
    }

    /// Notes that a checkpoint may no longer be named (replaced, or its sandbox gone): the
    /// next [`Checkpoints::collect_if_needed`] collects.
    pub fn note_garbage(&self) {
        self.shared.garbage.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// [`Checkpoints::collect`], if something may have become garbage since the last one.
    pub async fn collect_if_needed(&self, named: impl FnOnce() -> Named) -> usize {
        if !self.shared.garbage.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return 0;
        }
        self.collect(named).await
    }

    /// Stores `image` (blocking), part by part; `durable` syncs it to disk before this returns.
    /// `previous` are the part ids of the previous image the same kernel returned, as this
    /// store gave them: the image's [`KernelImage::kept`] leading parts reuse them, unread.
    /// The caller holds a [`Writing`] until the checkpoint is named or its pin is held.
    pub fn store(
        &self,
        _writing: &Writing,
        image: &KernelImage,
        previous: &[BlobId],
        durable: bool,
    ) -> Result<Stored, BlobError> {
        let kept = image.kept.min(previous.len());
        let mut new_bytes = 0;
        let mut parts = previous[..kept].to_vec();
        for part in &image.parts[kept..] {
            let (id, new) = self.blobs.put(part, false)?;
            if new {
                new_bytes += self.blobs.stored_bytes(&id).unwrap_or(0);
            }
            parts.push(id);
        }
        let index = Index { format: INDEX_FORMAT, language: image.language, parts };
        let bytes = serde_json::to_vec(&index).expect("an index always serializes");
        let (id, new) = self.blobs.put(&bytes, false)?;
        if new {
            new_bytes += self.blobs.stored_bytes(&id).unwrap_or(0);
        }
        if durable {
            self.blobs.sync()?;
        }
        let parts = index.parts.clone();
        self.shared.indexes.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), Arc::new(index));
        let pin = self.pin(&id);
        Ok(Stored { id, parts, new_bytes, pin })
    }

    /// Keeps checkpoint `id` from collection while the returned pin lives.
    pub fn pin(&self, id: &BlobId) -> Pin {
        *self.shared.pinned.lock().unwrap_or_else(|e| e.into_inner()).entry(id.clone()).or_default() += 1;
        Pin { shared: Arc::clone(&self.shared), id: id.clone() }
    }

    /// Reads checkpoint `id` (blocking), every part checked; any part missing or damaged
    /// refuses the whole checkpoint.
    pub fn load(&self, id: &BlobId) -> Result<KernelImage, BlobError> {
        let index = self.index(id)?;
        let parts =
            index.parts.iter().map(|part| self.blobs.get(part).map(Arc::from)).collect::<Result<Vec<_>, _>>()?;
        Ok(KernelImage::from_parts(index.language, parts))
    }

    /// Compressed bytes checkpoint `id` takes, its index and every part (shared parts
    /// counted whole).
    pub fn stored_bytes(&self, id: &BlobId) -> u64 {
        let index = self.blobs.stored_bytes(id).unwrap_or(0);
        let parts = self.index(id).map(|index| index.parts.iter().filter_map(|p| self.blobs.stored_bytes(p)).sum());
        index + parts.unwrap_or(0)
    }

    /// Removes every blob that is not a checkpoint `named` returns, a part of one, one of its
    /// other blobs, or pinned, returning how many went. Waits for checkpoints being written;
    /// `named` is called once none is, so it sees every checkpoint that is named.
    pub async fn collect(&self, named: impl FnOnce() -> Named) -> usize {
        let _gate = self.shared.gate.write().await;
        let mut named = named();
        named.checkpoints.extend(self.shared.pinned.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned());
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.retain(&named)).await.unwrap_or(0)
    }

    /// [`Checkpoints::collect`] without waiting (blocking): for a store nobody writes to yet.
    pub fn retain(&self, named: &Named) -> usize {
        let roots = &named.checkpoints;
        let mut keep = roots.clone();
        keep.extend(named.blobs.iter().cloned());
        let mut indexes = HashMap::new();
        for root in roots {
            // A root whose index cannot be read keeps only itself: its load says why.
            if let Ok(index) = self.index(root) {
                keep.extend(index.parts.iter().cloned());
                indexes.insert(root.clone(), index);
            }
        }
        *self.shared.indexes.lock().unwrap_or_else(|e| e.into_inner()) = indexes;
        self.blobs.retain(&keep)
    }

    fn index(&self, id: &BlobId) -> Result<Arc<Index>, BlobError> {
        if let Some(index) = self.shared.indexes.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(Arc::clone(index));
        }
        let bytes = self.blobs.get(id)?;
        let corrupt = |why: String| BlobError::Corrupt { id: id.clone(), why };
        let index: Index =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not a checkpoint index: {e}")))?;
        if index.format != INDEX_FORMAT {
            return Err(corrupt(format!("its format {} is not one this server reads", index.format)));
        }
        let index = Arc::new(index);
        self.shared.indexes.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), Arc::clone(&index));
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(parts: &[&[u8]]) -> KernelImage {
        KernelImage::from_parts(Language::Python, parts.iter().map(|p| Arc::from(*p)).collect())
    }

    #[tokio::test]
    async fn stores_only_new_parts_and_collects_what_nothing_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Checkpoints::new(BlobStore::open(dir.path()).unwrap());
        let writing = store.writing().await;
        let first = store.store(&writing, &image(&[b"header 1", b"range 0", b"range 1"]), &[], true).unwrap();
        let second = store.store(&writing, &image(&[b"header 2", b"range 0", b"range 1 changed"]), &[], false).unwrap();
        drop(writing);
        assert!(second.new_bytes < first.new_bytes, "range 0 was stored once");
        assert_eq!(store.load(&first.id).unwrap(), image(&[b"header 1", b"range 0", b"range 1"]));

        // Pinned, both stay; unpinned and unnamed, the first goes but not the part it shares.
        assert_eq!(store.collect(Named::default).await, 0);
        let (first_id, second_id) = (first.id.clone(), second.id.clone());
        drop((first, second));
        let removed = store.collect(|| Named { checkpoints: [second_id.clone()].into(), ..Named::default() }).await;
        assert_eq!(removed, 3, "the first's index, header and range 1, not the range 0 it shared");
        assert!(matches!(store.load(&first_id), Err(BlobError::Missing(_))));
        assert_eq!(store.load(&second_id).unwrap(), image(&[b"header 2", b"range 0", b"range 1 changed"]));
    }

    #[tokio::test]
    async fn kept_parts_reuse_what_was_stored_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Checkpoints::new(BlobStore::open(dir.path()).unwrap());
        let writing = store.writing().await;
        let first = store.store(&writing, &image(&[b"range 0", b"range 1", b"header 1"]), &[], false).unwrap();
        // The kernel says its first two parts are the previous image's: they are not read.
        let next = image(&[b"not read", b"not read either", b"delta", b"header 2"]).with_kept(2);
        let second = store.store(&writing, &next, &first.parts, false).unwrap();
        drop(writing);
        let loaded = store.load(&second.id).unwrap();
        assert_eq!(loaded, image(&[b"range 0", b"range 1", b"delta", b"header 2"]));
        // With no previous parts known, nothing is reused.
        let writing = store.writing().await;
        let third = store.store(&writing, &next, &[], false).unwrap();
        assert_eq!(&*store.load(&third.id).unwrap().parts[0], b"not read");
    }

    #[tokio::test]
    async fn a_missing_or_damaged_part_refuses_the_whole_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        let store = Checkpoints::new(blobs.clone());
        let writing = store.writing().await;
        let stored = store.store(&writing, &image(&[b"header", b"range"]), &[], false).unwrap();
        drop(writing);
        let part = BlobId::of(b"range");
        blobs.remove(&part).unwrap();
        let fresh = Checkpoints::new(blobs); // no cached index
        assert!(matches!(fresh.load(&stored.id), Err(BlobError::Missing(id)) if id == part));
    }
}

//! [`BlobStore`]: content-addressed, compressed, checked blobs on local disk (checkpoints).
//!
//! A blob is named by the blake3 hash of its content ([`BlobId`]) and stored zstd-compressed
//! as `<dir>/<first two hex digits>/<hash>`. Writes are atomic and crash-safe: the compressed
//! bytes go to a temporary file in the same directory, are synced, then renamed over the final
//! name, so a process killed mid-write leaves either no blob or a whole one, and every blob
//! written before stays as it was. Reads decompress and check the hash: a blob that fails
//! ([`BlobError::Corrupt`]) is never returned in part. Storing a blob that exists is free.
//! With a [`Replica`], every new blob is also uploaded to an object store, and a blob missing
//! or damaged locally is fetched from it (checked the same way).

mod replica;

pub use replica::Replica;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// zstd's level for checkpoints: fast (a few hundred MB/s), still several times smaller.
const COMPRESSION_LEVEL: i32 = -3;
/// The most bytes one blob may decompress to (a context's memory is at most 4 GiB).
pub const MAX_BLOB_BYTES: u64 = 4 << 30;

/// A blob's name: the blake3 hash of its content, in hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlobId(String);

impl BlobId {
    /// The id of `content`.
    pub fn of(content: &[u8]) -> Self {
        BlobId(blake3::hash(content).to_hex().to_string())
    }

    /// Its hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BlobId {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let valid = text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid { Ok(BlobId(text)) } else { Err(format!("`{text}` is not a blob id")) }
    }
}

impl From<BlobId> for String {
    fn from(id: BlobId) -> String {
        id.0
    }
}

impl std::fmt::Display for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a blob could not be stored or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The blob is not in the store.
    #[error("checkpoint data {0} is missing from the snapshot store")]
    Missing(BlobId),
    /// The blob is there but fails its check (truncated, altered): it was not used.
    #[error("checkpoint data {id} is corrupt ({why}); it was not loaded")]
    Corrupt {
        /// The blob.
        id: BlobId,
        /// What failed.
        why: String,
    },
    /// The object store holding the blobs' copies failed ([`Replica`]).
    #[error("the snapshot store's object store: {0}")]
    Remote(String),
    /// The file system failed.
    #[error("snapshot store {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Blobs in a local directory, and in an object store too when it has a [`Replica`]. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    replica: Option<Replica>,
}

impl BlobStore {
    /// A store in `dir` (made, private to this user, if missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let dir = dir.into();
        crate::sandbox::prepare_workspace_root(&dir).map_err(|e| BlobError::Io { path: dir.clone(), source: e })?;
        Ok(BlobStore { dir, replica: None })
    }

    /// The same store, every new blob also uploaded to `replica` and every blob missing or
    /// damaged locally fetched from it ([`Replica`]'s documentation).
    pub fn with_replica(mut self, replica: Replica) -> Self {
        self.replica = Some(replica);
        self
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores `content` (blocking), returning its id and whether it was new. A new blob is
    /// written atomically; `durable` also syncs it and its directory before this returns
    /// (without, a killed process still leaves it whole, but a machine that loses power may
    /// not: [`BlobStore::sync`] covers many at once).
    pub fn put(&self, content: &[u8], durable: bool) -> Result<(BlobId, bool), BlobError> {
        let id = BlobId::of(content);
        let path = self.path(&id);
        if path.exists() {
            return Ok((id, false));
        }
        let parent = path.parent().unwrap_or(&self.dir);
        let io = |source| BlobError::Io { path: path.clone(), source };
        std::fs::create_dir_all(parent).map_err(io)?;
        let compressed = zstd::bulk::compress(content, COMPRESSION_LEVEL).map_err(io)?;
        let mut file = tempfile::NamedTempFile::new_in(parent).map_err(io)?;
        file.write_all(&compressed).map_err(io)?;
        if durable {
            file.as_file().sync_all().map_err(io)?;
        }
        file.persist(&path).map_err(|e| io(e.error))?;
        if durable {
            sync_dir(parent).map_err(io)?;
        }
        if let Some(replica) = &self.replica {
            replica.upload_later(&id, compressed);
            if durable {
                self.flush_replica()?;
            }
        }
        Ok((id, true))
    }

    /// Makes every blob written so far durable (blocking): one sync of the store's file
    /// system, cheaper than syncing many blobs one by one, and, with a replica, every upload
    /// started waited for.
    pub fn sync(&self) -> Result<(), BlobError> {
        let io = |source| BlobError::Io { path: self.dir.clone(), source };
        let dir = std::fs::File::open(&self.dir).map_err(io)?;
        rustix::fs::syncfs(&dir).map_err(|e| io(e.into()))?;
        self.flush_replica()
    }

    /// Waits until every blob stored so far is in the replica, if there is one (blocking).
    pub fn flush_replica(&self) -> Result<(), BlobError> {
        match &self.replica {
            Some(replica) => replica.flush(|id| std::fs::read(self.path(id)).ok()),
            None => Ok(()),
        }
    }

    /// Reads blob `id` (blocking), checked against its id.
    pub fn get(&self, id: &BlobId) -> Result<Vec<u8>, BlobError> {
        let local = self.get_local(id);
        let Some(replica) = &self.replica else { return local };
        if !matches!(local, Err(BlobError::Missing(_) | BlobError::Corrupt { .. })) {
            return local;
        }
        let Some(compressed) = replica.download(id)? else { return local };
        let content = decode(id, &compressed)
            .map_err(|e| BlobError::Corrupt { id: id.clone(), why: format!("the object store's copy: {e}") })?;
        // Cached again; a failure to cache only means the next read fetches it again.
        if let Err(error) = self.cache(id, &compressed) {
            tracing::warn!(%id, %error, "could not cache a checkpoint blob fetched from the object store");
        }
        tracing::info!(%id, "a checkpoint blob missing or damaged locally came from the object store");
        Ok(content)
    }

    fn get_local(&self, id: &BlobId) -> Result<Vec<u8>, BlobError> {
        let path = self.path(id);
        let compressed = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::Missing(id.clone())),
            Err(source) => return Err(BlobError::Io { path, source }),
        };
        decode(id, &compressed)
    }

    /// Writes fetched, checked bytes to the local directory.
    fn cache(&self, id: &BlobId, compressed: &[u8]) -> std::io::Result<()> {
        let path = self.path(id);
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent)?;
        let mut file = tempfile::NamedTempFile::new_in(parent)?;
        file.write_all(compressed)?;
        file.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Removes blob `id`, if present.
    pub fn remove(&self, id: &BlobId) -> Result<(), BlobError> {
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BlobError::Io { path, source: e }),
            _ => Ok(()),
        }
    }

    /// Removes every blob not in `keep` (blocking), returning how many went: what no paused
    /// sandbox names any more (a killed process left it, or its sandbox was lost).
    pub fn retain(&self, keep: &std::collections::HashSet<BlobId>) -> usize {
        let Ok(shards) = std::fs::read_dir(&self.dir) else { return 0 };
        let mut removed = 0;
        let mut gone = Vec::new();
        for shard in shards.flatten() {
            let name = shard.file_name();
            let is_shard = name.len() == 2 && name.to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_hexdigit()));
            let Ok(blobs) = std::fs::read_dir(shard.path()) else { continue };
            if !is_shard {
                continue;
            }
            for blob in blobs.flatten() {
                let id = blob.file_name().to_str().and_then(|n| BlobId::try_from(n.to_owned()).ok());
                // A temporary file a killed write left has no blob's name: it goes too.
                if id.as_ref().is_none_or(|id| !keep.contains(id)) && std::fs::remove_file(blob.path()).is_ok() {
                    removed += 1;
                    gone.extend(id);
                }
            }
        }
        if let Some(replica) = &self.replica
            && !gone.is_empty()
        {
            replica.delete(gone);
        }
        removed
    }

    /// Bytes blob `id` takes on disk (compressed).
    pub fn stored_bytes(&self, id: &BlobId) -> Option<u64> {
        std::fs::metadata(self.path(id)).ok().map(|m| m.len())
    }

    fn path(&self, id: &BlobId) -> PathBuf {
        self.dir.join(&id.0[..2]).join(&id.0)
    }
}

/// A stored blob's content: `compressed` decompressed and checked against `id`.
fn decode(id: &BlobId, compressed: &[u8]) -> Result<Vec<u8>, BlobError> {
    let corrupt = |why: String| BlobError::Corrupt { id: id.clone(), why };
    let mut content = Vec::new();
    let mut decoder = zstd::stream::read::Decoder::new(compressed).map_err(|e| corrupt(e.to_string()))?;
    std::io::copy(&mut std::io::Read::take(&mut decoder, MAX_BLOB_BYTES + 1), &mut content)
        .map_err(|e| corrupt(format!("it does not decompress: {e}")))?;
    if BlobId::of(&content) != *id {
        return Err(corrupt("its content does not match its checksum".into()));
    }
    Ok(content)
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_holds_every_blob_serves_what_is_lost_locally_and_refuses_a_damaged_copy() {
        use object_store::ObjectStore;
        let dir = tempfile::tempdir().unwrap();
        let memory = std::sync::Arc::new(object_store::memory::InMemory::new());
        let replica = Replica::new(memory.clone(), "checkpoints").unwrap();
        let store = BlobStore::open(dir.path()).unwrap().with_replica(replica.clone());
        let (id, new) = store.put(b"a context's memory", false).unwrap();
        assert!(new);
        store.sync().unwrap();
        let remote = object_store::path::Path::from(format!("checkpoints/{id}"));
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let exists = |id: &BlobId| {
            runtime.block_on(memory.head(&object_store::path::Path::from(format!("checkpoints/{id}")))).is_ok()
        };
        assert!(exists(&id), "uploaded once the store is synced");

        // Lost locally: fetched, checked, and cached again.
        std::fs::remove_file(store.path(&id)).unwrap();
        assert_eq!(store.get(&id).unwrap(), b"a context's memory");
        assert!(store.path(&id).exists(), "cached again");
        // Damaged locally: the same.
        std::fs::write(store.path(&id), b"not zstd").unwrap();
        assert_eq!(store.get(&id).unwrap(), b"a context's memory");

        // Damaged in the object store too: refused, naming where.
        runtime.block_on(memory.put(&remote, b"also not zstd".to_vec().into())).unwrap();
        std::fs::remove_file(store.path(&id)).unwrap();
        let refused = store.get(&id).unwrap_err();
        assert!(matches!(&refused, BlobError::Corrupt { why, .. } if why.contains("object store")), "{refused}");
        // Unknown to both: missing.
        let unknown = BlobId::of(b"never stored");
        assert!(matches!(store.get(&unknown), Err(BlobError::Missing(_))));

        // Collected locally: deleted from the object store as well.
        let (kept, _) = store.put(b"kept", false).unwrap();
        let (gone, _) = store.put(b"collected", true).unwrap();
        assert!(exists(&kept) && exists(&gone), "a durable put waits for every upload");
        assert_eq!(store.retain(&[kept.clone()].into()), 1);
        assert!(exists(&kept) && !exists(&gone));
    }

    /// An object store whose first `failures` puts fail, as a network or a server would.
    #[derive(Debug)]
    struct Flaky {
        inner: object_store::memory::InMemory,
        failures: std::sync::atomic::AtomicUsize,
    }

    impl std::fmt::Display for Flaky {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Flaky({})", self.inner)
        }
    }

    #[async_trait::async_trait]
    impl object_store::ObjectStore for Flaky {
        async fn put_opts(
            &self,
            location: &object_store::path::Path,
            payload: object_store::PutPayload,
            opts: object_store::PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            use std::sync::atomic::Ordering;
            if self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                let source = std::io::Error::other("connection reset");
                return Err(object_store::Error::Generic { store: "Flaky", source: source.into() });
            }
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &object_store::path::Path,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &object_store::path::Path,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            self.inner.get_opts(location, options).await
        }
        async fn delete(&self, location: &object_store::path::Path) -> object_store::Result<()> {
            self.inner.delete(location).await
        }
        fn list(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> futures_util::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> object_store::Result<object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy(
            &self,
            from: &object_store::path::Path,
            to: &object_store::path::Path,
        ) -> object_store::Result<()> {
            self.inner.copy(from, to).await
        }
        async fn copy_if_not_exists(
            &self,
            from: &object_store::path::Path,
            to: &object_store::path::Path,
        ) -> object_store::Result<()> {
            self.inner.copy_if_not_exists(from, to).await
        }
    }

    #[test]
    fn a_failed_upload_fails_the_sync_and_is_retried_from_the_local_copy_until_it_lands() {
        use object_store::ObjectStore;
        let dir = tempfile::tempdir().unwrap();
        // The background upload and the first retry fail; the second retry lands.
        let flaky = std::sync::Arc::new(Flaky { inner: Default::default(), failures: 2.into() });
        let store = BlobStore::open(dir.path()).unwrap().with_replica(Replica::new(flaky.clone(), "c").unwrap());
        let (id, _) = store.put(b"a cell's checkpoint", false).unwrap();
        let failed = store.sync().unwrap_err();
        assert!(matches!(&failed, BlobError::Remote(why) if why.contains("connection reset")), "{failed}");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let remote = object_store::path::Path::from(format!("c/{id}"));
        assert!(runtime.block_on(flaky.head(&remote)).is_err(), "not uploaded yet");
        store.sync().unwrap();
        let uploaded = runtime.block_on(async { flaky.get(&remote).await.unwrap().bytes().await.unwrap() });
        assert_eq!(decode(&id, &uploaded).unwrap(), b"a cell's checkpoint", "the local copy, as stored");
        store.sync().unwrap();
        assert_eq!(flaky.failures.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[test]
    fn stores_reads_and_refuses_a_damaged_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        let content: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let (id, new) = store.put(&content, true).unwrap();
        assert!(new);
        assert_eq!(store.put(&content, false).unwrap(), (id.clone(), false), "content-addressed");
        assert_eq!(store.get(&id).unwrap(), content);
        assert!(store.stored_bytes(&id).unwrap() < content.len() as u64 / 4, "compressed");

        let path = store.path(&id);
        let mut bytes = std::fs::read(&path).unwrap();
        let half = bytes.len() / 2;
        bytes.truncate(half);
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(store.get(&id), Err(BlobError::Corrupt { .. })));
        store.remove(&id).unwrap();
        assert!(matches!(store.get(&id), Err(BlobError::Missing(_))));
        assert!(BlobId::try_from("../etc/passwd".to_owned()).is_err());
    }

    #[test]
    fn retain_keeps_only_what_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        let (kept, _) = store.put(b"kept", false).unwrap();
        let (dropped, _) = store.put(b"dropped", false).unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/sandboxes")).unwrap();
        std::fs::write(dir.path().join("blobs/sandboxes/x.json"), b"{}").unwrap();
        let removed = store.retain(&[kept.clone()].into_iter().collect());
        assert_eq!(removed, 1);
        assert_eq!(store.get(&kept).unwrap(), b"kept");
        assert!(matches!(store.get(&dropped), Err(BlobError::Missing(_))));
        assert!(dir.path().join("blobs/sandboxes/x.json").exists(), "only blob shards are swept");
    }
}

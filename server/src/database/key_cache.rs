//! [`KeyCache`]: the live API keys a server has looked up, kept so that a request with a known
//! key costs no query, while a revocation still takes effect at once.
//!
//! Looking a key up is a query on every request, and on SQLite a query is a trip to the
//! connection's own thread and back: measured on 2 cores, a session cell over HTTP took
//! 0.328 ms back-to-back with a key against 0.23 ms without one, and 0.76-0.83 against
//! 0.58-0.64 ms with 10 ms gaps; with the keys kept, 0.246 and 0.60-0.65 ms (README, "API keys
//! without a query per request"). So a SQLite server keeps the keys it found live.
//!
//! What makes that safe is the revocation notice: `soulbox keys revoke` (which writes the
//! database directly, even while no server runs) appends a byte to a file beside the database
//! (`<database>-revoked`) once its update has committed ([`KeyCache::notice_revocation`]).
//! Before answering from the cache, a server reads that file's metadata (one `statx`, no
//! query): a file that changed since it last looked empties the cache, so the next lookup of
//! every key queries again and a revoked key is refused from the first request after
//! `keys revoke` returns.
//!
//! Invariants: a key enters the cache only if no notice has been seen since before its query
//! began ([`Lookup::Miss`] carries what was seen then), so a query that raced a revocation can
//! never put the revoked key back after the cache was emptied. The notice file must stay while
//! servers run: deleting it reads as "never revoked", the state a server starts in, and a query
//! that began before the deletion could then keep a key revoked before it. Only live keys are kept (an
//! unknown secret queries every time, as before), at most [`MAX_KEYS`] of them, each for at most
//! [`KEEP_FOR`]: a key revoked some other way than `keys revoke` (an `UPDATE` by hand) stops
//! working within that. PostgreSQL servers (a cluster, whose nodes do not share a file system)
//! query on every request.

use super::LiveKey;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys kept at most; past it the cache starts again empty.
pub const MAX_KEYS: usize = 4_096;
/// How long a key is trusted without a query.
pub const KEEP_FOR: Duration = Duration::from_secs(30);
/// What the revocation notice's name adds to the database file's.
const NOTICE_SUFFIX: &str = "-revoked";

/// The live keys of one SQLite database, and the notice file that empties them.
#[derive(Debug)]
pub struct KeyCache {
    notice_path: PathBuf,
    keep_for: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The notice file as last seen.
    seen: Notice,
    /// Live keys by the hash of their secret, with when they were found live.
    keys: HashMap<String, (LiveKey, Instant)>,
}

/// One state of the revocation notice file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Notice {
    /// No key was ever revoked with `keys revoke` on this database.
    #[default]
    Absent,
    /// The file as it stands: it only grows, and a file made anew is another inode.
    Stamped { inode: u64, length: u64, modified_ns: i128 },
    /// It exists but its metadata cannot be read: nothing is kept while this lasts.
    Unreadable,
}

/// What [`KeyCache::get`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A live key, found live within [`KEEP_FOR`] and no revocation noticed since.
    Hit(LiveKey),
    /// Not kept: query, then [`KeyCache::keep`] what was found with this.
    Miss(Notice),
}

impl KeyCache {
    /// The cache of the SQLite database file `database`.
    pub fn new(database: &Path) -> Self {
        Self::keeping_for(database, KEEP_FOR)
    }

    fn keeping_for(database: &Path, keep_for: Duration) -> Self {
        let mut notice = database.as_os_str().to_owned();
        notice.push(NOTICE_SUFFIX);
        KeyCache { notice_path: PathBuf::from(notice), keep_for, state: Mutex::default() }
    }

    /// The key whose secret hashes to `hash`, if it is kept; first empties the cache if a
    /// revocation was noticed since the last look.
    pub fn get(&self, hash: &str) -> Lookup {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Read under the lock, so `seen` only ever moves to a later state of the file.
        let now = self.read_notice();
        if state.seen != now || now == Notice::Unreadable {
            state.keys.clear();
            state.seen = now;
        }
        match state.keys.get(hash) {
            Some((key, found)) if found.elapsed() < self.keep_for => Lookup::Hit(key.clone()),
            _ => Lookup::Miss(now),
        }
    }

    /// Keeps `key`, found live by a query that began after [`KeyCache::get`] saw `seen`; not if
    /// a revocation has been noticed since (the query may have read the key before it).
    pub fn keep(&self, hash: String, key: LiveKey, seen: Notice) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.seen != seen || seen == Notice::Unreadable {
            return;
        }
        if state.keys.len() >= MAX_KEYS {
            state.keys.clear();
        }
        state.keys.insert(hash, (key, Instant::now()));
    }

    /// Tells every server on this database that a key was revoked (call once the revocation
    /// has committed): their caches empty before their next answer.
    pub fn notice_revocation(&self) -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.notice_path)?;
        file.write_all(b"\n")?;
        file.sync_data()
    }

    /// The notice file's current state.
    fn read_notice(&self) -> Notice {
        match std::fs::metadata(&self.notice_path) {
            Ok(meta) => Notice::Stamped {
                inode: meta.ino(),
                length: meta.len(),
                modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Notice::Absent,
            Err(_) => Notice::Unreadable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> LiveKey {
        LiveKey { id: id.into(), tenant: "acme".into() }
    }

    #[test]
    fn a_key_kept_is_found_until_a_revocation_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KeyCache::new(&dir.path().join("s.db"));
        let Lookup::Miss(seen) = cache.get("h1") else { panic!("an empty cache") };
        cache.keep("h1".into(), key("k1"), seen);
        assert_eq!(cache.get("h1"), Lookup::Hit(key("k1")));
        assert!(matches!(cache.get("h2"), Lookup::Miss(_)), "only what was kept");

        KeyCache::new(&dir.path().join("s.db")).notice_revocation().unwrap();
        assert!(matches!(cache.get("h1"), Lookup::Miss(_)), "another process's notice empties it");
        let Lookup::Miss(seen) = cache.get("h1") else { panic!("emptied") };
        cache.keep("h1".into(), key("k1"), seen);
        assert_eq!(cache.get("h1"), Lookup::Hit(key("k1")), "kept again after the notice");
        cache.notice_revocation().unwrap();
        assert!(matches!(cache.get("h1"), Lookup::Miss(_)), "every notice counts");
    }

    #[test]
    fn a_query_that_raced_a_revocation_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KeyCache::new(&dir.path().join("s.db"));
        let Lookup::Miss(before) = cache.get("h1") else { panic!("an empty cache") };
        // The query reads the key live; meanwhile it is revoked and another request notices.
        cache.notice_revocation().unwrap();
        assert!(matches!(cache.get("h2"), Lookup::Miss(_)));
        cache.keep("h1".into(), key("k1"), before);
        assert!(matches!(cache.get("h1"), Lookup::Miss(_)), "kept from before the notice: dropped");
    }

    #[test]
    fn a_key_is_trusted_for_a_while_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KeyCache::keeping_for(&dir.path().join("s.db"), Duration::ZERO);
        let Lookup::Miss(seen) = cache.get("h1") else { panic!("an empty cache") };
        cache.keep("h1".into(), key("k1"), seen);
        assert!(matches!(cache.get("h1"), Lookup::Miss(_)));
    }

    #[test]
    fn the_cache_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KeyCache::new(&dir.path().join("s.db"));
        let Lookup::Miss(seen) = cache.get("h") else { panic!("an empty cache") };
        for i in 0..=MAX_KEYS {
            cache.keep(format!("h{i}"), key(&format!("k{i}")), seen);
        }
        assert_eq!(cache.state.lock().unwrap().keys.len(), 1, "full: started again with the newest");
        assert_eq!(cache.get(&format!("h{MAX_KEYS}")), Lookup::Hit(key(&format!("k{MAX_KEYS}"))));
    }
}

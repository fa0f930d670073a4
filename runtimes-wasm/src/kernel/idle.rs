//! Idle contexts give back memory: a context that has run no cell for a while (the backend's
//! [`crate::WasmConfig::trim_idle_after`]) discards the pages its cells left exactly as they
//! were ([`crate::checkpoint::trim`]), which it would otherwise hold as private copies.
//!
//! Why after a delay and not after each cell: a discarded page that the next cell writes
//! again costs that cell a page fault, and cells write much the same pages each time.
//! Measured (`peers-report --loop cell`, `x = x + 1` in a Python session): the first cell after
//! a trim took 1.27-1.61 ms p50, against 0.84-0.88 ms after a 0.9 s pause with no trim. So the
//! default delay, [`TRIM_IDLE_AFTER`], is longer than the pauses of an agent at work between
//! its tool calls (seconds), and shorter than the hours a finished conversation's sandbox may
//! wait for its timeout, which is when its memory counts.
//!
//! One thread per backend does the trimming, so a context's next cell never waits on it for
//! long: a cell that ends with its context intact queues the context (once; a context already
//! queued only notes when it went idle), due a delay later. When one is due the thread looks at
//! it without waiting: a context gone is forgotten; one whose slot is busy (a cell or a
//! checkpoint is running) or that ran a cell since is looked at again a delay later; an idle
//! one is trimmed, holding its slot while its written pages (a few hundred for an idle Python
//! context) are compared and discarded.

use super::{Live, Slot};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long a context runs no cell before it is trimmed, by default.
pub const TRIM_IDLE_AFTER: Duration = Duration::from_secs(30);

/// The thread that trims idle contexts; stops when dropped.
pub(crate) struct IdleTrimmer {
    shared: Arc<Shared>,
}

struct Shared {
    after: Duration,
    queue: Mutex<BinaryHeap<Reverse<Due>>>,
    wake: Condvar,
    stopped: AtomicBool,
    /// Pages discarded since the backend opened.
    pages_trimmed: AtomicU64,
}

/// A context to look at, at `at`.
struct Due {
    at: Instant,
    slot: Weak<tokio::sync::Mutex<Option<Live>>>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

impl IdleTrimmer {
    /// Starts the thread, trimming contexts idle for `after`.
    pub(crate) fn start(after: Duration) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            after,
            queue: Mutex::new(BinaryHeap::new()),
            wake: Condvar::new(),
            stopped: AtomicBool::new(false),
            pages_trimmed: AtomicU64::new(0),
        });
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new().name("soulbox-trim".into()).spawn(move || thread_shared.serve())?;
        Ok(IdleTrimmer { shared })
    }

    /// Notes that `live` (held in `slot`, whose lock the caller holds) just went idle.
    pub(crate) fn went_idle(&self, slot: &Slot, live: &mut Live) {
        let now = Instant::now();
        live.idle_since = now;
        if !live.trim_queued {
            live.trim_queued = true;
            self.shared.push(now + self.shared.after, Arc::downgrade(slot));
        }
    }

    /// Pages discarded since the backend opened.
    pub(crate) fn pages_trimmed(&self) -> u64 {
        self.shared.pages_trimmed.load(Ordering::Relaxed)
    }
}

impl Drop for IdleTrimmer {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        let _queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        self.shared.wake.notify_all();
    }
}

impl Shared {
    fn push(&self, at: Instant, slot: Weak<tokio::sync::Mutex<Option<Live>>>) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).push(Reverse(Due { at, slot }));
        self.wake.notify_one();
    }

    /// The thread: takes each context when it is due and looks at it.
    fn serve(&self) {
        while let Some(due) = self.next_due() {
            self.look_at(due.slot);
        }
    }

    /// Waits for the earliest context to be due; `None` once stopped.
    fn next_due(&self) -> Option<Due> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.stopped.load(Ordering::Relaxed) {
                return None;
            }
            let now = Instant::now();
            let wait = match queue.peek() {
                Some(Reverse(due)) if due.at <= now => return queue.pop().map(|Reverse(due)| due),
                Some(Reverse(due)) => due.at - now,
                None => Duration::from_secs(3600),
            };
            queue = self.wake.wait_timeout(queue, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn look_at(&self, slot: Weak<tokio::sync::Mutex<Option<Live>>>) {
        let Some(held) = slot.upgrade() else { return };
        if let Some(again) = self.trim_if_idle(&held) {
            drop(held);
            self.push(again, slot);
        }
    }

    /// Trims the context in `held` if it is idle; returns when to look again if it is not.
    fn trim_if_idle(&self, held: &tokio::sync::Mutex<Option<Live>>) -> Option<Instant> {
        let Ok(mut guard) = held.try_lock() else {
            // Busy: whatever runs now may leave it idle again, or may not queue it.
            return Some(Instant::now() + self.after);
        };
        // An empty slot is being restarted; the cell that fills it queues it again.
        let live = guard.as_mut()?;
        let idle_until = live.idle_since + self.after;
        if idle_until > Instant::now() {
            return Some(idle_until);
        }
        live.trim_queued = false;
        let pages = trim(live);
        self.pages_trimmed.fetch_add(pages as u64, Ordering::Relaxed);
        None
    }
}

/// Discards `live`'s pages that hold what backs them; returns how many.
fn trim(live: &mut Live) -> usize {
    if live.overlay.is_some() {
        // Mapped over by a copy-on-write restore: its backing is not the slot's own.
        return 0;
    }
    let Ok(memory) = crate::checkpoint::state_memory(&mut live.store, &live.instance) else { return 0 };
    let data = memory.data_mut(&mut live.store);
    // SAFETY: `data` is the instance's whole linear memory in its pool slot, borrowed mutably
    // through the store, which the caller holds exclusively (the context's slot lock): no cell
    // runs meanwhile.
    #[allow(unsafe_code)]
    unsafe {
        crate::checkpoint::trim::trim(data)
    }
}

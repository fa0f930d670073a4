//! [`GuestClock`]: the guest's monotonic clock, which a restored context continues.
//!
//! WASI's default monotonic clock counts from when its context was made, so a context
//! restored from a checkpoint would see time go backwards. Every guest gets this clock
//! instead: the time elapsed since the guest was made, plus an offset that a restore sets to
//! the reading saved in the checkpoint, before any guest code runs again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use wasmtime_wasi::HostMonotonicClock;

/// A guest's monotonic clock, in nanoseconds. Cheap to clone (clones read the same clock).
#[derive(Debug, Clone)]
pub struct GuestClock {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    started: Instant,
    offset_ns: AtomicU64,
}

impl GuestClock {
    pub(crate) fn new() -> Self {
        GuestClock { shared: Arc::new(Shared { started: Instant::now(), offset_ns: AtomicU64::new(0) }) }
    }

    /// What the guest reads now.
    pub fn now_ns(&self) -> u64 {
        let elapsed = u64::try_from(self.shared.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.shared.offset_ns.load(Ordering::Relaxed).saturating_add(elapsed)
    }

    /// Makes the clock read `reading` now and go on from there (a restored context continues
    /// from its checkpoint's reading). Never goes backwards: a reading below the current one
    /// is ignored.
    pub fn continue_from(&self, reading: u64) {
        let now = self.now_ns();
        if reading > now {
            self.shared.offset_ns.fetch_add(reading - now, Ordering::Relaxed);
        }
    }
}

impl HostMonotonicClock for GuestClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.now_ns()
    }
}

#[cfg(test)]
mod tests {
    use super::GuestClock;

    #[test]
    fn continues_from_a_later_reading_and_never_goes_back() {
        let clock = GuestClock::new();
        let reading = clock.now_ns() + 5_000_000_000;
        clock.continue_from(reading);
        assert!(clock.now_ns() >= reading);
        let later = clock.now_ns();
        clock.continue_from(1);
        assert!(clock.now_ns() >= later);
    }
}

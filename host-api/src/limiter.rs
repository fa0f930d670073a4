//! [`GuestLimiter`]: caps a guest's linear memory and remembers its peak.

use wasmtime::ResourceLimiter;

/// Tables a guest may grow to, in elements (CPython's function table needs ~47k).
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// A [`ResourceLimiter`] that refuses memory growth past `memory_cap` bytes, and records both the
/// largest size the guest reached and whether it was refused.
#[derive(Debug, Clone)]
pub struct GuestLimiter {
    memory_cap: usize,
    peak: usize,
    refused: bool,
}

impl GuestLimiter {
    /// A limiter for `memory_cap` bytes of linear memory.
    pub fn new(memory_cap: u64) -> Self {
        GuestLimiter { memory_cap: usize::try_from(memory_cap).unwrap_or(usize::MAX), peak: 0, refused: false }
    }

    /// Changes the cap for future growth and clears the refusal flag. Memory the guest already
    /// has is not taken away: check [`GuestLimiter::peak_bytes`] against the new cap.
    pub fn set_cap(&mut self, memory_cap: u64) {
        self.memory_cap = usize::try_from(memory_cap).unwrap_or(usize::MAX);
        self.refused = false;
    }

    /// Records memory the guest already has without growing into it (a rewound guest's, which
    /// its new limiter did not see instantiated), as instantiating would have.
    pub fn record_existing(&mut self, bytes: usize) {
        self.peak = self.peak.max(bytes);
    }

    /// The largest linear memory size seen, in bytes.
    pub fn peak_bytes(&self) -> u64 {
        self.peak as u64
    }

    /// Whether a memory growth was refused because of the cap.
    pub fn hit_cap(&self) -> bool {
        self.refused
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.refused = true;
            self.peak = self.peak.max(current);
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_cap_and_tracks_peak() {
        let mut limiter = GuestLimiter::new(1000);
        assert!(limiter.memory_growing(0, 600, None).unwrap());
        assert!(!limiter.memory_growing(600, 2000, None).unwrap());
        assert!(limiter.hit_cap());
        assert_eq!(limiter.peak_bytes(), 600);
    }
}

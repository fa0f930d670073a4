//! The epoch ticker: advances an engine's epoch every [`EPOCH_TICK`], so deadlines armed with
//! `Store::set_epoch_deadline` trap running guest code.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::Engine;

/// Deadline granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// A background thread ticking one engine's epoch; stops when dropped.
#[derive(Debug)]
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    /// Starts ticking `engine`.
    pub fn start(engine: &Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (engine.clone(), Arc::clone(&stop));
        std::thread::Builder::new().name("soulbox-epoch".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })?;
        Ok(EpochTicker { stop })
    }

    /// Epoch ticks that cover `deadline` (at least one).
    pub fn ticks_for(deadline: Duration) -> u64 {
        let tick = EPOCH_TICK.as_nanos();
        u64::try_from(deadline.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX).max(1)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

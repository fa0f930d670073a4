//! [`Breaker`]: a circuit breaker in front of the Docker engine.
//!
//! After [`FAILURES_TO_OPEN`] consecutive failures to reach the engine, calls fail at once for
//! a cool-down (starting at [`FIRST_COOL_DOWN`], doubling up to [`MAX_COOL_DOWN`] while the
//! engine stays dead) instead of each waiting out its own timeouts. When the cool-down ends,
//! one call goes through as a probe: success closes the breaker, failure reopens it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Consecutive failures that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 3;
/// The first cool-down.
pub const FIRST_COOL_DOWN: Duration = Duration::from_secs(2);
/// The longest cool-down.
pub const MAX_COOL_DOWN: Duration = Duration::from_secs(60);

/// The breaker's state. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
    cool_down: Option<Duration>,
    /// When the probe in flight was let through (a probe whose caller gave up never reports:
    /// after [`PROBE_TIMEOUT`] another may go).
    probing: Option<Instant>,
}

/// How long a probe may take before another is let through.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl Breaker {
    /// Whether a call may go to the engine now; `Err` says for how long it will not.
    pub fn admit(&self) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.open_until {
            None => Ok(()),
            Some(until) => {
                let now = Instant::now();
                if now < until {
                    Err(until - now)
                } else if state.probing.is_some_and(|since| now.duration_since(since) < PROBE_TIMEOUT) {
                    Err(Duration::ZERO)
                } else {
                    state.probing = Some(now);
                    Ok(())
                }
            }
        }
    }

    /// Records a call that reached the engine.
    pub fn succeeded(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = State::default();
    }

    /// Records a call that could not reach the engine.
    pub fn failed(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.failures += 1;
        state.probing = None;
        if state.failures >= FAILURES_TO_OPEN {
            let cool_down = state.cool_down.map_or(FIRST_COOL_DOWN, |d| (d * 2).min(MAX_COOL_DOWN));
            state.cool_down = Some(cool_down);
            state.open_until = Some(Instant::now() + cool_down);
        }
    }

    /// Whether calls are being refused now.
    pub fn is_open(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).open_until.is_some_and(|until| Instant::now() < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_repeated_failures_and_lets_one_probe_through() {
        let breaker = Breaker::default();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            breaker.failed();
            assert!(breaker.admit().is_ok());
        }
        breaker.failed();
        assert!(breaker.is_open());
        let wait = breaker.admit().unwrap_err();
        assert!(wait <= FIRST_COOL_DOWN && wait > Duration::ZERO);
        // Pretend the cool-down passed.
        breaker.state.lock().unwrap().open_until = Some(Instant::now());
        assert!(breaker.admit().is_ok(), "one probe");
        assert!(breaker.admit().is_err(), "only one");
        breaker.state.lock().unwrap().probing = Some(Instant::now() - PROBE_TIMEOUT);
        assert!(breaker.admit().is_ok(), "another, once the first probe is overdue");
        breaker.failed();
        let longer = breaker.admit().unwrap_err();
        assert!(longer > FIRST_COOL_DOWN, "the cool-down doubles: {longer:?}");
        breaker.succeeded();
        assert!(breaker.admit().is_ok() && !breaker.is_open());
    }
}

//! Process-wide tuning of glibc's allocator, for the one-shot `soulbox run`.
//!
//! glibc gives each new thread that allocates an arena of its own, grown by `mprotect` in steps
//! just as large as the allocation that did not fit. `soulbox run` loads its compiled module on
//! a worker thread, whose new arena grows by a couple of megabytes of decoded tables (about 190
//! `mprotect` calls in `strace`, against 30 with one arena). A single execution has nothing for
//! arenas to keep apart, so `run` asks for one arena before it starts any thread: the main heap,
//! grown by `brk` with glibc's top padding. Measured: 0.7-2.1 ms (3-9%, a slow hour) off
//! `soulbox run -e 'print(1+1)'`. The server keeps the default: there, per-thread arenas keep
//! worker threads from contending on one lock.

// The one `unsafe` of this crate: glibc's `mallopt`, see the safety comment.
#![allow(unsafe_code)]

/// Makes every thread allocate from the main arena. Call before any thread is started (a
/// thread that already has an arena keeps it). Does nothing outside glibc.
pub(crate) fn single_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only sets an allocator parameter (under the allocator's own lock);
        // `M_ARENA_MAX` with a positive value is a documented setting, and neither takes nor
        // returns memory. A 0 return (setting refused) leaves the default, which is correct too.
        let _ = unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    }
}

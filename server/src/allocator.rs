//! Process-wide tuning of glibc's allocator, for the one-shot `soulbox run`.
//!
//! A single execution has nothing for the allocator to keep apart or give back, and most of its
//! heap is written once: the compiled module's decoded tables, a few megabytes on the worker
//! thread that loads it. Two settings, applied before any thread starts:
//!
//! - **One arena.** glibc gives each new thread that allocates an arena of its own, grown by
//!   `mprotect` in steps just as large as the allocation that did not fit (about 190 calls in
//!   `strace`, against 30 with one arena). `run` asks for one arena, the main heap, grown by
//!   `brk`. Measured: 0.7-2.1 ms (3-9%, a slow hour) off `soulbox run -e 'print(1+1)'`.
//! - **A heap on huge pages.** Each 4 KiB page the process first writes costs a page fault, and
//!   the decoded tables alone are about 750 of them. `run` grows the main heap once by
//!   [`HEAP_RESERVE`] (allocations up to [`HEAP_MMAP_THRESHOLD`] stay on it, and it is never
//!   trimmed) and marks it `MADV_HUGEPAGE`, so the kernel backs it with 2 MiB pages where it
//!   has them: about 1,500-1,900 page faults a run instead of 2,350, and 13.6 against 15.8 ms
//!   p50 (1,200 paired runs). Only touched memory is backed: a page the process never writes
//!   costs nothing. Where transparent huge pages are off the advice does nothing, and a
//!   refused setting leaves glibc's default, which is correct too.
//!
//! The server keeps glibc's defaults: there, per-thread arenas keep worker threads from
//! contending on one lock, and a long-lived heap should give memory back.

// The one `unsafe` of this crate: glibc's allocator settings and `madvise`, see the safety
// comments.
#![allow(unsafe_code)]

/// The main heap's growth at start, marked for huge pages: more than `soulbox run` allocates
/// for a plain execution (the decoded tables and the guest's host-side state), little enough
/// to be address space only (untouched pages are never backed).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HEAP_RESERVE: usize = 64 << 20;

/// Allocations smaller than this come from the main heap rather than a mapping of their own,
/// so the decoded tables (each well under it) land on the huge-page heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HEAP_MMAP_THRESHOLD: usize = 32 << 20;

/// Free memory at the heap's top is given back only beyond this, so the huge-page heap is not
/// shrunk and grown again (a grown part would be a new mapping, without the advice).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HEAP_TRIM_THRESHOLD: usize = 512 << 20;

/// The span of a transparent huge page on x86-64 and aarch64 (4 KiB base pages).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HUGE_PAGE: usize = 2 << 20;

/// Tunes glibc's allocator for a one-shot execution: one arena, and a main heap grown once and
/// backed by huge pages (see the module docs). Call before any thread is started (a thread that
/// already has an arena keeps it). Does nothing outside glibc.
pub(crate) fn one_shot_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only sets allocator parameters (under the allocator's own lock);
        // each is a documented setting with a positive value, and none takes or returns memory.
        // A 0 return (setting refused) leaves glibc's default, which is correct too.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
            libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD as libc::c_int);
            libc::mallopt(libc::M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD as libc::c_int);
            libc::mallopt(libc::M_TOP_PAD, HEAP_RESERVE as libc::c_int);
        }
        advise_huge_heap();
    }
}

/// Grows the main heap by [`HEAP_RESERVE`] now (one allocation past its current top, freed at
/// once and kept by the trim threshold) and advises huge pages from that allocation's aligned
/// start to the break.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn advise_huge_heap() {
    // SAFETY: `malloc` and `free` pair on the same pointer, which is used only as an address;
    // `sbrk(0)` only reads the current break. `madvise` with `MADV_HUGEPAGE` changes how the
    // kernel backs the range, never its contents or protection; the range runs from the freed
    // block's start (aligned up) to the break, the heap's top, and is skipped when the block
    // lies above the break (glibc fell back to a mapping). A failure (no THP, say) leaves the
    // heap as it was.
    unsafe {
        let probe = libc::malloc(1 << 20);
        if probe.is_null() {
            return;
        }
        let start = (probe as usize).next_multiple_of(HUGE_PAGE);
        libc::free(probe);
        let end = libc::sbrk(0) as usize;
        if end > start {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

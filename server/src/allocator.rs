//! Process-wide tuning of glibc's allocator, for the one-shot `soulbox run`.
//!
//! A single execution has nothing for the allocator to keep apart or give back, and most of its
//! heap is written once: the compiled module's decoded tables, a few megabytes on the worker
//! thread that loads it. Three settings, the first two applied before any thread starts:
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
//! - **Python starts on the huge pages.** The heap's part below the first huge-page boundary
//!   of the growth holds no whole huge page, and a Python run's decoded tables (about 5 MiB)
//!   used to fill it first: 300-500 page faults of 4 KiB. A Python run now skips it
//!   ([`start_on_huge_pages`], and the huge page holding the header glibc writes when the heap
//!   grows is left out of the advised part, as it may be backed by small pages already): about
//!   1,170 page faults a run instead of 1,500-1,850, and 9.93 against 12.21 ms p50 (300 paired
//!   runs of `print(1+1)`; native `python3 -c` 10.74 that hour). A JavaScript run allocates
//!   about 0.4 MiB, which that part holds: it does not skip it.
//!
//! The server keeps glibc's defaults: there, per-thread arenas keep worker threads from
//! contending on one lock, and a long-lived heap should give memory back. glibc gives back
//! only the free memory at an arena's top by itself, so what a burst's threads freed in the
//! middle of their arenas stayed resident: 10,000 mixed requests left 10-18 MiB (18-35%) more
//! anonymous memory than 1,000 did (after the burst's threads had left), all of it free.
//! [`give_back_free_heap`] returns it (`malloc_trim`), and `soulbox serve` calls it when quiet
//! (see `serve.rs`): called into one such server by a debugger, it brought 57.3 MiB back to
//! 44.1, against 43.5 after the warm-up.

// The one `unsafe` of this crate: glibc's allocator settings, `madvise` and `malloc_trim`,
// see the safety comments.
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

/// The allocation that grows the main heap by [`HEAP_RESERVE`] (as the top pad of a request the
/// heap cannot hold yet).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const PROBE: usize = 1 << 20;

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

/// Where the part of the main heap advised for huge pages begins (0: none was).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
static HUGE_START: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Grows the main heap by [`HEAP_RESERVE`] now (one allocation past its current top, freed at
/// once and kept by the trim threshold) and advises huge pages from that allocation's aligned
/// start ([`HUGE_START`]) to the break.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn advise_huge_heap() {
    // SAFETY: `malloc` and `free` pair on the same pointer, which is used only as an address;
    // `sbrk(0)` only reads the current break. `madvise` with `MADV_HUGEPAGE` changes how the
    // kernel backs the range, never its contents or protection; the range runs from the freed
    // block's start (aligned up) to the break, the heap's top, and is skipped when the block
    // lies above the break (glibc fell back to a mapping). A failure (no THP, say) leaves the
    // heap as it was.
    unsafe {
        let probe = libc::malloc(PROBE);
        if probe.is_null() {
            return;
        }
        // Past the page after the probe, where glibc wrote the header of the heap's top when
        // it grew the heap: the huge page holding that header was faulted in before the advice,
        // so it may be backed by 4 KiB pages, and a range backed by small pages stays so.
        let start = (probe as usize + PROBE + 4096).next_multiple_of(HUGE_PAGE);
        libc::free(probe);
        let end = libc::sbrk(0) as usize;
        if end > start && libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) == 0 {
            HUGE_START.store(start, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// For a run that will allocate megabytes (a Python run: the compiled module's decoded tables,
/// about 5 MiB): from here on, allocations begin on the part of the heap advised for huge pages
/// ([`skip_to`]). Without it they first filled the part below, which no huge page covers:
/// about 300-500 page faults of 4 KiB. A run that allocates little (JavaScript: about 0.4 MiB)
/// should not call it: the part below holds all of it, and starting on a huge page costs that
/// page's zeroing, 2 MiB (measured: +0.34 ms p50 for `console.log(1+1)`, 200 paired runs).
/// Does nothing outside glibc or if [`one_shot_heap`] advised no huge pages.
pub(crate) fn start_on_huge_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let start = HUGE_START.load(std::sync::atomic::Ordering::Relaxed);
        // SAFETY: `malloc` and `free` pair on the same pointer, used only as an address: the
        // heap's top, where glibc takes a block this large from (no freed block is as large).
        let top = unsafe {
            // Kept from the optimizer, which may drop a `malloc` freed unused.
            let probe = std::hint::black_box(libc::malloc(PROBE));
            libc::free(probe);
            probe as usize
        };
        if top != 0 && top < start {
            skip_to(top, start);
        }
    }
}

/// Takes the heap from `top` (where the next allocation from the heap's top would begin) up to
/// `start` (a huge-page boundary above it) and keeps it for the process's life, so the
/// allocations that follow (the compiled module's decoded tables first) begin on the part the
/// kernel backs with huge pages. The block is never written past glibc's own chunk header, so
/// it costs address space, not memory.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn skip_to(top: usize, start: usize) {
    // glibc places a block taken from the heap's top at `top` (where the freed probe began),
    // and the next one right after its chunk: a request of `start - top - 8` bytes fills a
    // chunk of exactly `start - top` (its 8-byte size field plus the request, rounded up to
    // 16, and both addresses are 16-aligned), so the next block begins at `start`. Too short a
    // gap for a chunk of its own is left as it is.
    const CHUNK_OVERHEAD: usize = std::mem::size_of::<usize>();
    let gap = start - top;
    if gap < 4 * CHUNK_OVERHEAD {
        return;
    }
    // SAFETY: a plain allocation, never freed: it is kept on purpose, and nothing reads or
    // writes it. If glibc places it elsewhere (a free chunk of that size, say), the allocations
    // that follow merely start where they would have, which is correct too.
    let kept = unsafe { libc::malloc(gap - CHUNK_OVERHEAD) };
    // Kept from the optimizer too: a `malloc` whose block is never used may be removed.
    std::hint::black_box(kept);
}

/// Gives the heap's free memory back to the kernel: every arena's, including whole free pages
/// between allocations (glibc's `malloc_trim(0)`), not only the free top that glibc returns by
/// itself. Returns whether any memory was given back. Takes each arena's lock in turn while it
/// walks that arena's free blocks, so call it when the process is quiet, off an async task's
/// thread. Does nothing outside glibc.
pub(crate) fn give_back_free_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` only releases pages of free chunks (under each arena's lock);
        // it never touches allocated memory. 0 asks it to keep no padding at the heap's top.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

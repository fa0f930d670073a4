//! Which pages of a rewindable guest's memory were written, kept by the kernel.
//!
//! A rewind copies back every page the guest wrote since its slot was mapped. Reading that
//! from `/proc/self/pagemap` ([`crate::checkpoint::dirty::written_chunks`]) costs about 80 us
//! per execution for a plain Python guest: the kernel looks up the page behind every mapped
//! entry of the memory (about 1,600, most of them the image's pages the guest only read) to
//! tell the image's pages from private copies. That was about an eighth of a fresh
//! execution's CPU.
//!
//! A [`WriteTracker`] has the kernel keep the answer in the page table itself instead:
//! the guest's memory is registered with a userfaultfd in asynchronous write-protect mode
//! (Linux 6.7 or later) and write-protected once, at the guest's first rewind (a guest dropped
//! instead, such as one that ran pandas and wrote too much, never pays for it, nor loses the
//! kernel's fault-around for its reads: a protected page not yet mapped is mapped alone when
//! read, where the kernel would map up to sixteen neighbours with it); the first write to a
//! page then drops its protection bit inside the fault the write takes anyway (a
//! copy-on-write of an image page, or the first touch of a zero page), with no message to
//! user space and no extra fault. After an execution, the `PAGEMAP_SCAN` ioctl lists the
//! pages without the bit in one call that reads only page-table bits: about 20 us for the
//! same memory. Pages stay unprotected once written, as they stay private once copied, so
//! the guest's later writes to them take no fault.
//!
//! Invariants:
//! - [`WriteTracker::written_chunks`] never under-reports: it is the pages written when
//!   tracking began (as pagemap showed them to that rewind), plus every page written since
//!   (the protection is dropped
//!   by whatever writes: guest code, the host, the kernel on the guest's behalf).
//! - A tracker is dropped before its memory's slot goes back to wasmtime's pool, and the drop
//!   unregisters the range, which takes the protection off every page: the next instance in
//!   that slot, tracked or not, starts with none.
//! - The userfaultfd is opened with `UFFD_USER_MODE_ONLY` (no privilege needed) and never
//!   read: asynchronous write protection never sends a fault to user space.
//!
//! Where the kernel refuses (older than 6.7, which brought both asynchronous write protection
//! and `PAGEMAP_SCAN`; a seccomp profile that refuses `userfaultfd`, as Docker's default one
//! does without `CAP_SYS_PTRACE`), there is no tracker and a rewind reads pagemap as before.

// The userfaultfd and pagemap ioctls are foreign calls on plain C structs; each says why it
// is sound.
#![allow(unsafe_code)]

use crate::checkpoint::dirty::{CHUNK_BYTES, process_pagemap};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;

/// `linux/userfaultfd.h`: the flag for faults from user mode only (no privilege needed), the
/// API version, the features asked for, the register and write-protect modes.
const UFFD_USER_MODE_ONLY: u32 = 1;
const UFFD_API: u64 = 0xAA;
const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
/// `linux/fs.h`: the one page category asked about.
const PAGE_IS_WRITTEN: u64 = 1 << 1;

/// `_IOWR(type, nr, size)` and `_IOR(type, nr, size)` of `asm-generic/ioctl.h`.
const fn iowr(kind: u8, nr: u8, size: usize) -> libc::c_ulong {
    ((3 << 30) | (size << 16) | ((kind as usize) << 8) | nr as usize) as libc::c_ulong
}
const fn ior(kind: u8, nr: u8, size: usize) -> libc::c_ulong {
    ((2 << 30) | (size << 16) | ((kind as usize) << 8) | nr as usize) as libc::c_ulong
}
const UFFDIO_API: libc::c_ulong = iowr(0xAA, 0x3F, size_of::<UffdioApi>());
const UFFDIO_REGISTER: libc::c_ulong = iowr(0xAA, 0x00, size_of::<UffdioRegister>());
const UFFDIO_UNREGISTER: libc::c_ulong = ior(0xAA, 0x01, size_of::<UffdioRange>());
const UFFDIO_WRITEPROTECT: libc::c_ulong = iowr(0xAA, 0x06, size_of::<UffdioWriteprotect>());
const PAGEMAP_SCAN: libc::c_ulong = iowr(b'f', 16, size_of::<PmScanArg>());

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// Regions one `PAGEMAP_SCAN` call returns at most; a memory with more written runs takes
/// more calls.
const REGIONS_PER_SCAN: usize = 256;

/// One guest memory's written pages, tracked from the moment [`WriteTracker::start`] ran.
#[derive(Debug)]
pub(crate) struct WriteTracker {
    /// The tracked range: the memory's address and length when tracking began.
    start: usize,
    len: usize,
    /// The chunks written when tracking began (sorted).
    before: Vec<usize>,
}

impl WriteTracker {
    /// Tracks `memory`'s writes from now on, `before` (sorted chunk indices, as pagemap's
    /// [`crate::checkpoint::dirty::written_chunks`] reads them) being those written so far; `None` where the kernel
    /// cannot (see the module docs).
    pub(crate) fn start(memory: &[u8], before: Vec<usize>) -> Option<WriteTracker> {
        let uffd = userfaultfd()?;
        let (start, len) = (memory.as_ptr() as usize, memory.len());
        if len == 0 || !start.is_multiple_of(rustix::param::page_size()) {
            return None;
        }
        let range = UffdioRange { start: start as u64, len: len as u64 };
        let mut register = UffdioRegister { range, mode: UFFDIO_REGISTER_MODE_WP, ioctls: 0 };
        // SAFETY: `register` is the `struct uffdio_register` this ioctl reads and writes back.
        // Registering only marks the range; the guest's memory is untouched.
        if unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_REGISTER, &mut register) } != 0 {
            return None;
        }
        let tracker = WriteTracker { start, len, before };
        let mut protect = UffdioWriteprotect { range, mode: UFFDIO_WRITEPROTECT_MODE_WP };
        // SAFETY: `protect` is the `struct uffdio_writeprotect` this ioctl reads and writes
        // back. In asynchronous mode the protection only makes the kernel note the next write
        // of each page; every access still succeeds.
        if unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_WRITEPROTECT, &mut protect) } != 0 {
            return None; // dropping the tracker unregisters the range
        }
        Some(tracker)
    }

    /// The [`CHUNK_BYTES`] chunks of `memory` written since tracking began or shown written
    /// then, sorted; `None` if `memory` is not the tracked range or the scan failed.
    pub(crate) fn written_chunks(&self, memory: &[u8]) -> Option<Vec<usize>> {
        if memory.as_ptr() as usize != self.start || memory.len() != self.len {
            return None;
        }
        let pagemap = process_pagemap()?;
        let mut written = self.before.clone();
        let mut regions = [PageRegion::default(); REGIONS_PER_SCAN];
        let end = (self.start + self.len) as u64;
        let mut from = self.start as u64;
        while from < end {
            let mut scan = PmScanArg {
                size: size_of::<PmScanArg>() as u64,
                start: from,
                end,
                vec: regions.as_mut_ptr() as u64,
                vec_len: REGIONS_PER_SCAN as u64,
                category_mask: PAGE_IS_WRITTEN,
                return_mask: PAGE_IS_WRITTEN,
                ..PmScanArg::default()
            };
            // SAFETY: `scan` is the `struct pm_scan_arg` this ioctl reads and updates, and
            // `vec` points at `vec_len` `struct page_region`s it may fill. The scan only reads
            // page tables (no write-protection flag is set).
            let filled = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN, &mut scan) };
            let filled = usize::try_from(filled).ok()?;
            for region in &regions[..filled] {
                let first = (region.start as usize - self.start) / CHUNK_BYTES;
                let last = (region.end as usize - self.start) / CHUNK_BYTES;
                written.extend(first..last);
            }
            if scan.walk_end <= from {
                return None;
            }
            from = scan.walk_end;
        }
        written.sort_unstable();
        written.dedup();
        Some(written)
    }
}

impl Drop for WriteTracker {
    fn drop(&mut self) {
        let Some(uffd) = userfaultfd() else { return };
        let mut range = UffdioRange { start: self.start as u64, len: self.len as u64 };
        // SAFETY: `range` is the `struct uffdio_range` this ioctl reads. Unregistering takes
        // the write protection off the range's pages; the memory is otherwise untouched.
        let unregistered = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_UNREGISTER, &mut range) } == 0;
        if !unregistered {
            tracing::debug!(error = %std::io::Error::last_os_error(), "could not unregister a guest memory's write tracking");
        }
    }
}

/// This process's userfaultfd in asynchronous write-protect mode, opened once; `None` in a
/// process other than the one that opened it (a child forked without exec) or where the
/// kernel refuses (see the module docs).
fn userfaultfd() -> Option<&'static OwnedFd> {
    static OPENED: OnceLock<Option<(u32, OwnedFd)>> = OnceLock::new();
    let (pid, fd) = OPENED
        .get_or_init(|| match open_userfaultfd() {
            Ok(fd) => Some((std::process::id(), fd)),
            Err(error) => {
                tracing::debug!(%error, "no userfaultfd write tracking: rewinds read pagemap");
                None
            }
        })
        .as_ref()?;
    (*pid == std::process::id()).then_some(fd)
}

fn open_userfaultfd() -> std::io::Result<OwnedFd> {
    use rustix::mm::UserfaultfdFlags;
    let flags = UserfaultfdFlags::CLOEXEC | UserfaultfdFlags::NONBLOCK;
    let flags = flags | UserfaultfdFlags::from_bits_retain(UFFD_USER_MODE_ONLY);
    // SAFETY: the descriptor is only used for the register, write-protect and unregister
    // ioctls on guest memories, in asynchronous mode; no fault is ever delivered to it.
    let fd = unsafe { rustix::mm::userfaultfd(flags) }?;
    let mut api = UffdioApi { api: UFFD_API, features: UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED, ioctls: 0 };
    // SAFETY: `api` is the `struct uffdio_api` this ioctl reads and writes back.
    if unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API, &mut api) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::dirty::written_chunks;

    /// An anonymous private mapping of `pages` pages, unmapped on drop.
    struct Mapping {
        base: *mut u8,
        len: usize,
    }

    impl Mapping {
        fn new(pages: usize) -> Mapping {
            let len = pages * rustix::param::page_size();
            // SAFETY: a new anonymous mapping, at an address the kernel picks.
            let base = unsafe {
                rustix::mm::mmap_anonymous(
                    std::ptr::null_mut(),
                    len,
                    rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                    rustix::mm::MapFlags::PRIVATE,
                )
            }
            .expect("mmap");
            Mapping { base: base.cast(), len }
        }

        fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: the mapping is `len` readable and writable bytes, alive while `self` is.
            unsafe { std::slice::from_raw_parts_mut(self.base, self.len) }
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: unmaps exactly the mapping `new` made.
            unsafe { rustix::mm::munmap(self.base.cast(), self.len) }.expect("munmap");
        }
    }

    #[test]
    fn reports_pages_written_before_and_since_not_pages_only_read() {
        let page = rustix::param::page_size();
        let chunks = page / CHUNK_BYTES;
        let mut mapping = Mapping::new(64);
        let memory = mapping.bytes();
        memory[3 * page] = 1; // written before tracking
        // Read before: the zero page, which pagemap counts as written (it over-reports; the
        // tracker's own scan does not).
        let _ = std::hint::black_box(memory[5 * page]);
        let before = written_chunks(memory).unwrap();
        let tracker = WriteTracker::start(memory, before).expect("userfaultfd write tracking on this kernel");
        memory[3 * page + 1] = 2; // a page written before, again
        memory[10 * page] = 3;
        memory[11 * page + 7] = 4;
        let _ = std::hint::black_box(memory[20 * page]); // only read
        memory[63 * page] = 5;
        let expected: Vec<usize> = [3, 5, 10, 11, 63].iter().flat_map(|&p| p * chunks..(p + 1) * chunks).collect();
        assert_eq!(tracker.written_chunks(memory), Some(expected));
        assert_eq!(tracker.written_chunks(&memory[page..]), None, "another range is not the tracked one");
    }

    #[test]
    fn dropping_a_tracker_leaves_no_protection_behind() {
        let mut mapping = Mapping::new(16);
        let memory = mapping.bytes();
        let tracker = WriteTracker::start(memory, vec![]).expect("userfaultfd write tracking on this kernel");
        drop(tracker);
        // A protected page that was never mapped shows in pagemap as a swapped entry (the
        // kernel's marker); once unregistered, none is left, and a write is an ordinary one.
        assert_eq!(written_chunks(memory), Some(vec![]));
        memory[0] = 1;
        assert_eq!(written_chunks(memory).unwrap().len(), rustix::param::page_size() / CHUNK_BYTES);
    }
}

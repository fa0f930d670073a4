//! Which pages of a linear memory differ from the module's initial image.
//!
//! A context's checkpoint saves only the pages its code changed (an idle Python context
//! changes 1–2 MiB of a memory over a hundred). The exact set is found by comparing the live
//! memory with a pristine instance of the same module, page by page (past the pristine
//! memory's end, with zeros). On Linux, `/proc/self/pagemap` first narrows the comparison to
//! pages that were ever written: with wasmtime's copy-on-write memory images, a page never
//! written is still the image file's page (or not mapped at all), and only a written page is
//! anonymous memory. The flags need no privilege. The narrowing may over-report (a slot that
//! wasmtime reset by copying the image back, a page written with the same bytes), never
//! under-report, and the comparison settles every candidate; where pagemap cannot be read,
//! every page is a candidate.

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

/// The granularity of a checkpoint's memory: 4 KiB, the host page on the platforms SoulBox
/// runs on (a larger host page is read as several of these).
pub const CHUNK_BYTES: usize = 4096;

/// pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
const PRESENT: u64 = 1 << 63;
const SWAPPED: u64 = 1 << 62;
const FILE_OR_SHARED: u64 = 1 << 61;

/// Indices of the [`CHUNK_BYTES`] chunks of `live` that differ from `pristine` (bytes past
/// `pristine`'s end compare with zeros). `live.len()` must be a multiple of [`CHUNK_BYTES`].
/// `mapped` are chunks to compare even where pagemap shows no write (a file mapped over the
/// memory: copy-on-write restores).
pub fn changed_chunks(live: &[u8], pristine: &[u8], mapped: impl IntoIterator<Item = usize>) -> Vec<u32> {
    let candidates = written_chunks(live).map(|mut written| {
        written.extend(mapped);
        written.sort_unstable();
        written.dedup();
        written
    });
    let mut changed = Vec::new();
    let mut consider = |index: usize| {
        let start = index * CHUNK_BYTES;
        let Some(chunk) = live.get(start..start + CHUNK_BYTES) else { return };
        let differs = match pristine.get(start..start + CHUNK_BYTES) {
            Some(original) => chunk != original,
            None => chunk.iter().any(|&b| b != 0),
        };
        if differs {
            changed.push(u32::try_from(index).expect("a 4 GiB memory has fewer than 2^32 chunks"));
        }
    };
    match candidates {
        Some(candidates) => candidates.into_iter().for_each(&mut consider),
        None => (0..live.len() / CHUNK_BYTES).for_each(&mut consider),
    }
    changed
}

/// The chunks of `memory` that may have been written since it was mapped, from pagemap; `None`
/// where pagemap cannot be read (every chunk is then a candidate).
pub(crate) fn written_chunks(memory: &[u8]) -> Option<Vec<usize>> {
    let page = host_page_size();
    let base = memory.as_ptr() as usize;
    if !page.is_multiple_of(CHUNK_BYTES) || !base.is_multiple_of(page) || memory.is_empty() {
        return None;
    }
    let pages = memory.len().div_ceil(page);
    ENTRIES.with_borrow_mut(|entries| {
        // Every byte is read over, so a buffer kept from an earlier call needs no zeroing.
        entries.resize(pages * 8, 0);
        let written = written_in(&mut entries[..pages * 8], (base / page * 8) as u64, page / CHUNK_BYTES);
        if entries.capacity() > KEPT_ENTRIES_BYTES {
            *entries = Vec::new();
        }
        written
    })
}

/// The chunks whose pagemap `entries`, read at `offset`, say were written.
fn written_in(entries: &mut [u8], offset: u64, chunks_per_page: usize) -> Option<Vec<usize>> {
    match process_pagemap() {
        Some(pagemap) => pagemap.read_exact_at(entries, offset).ok()?,
        None => File::open("/proc/self/pagemap").ok()?.read_exact_at(entries, offset).ok()?,
    }
    let mut written = Vec::new();
    for (index, entry) in entries.chunks_exact(8).enumerate() {
        let entry = u64::from_le_bytes(entry.try_into().ok()?);
        let anonymous = entry & PRESENT != 0 && entry & FILE_OR_SHARED == 0;
        if anonymous || entry & SWAPPED != 0 {
            written.extend(index * chunks_per_page..(index + 1) * chunks_per_page);
        }
    }
    Some(written)
}

/// The largest pagemap buffer a thread keeps between reads (the entries of a 128 MiB memory);
/// a larger one is freed after its read.
const KEPT_ENTRIES_BYTES: usize = 256 << 10;

thread_local! {
    /// The pagemap entries a thread read last, kept for its next read: a plain Python guest's
    /// memory takes 80 KiB of them, read for a context's checkpoint or trim, and for a rewind
    /// where the kernel's write tracking is not there (`crate::rewind::tracker`).
    static ENTRIES: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `/proc/self/pagemap`, opened once per process (a positioned read needs no lock); `None`
/// in a process other than the one that opened it (`/proc/self` is resolved when it is opened,
/// so a child forked without exec must open its own) or where it cannot be opened.
pub(crate) fn process_pagemap() -> Option<&'static File> {
    static OPENED: OnceLock<Option<(u32, File)>> = OnceLock::new();
    let (pid, file) =
        OPENED.get_or_init(|| Some((std::process::id(), File::open("/proc/self/pagemap").ok()?))).as_ref()?;
    (*pid == std::process::id()).then_some(file)
}

/// `(first, count)` of each run of consecutive indices in the sorted `indices`.
pub(crate) fn runs(indices: &[usize]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &index in indices {
        match runs.last_mut() {
            Some((first, count)) if *first + *count == index => *count += 1,
            _ => runs.push((index, 1)),
        }
    }
    runs
}

fn host_page_size() -> usize {
    rustix::param::page_size()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_the_changed_chunks_and_compares_past_the_image_with_zeros() {
        let pristine = vec![7u8; 4 * CHUNK_BYTES];
        let mut live = vec![7u8; 8 * CHUNK_BYTES];
        live[4 * CHUNK_BYTES..].fill(0);
        live[CHUNK_BYTES + 10] = 8; // changed in the image
        live[2 * CHUNK_BYTES] = 7; // written with the same byte: unchanged
        live[6 * CHUNK_BYTES + 1] = 1; // past the image
        assert_eq!(changed_chunks(&live, &pristine, []), vec![1, 6]);
    }

    #[test]
    fn groups_consecutive_chunks_into_runs() {
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(runs(&[3, 4, 5, 9, 11, 12]), vec![(3, 3), (9, 1), (11, 2)]);
    }

    #[test]
    fn pagemap_reports_written_anonymous_pages() {
        // A fresh heap allocation written in full is anonymous memory: every page a candidate.
        let page = host_page_size();
        let mut memory = vec![0u8; 64 * page + page];
        let offset = memory.as_ptr().align_offset(page);
        let aligned = &mut memory[offset..offset + 64 * page];
        aligned.fill(1);
        let written = written_chunks(aligned).expect("pagemap is readable on Linux");
        assert_eq!(written.len(), 64 * page / CHUNK_BYTES);
        // The same thread's next read, of memory never touched, reports nothing: the entries
        // kept from the read above are all read over. (An allocation this large is a fresh
        // mapping of its own, whose pages past the allocator's header are not yet mapped.)
        let fresh = vec![0u8; 48 << 20];
        let offset = fresh.as_ptr().align_offset(page);
        let untouched = &fresh[offset..offset + 64 * page];
        assert_eq!(written_chunks(untouched), Some(vec![]));
    }
}

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

use std::fs::File;
use std::os::unix::fs::FileExt;

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
    let mut entries = vec![0u8; pages * 8];
    let pagemap = File::open("/proc/self/pagemap").ok()?;
    pagemap.read_exact_at(&mut entries, (base / page * 8) as u64).ok()?;
    let per_page = page / CHUNK_BYTES;
    let mut written = Vec::new();
    for (index, entry) in entries.chunks_exact(8).enumerate() {
        let entry = u64::from_le_bytes(entry.try_into().ok()?);
        let anonymous = entry & PRESENT != 0 && entry & FILE_OR_SHARED == 0;
        if anonymous || entry & SWAPPED != 0 {
            written.extend(index * per_page..(index + 1) * per_page);
        }
    }
    Some(written)
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
    }
}

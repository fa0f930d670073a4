//! The overlay on a slot made the way wasmtime makes one: anonymous memory with a module image
//! mapped privately from a file in the middle.

#![allow(unsafe_code)]

use super::*;
use crate::checkpoint::image::{GlobalValue, Header, group};
use crate::checkpoint::log;
use std::io::Write;

const PAGES: usize = 32;
/// The image lies in pages 4..20 of the memory.
const IMAGE: std::ops::Range<usize> = 4..20;

/// Held by the tests that count [`MAPPED_RUNS`], which is process-wide.
static BUDGET_LOCK: Mutex<()> = Mutex::new(());

/// A memory laid out as wasmtime lays out a slot with an image, unmapped when dropped.
struct Slot {
    base: *mut u8,
    _image: tempfile::NamedTempFile,
}

impl Slot {
    fn new() -> Self {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let image: Vec<u8> = (0..IMAGE.len() * CHUNK_BYTES).map(|i| (i % 253) as u8 + 1).collect();
        file.write_all(&image).unwrap();
        file.flush().unwrap();
        let prot = rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE;
        // SAFETY: a fresh anonymous mapping, then a file mapped over part of it; this test owns
        // both until `Slot::drop` unmaps them.
        let base = unsafe {
            let base = rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                PAGES * CHUNK_BYTES,
                prot,
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::NORESERVE,
            )
            .unwrap();
            rustix::mm::mmap(
                base.cast::<u8>().add(IMAGE.start * CHUNK_BYTES).cast(),
                IMAGE.len() * CHUNK_BYTES,
                prot,
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::FIXED,
                file.as_file(),
                0,
            )
            .unwrap();
            base.cast::<u8>()
        };
        Slot { base, _image: file }
    }

    fn memory(&mut self) -> &mut [u8] {
        // SAFETY: the mapping lives as long as `self`, and `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.base, PAGES * CHUNK_BYTES) }
    }

    /// What wasmtime does to a slot when its instance is freed.
    fn decommit(&mut self) {
        // SAFETY: the whole mapping this test owns; nothing borrows it now.
        unsafe { rustix::mm::madvise(self.base.cast(), PAGES * CHUNK_BYTES, rustix::mm::Advice::LinuxDontNeed) }
            .unwrap();
    }

    /// Mappings within the slot.
    fn mappings(&self) -> usize {
        let maps = vma::Maps::open().unwrap();
        maps.covering_range(self.base as usize, self.base as usize + PAGES * CHUNK_BYTES).unwrap().unwrap().len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Slot::new`, no longer borrowed.
        unsafe { rustix::mm::munmap(self.base.cast(), PAGES * CHUNK_BYTES) }.unwrap();
    }
}

/// A checkpoint changing chunks 5, 6 and 30 (one part), then 6 again and 10 (a later part).
fn checkpoint() -> ContextImage {
    let header = Header {
        module: "python:test".into(),
        memory_pages: 2,
        globals: vec![(0, GlobalValue::I32(1))],
        parts: vec![group(&[5, 6, 30]), group(&[6, 10])],
        monotonic_ns: 0,
    };
    let memory = vec![Arc::from(vec![0xaa; 3 * CHUNK_BYTES]), Arc::from(vec![0xbb; 2 * CHUNK_BYTES])];
    ContextImage { header, memory }
}

#[test]
fn runs_join_nearby_chunks_and_follow_each_other_in_the_file() {
    let far = 101 + MERGE_GAP_CHUNKS + 1; // one chunk past the widest gap that joins
    assert_eq!(
        runs([3, 4, 5, 5 + MERGE_GAP_CHUNKS + 1, 100, far]),
        vec![
            Run { memory: 3, file: 0, chunks: MERGE_GAP_CHUNKS + 4 },
            Run { memory: 100, file: MERGE_GAP_CHUNKS + 4, chunks: 1 },
            Run { memory: far, file: MERGE_GAP_CHUNKS + 5, chunks: 1 },
        ]
    );
    assert!(runs([]).is_empty());
}

#[test]
fn the_kernel_says_what_backs_an_address() {
    let slot = Slot::new();
    let maps = vma::Maps::open().unwrap();
    let image = maps.covering(slot.base as usize + 5 * CHUNK_BYTES).unwrap().unwrap();
    assert_eq!(image.start, slot.base as usize + IMAGE.start * CHUNK_BYTES);
    assert_eq!((image.end - image.start) / CHUNK_BYTES, IMAGE.len());
    assert!(image.readable && image.writable && !image.shared && image.inode != 0 && image.offset == 0, "{image:?}");
    assert_eq!(std::path::Path::new(&image.name), slot._image.path());
    let zeros = maps.covering(slot.base as usize).unwrap().unwrap();
    assert_eq!((zeros.inode, zeros.end), (0, image.start));
}

#[test]
fn an_overlay_restores_like_a_copy_and_leaves_the_slot_as_it_found_it() {
    let _alone = BUDGET_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut slot = Slot::new();
    // A page of the image written before, as a guest's would be: the image's mapping then has
    // private pages of its own, and must still merge back after the overlay.
    slot.memory()[15 * CHUNK_BYTES] ^= 0xff;
    let initial = slot.memory().to_vec();
    let mappings = slot.mappings();
    let image = checkpoint();
    let mut copied = initial.clone();
    let parts: Vec<log::Part> = image.header.parts.iter().cloned().zip(image.memory.iter().cloned()).collect();
    log::apply(&mut copied, &parts);

    let pages = Arc::new(PageFile::build(&image, &initial).unwrap());
    assert_eq!(pages.chunks().collect::<Vec<_>>(), (5..=10).chain([30]).collect::<Vec<_>>());
    // SAFETY: the slot is this test's, and the overlay is dropped before the slot.
    let overlay = unsafe { Overlay::map(slot.memory(), Arc::clone(&pages)) }.unwrap();
    assert!(slot.memory() == copied.as_slice(), "the mapped memory is what a copy gives");
    // A second memory shares the pages; the first one's write is its own.
    let mut other = Slot::new();
    other.memory()[15 * CHUNK_BYTES] ^= 0xff;
    // SAFETY: as above.
    let other_overlay = unsafe { Overlay::map(other.memory(), Arc::clone(&pages)) }.unwrap();
    slot.memory()[6 * CHUNK_BYTES] = 0x11;
    slot.memory()[25 * CHUNK_BYTES] = 0x22;
    assert!(other.memory() == copied.as_slice(), "a write in one overlay never reaches another");
    drop(other_overlay);

    drop(overlay);
    let mut written = initial.clone();
    written[25 * CHUNK_BYTES] = 0x22; // outside the overlay: the guest's, for wasmtime to reset
    assert!(slot.memory() == written.as_slice(), "dropped, the overlay's pages are the slot's own again");
    let split = slot.mappings();
    assert!(split <= mappings + 2, "the image's mapping is split around the pages put back: {split}");
    // Another restore in the same slot splits nothing more: what is put back merges.
    // SAFETY: as above.
    drop(unsafe { Overlay::map(slot.memory(), Arc::clone(&pages)) }.unwrap());
    assert_eq!(slot.mappings(), split, "mappings do not pile up, restore after restore");
    slot.decommit();
    let mut image_again = initial.clone();
    image_again[15 * CHUNK_BYTES] ^= 0xff;
    assert!(slot.memory() == image_again.as_slice(), "and a reset brings back the image's, not the checkpoint's");
    assert_eq!(MAPPED_RUNS.load(Ordering::Relaxed), 0, "the runs went back to the budget");
}

#[test]
fn a_memory_whose_file_is_gone_is_refused_untouched() {
    let _alone = BUDGET_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut slot = Slot::new();
    std::fs::remove_file(slot._image.path()).unwrap();
    let initial = slot.memory().to_vec();
    let pages = Arc::new(PageFile::build(&checkpoint(), &initial).unwrap());
    // SAFETY: the slot is this test's; the overlay, if any, is dropped before it.
    let refused = unsafe { Overlay::map(slot.memory(), pages) }.err().expect("refused");
    assert!(refused.to_string().contains("cannot be opened again"), "{refused}");
    assert!(slot.memory() == initial.as_slice(), "nothing was mapped");
    assert_eq!(MAPPED_RUNS.load(Ordering::Relaxed), 0, "the runs went back to the budget");
}

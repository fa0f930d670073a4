//! Giving back the pages of an idle context that hold nothing of their own.
//!
//! A cell writes pages of its context's memory, and each page written becomes the context's
//! private copy of the module's image page (copy-on-write). Many of them end the cell holding
//! exactly what they held before it: the stack, scratch buffers, objects made and freed
//! (measured on an idle Python context: about a third of its written pages). [`trim`] finds
//! those among the written pages ([`written_chunks`]) and discards them with
//! `madvise(MADV_DONTNEED)`, so they read again from what backs them: the module's image file
//! (shared by every context, in the page cache) or zeros.
//!
//! The invariant: trimming never changes a byte the guest can read. A page is discarded only
//! if its bytes equal what its mapping brings back, read at that moment from the mapping's own
//! backing ([`cow`]'s `layout`: the file at its offset, zeros past its end within its last
//! page, or zeros for anonymous memory; a page wholly past the file's end is kept), while
//! the caller holds the memory exclusively (no guest code runs). The module cache never
//! rewrites a file in place (it writes a new one and renames it), so the file's bytes stay
//! what was compared; wasmtime relies on the same for every page of the image it never copied.
//! Where the backing cannot be read again (no `PROCMAP_QUERY`, a host page other than 4 KiB, a
//! memory mapped over by a copy-on-write restore), nothing is trimmed.

use super::cow::{self, Backing};
use super::dirty::{CHUNK_BYTES, runs, written_chunks};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Discards the pages of `memory` whose bytes equal what backs them; returns how many.
///
/// # Safety
///
/// `memory` is the whole accessible linear memory of an instance in a slot that wasmtime
/// mapped privately (as its pooling allocator does), lent exclusively for the call: no guest
/// code runs and nothing else reads or writes it meanwhile.
#[allow(unsafe_code)]
pub(crate) unsafe fn trim(memory: &mut [u8]) -> usize {
    let base = memory.as_mut_ptr() as usize;
    if rustix::param::page_size() != CHUNK_BYTES || !base.is_multiple_of(CHUNK_BYTES) {
        return 0;
    }
    let Some(written) = written_chunks(memory) else { return 0 };
    if written.is_empty() {
        return 0;
    }
    let Ok(layout) = cow::layout(base, memory.len()) else { return 0 };
    let mut discard = Vec::new();
    let mut backing = [0u8; CHUNK_BYTES];
    for chunk in written {
        let start = base + chunk * CHUNK_BYTES;
        let Some(part) = layout.iter().find(|part| part.start <= start && start < part.start + part.len) else {
            continue;
        };
        let live = &memory[chunk * CHUNK_BYTES..(chunk + 1) * CHUNK_BYTES];
        let same = match &part.backing {
            Backing::Anonymous => live.iter().all(|&b| b == 0),
            Backing::File { file, offset } => {
                let at = offset + (start - part.start) as u64;
                read_backing(file, at, &mut backing) && live == backing
            }
        };
        if same {
            discard.push(chunk);
        }
    }
    let mut discarded_pages = 0;
    for (first, count) in runs(&discard) {
        // SAFETY: the run lies within `memory`, which the caller lends us exclusively, in a
        // private mapping; each of its pages holds exactly the bytes its backing holds (just
        // compared), and discarding a private page makes the next access read the backing
        // again, so the memory's contents are unchanged. The pages are the slot's own, as
        // wasmtime mapped them, and wasmtime's own slot reset discards pages the same way.
        let discarded = unsafe {
            rustix::mm::madvise(
                (base + first * CHUNK_BYTES) as *mut std::ffi::c_void,
                count * CHUNK_BYTES,
                rustix::mm::Advice::LinuxDontNeed,
            )
        };
        if let Err(errno) = discarded {
            // Nothing was lost: these pages and the runs after them keep their private copies.
            tracing::debug!(%errno, "could not discard an idle context's unchanged pages");
            break;
        }
        discarded_pages += count;
    }
    discarded_pages
}

/// Reads the page of `file` at `at` as a private mapping of it shows it: bytes past the file's
/// end within its last page are zeros. `false` if it cannot be read, or if the page lies wholly
/// past the end (the mapping has no such page: touching it there would fault, so it is never
/// discarded).
fn read_backing(file: &File, at: u64, page: &mut [u8; CHUNK_BYTES]) -> bool {
    page.fill(0);
    let mut done = 0;
    while done < page.len() {
        match file.read_at(&mut page[done..], at + done as u64) {
            Ok(0) => return done > 0,
            Ok(read) => done += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A private mapping of a file followed by anonymous memory, like a pool slot holding a
    /// module's image; unmapped when dropped.
    struct Slot {
        base: *mut u8,
        len: usize,
        /// The image's file, by a name (a mapping's backing is read again through its path).
        _file: tempfile::NamedTempFile,
    }

    impl Slot {
        #[allow(unsafe_code)]
        fn new(image: &[u8], anonymous: usize) -> Slot {
            let mut file = tempfile::NamedTempFile::new().unwrap();
            file.write_all(image).unwrap();
            let len = image.len() + anonymous;
            let prot = rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE;
            let private = rustix::mm::MapFlags::PRIVATE;
            // SAFETY: a fresh anonymous mapping of `len` bytes, then the file mapped over its
            // start (MAP_FIXED within the mapping just made); both are unmapped by `Drop`.
            unsafe {
                let base = rustix::mm::mmap_anonymous(std::ptr::null_mut(), len, prot, private).unwrap();
                rustix::mm::mmap(base, image.len(), prot, private | rustix::mm::MapFlags::FIXED, file.as_file(), 0)
                    .unwrap();
                Slot { base: base.cast(), len, _file: file }
            }
        }

        #[allow(unsafe_code)]
        fn memory(&mut self) -> &mut [u8] {
            // SAFETY: the mapping lives as long as `self`, which this borrow borrows.
            unsafe { std::slice::from_raw_parts_mut(self.base, self.len) }
        }
    }

    impl Drop for Slot {
        #[allow(unsafe_code)]
        fn drop(&mut self) {
            // SAFETY: the mapping `new` made, no longer borrowed.
            unsafe { rustix::mm::munmap(self.base.cast(), self.len).unwrap() };
        }
    }

    #[test]
    #[allow(unsafe_code)]
    fn discards_exactly_the_written_pages_that_equal_their_backing_and_keeps_every_byte() {
        let image: Vec<u8> = (0..8 * CHUNK_BYTES).map(|i| (i / CHUNK_BYTES + 1) as u8).collect();
        let mut slot = Slot::new(&image, 4 * CHUNK_BYTES);
        let memory = slot.memory();
        memory[CHUNK_BYTES] = 9; // image page 1 changed
        memory[2 * CHUNK_BYTES] = 3; // image page 2 written with its own byte: unchanged
        memory[5 * CHUNK_BYTES + 7] = 99; // image page 5 changed and changed back
        memory[5 * CHUNK_BYTES + 7] = 6;
        memory[9 * CHUNK_BYTES] = 1; // anonymous page 9 changed
        memory[10 * CHUNK_BYTES] = 1; // anonymous page 10 changed back to zeros
        memory[10 * CHUNK_BYTES] = 0;
        // Reading maps the anonymous pages never written (8 and 11) to the zero page, which
        // pagemap shows as written too; they are zeros, so they may be discarded as well.
        let before = memory.to_vec();
        if let Err(error) = cow::layout(memory.as_ptr() as usize, memory.len()) {
            panic!("this test needs PROCMAP_QUERY (Linux 6.11+), which SoulBox's hosts have: {error}");
        }
        // SAFETY: the slot is a private mapping this test owns and lends exclusively.
        let discarded = unsafe { trim(memory) };
        let written = written_chunks(memory).unwrap();
        assert_eq!(memory, &before[..], "no byte changed");
        assert!((3..=5).contains(&discarded), "pages 2, 5 and 10 (and 8 and 11): {discarded}");
        let image_written: Vec<usize> = written.iter().copied().filter(|&chunk| chunk < 8).collect();
        assert_eq!(image_written, vec![1], "the image's discarded pages read from the file again");
        assert!(written.contains(&9), "a changed anonymous page is kept");
    }

    #[test]
    fn a_backing_page_reads_as_the_mapping_shows_it_and_never_past_the_file() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![7u8; CHUNK_BYTES + CHUNK_BYTES / 2]).unwrap();
        let mut page = [1u8; CHUNK_BYTES];
        assert!(read_backing(&file, 0, &mut page));
        assert!(page.iter().all(|&b| b == 7));
        assert!(read_backing(&file, CHUNK_BYTES as u64, &mut page), "the last page, partly past the end");
        assert!(page[..CHUNK_BYTES / 2].iter().all(|&b| b == 7) && page[CHUNK_BYTES / 2..].iter().all(|&b| b == 0));
        assert!(!read_backing(&file, 2 * CHUNK_BYTES as u64, &mut page), "a page wholly past the end");
    }
}

//! Copy-on-write restores: one copy of a checkpoint's pages backs every context restored from it.
//!
//! A restore normally copies a checkpoint's changed pages into a fresh instance (a Python
//! context: 1–2 MiB each). When the engine restores one image into several kernels at once (a
//! fork of many), [`PageFile`] writes those pages once into a sealed in-memory file (a memfd),
//! and each restored memory maps them `MAP_PRIVATE` over its own pages ([`Overlay`]): the
//! kernels share the pages until one of them writes a page, which the kernel then copies for
//! that one alone. Pages close together are mapped as one run (the gap filled with the module's
//! own bytes), so that a fork costs a few mappings, not one per page.
//!
//! The hazard, and the invariant that answers it. The memory is a slot of wasmtime's pooling
//! allocator. When the instance is freed, wasmtime resets the slot for its next guest with
//! `madvise(MADV_DONTNEED)`, which on a private file mapping brings back *the file's* bytes: a
//! mapping of the checkpoint left in place would hand its pages to whoever gets the slot next.
//! So an [`Overlay`] first asks the kernel (`PROCMAP_QUERY`, [`vma`]) what backs each page it
//! maps over (the module's `.cwasm` file at which offset, opened again and checked to be the
//! same inode, or anonymous memory) and, when dropped, maps exactly that back over those pages:
//! they then hold nothing of the guest and reset as wasmtime expects, and the rest of the slot
//! keeps its resident pages for the next guest, as wasmtime's own reset does. (Mapping back the
//! whole memory instead made every later guest in the slot fault all its pages in again.) The
//! pieces mapped back stay mappings of their own (the kernel merges them with each other, one
//! open file per process serving them all, but not with wasmtime's), so once a memory has more
//! than [`MAX_LAYOUT_PARTS`] mappings its overlay maps the whole memory back instead, once. The
//! owner of the instance drops the overlay before the store (`Live` declares it first).
//! Should mapping back ever fail, the process aborts rather than let a slot hold another
//! guest's pages.
//!
//! Where this cannot be done safely the restore copies, as before: a kernel older than 6.11
//! (no `PROCMAP_QUERY`), a host page other than 4 KiB, a memory backed by something that
//! cannot be opened again (a `.cwasm` replaced on disk, or a module image wasmtime keeps in a
//! memfd: so it is in the process that compiled the module, which loads it from the bytes it
//! just compiled; every later process maps the cached file), pages too scattered
//! ([`MAX_RUNS_PER_OVERLAY`]),
//! or the process-wide budget of mappings spent ([`mapped_runs_budget`]: every run splits a
//! memory's mapping in up to three, and the kernel's `vm.max_map_count` bounds them all).

use super::dirty::CHUNK_BYTES;
use super::image::{self, ContextImage};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// The most runs one restore maps; a checkpoint scattered wider is copied.
pub const MAX_RUNS_PER_OVERLAY: usize = 256;
/// Unchanged chunks between two changed ones that still join them into one run (their bytes,
/// the module's own, are then in the page file too): 64 KiB.
const MERGE_GAP_CHUNKS: usize = 16;
/// Images whose page files are kept for further restores (while the image itself is alive).
const MAX_SHARED_IMAGES: usize = 32;
/// Mappings in one memory past which an overlay, when dropped, maps back the whole memory
/// rather than the pages it mapped.
const MAX_LAYOUT_PARTS: usize = 32;
/// The share of the kernel's `vm.max_map_count` that mapped runs may use, process-wide.
const MAP_COUNT_SHARE: usize = 8;

/// Why a restore copies instead of mapping.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unmappable {
    /// Not on this host, or not for this memory.
    #[error("{0}")]
    Unsupported(String),
    /// The process already maps its share of runs, or this image has too many.
    #[error("too many mappings ({0})")]
    TooManyRuns(String),
    /// A system call failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<rustix::io::Errno> for Unmappable {
    fn from(errno: rustix::io::Errno) -> Self {
        Unmappable::Io(errno.into())
    }
}

/// Consecutive chunks mapped together: `chunks` chunks from chunk `memory` of the linear
/// memory, held in the page file from its chunk `file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    memory: usize,
    file: usize,
    chunks: usize,
}

/// An image's changed pages, laid out by run in a sealed memfd.
pub(crate) struct PageFile {
    file: File,
    runs: Vec<Run>,
}

impl PageFile {
    /// Writes the final bytes of every chunk `image` changed (a later part's replacing an
    /// earlier one's), and of the gaps its runs bridge (from `initial`, the module's initial
    /// memory, zeros past its end), into a new sealed memfd.
    pub(crate) fn build(image: &ContextImage, initial: &[u8]) -> Result<Self, Unmappable> {
        let mut latest: BTreeMap<usize, &[u8]> = BTreeMap::new();
        for (chunks, data) in image.header.parts.iter().zip(&image.memory) {
            let indices = chunks.iter().flat_map(|&(range, mask)| image::chunks_of(range, mask));
            for (index, bytes) in indices.zip(data.chunks_exact(CHUNK_BYTES)) {
                latest.insert(index as usize, bytes);
            }
        }
        let runs = runs(latest.keys().copied());
        if runs.len() > MAX_RUNS_PER_OVERLAY {
            return Err(Unmappable::TooManyRuns(format!("{} runs in one image", runs.len())));
        }
        let flags = rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING;
        let file = File::from(rustix::fs::memfd_create("soulbox-checkpoint-pages", flags)?);
        let total: usize = runs.iter().map(|run| run.chunks).sum();
        file.set_len((total * CHUNK_BYTES) as u64)?;
        let zeros = [0u8; CHUNK_BYTES];
        for run in &runs {
            let mut bytes = Vec::with_capacity(run.chunks * CHUNK_BYTES);
            for index in run.memory..run.memory + run.chunks {
                let start = index * CHUNK_BYTES;
                let chunk = latest.get(&index).copied().or_else(|| initial.get(start..start + CHUNK_BYTES));
                bytes.extend_from_slice(chunk.unwrap_or(&zeros));
            }
            file.write_all_at(&bytes, (run.file * CHUNK_BYTES) as u64)?;
        }
        use rustix::fs::SealFlags;
        rustix::fs::fcntl_add_seals(&file, SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL)?;
        Ok(PageFile { file, runs })
    }

    /// The chunks of the memory it maps (changed ones and bridged gaps), ascending.
    pub(crate) fn chunks(&self) -> impl Iterator<Item = usize> + '_ {
        self.runs.iter().flat_map(|run| run.memory..run.memory + run.chunks)
    }
}

/// Groups ascending, distinct chunk indices into runs, joining two when at most
/// [`MERGE_GAP_CHUNKS`] lie between them; each run follows the one before in the file.
fn runs(indices: impl IntoIterator<Item = usize>) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut file = 0;
    for index in indices {
        match runs.last_mut() {
            Some(run) if index - (run.memory + run.chunks) <= MERGE_GAP_CHUNKS => {
                let grown = index + 1 - (run.memory + run.chunks);
                run.chunks += grown;
                file += grown;
            }
            _ => {
                runs.push(Run { memory: index, file, chunks: 1 });
                file += 1;
            }
        }
    }
    runs
}

/// Page files of images being restored into several kernels, found again by the identity of
/// the image's parts (the same `Arc`s: the same bytes), kept while those parts are alive.
#[derive(Default)]
pub(crate) struct SharedPages {
    entries: Mutex<Vec<SharedEntry>>,
}

/// An image's parts (weakly: the entry must not keep them alive) and its page file.
type SharedEntry = (Vec<Weak<[u8]>>, Arc<PageFile>);

impl SharedPages {
    /// The page file of the image whose encoded parts are `parts`, made by `build` if it has
    /// none yet.
    pub(crate) fn get_or_build(
        &self,
        parts: &[Arc<[u8]>],
        build: impl FnOnce() -> Result<PageFile, Unmappable>,
    ) -> Result<Arc<PageFile>, Unmappable> {
        let same = |kept: &[Weak<[u8]>]| {
            kept.len() == parts.len()
                && kept.iter().zip(parts).all(|(weak, part)| std::ptr::addr_eq(weak.as_ptr(), Arc::as_ptr(part)))
        };
        {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            // An entry whose image is gone can never match again (and its address may be reused).
            entries.retain(|(kept, _)| kept.iter().all(|weak| weak.strong_count() > 0));
            if let Some((_, pages)) = entries.iter().find(|(kept, _)| same(kept)) {
                return Ok(Arc::clone(pages));
            }
        }
        let pages = Arc::new(build()?);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() < MAX_SHARED_IMAGES {
            entries.push((parts.iter().map(Arc::downgrade).collect(), Arc::clone(&pages)));
        }
        Ok(pages)
    }
}

/// Runs mapped by live overlays, process-wide.
static MAPPED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// How many runs live overlays may map together: a share of `vm.max_map_count` (65,530 by
/// default), so that the mappings they split never starve the rest of the process.
pub fn mapped_runs_budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let limit = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok().and_then(|s| s.trim().parse().ok());
        limit.unwrap_or(65_530usize) / MAP_COUNT_SHARE
    })
}

/// What backs part of a memory (before an overlay, for [`Overlay`]).
#[derive(Debug)]
pub(super) enum Backing {
    /// A private mapping of this file from this offset.
    File { file: Arc<File>, offset: u64 },
    /// Private anonymous memory.
    Anonymous,
}

/// One mapping: `len` bytes at `start`, and what backs them.
#[derive(Debug)]
pub(super) struct Original {
    pub(super) start: usize,
    pub(super) len: usize,
    pub(super) backing: Backing,
}

/// A page file mapped over a live linear memory (see the module's documentation); dropping it
/// maps the memory's own backing back.
pub(crate) struct Overlay {
    originals: Vec<Original>,
    pages: Arc<PageFile>,
}

impl Overlay {
    /// Maps `pages` over `memory`, after recording what backs it.
    ///
    /// # Safety
    ///
    /// `memory` is the whole accessible linear memory of an instance, in a slot that wasmtime
    /// mapped privately (as its pooling allocator does). The overlay must be dropped while
    /// that instance still owns the slot (before its store is dropped), and nothing may touch
    /// the memory while it is dropped.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn map(memory: &mut [u8], pages: Arc<PageFile>) -> Result<Overlay, Unmappable> {
        let base = memory.as_mut_ptr() as usize;
        if rustix::param::page_size() != CHUNK_BYTES || !base.is_multiple_of(CHUNK_BYTES) {
            return Err(Unmappable::Unsupported("the host page is not 4 KiB".into()));
        }
        if pages.runs.is_empty() {
            return Err(Unmappable::Unsupported("the checkpoint changed no page".into()));
        }
        if let Some(run) = pages.runs.iter().find(|run| (run.memory + run.chunks) * CHUNK_BYTES > memory.len()) {
            return Err(Unmappable::Unsupported(format!("run {run:?} lies past the memory's end")));
        }
        let reserved = Reservation::take(pages.runs.len())?;
        let layout = layout(base, memory.len())?;
        let originals = if layout.len() > MAX_LAYOUT_PARTS {
            // Mapped back piece by piece, a slot's mappings split a little more with every
            // fork (the kernel merges ours together, never with wasmtime's): past this many,
            // the whole memory is mapped back, whole, once.
            layout
        } else {
            let runs = pages.runs.iter().map(|run| (base + run.memory * CHUNK_BYTES, run.chunks * CHUNK_BYTES));
            runs.flat_map(|(start, len)| clip(&layout, start, start + len)).collect()
        };
        // From here on, dropping the overlay maps the originals back, whatever happens, and
        // gives the runs back to the budget.
        reserved.keep();
        let overlay = Overlay { originals, pages: Arc::clone(&pages) };
        for run in &pages.runs {
            // SAFETY: the run lies within `memory` (checked above), which the caller lends us
            // mutably, so nothing else reads or writes it now; its bytes become those of the
            // page file, exactly what a restore would copy there. The mapping is private, so
            // the guest's writes never reach the file. `overlay` maps wasmtime's backing back
            // before the slot is reused (the caller's promise).
            unsafe {
                rustix::mm::mmap(
                    (base + run.memory * CHUNK_BYTES) as *mut std::ffi::c_void,
                    run.chunks * CHUNK_BYTES,
                    rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                    rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::FIXED,
                    &pages.file,
                    (run.file * CHUNK_BYTES) as u64,
                )?;
            }
        }
        Ok(overlay)
    }

    /// The memory's chunks it mapped (a checkpoint must compare them even where pagemap
    /// shows no write: the parent's state is in them), ascending.
    pub(crate) fn chunks(&self) -> impl Iterator<Item = usize> + '_ {
        self.pages.chunks()
    }
}

impl Drop for Overlay {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        for original in &self.originals {
            let address = original.start as *mut std::ffi::c_void;
            let prot = rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE;
            let fixed = rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::FIXED;
            // SAFETY: `original` is a part of the memory as wasmtime mapped it (read from
            // /proc/self/maps when the overlay was made); the instance still owns it and
            // nothing touches it now (the contract of `Overlay::map`). Mapping the same
            // backing at the same offset back is what wasmtime itself does when it first
            // places an image in a slot; the guest's pages are discarded.
            let mapped = unsafe {
                match &original.backing {
                    Backing::File { file, offset } => {
                        rustix::mm::mmap(address, original.len, prot, fixed, &**file, *offset)
                    }
                    Backing::Anonymous => {
                        rustix::mm::mmap_anonymous(address, original.len, prot, fixed | rustix::mm::MapFlags::NORESERVE)
                    }
                }
            };
            if let Err(errno) = mapped {
                // The slot would keep this guest's pages for the next one: never go on.
                tracing::error!(%errno, start = original.start, len = original.len, "cannot map a memory's own pages back after a copy-on-write restore; aborting");
                std::process::abort();
            }
        }
        MAPPED_RUNS.fetch_sub(self.pages.runs.len(), Ordering::Relaxed);
    }
}

/// Runs counted in [`MAPPED_RUNS`], given back unless kept.
struct Reservation(usize);

impl Reservation {
    fn take(runs: usize) -> Result<Self, Unmappable> {
        let budget = mapped_runs_budget();
        let before = MAPPED_RUNS.fetch_add(runs, Ordering::Relaxed);
        if before + runs > budget {
            MAPPED_RUNS.fetch_sub(runs, Ordering::Relaxed);
            return Err(Unmappable::TooManyRuns(format!("{before} runs mapped, {runs} more would pass {budget}")));
        }
        Ok(Reservation(runs))
    }

    /// The runs stay counted until the overlay that mapped them is dropped.
    fn keep(mut self) {
        self.0 = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        MAPPED_RUNS.fetch_sub(self.0, Ordering::Relaxed);
    }
}

/// The parts of `layout` within `[start, end)`, each backed as it is there.
fn clip(layout: &[Original], start: usize, end: usize) -> Vec<Original> {
    let within = layout.iter().filter(|part| part.start < end && part.start + part.len > start);
    within
        .map(|part| {
            let from = part.start.max(start);
            let to = (part.start + part.len).min(end);
            let backing = match &part.backing {
                Backing::File { file, offset } => {
                    Backing::File { file: Arc::clone(file), offset: offset + (from - part.start) as u64 }
                }
                Backing::Anonymous => Backing::Anonymous,
            };
            Original { start: from, len: to - from, backing }
        })
        .collect()
}

/// What backs `[base, base + len)`: every byte of it privately mapped, readable and writable,
/// each file one whose inode can be opened again by its path.
pub(super) fn layout(base: usize, len: usize) -> Result<Vec<Original>, Unmappable> {
    let maps = vma::Maps::open()?;
    let vmas = maps
        .covering_range(base, base + len)?
        .ok_or_else(|| Unmappable::Unsupported("part of the memory is not mapped".into()))?;
    let mut layout = Vec::with_capacity(vmas.len());
    for vma in vmas {
        if !vma.readable || !vma.writable || vma.shared {
            return Err(Unmappable::Unsupported(format!(
                "a mapping in the memory is not private and writable: {vma:?}"
            )));
        }
        let start = vma.start.max(base);
        let stop = vma.end.min(base + len);
        let backing = match vma.inode {
            0 => Backing::Anonymous,
            _ => Backing::File { file: reopen(&vma)?, offset: vma.offset + (start - vma.start) as u64 },
        };
        layout.push(Original { start, len: stop - start, backing });
    }
    Ok(layout)
}

/// The file a mapping maps, opened again (once per process for each file, so that every
/// mapping SoulBox puts back shares one open file, and the kernel can merge them), if its
/// path still names that very inode.
fn reopen(vma: &vma::Vma) -> Result<Arc<File>, Unmappable> {
    /// A file by its device and inode.
    type Opened = ((u32, u32), u64, Arc<File>);
    static OPENED: Mutex<Vec<Opened>> = Mutex::new(Vec::new());
    let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, file)) = opened.iter().find(|(dev, inode, _)| (*dev, *inode) == (vma.dev, vma.inode)) {
        return Ok(Arc::clone(file));
    }
    let unsupported = |why: &str| Unmappable::Unsupported(format!("{why}: {}", vma.name));
    if !vma.name.starts_with('/') || vma.name.ends_with(" (deleted)") {
        return Err(unsupported("the memory maps a file that cannot be opened again"));
    }
    let file = File::open(&vma.name)?;
    let meta = file.metadata()?;
    if meta.ino() != vma.inode || (rustix::fs::major(meta.dev()), rustix::fs::minor(meta.dev())) != vma.dev {
        return Err(unsupported("the file at the mapped path was replaced"));
    }
    let file = Arc::new(file);
    opened.push((vma.dev, vma.inode, Arc::clone(&file)));
    Ok(file)
}

mod vma;

#[cfg(test)]
mod tests;

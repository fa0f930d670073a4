//! Which mapping backs an address: Linux's `PROCMAP_QUERY` ioctl on `/proc/self/maps` (6.11
//! and later), one mapping per call, found in the kernel's tree. Reading the whole maps file
//! instead costs time in proportion to every mapping in the process (the pooling allocator
//! makes thousands: 10-15 ms a restore in `checkpoint-report`).

use std::fs::File;
use std::os::fd::AsRawFd;

/// One mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Vma {
    pub start: usize,
    pub end: usize,
    pub readable: bool,
    pub writable: bool,
    pub shared: bool,
    /// The file offset the mapping starts at (0 for anonymous memory).
    pub offset: u64,
    /// The file's inode (0 for anonymous memory).
    pub inode: u64,
    /// The file's device, `(major, minor)`.
    pub dev: (u32, u32),
    /// The file's path as the kernel shows it (empty for anonymous memory).
    pub name: String,
}

/// `struct procmap_query` (include/uapi/linux/fs.h).
#[repr(C)]
#[derive(Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}

/// `_IOWR('f', 17, struct procmap_query)`.
const PROCMAP_QUERY: u64 = (3 << 30) | ((std::mem::size_of::<ProcmapQuery>() as u64) << 16) | (0x66 << 8) | 17;
const VMA_READABLE: u64 = 0x01;
const VMA_WRITABLE: u64 = 0x02;
const VMA_SHARED: u64 = 0x08;
/// The longest mapping name read; a longer path is refused (the ioctl fails).
const NAME_BYTES: usize = 4096;

/// An open `/proc/self/maps`, to query.
pub(crate) struct Maps(File);

impl Maps {
    pub(crate) fn open() -> std::io::Result<Self> {
        Ok(Maps(File::open("/proc/self/maps")?))
    }

    /// The mapping that covers `address`; `None` if nothing is mapped there.
    #[allow(unsafe_code)]
    pub(crate) fn covering(&self, address: usize) -> std::io::Result<Option<Vma>> {
        let mut name = vec![0u8; NAME_BYTES];
        let mut query = ProcmapQuery {
            size: std::mem::size_of::<ProcmapQuery>() as u64,
            query_addr: address as u64,
            vma_name_size: NAME_BYTES as u32,
            vma_name_addr: name.as_mut_ptr() as u64,
            ..ProcmapQuery::default()
        };
        // SAFETY: `query` is a `struct procmap_query` of the size it declares, and the name
        // buffer it points to is `vma_name_size` bytes long and outlives the call; the kernel
        // writes only within them. The fd is an open /proc/self/maps.
        let status = unsafe { libc::ioctl(self.0.as_raw_fd(), PROCMAP_QUERY as _, &mut query as *mut ProcmapQuery) };
        if status != 0 {
            let error = std::io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::ENOENT) => Ok(None),
                _ => Err(error),
            };
        }
        let length = (query.vma_name_size as usize).saturating_sub(1).min(NAME_BYTES);
        name.truncate(length);
        Ok(Some(Vma {
            start: query.vma_start as usize,
            end: query.vma_end as usize,
            readable: query.vma_flags & VMA_READABLE != 0,
            writable: query.vma_flags & VMA_WRITABLE != 0,
            shared: query.vma_flags & VMA_SHARED != 0,
            offset: query.vma_offset,
            inode: query.inode,
            dev: (query.dev_major, query.dev_minor),
            name: String::from_utf8_lossy(&name).into_owned(),
        }))
    }

    /// The mappings that cover `[start, end)`, in order; `None` if part of it is not mapped.
    pub(crate) fn covering_range(&self, start: usize, end: usize) -> std::io::Result<Option<Vec<Vma>>> {
        let mut vmas = Vec::new();
        let mut at = start;
        while at < end {
            match self.covering(at)? {
                Some(vma) if vma.start <= at && vma.end > at => {
                    at = vma.end;
                    vmas.push(vma);
                }
                _ => return Ok(None),
            }
        }
        Ok(Some(vmas))
    }
}

//! Display buffers: the guest's (frontend-allocated, mapped through its page
//! directory) or ours (be-alloc, shared to it), and the framebuffers attached
//! to them.

use std::sync::Arc;

use pvgate_media::source::{SourceBuffer, SourceOutOfBounds};
use pvgate_platform::{
    DomId, GrantError, GrantMapper, GrantRef, Mapping, MappingError, SharedPages,
};
use pvgate_protocol::displif::PixelFormat;
use pvgate_protocol::pagedir::{self, DirPage, DirectoryWalker, PageDirError};

use super::status;

/// Why a buffer's memory could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("page directory: {0}")]
    Directory(#[from] PageDirError),
    #[error("grant: {0}")]
    Grant(#[from] GrantError),
    #[error("directory page access: {0}")]
    Memory(#[from] MappingError),
    #[error("cannot allocate {pages} pages for the guest: {source}")]
    Share {
        pages: usize,
        #[source]
        source: GrantError,
    },
}

impl BufferError {
    /// The status xen-drm-front gets for it.
    pub fn status(&self) -> i32 {
        match self {
            BufferError::Directory(_) => status::EINVAL,
            BufferError::Grant(_) | BufferError::Memory(_) => status::EFAULT,
            BufferError::Share { .. } => status::ENOMEM,
        }
    }
}

/// Where a buffer's bytes live.
pub enum BufferMemory {
    /// The guest's pages, mapped read-only as one contiguous view.
    Guest(Mapping),
    /// Our pages, granted to the guest (be-alloc). Revoked on drop.
    Ours(SharedPages),
}

impl BufferMemory {
    fn mapping(&self) -> &Mapping {
        match self {
            BufferMemory::Guest(m) => m,
            BufferMemory::Ours(s) => &s.mapping,
        }
    }
}

/// Geometry given at DBUF_CREATE; all zero for a PRIME import, whose
/// geometry arrives with FB_ATTACH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbufGeometry {
    pub width: u32,
    pub height: u32,
    pub bpp: u32,
}

impl DbufGeometry {
    pub fn is_prime(&self) -> bool {
        self.width == 0 && self.height == 0 && self.bpp == 0
    }
}

/// One display buffer.
pub struct DisplayBuffer {
    pub cookie: u64,
    pub geometry: DbufGeometry,
    /// `buffer_sz`: bytes the guest declared (≤ pages × 4096).
    pub size: u32,
    pub data_ofs: u32,
    pub pages: usize,
    memory: BufferMemory,
}

impl DisplayBuffer {
    pub fn new(
        cookie: u64,
        geometry: DbufGeometry,
        size: u32,
        data_ofs: u32,
        memory: BufferMemory,
    ) -> DisplayBuffer {
        let pages = memory.mapping().len() / pagedir::PAGE_SIZE;
        DisplayBuffer {
            cookie,
            geometry,
            size,
            data_ofs,
            pages,
            memory,
        }
    }

    pub fn is_backend_allocated(&self) -> bool {
        matches!(self.memory, BufferMemory::Ours(_))
    }

    /// Write into our own (be-alloc) buffer; tests use it to stand in for
    /// the guest. Guest buffers are mapped read-only.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> Result<(), MappingError> {
        self.memory.mapping().write(offset, bytes)
    }
}

/// The copy worker reads the guest's pixels through this: every read is a
/// copy out of the shared pages, bounded by `buffer_sz`.
impl SourceBuffer for DisplayBuffer {
    fn len(&self) -> usize {
        (self.size as usize).min(self.memory.mapping().len())
    }

    fn read_into(&self, offset: usize, dst: &mut [u8]) -> Result<(), SourceOutOfBounds> {
        let size = SourceBuffer::len(self);
        match offset.checked_add(dst.len()) {
            Some(end) if end <= size => {}
            _ => {
                return Err(SourceOutOfBounds {
                    offset,
                    len: dst.len(),
                    size,
                })
            }
        }
        self.memory
            .mapping()
            .read(offset, dst)
            .map_err(|_| SourceOutOfBounds {
                offset,
                len: dst.len(),
                size,
            })
    }
}

/// A framebuffer: a display buffer seen as `width × height` pixels of
/// `format`, rows `ceil(width × bpp / 8)` bytes apart from `data_ofs`.
#[derive(Clone)]
pub struct Framebuffer {
    pub cookie: u64,
    pub buffer: Arc<DisplayBuffer>,
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
}

fn copy_dir_page(
    grants: &dyn GrantMapper,
    domid: DomId,
    r: GrantRef,
) -> Result<(Mapping, Box<DirPage>), BufferError> {
    let m = grants.map(domid, &[r], false)?;
    let mut page = Box::new([0u8; pagedir::PAGE_SIZE]);
    m.read(0, &mut page[..])?;
    Ok((m, page))
}

/// Frontend-allocated: walk the directory chain one page at a time (each
/// page copied once, then unmapped), then map every data page as one view.
pub fn map_guest_buffer(
    grants: &dyn GrantMapper,
    domid: DomId,
    gref_directory: GrantRef,
    buffer_sz: u32,
) -> Result<BufferMemory, BufferError> {
    let mut walker = DirectoryWalker::new(gref_directory, pagedir::grant_count(buffer_sz))?;
    while let Some(r) = walker.next_page_ref() {
        let (_dir, page) = copy_dir_page(grants, domid, r)?;
        walker.feed(&page)?;
    }
    let refs = walker.finish()?;
    Ok(BufferMemory::Guest(grants.map(domid, &refs, false)?))
}

/// be-alloc: allocate and grant our pages, then write their references
/// into the directory the guest gave us (its pages, writable to us).
pub fn share_buffer(
    grants: &dyn GrantMapper,
    domid: DomId,
    gref_directory: GrantRef,
    buffer_sz: u32,
) -> Result<BufferMemory, BufferError> {
    let count = pagedir::grant_count(buffer_sz);
    let mut walker = DirectoryWalker::new(gref_directory, count)?;
    let shared = grants
        .share(domid, count as usize, true)
        .map_err(|source| BufferError::Share {
            pages: count as usize,
            source,
        })?;
    while let Some(r) = walker.next_page_ref() {
        let dir = grants.map(domid, &[r], true)?;
        let mut page: DirPage = [0u8; pagedir::PAGE_SIZE];
        dir.read(0, &mut page)?;
        let range = walker.feed_link(&page)?;
        if let Some(refs) = shared.refs.get(range) {
            dir.write(pagedir::REFS_OFFSET, &pagedir::encode_refs(refs))?;
        }
    }
    walker.finish()?;
    Ok(BufferMemory::Ours(shared))
}

/// GET_EDID: map the guest's buffer writable (through its directory) and
/// put `bytes` at its start.
pub fn write_guest_buffer(
    grants: &dyn GrantMapper,
    domid: DomId,
    gref_directory: GrantRef,
    buffer_sz: u32,
    bytes: &[u8],
) -> Result<(), BufferError> {
    let mut walker = DirectoryWalker::new(gref_directory, pagedir::grant_count(buffer_sz))?;
    while let Some(r) = walker.next_page_ref() {
        let (_dir, page) = copy_dir_page(grants, domid, r)?;
        walker.feed(&page)?;
    }
    let refs = walker.finish()?;
    // Only the pages the bytes need.
    let needed = bytes.len().div_ceil(pagedir::PAGE_SIZE).min(refs.len());
    let m = grants.map(domid, refs.get(..needed).unwrap_or(&refs), true)?;
    m.write(0, bytes)?;
    Ok(())
}

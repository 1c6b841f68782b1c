//! Display buffers and their page directories, as
//! `xen_front_pgdir_shbuf` builds them.
//!
//! - Frontend-allocated: the buffer's pages (scattered in guest memory, never
//!   contiguous) and the directory pages are granted to the backend; the
//!   directory lists the data grants.
//! - be-alloc: only the directory pages are granted (writable); we fill in
//!   the next-page links, the backend fills in its grants for the data; after
//!   the response we map those grants.

use pvgate_platform::{GrantRef, Platform, SharedPages};
use pvgate_protocol::pagedir::{self, DirPage, DirectoryWalker};

use crate::io::shm::Shm;
use crate::DomId;

/// Where a buffer's bytes live.
pub enum DbufStorage {
    /// Our pages, granted to the backend.
    Frontend {
        data: Shm,
        _data_refs: Vec<GrantRef>,
    },
    /// The backend's pages, mapped by us (after a successful DBUF_CREATE).
    Backend { data: Shm, refs: Vec<GrantRef> },
    /// be-alloc before the backend answered.
    Pending,
}

/// A display buffer (`struct xen_drm_front_dbuf`).
pub struct Dbuf {
    pub cookie: u64,
    pub width: u32,
    pub height: u32,
    pub bpp: u32,
    pub size: u32,
    /// The first directory page's grant (what DBUF_CREATE carries).
    pub gref_directory: GrantRef,
    pub dir_refs: Vec<GrantRef>,
    pub storage: DbufStorage,
    pub(crate) dir: Shm,
}

/// Why a buffer cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("cannot grant {pages} pages to domain {domid}: {reason}")]
    Grant {
        domid: DomId,
        pages: usize,
        reason: String,
    },
    #[error("page directory: {0}")]
    Directory(String),
    #[error("shared memory: {0}")]
    Memory(String),
}

fn share(
    platform: &Platform,
    backend: DomId,
    pages: usize,
) -> Result<(Shm, Vec<GrantRef>), BufferError> {
    let SharedPages { mapping, refs } =
        platform
            .grants
            .share(backend, pages, true)
            .map_err(|e| BufferError::Grant {
                domid: backend,
                pages,
                reason: e.to_string(),
            })?;
    Ok((Shm::new(mapping), refs))
}

fn write_dir(dir: &Shm, pages: &[Box<DirPage>]) -> Result<(), BufferError> {
    for (i, p) in pages.iter().enumerate() {
        dir.0
            .write(i * pagedir::PAGE_SIZE, &p[..])
            .map_err(|e| BufferError::Memory(e.to_string()))?;
    }
    Ok(())
}

impl Dbuf {
    /// Allocate and grant a buffer of `size` bytes with its directory.
    pub fn allocate(
        platform: &Platform,
        backend: DomId,
        cookie: u64,
        (width, height, bpp): (u32, u32, u32),
        size: u32,
        be_alloc: bool,
    ) -> Result<Dbuf, BufferError> {
        let data_pages = pagedir::grant_count(size);
        let dir_pages = pagedir::directory_pages(data_pages) as usize;
        let (dir, dir_refs) = share(platform, backend, dir_pages)?;
        let storage = if be_alloc {
            let links = pagedir::build_links(&dir_refs, data_pages)
                .map_err(|e| BufferError::Directory(e.to_string()))?;
            write_dir(&dir, &links)?;
            DbufStorage::Pending
        } else {
            let (data, data_refs) = share(platform, backend, data_pages as usize)?;
            let pages = pagedir::build_directory(&dir_refs, &data_refs)
                .map_err(|e| BufferError::Directory(e.to_string()))?;
            write_dir(&dir, &pages)?;
            DbufStorage::Frontend {
                data,
                _data_refs: data_refs,
            }
        };
        Ok(Dbuf {
            cookie,
            width,
            height,
            bpp,
            size,
            gref_directory: dir_refs.first().copied().unwrap_or(0),
            dir_refs,
            storage,
            dir,
        })
    }

    /// be-alloc: read the grants the backend put in our directory and map
    /// them (`backend_map`).
    pub fn map_backend_pages(
        &mut self,
        platform: &Platform,
        backend: DomId,
    ) -> Result<(), BufferError> {
        let data_pages = pagedir::grant_count(self.size);
        let mut walker = DirectoryWalker::new(self.gref_directory, data_pages)
            .map_err(|e| BufferError::Directory(e.to_string()))?;
        for i in 0..self.dir_refs.len() {
            let mut page: DirPage = [0u8; pagedir::PAGE_SIZE];
            self.dir
                .0
                .read(i * pagedir::PAGE_SIZE, &mut page)
                .map_err(|e| BufferError::Memory(e.to_string()))?;
            walker
                .feed(&page)
                .map_err(|e| BufferError::Directory(e.to_string()))?;
        }
        let refs = walker
            .finish()
            .map_err(|e| BufferError::Directory(e.to_string()))?;
        let mapping =
            platform
                .grants
                .map(backend, &refs, true)
                .map_err(|e| BufferError::Grant {
                    domid: backend,
                    pages: refs.len(),
                    reason: e.to_string(),
                })?;
        self.storage = DbufStorage::Backend {
            data: Shm::new(mapping),
            refs,
        };
        Ok(())
    }

    /// The buffer's bytes (None for a be-alloc buffer not yet mapped).
    pub fn data(&self) -> Option<&Shm> {
        match &self.storage {
            DbufStorage::Frontend { data, .. } | DbufStorage::Backend { data, .. } => Some(data),
            DbufStorage::Pending => None,
        }
    }

    /// Bytes per line (`ceil(width × bpp / 8)`), as the dumb buffer pitch.
    pub fn pitch(&self) -> u32 {
        pvgate_protocol::displif::dumb_pitch(self.width, self.bpp).unwrap_or(0)
    }

    /// Copy `bytes` into the buffer at `offset`.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> Result<(), BufferError> {
        let data = self
            .data()
            .ok_or_else(|| BufferError::Memory("buffer not mapped yet".into()))?;
        data.0
            .write(offset, bytes)
            .map_err(|e| BufferError::Memory(e.to_string()))
    }

    /// Copy the buffer's bytes out.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), BufferError> {
        let data = self
            .data()
            .ok_or_else(|| BufferError::Memory("buffer not mapped yet".into()))?;
        data.0
            .read(offset, out)
            .map_err(|e| BufferError::Memory(e.to_string()))
    }
}

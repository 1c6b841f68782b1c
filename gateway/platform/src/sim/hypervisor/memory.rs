//! A domain's simulated RAM and its grant table, as the domain itself uses
//! them: allocate pages, read and write them, grant them to other domains and
//! revoke the grants. The guest simulator uses this for frontend-allocated
//! buffers; the gateway uses it (as dom0) for be-alloc buffers.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::grant_table::{GrantEntry, GrantTable, GTF_PERMIT_ACCESS, GTF_READONLY, GTF_TYPE_MASK};
use super::layout::{
    DomainPaths, FIRST_ALLOCATABLE_GREF, GRANT_ENTRIES, GRANT_TABLE_BYTES, MAX_MEMORY_PAGES,
};
use super::sys::{flock_exclusive, range_unlock, try_range_lock, LockKind, PAGE_SIZE};
use crate::{DomId, GrantError, GrantRef};

/// A page frame number in a domain's simulated RAM.
pub type Frame = u32;

/// Handle to one domain's simulated RAM and grant table. Cheap to clone;
/// pages allocated through it are freed when the last clone is dropped (or
/// the process dies: page ownership is a kernel-held lock).
#[derive(Clone)]
pub struct SimDomainMemory {
    inner: Arc<Inner>,
}

struct Inner {
    sim_dir: PathBuf,
    domid: DomId,
    pages: usize,
    memory: File,
    /// Our lock on byte f of `memory-owners` says "frame f is ours".
    owners: File,
    /// Locked (flock) while choosing a free grant entry, so that several
    /// processes of one domain never pick the same one.
    table_file: File,
    table: GrantTable,
    /// Revoking takes an exclusive lock on a gref's pin bytes.
    pins: File,
    state: Mutex<AllocState>,
}

struct AllocState {
    /// Frames this handle owns. Our own OFD locks never conflict with each
    /// other, so the kernel cannot tell us about our own allocations.
    owned: HashSet<Frame>,
    /// Position in the scattered visiting order (see `candidate`).
    cursor: u64,
    stride: u64,
    next_gref: GrantRef,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn open_rw(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|e| context(e, "cannot open", path))
}

impl SimDomainMemory {
    /// Open the memory of `domid` under the sim directory `sim_dir`, creating
    /// it with `pages` pages (and an empty grant table) if it does not exist.
    /// An existing memory keeps its size.
    pub fn open_or_create(
        sim_dir: &Path,
        domid: DomId,
        pages: usize,
    ) -> io::Result<SimDomainMemory> {
        if pages == 0 || pages > MAX_MEMORY_PAGES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("domain {domid}: memory of {pages} pages (must be 1..={MAX_MEMORY_PAGES})"),
            ));
        }
        let paths = DomainPaths::new(sim_dir, domid);
        std::fs::create_dir_all(&paths.dir).map_err(|e| context(e, "cannot create", &paths.dir))?;
        let memory = open_rw(&paths.memory(), true)?;
        let table_file = open_rw(&paths.grant_table(), true)?;
        {
            // Several processes of one domain may race to create it.
            let _creating = flock_exclusive(&table_file)?;
            if memory.metadata()?.len() == 0 {
                memory.set_len((pages * PAGE_SIZE) as u64)?;
            }
            if table_file.metadata()?.len() == 0 {
                table_file.set_len(GRANT_TABLE_BYTES as u64)?;
            }
        }
        open_rw(&paths.memory_owners(), true)?;
        open_rw(&paths.grant_pins(), true)?;
        Self::open(sim_dir, domid)
    }

    /// Open the existing memory of `domid` (another process created it).
    pub fn open(sim_dir: &Path, domid: DomId) -> io::Result<SimDomainMemory> {
        let paths = DomainPaths::new(sim_dir, domid);
        let memory = open_rw(&paths.memory(), false)?;
        let len = memory.metadata()?.len();
        let pages = usize::try_from(len / PAGE_SIZE as u64).unwrap_or(usize::MAX);
        if len % PAGE_SIZE as u64 != 0 || pages == 0 || pages > MAX_MEMORY_PAGES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("domain {domid}: memory file of {len} bytes is not 1..={MAX_MEMORY_PAGES} whole pages"),
            ));
        }
        let table_file = open_rw(&paths.grant_table(), false)?;
        let table = GrantTable::map(&table_file)
            .map_err(|e| context(e, "bad grant table", &paths.grant_table()))?;
        let owners = open_rw(&paths.memory_owners(), false)?;
        let pins = open_rw(&paths.grant_pins(), false)?;
        // Visit frames in a scattered order: consecutive allocations land far
        // apart, so buffers are never accidentally contiguous. Different
        // processes start at different places to avoid trying the same frames.
        let n = pages as u64;
        let mut stride = (n * 5 / 8).max(1);
        while gcd(stride, n) != 1 {
            stride += 1;
        }
        let cursor = u64::from(std::process::id()).wrapping_mul(2_654_435_761) % n;
        Ok(SimDomainMemory {
            inner: Arc::new(Inner {
                sim_dir: sim_dir.to_path_buf(),
                domid,
                pages,
                memory,
                owners,
                table_file,
                table,
                pins,
                state: Mutex::new(AllocState {
                    owned: HashSet::new(),
                    cursor,
                    stride,
                    next_gref: FIRST_ALLOCATABLE_GREF,
                }),
            }),
        })
    }

    pub fn domid(&self) -> DomId {
        self.inner.domid
    }

    pub fn sim_dir(&self) -> &Path {
        &self.inner.sim_dir
    }

    /// Size of the memory in pages.
    pub fn pages(&self) -> usize {
        self.inner.pages
    }

    pub(crate) fn memory_file(&self) -> &File {
        &self.inner.memory
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, AllocState> {
        // A panic elsewhere while holding the lock leaves consistent data.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Allocate `count` zeroed pages, deliberately scattered over the memory
    /// (never adjacent in allocation order), and owned by this handle until
    /// [`free_pages`](Self::free_pages) or the process exits.
    pub fn alloc_pages(&self, count: usize) -> io::Result<Vec<Frame>> {
        let inner = &self.inner;
        let n = inner.pages as u64;
        let mut got = Vec::with_capacity(count.min(inner.pages));
        let mut state = self.lock_state();
        let mut tried = 0u64;
        while got.len() < count {
            if tried >= n {
                drop(state);
                self.free_pages(&got);
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!(
                        "domain {}: no free pages for {count} more (memory has {n})",
                        inner.domid
                    ),
                ));
            }
            tried += 1;
            let frame = ((state.cursor % n) * state.stride % n) as Frame;
            state.cursor = state.cursor.wrapping_add(1);
            if state.owned.contains(&frame) {
                continue;
            }
            if try_range_lock(&inner.owners, u64::from(frame), 1, LockKind::Exclusive)? {
                state.owned.insert(frame);
                got.push(frame);
            }
        }
        drop(state);
        let zeroes = [0u8; PAGE_SIZE];
        for &frame in &got {
            if let Err(e) = inner
                .memory
                .write_all_at(&zeroes, u64::from(frame) * PAGE_SIZE as u64)
            {
                self.free_pages(&got);
                return Err(e);
            }
        }
        Ok(got)
    }

    /// Give pages back. Frames this handle does not own are ignored.
    pub fn free_pages(&self, frames: &[Frame]) {
        let mut state = self.lock_state();
        for &frame in frames {
            if state.owned.remove(&frame) {
                // Failure only means the lock outlives us until the fd closes.
                let _ = range_unlock(&self.inner.owners, u64::from(frame), 1);
            }
        }
    }

    fn page_offset(&self, frame: Frame, offset: usize, len: usize) -> io::Result<u64> {
        let fits = offset.checked_add(len).is_some_and(|end| end <= PAGE_SIZE);
        if (frame as usize) >= self.inner.pages || !fits {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "domain {}: {len} bytes at offset {offset} of frame {frame} is outside memory of {} pages",
                    self.inner.domid, self.inner.pages
                ),
            ));
        }
        Ok(u64::from(frame) * PAGE_SIZE as u64 + offset as u64)
    }

    /// Write bytes into one page.
    pub fn write(&self, frame: Frame, offset: usize, data: &[u8]) -> io::Result<()> {
        let at = self.page_offset(frame, offset, data.len())?;
        self.inner.memory.write_all_at(data, at)
    }

    /// Read bytes from one page.
    pub fn read(&self, frame: Frame, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        let at = self.page_offset(frame, offset, buf.len())?;
        self.inner.memory.read_exact_at(buf, at)
    }

    /// Write `data` at byte `offset` of the buffer made of `frames` in order
    /// (how a guest sees a buffer it built from scattered pages).
    pub fn write_buffer(&self, frames: &[Frame], offset: usize, data: &[u8]) -> io::Result<()> {
        self.walk_buffer(frames, offset, data.len(), |frame, in_page, range| {
            self.write(frame, in_page, &data[range])
        })
    }

    /// Read from byte `offset` of the buffer made of `frames` in order.
    pub fn read_buffer(&self, frames: &[Frame], offset: usize, buf: &mut [u8]) -> io::Result<()> {
        let mut pieces = Vec::new();
        self.walk_buffer(frames, offset, buf.len(), |frame, in_page, range| {
            pieces.push((frame, in_page, range));
            Ok(())
        })?;
        for (frame, in_page, range) in pieces {
            self.read(frame, in_page, &mut buf[range])?;
        }
        Ok(())
    }

    fn walk_buffer(
        &self,
        frames: &[Frame],
        offset: usize,
        len: usize,
        mut each: impl FnMut(Frame, usize, std::ops::Range<usize>) -> io::Result<()>,
    ) -> io::Result<()> {
        let total = frames.len().saturating_mul(PAGE_SIZE);
        if offset.checked_add(len).is_none_or(|end| end > total) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{len} bytes at offset {offset} is outside a buffer of {total} bytes"),
            ));
        }
        let mut done = 0;
        while done < len {
            let at = offset + done;
            let in_page = at % PAGE_SIZE;
            let chunk = (PAGE_SIZE - in_page).min(len - done);
            let frame = frames.get(at / PAGE_SIZE).copied().unwrap_or(Frame::MAX);
            each(frame, in_page, done..done + chunk)?;
            done += chunk;
        }
        Ok(())
    }

    /// Grant `to` access to `frame` (as Linux's gnttab_grant_foreign_access):
    /// find a free entry, write domid and frame, then the flags with release
    /// ordering. Returns the grant reference.
    pub fn grant_access(
        &self,
        frame: Frame,
        to: DomId,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        let inner = &self.inner;
        if frame as usize >= inner.pages {
            return Err(GrantError::Invalid {
                domid: inner.domid,
                gref: 0,
                reason: format!(
                    "cannot grant frame {frame}: memory has {} pages",
                    inner.pages
                ),
            });
        }
        let _allocating = flock_exclusive(&inner.table_file)?;
        let mut state = self.lock_state();
        let span = GRANT_ENTRIES - FIRST_ALLOCATABLE_GREF;
        for i in 0..span {
            let gref =
                FIRST_ALLOCATABLE_GREF + (state.next_gref - FIRST_ALLOCATABLE_GREF + i) % span;
            let free = inner.table.entry(gref).is_some_and(|e| e.flags == 0);
            if !free {
                continue;
            }
            let mut flags = GTF_PERMIT_ACCESS;
            if readonly {
                flags |= GTF_READONLY;
            }
            inner.table.publish(
                gref,
                GrantEntry {
                    flags,
                    domid: to,
                    frame,
                },
            );
            state.next_gref = if gref + 1 >= GRANT_ENTRIES {
                FIRST_ALLOCATABLE_GREF
            } else {
                gref + 1
            };
            return Ok(gref);
        }
        Err(GrantError::Io(io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!(
                "domain {}: grant table full ({GRANT_ENTRIES} entries)",
                inner.domid
            ),
        )))
    }

    /// Revoke a grant (as Linux's gnttab_end_foreign_access_ref). Refused with
    /// [`GrantError::InUse`] while any mapper still maps it.
    pub fn end_access(&self, gref: GrantRef) -> Result<(), GrantError> {
        let inner = &self.inner;
        let invalid = |reason: String| GrantError::Invalid {
            domid: inner.domid,
            gref,
            reason,
        };
        if gref == 0 {
            return Err(invalid("gref 0 is never a grant".into()));
        }
        let entry = inner
            .table
            .entry(gref)
            .ok_or_else(|| invalid(format!("outside the grant table ({GRANT_ENTRIES} entries)")))?;
        if entry.flags & GTF_TYPE_MASK != GTF_PERMIT_ACCESS {
            return Err(invalid("not granted".into()));
        }
        // Every mapping holds a shared lock on byte 2g (and 2g+1 if writable):
        // an exclusive lock on both succeeds only when nobody maps it, and it
        // keeps new mappers out until we have cleared the flags.
        let start = u64::from(gref) * 2;
        if !try_range_lock(&inner.pins, start, 2, LockKind::Exclusive)? {
            return Err(GrantError::InUse {
                gref,
                by: entry.domid,
            });
        }
        inner.table.clear_flags(gref);
        range_unlock(&inner.pins, start, 2)?;
        Ok(())
    }

    /// A copy of one grant table entry (None outside the table).
    pub fn grant_entry(&self, gref: GrantRef) -> Option<GrantEntry> {
        self.inner.table.entry(gref)
    }

    /// Write a raw entry, as a misbehaving guest might. For tests of how the
    /// other side copes with garbage.
    pub fn write_grant_entry_raw(&self, gref: GrantRef, entry: GrantEntry) -> bool {
        self.inner.table.publish(gref, entry)
    }
}

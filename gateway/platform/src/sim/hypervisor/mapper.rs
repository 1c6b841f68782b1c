//! The backend side of grants: map another domain's granted pages as one
//! contiguous mapping (what gntdev gives a Linux backend), and share our own
//! pages (be-alloc).
//!
//! ## Why the pins are kernel locks
//!
//! Xen keeps a pin count per mapped grant and sets GTF_reading/GTF_writing in
//! the granter's entry while the count is non-zero; a granter may only revoke
//! an entry whose flags show no use. Several processes may map one grant here
//! (two gateway components, or a restarted gateway while the old one is still
//! dying), and a mapper may die without cleaning up. So the pin count is not a
//! number in a file but OFD byte-range locks on the granter's `grant-pins`
//! file: each mapping holds a shared lock on byte 2g (and byte 2g+1 if it maps
//! writable). The kernel drops a dead process's locks, so a crashed mapper
//! unpins automatically, as closing gntdev does on Xen.
//!
//! Race-freedom:
//! - map: lock the pin byte(s) first, then check-and-mark the entry with one
//!   cmpxchg (see `GrantTable::pin`). A revoker holds an exclusive lock on both
//!   bytes while it clears the flags, so a mapper either pins before the
//!   revoke (and the revoke is refused) or fails to lock / sees the entry
//!   revoked.
//! - unmap: drop our locks, then clear GTF_reading/GTF_writing only if no
//!   other mapping still holds the bytes. Mappers of one granter take an
//!   exclusive `flock` on `grant-pins` around pinning and unpinning so that a
//!   mapper that pins while another unpins cannot lose its flags. The flags are
//!   what a guest reads; the locks are the truth (a crashed mapper may leave
//!   flags set, and the next revoke simply succeeds).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::grant_table::{GrantTable, GTF_READING, GTF_WRITING};
use super::layout::{DomainPaths, GRANT_ENTRIES};
use super::memory::{Frame, SimDomainMemory};
use super::sys::{
    flock_exclusive, range_locked_by_other, range_unlock, try_range_lock, LockKind, Region,
    PAGE_SIZE,
};
use crate::{DomId, GrantError, GrantMapper, GrantRef, Mapping, SharedPages};

/// Most grant refs in one mapping: 256 MiB, more than a 4K framebuffer.
pub const MAX_REFS_PER_MAPPING: usize = 1 << 16;
/// Most pages this process maps through the sim at once (1 GiB).
pub const MAX_MAPPED_PAGES_PER_PROCESS: usize = 1 << 18;
/// Memory given to a domain that opens its memory through [`SimGrantMapper::open`]
/// without creating it first (dom0 normally): 64 MiB, sparse.
pub const DEFAULT_DOMAIN_PAGES: usize = 16384;

static MAPPED_PAGES: AtomicUsize = AtomicUsize::new(0);

/// Pages counted against [`MAX_MAPPED_PAGES_PER_PROCESS`] until dropped.
struct PageBudget(usize);

impl PageBudget {
    fn take(pages: usize) -> Result<PageBudget, GrantError> {
        let mut current = MAPPED_PAGES.load(Ordering::Relaxed);
        loop {
            let next = current
                .checked_add(pages)
                .filter(|&n| n <= MAX_MAPPED_PAGES_PER_PROCESS)
                .ok_or_else(|| {
                    GrantError::Io(io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        format!(
                            "cannot map {pages} more pages: this process maps {current} (limit {MAX_MAPPED_PAGES_PER_PROCESS})"
                        ),
                    ))
                })?;
            match MAPPED_PAGES.compare_exchange(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(PageBudget(pages)),
                Err(seen) => current = seen,
            }
        }
    }
}

impl Drop for PageBudget {
    fn drop(&mut self) {
        MAPPED_PAGES.fetch_sub(self.0, Ordering::Relaxed);
    }
}

/// How many pages this process currently maps through the sim.
pub fn mapped_pages() -> usize {
    MAPPED_PAGES.load(Ordering::Relaxed)
}

/// [`GrantMapper`] for the simulated hypervisor, acting as one domain.
#[derive(Clone)]
pub struct SimGrantMapper {
    own: SimDomainMemory,
}

impl SimGrantMapper {
    /// A mapper acting as the domain that owns `own` (its pages back `share`).
    pub fn new(own: SimDomainMemory) -> SimGrantMapper {
        SimGrantMapper { own }
    }

    /// A mapper for `domid`, opening its memory (creating it with
    /// [`DEFAULT_DOMAIN_PAGES`] if nobody has yet).
    pub fn open(sim_dir: &Path, domid: DomId) -> io::Result<SimGrantMapper> {
        Ok(SimGrantMapper::new(SimDomainMemory::open_or_create(
            sim_dir,
            domid,
            DEFAULT_DOMAIN_PAGES,
        )?))
    }

    pub fn domid(&self) -> DomId {
        self.own.domid()
    }

    /// Our own memory (what `share` allocates from).
    pub fn memory(&self) -> &SimDomainMemory {
        &self.own
    }

    fn map_foreign(
        &self,
        domid: DomId,
        refs: &[GrantRef],
        writable: bool,
    ) -> Result<Mapping, GrantError> {
        let invalid = |gref: GrantRef, reason: String| GrantError::Invalid {
            domid,
            gref,
            reason,
        };
        if refs.is_empty() {
            return Err(invalid(0, "no grant refs to map".into()));
        }
        if refs.len() > MAX_REFS_PER_MAPPING {
            return Err(GrantError::TooMany {
                count: refs.len(),
                limit: MAX_REFS_PER_MAPPING,
            });
        }
        let budget = PageBudget::take(refs.len())?;
        let first = refs.first().copied().unwrap_or(0);
        let paths = DomainPaths::new(self.own.sim_dir(), domid);
        let unreadable = |what: &str, e: io::Error| {
            invalid(first, format!("cannot use the domain's {what}: {e}"))
        };
        let table_file =
            open(&paths.grant_table(), true).map_err(|e| unreadable("grant table", e))?;
        let table = GrantTable::map(&table_file).map_err(|e| unreadable("grant table", e))?;
        let memory = open(&paths.memory(), writable).map_err(|e| unreadable("memory", e))?;
        let memory_pages = memory
            .metadata()
            .map_err(|e| unreadable("memory", e))?
            .len()
            / PAGE_SIZE as u64;
        // Each mapping gets its own open file description: its pins are its
        // locks, and locks of one description never conflict with each other.
        let pins = open(&paths.grant_pins(), true).map_err(|e| unreadable("pin file", e))?;

        let mut frames = Vec::with_capacity(refs.len());
        {
            let _mappers = flock_exclusive(&pins).map_err(|e| unreadable("pin file", e))?;
            for &gref in refs {
                match self.pin_one(&table, &pins, gref, writable, memory_pages) {
                    Ok(frame) => frames.push(frame),
                    Err(reason) => {
                        unpin_all(&table, &pins, refs, self.domid());
                        return Err(invalid(gref, reason));
                    }
                }
            }
        }

        let placed = Region::reserve(refs.len()).and_then(|region| {
            for (slot, &frame) in frames.iter().enumerate() {
                region.place_page(slot, &memory, u64::from(frame), writable)?;
            }
            Ok(region)
        });
        let region = match placed {
            Ok(r) => r,
            Err(e) => {
                let _mappers = flock_exclusive(&pins);
                unpin_all(&table, &pins, refs, self.domid());
                return Err(unreadable("memory", e));
            }
        };
        let (ptr, len) = (region.ptr(), region.len());
        let owner = ForeignPages {
            region: Some(region),
            table,
            pins,
            refs: refs.to_vec(),
            mapper: self.domid(),
            _budget: budget,
        };
        let ptr = NonNull::new(ptr)
            .ok_or_else(|| unreadable("memory", io::Error::other("mmap gave null")))?;
        // SAFETY: `region` maps `len` bytes (writable iff `writable`), page
        // aligned, and lives in `owner` until the Mapping drops it.
        Ok(unsafe { Mapping::from_raw(ptr, len, writable, Box::new(owner)) })
    }

    /// Pin one gref: the checks of Xen's map_grant_ref, in order.
    fn pin_one(
        &self,
        table: &GrantTable,
        pins: &File,
        gref: GrantRef,
        writable: bool,
        memory_pages: u64,
    ) -> Result<Frame, String> {
        if gref == 0 {
            return Err("gref 0 is never a valid grant".into());
        }
        if gref >= GRANT_ENTRIES {
            return Err(format!("outside the grant table ({GRANT_ENTRIES} entries)"));
        }
        let bytes = if writable { 2 } else { 1 };
        match try_range_lock(pins, u64::from(gref) * 2, bytes, LockKind::Shared) {
            Ok(true) => {}
            Ok(false) => return Err("the granting domain is revoking it".into()),
            Err(e) => return Err(format!("cannot pin: {e}")),
        }
        let frame = table.pin(gref, self.domid(), writable)?;
        if u64::from(frame) >= memory_pages {
            return Err(format!(
                "frame {frame} is beyond the domain's memory ({memory_pages} pages)"
            ));
        }
        Ok(frame)
    }

    fn share_own(
        &self,
        domid: DomId,
        pages: usize,
        writable: bool,
    ) -> Result<SharedPages, GrantError> {
        if pages == 0 {
            return Err(GrantError::Invalid {
                domid,
                gref: 0,
                reason: "cannot share zero pages".into(),
            });
        }
        if pages > MAX_REFS_PER_MAPPING {
            return Err(GrantError::TooMany {
                count: pages,
                limit: MAX_REFS_PER_MAPPING,
            });
        }
        let budget = PageBudget::take(pages)?;
        let frames = self.own.alloc_pages(pages)?;
        let mut owner = SharedOwnPages {
            region: None,
            own: self.own.clone(),
            frames,
            refs: Vec::with_capacity(pages),
            _budget: budget,
        };
        // On any error below, dropping `owner` revokes and frees what we made.
        for &frame in &owner.frames {
            let gref = self.own.grant_access(frame, domid, !writable)?;
            owner.refs.push(gref);
        }
        let region = Region::reserve(pages)?;
        for (slot, &frame) in owner.frames.iter().enumerate() {
            region.place_page(slot, self.own.memory_file(), u64::from(frame), true)?;
        }
        let (ptr, len) = (region.ptr(), region.len());
        owner.region = Some(region);
        let refs = owner.refs.clone();
        let ptr =
            NonNull::new(ptr).ok_or_else(|| GrantError::Io(io::Error::other("mmap gave null")))?;
        // SAFETY: `region` maps `len` bytes read-write, page aligned, and lives
        // in `owner` until the Mapping drops it.
        let mapping = unsafe { Mapping::from_raw(ptr, len, true, Box::new(owner)) };
        Ok(SharedPages { mapping, refs })
    }
}

fn open(path: &Path, writable: bool) -> io::Result<File> {
    OpenOptions::new().read(true).write(writable).open(path)
}

/// Drop this description's pins on `refs` and clear the flags of every gref
/// nobody else maps any more. Call with the mappers' flock held.
fn unpin_all(table: &GrantTable, pins: &File, refs: &[GrantRef], mapper: DomId) {
    if range_unlock(pins, 0, 0).is_err() {
        // Our locks go when `pins` is closed; the flags stay set until the
        // next revoke, which checks the locks, not the flags.
        return;
    }
    let mut grefs: Vec<GrantRef> = refs
        .iter()
        .copied()
        .filter(|&g| g != 0 && g < GRANT_ENTRIES)
        .collect();
    grefs.sort_unstable();
    grefs.dedup();
    for gref in grefs {
        let start = u64::from(gref) * 2;
        let clear = match (
            range_locked_by_other(pins, start, 1),
            range_locked_by_other(pins, start + 1, 1),
        ) {
            (Ok(false), _) => GTF_READING | GTF_WRITING,
            (Ok(true), Ok(false)) => GTF_WRITING,
            _ => 0,
        };
        if clear != 0 {
            table.unpin(gref, mapper, clear);
        }
    }
}

/// Owns a foreign mapping: unmaps, then unpins, on drop.
struct ForeignPages {
    region: Option<Region>,
    table: GrantTable,
    pins: File,
    refs: Vec<GrantRef>,
    mapper: DomId,
    _budget: PageBudget,
}

impl Drop for ForeignPages {
    fn drop(&mut self) {
        // Unmap before unpinning: once unpinned the granter may reuse the page.
        drop(self.region.take());
        let _mappers = flock_exclusive(&self.pins);
        unpin_all(&self.table, &self.pins, &self.refs, self.mapper);
    }
}

/// Owns shared local pages: unmaps our view, revokes the grants, frees the pages.
struct SharedOwnPages {
    region: Option<Region>,
    own: SimDomainMemory,
    frames: Vec<Frame>,
    refs: Vec<GrantRef>,
    _budget: PageBudget,
}

impl Drop for SharedOwnPages {
    fn drop(&mut self) {
        drop(self.region.take());
        let mut free = Vec::with_capacity(self.frames.len());
        for (i, &frame) in self.frames.iter().enumerate() {
            let Some(&gref) = self.refs.get(i) else {
                free.push(frame);
                continue;
            };
            match self.own.end_access(gref) {
                Err(GrantError::InUse { by, .. }) => {
                    // Xen keeps a page alive while a peer maps it; we keep it
                    // allocated (leaked) rather than hand it out again.
                    tracing::warn!(
                        gref,
                        frame,
                        by,
                        "shared page still mapped by peer; leaking it"
                    );
                }
                _ => free.push(frame),
            }
        }
        self.own.free_pages(&free);
    }
}

impl GrantMapper for SimGrantMapper {
    fn map(&self, domid: DomId, refs: &[GrantRef], writable: bool) -> Result<Mapping, GrantError> {
        self.map_foreign(domid, refs, writable)
    }

    fn share(&self, domid: DomId, pages: usize, writable: bool) -> Result<SharedPages, GrantError> {
        self.share_own(domid, pages, writable)
    }
}

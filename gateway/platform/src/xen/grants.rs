//! [`GrantMapper`] on real Xen: other domains' grants mapped through
//! `/dev/xen/gntdev` (`xengnttab_*`), our pages shared through
//! `/dev/xen/gntalloc` (`xengntshr_*`).
//!
//! The guest chooses every grant ref and count that reaches this module, so
//! counts are capped before any call, and each failure names the domain and
//! the ref that failed.

use std::ffi::c_void;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::ffi::{GntshrHandle, GnttabFns, GnttabHandle};
use crate::{DomId, GrantError, GrantMapper, GrantRef, Mapping, SharedPages};

/// Xen's grant page size. gntdev maps whole Xen pages, and `Mapping` offsets
/// assume 4 KiB; `connect` refuses kernels with another page size.
pub const XEN_PAGE_SIZE: usize = 4096;
/// Most grant refs in one mapping or share: 256 MiB, more than a 4K
/// framebuffer (the sim's limit too, so tests and Xen agree).
pub const MAX_REFS_PER_MAPPING: usize = 1 << 16;
/// Most pages this process maps and shares at once (1 GiB): a guest
/// opening buffer after buffer must not exhaust dom0's address space.
pub const MAX_PAGES_PER_PROCESS: usize = 1 << 18;
/// What we ask gntdev to allow per handle (`xengnttab_set_max_grants`;
/// recent Linux ignores it, older ones default to 1024 and would refuse a
/// framebuffer).
const MAX_GRANTS_PER_HANDLE: u32 = MAX_PAGES_PER_PROCESS as u32;
/// Domain ids from here up are special (DOMID_SELF, DOMID_IO, …: xen.h's
/// DOMID_FIRST_RESERVED); nobody grants us pages as one of them.
pub const DOMID_FIRST_RESERVED: DomId = 0x7FF0;
/// At most this many refs of a failed mapping are retried one by one to
/// find which one the hypervisor refused (bounded: the guest picks counts).
const DIAGNOSE_LIMIT: usize = 16;

static PAGES_IN_USE: AtomicUsize = AtomicUsize::new(0);

/// Pages counted against [`MAX_PAGES_PER_PROCESS`] until dropped.
struct PageBudget(usize);

impl PageBudget {
    fn take(domid: DomId, pages: usize) -> Result<PageBudget, GrantError> {
        let mut current = PAGES_IN_USE.load(Ordering::Relaxed);
        loop {
            let next = current
                .checked_add(pages)
                .filter(|&n| n <= MAX_PAGES_PER_PROCESS)
                .ok_or_else(|| {
                    GrantError::Io(io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        format!(
                            "domain {domid}: cannot map or share {pages} more pages: this process has {current} (limit {MAX_PAGES_PER_PROCESS})"
                        ),
                    ))
                })?;
            match PAGES_IN_USE.compare_exchange(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(PageBudget(pages)),
                Err(seen) => current = seen,
            }
        }
    }
}

impl Drop for PageBudget {
    fn drop(&mut self) {
        PAGES_IN_USE.fetch_sub(self.0, Ordering::Relaxed);
    }
}

/// Validate what a guest asked us to map or share; `what` is "map"/"share".
pub fn check_request(domid: DomId, count: usize) -> Result<(), GrantError> {
    if domid >= DOMID_FIRST_RESERVED {
        return Err(GrantError::Invalid {
            domid,
            gref: 0,
            reason: format!("domain id {domid} is reserved (>= {DOMID_FIRST_RESERVED:#x})"),
        });
    }
    if count == 0 {
        return Err(GrantError::Invalid {
            domid,
            gref: 0,
            reason: "no pages asked for".into(),
        });
    }
    if count > MAX_REFS_PER_MAPPING {
        return Err(GrantError::TooMany {
            count,
            limit: MAX_REFS_PER_MAPPING,
        });
    }
    Ok(())
}

/// An open `xengnttab_handle` (gntdev). The library's calls are plain
/// ioctls/mmaps on one fd, safe from any thread (the kernel serialises).
struct Gnttab {
    fns: Arc<GnttabFns>,
    handle: NonNull<GnttabHandle>,
}

// SAFETY: see the type's comment; the handle is only closed on drop.
unsafe impl Send for Gnttab {}
unsafe impl Sync for Gnttab {}

impl Drop for Gnttab {
    fn drop(&mut self) {
        // SAFETY: our handle, closed once; no mapping outlives it (each
        // holds an Arc to us).
        unsafe { (self.fns.xengnttab_close)(self.handle.as_ptr()) };
    }
}

/// An open `xengntshr_handle` (gntalloc).
struct Gntshr {
    fns: Arc<GnttabFns>,
    handle: NonNull<GntshrHandle>,
}

// SAFETY: as for Gnttab.
unsafe impl Send for Gntshr {}
unsafe impl Sync for Gntshr {}

impl Drop for Gntshr {
    fn drop(&mut self) {
        // SAFETY: our handle, closed once, after every share (they hold Arcs).
        unsafe { (self.fns.xengntshr_close)(self.handle.as_ptr()) };
    }
}

/// Unmaps a grant mapping when the [`Mapping`] built on it is dropped.
struct GrantUnmap {
    gnttab: Arc<Gnttab>,
    addr: NonNull<c_void>,
    pages: u32,
    domid: DomId,
    first_ref: GrantRef,
    _budget: PageBudget,
}

// SAFETY: the address is only used to unmap, once.
unsafe impl Send for GrantUnmap {}
unsafe impl Sync for GrantUnmap {}

impl Drop for GrantUnmap {
    fn drop(&mut self) {
        let g = &self.gnttab;
        // SAFETY: this range came from xengnttab_map_domain_grant_refs on
        // this handle with this count, and the Mapping over it is gone.
        let rc =
            unsafe { (g.fns.xengnttab_unmap)(g.handle.as_ptr(), self.addr.as_ptr(), self.pages) };
        if rc != 0 {
            tracing::error!(
                domid = self.domid,
                gref = self.first_ref,
                pages = self.pages,
                error = %io::Error::last_os_error(),
                "xengnttab_unmap failed; the pages stay mapped until pvgate exits"
            );
        }
    }
}

/// Revokes and frees shared pages when the [`SharedPages`] is dropped.
struct Unshare {
    gntshr: Arc<Gntshr>,
    addr: NonNull<c_void>,
    pages: u32,
    domid: DomId,
    _budget: PageBudget,
}

// SAFETY: the address is only used to unshare, once.
unsafe impl Send for Unshare {}
unsafe impl Sync for Unshare {}

impl Drop for Unshare {
    fn drop(&mut self) {
        let g = &self.gntshr;
        // SAFETY: this range came from xengntshr_share_pages on this handle
        // with this count. gntalloc keeps each page (and its grant) alive
        // until the peer unmaps it, so unsharing early is safe.
        let rc =
            unsafe { (g.fns.xengntshr_unshare)(g.handle.as_ptr(), self.addr.as_ptr(), self.pages) };
        if rc != 0 {
            tracing::error!(
                domid = self.domid,
                pages = self.pages,
                error = %io::Error::last_os_error(),
                "xengntshr_unshare failed"
            );
        }
    }
}

/// [`GrantMapper`] over libxengnttab.
pub struct XenGrantMapper {
    gnttab: Arc<Gnttab>,
    /// None when /dev/xen/gntalloc could not be opened: be-alloc is then
    /// refused with the reason, everything else works.
    gntshr: Result<Arc<Gntshr>, String>,
}

impl XenGrantMapper {
    /// Open gntdev (required) and gntalloc (optional: only be-alloc needs it).
    pub fn open(fns: Arc<GnttabFns>) -> io::Result<XenGrantMapper> {
        // SAFETY: NULL logger and no flags are what the header documents.
        let handle = unsafe { (fns.xengnttab_open)(std::ptr::null_mut(), 0) };
        let Some(handle) = NonNull::new(handle) else {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "xengnttab_open (/dev/xen/gntdev) failed: {e}; load xen-gntdev in dom0, run as root, and in a container pass /dev/xen/gntdev"
                ),
            ));
        };
        let gnttab = Arc::new(Gnttab {
            fns: fns.clone(),
            handle,
        });
        // SAFETY: a fresh handle, before any other call on it, as required.
        let rc = unsafe { (fns.xengnttab_set_max_grants)(handle.as_ptr(), MAX_GRANTS_PER_HANDLE) };
        if rc != 0 {
            // Old kernels only; mapping may then fail beyond their default.
            tracing::warn!(error = %io::Error::last_os_error(), "xengnttab_set_max_grants({MAX_GRANTS_PER_HANDLE}) failed");
        }
        // SAFETY: as for xengnttab_open.
        let shr = unsafe { (fns.xengntshr_open)(std::ptr::null_mut(), 0) };
        let gntshr = match NonNull::new(shr) {
            Some(handle) => Ok(Arc::new(Gntshr { fns, handle })),
            None => {
                let e = io::Error::last_os_error();
                let reason = format!(
                    "xengntshr_open (/dev/xen/gntalloc) failed: {e}; load xen-gntalloc in dom0 (and in a container pass /dev/xen/gntalloc) for be-alloc displays"
                );
                tracing::warn!("{reason}");
                Err(reason)
            }
        };
        Ok(XenGrantMapper { gnttab, gntshr })
    }

    /// One mapping attempt; the address on success.
    fn try_map(&self, domid: DomId, refs: &mut [u32], prot: i32) -> Option<NonNull<c_void>> {
        let g = &self.gnttab;
        // SAFETY: `refs` holds `refs.len()` (checked <= MAX_REFS_PER_MAPPING)
        // refs; the library only reads them.
        let ptr = unsafe {
            (g.fns.xengnttab_map_domain_grant_refs)(
                g.handle.as_ptr(),
                refs.len() as u32,
                u32::from(domid),
                refs.as_mut_ptr(),
                prot,
            )
        };
        NonNull::new(ptr)
    }

    /// After a failed mapping of a few refs, find the first one that the
    /// hypervisor refuses on its own, so the error can name it.
    fn diagnose(&self, domid: DomId, refs: &[GrantRef], prot: i32) -> Option<GrantRef> {
        if refs.len() > DIAGNOSE_LIMIT {
            return None;
        }
        refs.iter().copied().find(|&gref| {
            let mut one = [gref];
            match self.try_map(domid, &mut one, prot) {
                Some(addr) => {
                    let g = &self.gnttab;
                    // SAFETY: just mapped, one page, nobody else saw it.
                    unsafe { (g.fns.xengnttab_unmap)(g.handle.as_ptr(), addr.as_ptr(), 1) };
                    false
                }
                None => true,
            }
        })
    }
}

impl GrantMapper for XenGrantMapper {
    fn map(&self, domid: DomId, refs: &[GrantRef], writable: bool) -> Result<Mapping, GrantError> {
        check_request(domid, refs.len())?;
        let budget = PageBudget::take(domid, refs.len())?;
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // The header takes `uint32_t *`: pass our own copy, never the caller's.
        let mut c_refs = refs.to_vec();
        let Some(addr) = self.try_map(domid, &mut c_refs, prot) else {
            let e = io::Error::last_os_error();
            let access = if writable { "read-write" } else { "read-only" };
            let (gref, reason) = match self.diagnose(domid, refs, prot) {
                Some(bad) => (
                    bad,
                    format!("the hypervisor refused to map it {access}: {e}"),
                ),
                None => (
                    refs[0],
                    format!(
                        "mapping {} refs {access} starting at this one failed: {e}",
                        refs.len()
                    ),
                ),
            };
            return Err(GrantError::Invalid {
                domid,
                gref,
                reason,
            });
        };
        let pages = refs.len();
        let owner = GrantUnmap {
            gnttab: self.gnttab.clone(),
            addr,
            pages: pages as u32,
            domid,
            first_ref: refs[0],
            _budget: budget,
        };
        // SAFETY: gntdev mapped `pages` Xen pages at `addr` (page aligned,
        // an mmap), readable and writable as asked, until `owner` unmaps.
        Ok(unsafe {
            Mapping::from_raw(
                addr.cast(),
                pages * XEN_PAGE_SIZE,
                writable,
                Box::new(owner),
            )
        })
    }

    fn share(&self, domid: DomId, pages: usize, writable: bool) -> Result<SharedPages, GrantError> {
        check_request(domid, pages)?;
        let gntshr = self.gntshr.as_ref().map_err(|reason| {
            GrantError::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("domain {domid}: cannot share pages: {reason}"),
            ))
        })?;
        let budget = PageBudget::take(domid, pages)?;
        let mut refs = vec![0u32; pages];
        // SAFETY: `refs` has room for `pages` refs (checked to fit an int).
        let ptr = unsafe {
            (gntshr.fns.xengntshr_share_pages)(
                gntshr.handle.as_ptr(),
                u32::from(domid),
                pages as i32,
                refs.as_mut_ptr(),
                i32::from(writable),
            )
        };
        let Some(addr) = NonNull::new(ptr) else {
            let e = io::Error::last_os_error();
            let hint = if e.raw_os_error() == Some(libc::ENOSPC) {
                " (gntalloc's limit on pages shared at once is reached: raise /sys/module/xen_gntalloc/parameters/limit, default 1024)"
            } else {
                ""
            };
            return Err(GrantError::Io(io::Error::new(
                e.kind(),
                format!("domain {domid}: xengntshr_share_pages of {pages} pages failed: {e}{hint}"),
            )));
        };
        let owner = Unshare {
            gntshr: gntshr.clone(),
            addr,
            pages: pages as u32,
            domid,
            _budget: budget,
        };
        // SAFETY: gntalloc mapped `pages` zeroed pages read-write at `addr`
        // (our own memory: always writable for us) until `owner` unshares.
        let mapping =
            unsafe { Mapping::from_raw(addr.cast(), pages * XEN_PAGE_SIZE, true, Box::new(owner)) };
        Ok(SharedPages { mapping, refs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_chosen_counts_and_domains_are_checked_before_any_call() {
        assert!(matches!(
            check_request(5, MAX_REFS_PER_MAPPING + 1),
            Err(GrantError::TooMany { count, limit }) if count == MAX_REFS_PER_MAPPING + 1 && limit == MAX_REFS_PER_MAPPING
        ));
        assert!(matches!(
            check_request(5, 0),
            Err(GrantError::Invalid { domid: 5, .. })
        ));
        let reserved = check_request(0x7FF2, 1).unwrap_err().to_string();
        assert!(reserved.contains("reserved"), "{reserved}");
        assert!(check_request(5, MAX_REFS_PER_MAPPING).is_ok());
        // The counts fit the C types they are passed as.
        assert!(i32::try_from(MAX_REFS_PER_MAPPING).is_ok());
    }

    #[test]
    fn the_page_budget_is_returned_on_drop() {
        let before = PAGES_IN_USE.load(Ordering::Relaxed);
        let b = PageBudget::take(1, 10).unwrap();
        assert!(PAGES_IN_USE.load(Ordering::Relaxed) >= before + 10);
        assert!(PageBudget::take(1, MAX_PAGES_PER_PROCESS + 1).is_err());
        drop(b);
    }

    /// On this machine the library may be installed but there is no gntdev:
    /// opening must fail with a message naming the device, not crash.
    #[test]
    fn opening_without_gntdev_names_the_device() {
        if std::path::Path::new("/dev/xen/gntdev").exists() {
            return; // a real dom0: nothing to check here
        }
        let Ok(fns) = GnttabFns::load() else {
            eprintln!("libxengnttab.so.1 absent; skipping (apt-get install libxengnttab1)");
            return;
        };
        let err = XenGrantMapper::open(Arc::new(fns)).err().unwrap();
        assert!(err.to_string().contains("/dev/xen/gntdev"), "{err}");
    }
}

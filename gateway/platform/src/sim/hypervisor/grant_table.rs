//! One domain's v1 grant table, as a shared mapping of its `grant-table` file.
//!
//! Each entry is Xen's `struct grant_entry_v1 { uint16_t flags; domid_t domid;
//! uint32_t frame; }`, little-endian. We touch the first 32-bit word (flags in
//! the low half, domid in the high half) only with atomic read-modify-write,
//! exactly as Xen does with cmpxchg on `flags|domid`, so that a check of
//! "granted to whom, how" and the marking of "in use" happen as one step even
//! while the granting domain rewrites its table.

use std::fs::File;
use std::sync::atomic::{AtomicU32, Ordering};

use super::layout::{GRANT_ENTRIES, GRANT_ENTRY_SIZE, GRANT_TABLE_BYTES};
use super::sys::Region;
use crate::{DomId, GrantRef};

/// `GTF_permit_access`: the frame may be mapped by `domid`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// `GTF_type_mask`.
pub const GTF_TYPE_MASK: u16 = 3;
/// `GTF_readonly`: only read-only mappings.
pub const GTF_READONLY: u16 = 1 << 2;
/// `GTF_reading`: set by the hypervisor while the grant is mapped.
pub const GTF_READING: u16 = 1 << 3;
/// `GTF_writing`: set by the hypervisor while the grant is mapped writable.
pub const GTF_WRITING: u16 = 1 << 4;

/// A copy of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantEntry {
    pub flags: u16,
    pub domid: DomId,
    pub frame: u32,
}

/// A guest that rewrites its entry in a tight loop must not keep us spinning.
const CMPXCHG_ATTEMPTS: usize = 64;

fn split(word: u32) -> (u16, DomId) {
    ((word & 0xffff) as u16, (word >> 16) as u16)
}

fn join(flags: u16, domid: DomId) -> u32 {
    u32::from(flags) | (u32::from(domid) << 16)
}

pub(crate) struct GrantTable {
    region: Region,
}

impl GrantTable {
    /// Map a `grant-table` file. Refuses a file of the wrong size, so that no
    /// entry index we check can lie outside the mapping.
    pub(crate) fn map(file: &File) -> std::io::Result<GrantTable> {
        let len = file.metadata()?.len();
        if len != GRANT_TABLE_BYTES as u64 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("grant table file is {len} bytes, expected {GRANT_TABLE_BYTES}"),
            ));
        }
        Ok(GrantTable {
            region: Region::map_file(file, GRANT_TABLE_BYTES, true)?,
        })
    }

    fn words(&self, gref: GrantRef) -> Option<(&AtomicU32, &AtomicU32)> {
        if gref >= GRANT_ENTRIES {
            return None;
        }
        let offset = gref as usize * GRANT_ENTRY_SIZE;
        if offset + GRANT_ENTRY_SIZE > self.region.len() {
            return None;
        }
        // SAFETY: in bounds (checked), 4-byte aligned (page-aligned base,
        // 8-byte entries), and AtomicU32 has u32's layout.
        unsafe {
            let base = self.region.ptr().add(offset);
            Some((
                &*(base as *const AtomicU32),
                &*(base.add(4) as *const AtomicU32),
            ))
        }
    }

    pub(crate) fn entry(&self, gref: GrantRef) -> Option<GrantEntry> {
        let (word, frame) = self.words(gref)?;
        let (flags, domid) = split(word.load(Ordering::Acquire));
        Some(GrantEntry {
            flags,
            domid,
            frame: frame.load(Ordering::Acquire),
        })
    }

    /// Write an entry as a granting guest does: domid and frame first, then
    /// the flags with release ordering, so a mapper that sees the flags sees
    /// the rest (grant_table.h: "write domid, frame, wmb, flags").
    pub(crate) fn publish(&self, gref: GrantRef, entry: GrantEntry) -> bool {
        let Some((word, frame)) = self.words(gref) else {
            return false;
        };
        frame.store(entry.frame, Ordering::Relaxed);
        word.store(join(0, entry.domid), Ordering::Relaxed);
        word.store(join(entry.flags, entry.domid), Ordering::Release);
        true
    }

    /// Clear an entry's flags (revoke). The caller has made sure no mapper
    /// holds it.
    pub(crate) fn clear_flags(&self, gref: GrantRef) {
        if let Some((word, _)) = self.words(gref) {
            word.fetch_and(0xffff_0000, Ordering::AcqRel);
        }
    }

    /// The mapper's check-and-mark, as Xen's `_set_status_v1`: in one atomic
    /// step check that the entry permits access, names `mapper`, and allows
    /// writing if asked; and set GTF_reading (and GTF_writing). Returns the
    /// frame, read after the flags were set.
    pub(crate) fn pin(&self, gref: GrantRef, mapper: DomId, writable: bool) -> Result<u32, String> {
        let (word, frame) = self
            .words(gref)
            .ok_or_else(|| format!("outside the grant table ({GRANT_ENTRIES} entries)"))?;
        let mut current = word.load(Ordering::Acquire);
        for _ in 0..CMPXCHG_ATTEMPTS {
            let (flags, domid) = split(current);
            if flags & GTF_TYPE_MASK != GTF_PERMIT_ACCESS {
                return Err(format!("entry is not granted (flags {flags:#06x})"));
            }
            if domid != mapper {
                return Err(format!(
                    "granted to domain {domid}, not to us (domain {mapper})"
                ));
            }
            if writable && flags & GTF_READONLY != 0 {
                return Err("read-only grant, writable mapping requested".into());
            }
            let mut new_flags = flags | GTF_READING;
            if writable {
                new_flags |= GTF_WRITING;
            }
            match word.compare_exchange(
                current,
                join(new_flags, domid),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(frame.load(Ordering::Acquire)),
                Err(seen) => current = seen,
            }
        }
        Err("entry keeps changing under us".into())
    }

    /// Clear GTF_reading and/or GTF_writing, but only on an entry that still
    /// grants to `mapper` (the granter may have revoked and re-granted it to
    /// someone else since).
    pub(crate) fn unpin(&self, gref: GrantRef, mapper: DomId, clear: u16) {
        let Some((word, _)) = self.words(gref) else {
            return;
        };
        let mut current = word.load(Ordering::Acquire);
        for _ in 0..CMPXCHG_ATTEMPTS {
            let (flags, domid) = split(current);
            if flags & GTF_TYPE_MASK != GTF_PERMIT_ACCESS || domid != mapper || flags & clear == 0 {
                return;
            }
            match word.compare_exchange(
                current,
                join(flags & !clear, domid),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }
}

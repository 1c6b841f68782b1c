//! Memory shared with another domain.
//!
//! The peer can change these bytes at any moment, so we never hand out `&[u8]`
//! into them (the compiler may assume a shared reference does not change
//! underneath it). Instead callers copy bytes out once ([`Mapping::read`]) and
//! work on the copy, which is also what makes validation sound: the bytes we
//! checked are the bytes we use. Ring indices are read and written with
//! acquire/release atomics, which is what ring.h's barriers amount to on the
//! architectures Xen runs on.

use std::any::Any;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    #[error("access of {len} bytes at offset {offset} is outside the {size}-byte mapping")]
    OutOfBounds {
        offset: usize,
        len: usize,
        size: usize,
    },
    #[error("the mapping is read-only")]
    ReadOnly,
    #[error("offset {0} is not 4-byte aligned")]
    Misaligned(usize),
}

/// A contiguous view of shared pages. Unmapped when dropped.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
    /// Whatever must live as long as the view and undo it on drop (an
    /// `munmap`, a gntdev unmap, a grant-table release).
    _owner: Box<dyn Any + Send + Sync>,
}

// SAFETY: the mapping is plain shared memory; every access goes through the
// copying or atomic methods below, which are sound from any thread.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// # Safety
    /// `ptr..ptr+len` must stay mapped (readable, and writable if `writable`)
    /// until `owner` is dropped, and `ptr` must be page aligned.
    pub unsafe fn from_raw(
        ptr: NonNull<u8>,
        len: usize,
        writable: bool,
        owner: Box<dyn Any + Send + Sync>,
    ) -> Mapping {
        Mapping {
            ptr,
            len,
            writable,
            _owner: owner,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The start of the mapping, for bulk work (hashing, pixel copies) that
    /// must tolerate the peer changing the bytes while it runs.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), MappingError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(MappingError::OutOfBounds {
                offset,
                len,
                size: self.len,
            }),
        }
    }

    /// Copy `dst.len()` bytes starting at `offset` out of the mapping.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), MappingError> {
        self.check(offset, dst.len())?;
        // SAFETY: bounds checked above; a concurrent write by the peer can only
        // make the copied bytes garbage, which every caller validates.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            )
        };
        Ok(())
    }

    /// Copy `src` into the mapping at `offset`.
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<(), MappingError> {
        if !self.writable {
            return Err(MappingError::ReadOnly);
        }
        self.check(offset, src.len())?;
        // SAFETY: bounds and writability checked above.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len())
        };
        Ok(())
    }

    /// Fill `len` bytes at `offset` with `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<(), MappingError> {
        if !self.writable {
            return Err(MappingError::ReadOnly);
        }
        self.check(offset, len)?;
        // SAFETY: bounds and writability checked above.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(offset), byte, len) };
        Ok(())
    }

    fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32, MappingError> {
        if !offset.is_multiple_of(4) {
            return Err(MappingError::Misaligned(offset));
        }
        self.check(offset, 4)?;
        // SAFETY: in bounds, aligned (the mapping is page aligned), and
        // AtomicU32 has the layout of u32.
        Ok(unsafe { &*(self.ptr.as_ptr().add(offset) as *const AtomicU32) })
    }

    /// Read a shared index with acquire ordering: everything the peer wrote
    /// before publishing this index is visible after it (ring.h's rmb).
    pub fn load_u32_acquire(&self, offset: usize) -> Result<u32, MappingError> {
        Ok(self.atomic_u32(offset)?.load(Ordering::Acquire))
    }

    /// Publish a shared index with release ordering: everything we wrote
    /// before is visible to a peer that sees this index (ring.h's wmb).
    pub fn store_u32_release(&self, offset: usize, value: u32) -> Result<(), MappingError> {
        if !self.writable {
            return Err(MappingError::ReadOnly);
        }
        self.atomic_u32(offset)?.store(value, Ordering::Release);
        Ok(())
    }
}

/// A full barrier, ring.h's `xen_mb()`: orders our index store before our
/// re-read of the peer's event index (the notify-or-not decision).
pub fn full_barrier() {
    std::sync::atomic::fence(Ordering::SeqCst);
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("writable", &self.writable)
            .finish()
    }
}

/// An anonymous, page-aligned, zeroed mapping owned by this process. Useful as
/// local memory for tests and as the backing of be-alloc pages.
pub fn anonymous(len: usize) -> std::io::Result<Mapping> {
    struct Anon(*mut libc::c_void, usize);
    // SAFETY: the pointer is only used to munmap on drop.
    unsafe impl Send for Anon {}
    unsafe impl Sync for Anon {}
    impl Drop for Anon {
        fn drop(&mut self) {
            // SAFETY: we own this mapping.
            unsafe { libc::munmap(self.0, self.1) };
        }
    }
    let len = len.max(1);
    // SAFETY: a fresh private anonymous mapping.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    let nn = NonNull::new(ptr as *mut u8).expect("mmap returned null");
    // SAFETY: mapped read-write for `len` bytes until Anon drops.
    Ok(unsafe { Mapping::from_raw(nn, len, true, Box::new(Anon(ptr, len))) })
}

/// Rings and event pages in a grant mapping are driven by the protocol
/// crate through this trait.
impl pvgate_protocol::SharedMemory for Mapping {
    type Error = MappingError;
    fn load_u32_acquire(&self, offset: usize) -> Result<u32, MappingError> {
        Mapping::load_u32_acquire(self, offset)
    }
    fn store_u32_release(&self, offset: usize, value: u32) -> Result<(), MappingError> {
        Mapping::store_u32_release(self, offset, value)
    }
    fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), MappingError> {
        Mapping::read(self, offset, dst)
    }
    fn write(&self, offset: usize, src: &[u8]) -> Result<(), MappingError> {
        Mapping::write(self, offset, src)
    }
    fn full_barrier(&self) {
        full_barrier()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_without_overflow() {
        let m = anonymous(4096).unwrap();
        let mut buf = [0u8; 8];
        assert!(m.read(4088, &mut buf).is_ok());
        assert!(matches!(
            m.read(4089, &mut buf),
            Err(MappingError::OutOfBounds { .. })
        ));
        assert!(matches!(
            m.read(usize::MAX - 2, &mut buf),
            Err(MappingError::OutOfBounds { .. })
        ));
        assert_eq!(m.load_u32_acquire(2), Err(MappingError::Misaligned(2)));
        m.store_u32_release(8, 0xdead_beef).unwrap();
        assert_eq!(m.load_u32_acquire(8).unwrap(), 0xdead_beef);
        m.write(100, b"hello").unwrap();
        let mut out = [0u8; 5];
        m.read(100, &mut out).unwrap();
        assert_eq!(&out, b"hello");
    }
}

//! Reading a guest framebuffer that the guest may change while we read it.
//!
//! Guest memory must never be seen through `&[u8]`: Rust may assume a shared
//! reference's bytes do not change, and the guest can change them at any time.
//! So the damage tracker only ever *copies* bytes out, a row band at a time,
//! and then hashes and converts the copy. [`SourceBuffer`] is that one
//! operation. Owned byte slices implement it for tests; [`SharedMemory`] wraps
//! a raw pointer for the real thing (the platform crate's `Mapping` exposes
//! `as_ptr()` and `len()`, or a backend can implement the trait on a newtype
//! around `Mapping` that calls `Mapping::read`).

use std::marker::PhantomData;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("read of {len} bytes at offset {offset} is outside the {size}-byte source buffer")]
pub struct SourceOutOfBounds {
    pub offset: usize,
    pub len: usize,
    pub size: usize,
}

/// Bytes that can be copied out, possibly while someone else writes them.
pub trait SourceBuffer {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copy `dst.len()` bytes starting at `offset` into `dst`.
    fn read_into(&self, offset: usize, dst: &mut [u8]) -> Result<(), SourceOutOfBounds>;
}

fn check(offset: usize, len: usize, size: usize) -> Result<(), SourceOutOfBounds> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(SourceOutOfBounds { offset, len, size }),
    }
}

impl SourceBuffer for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn read_into(&self, offset: usize, dst: &mut [u8]) -> Result<(), SourceOutOfBounds> {
        check(offset, dst.len(), <[u8]>::len(self))?;
        dst.copy_from_slice(&self[offset..offset + dst.len()]);
        Ok(())
    }
}

impl SourceBuffer for Vec<u8> {
    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn read_into(&self, offset: usize, dst: &mut [u8]) -> Result<(), SourceOutOfBounds> {
        self.as_slice().read_into(offset, dst)
    }
}

/// Memory shared with a guest, read only by copying.
///
/// The lifetime ties this view to whatever owns the mapping, so it cannot
/// outlive the unmap.
#[derive(Clone, Copy)]
pub struct SharedMemory<'a> {
    ptr: *const u8,
    len: usize,
    _owner: PhantomData<&'a ()>,
}

// SAFETY: the view only performs copies out of memory that stays mapped for
// 'a (constructor contract); copying from any thread is fine.
unsafe impl Send for SharedMemory<'_> {}
unsafe impl Sync for SharedMemory<'_> {}

impl<'a> SharedMemory<'a> {
    /// # Safety
    /// `ptr..ptr+len` must be readable memory that stays mapped for `'a`.
    /// Its contents may change concurrently; this type never forms a
    /// reference to it, it only copies with `ptr::copy_nonoverlapping`, so a
    /// racing write yields wrong pixels, never unsoundness in our code.
    pub unsafe fn new(ptr: *const u8, len: usize) -> SharedMemory<'a> {
        SharedMemory {
            ptr,
            len,
            _owner: PhantomData,
        }
    }
}

impl SourceBuffer for SharedMemory<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn read_into(&self, offset: usize, dst: &mut [u8]) -> Result<(), SourceOutOfBounds> {
        check(offset, dst.len(), self.len)?;
        // SAFETY: bounds checked; the constructor guarantees the range is
        // mapped for our lifetime; dst is our own memory and cannot overlap
        // the guest's pages.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.add(offset), dst.as_mut_ptr(), dst.len());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounds_checked() {
        let bytes: Vec<u8> = (0..10).collect();
        let mut dst = [0u8; 4];
        bytes.read_into(6, &mut dst).unwrap();
        assert_eq!(dst, [6, 7, 8, 9]);
        assert_eq!(
            bytes.read_into(7, &mut dst),
            Err(SourceOutOfBounds {
                offset: 7,
                len: 4,
                size: 10
            })
        );
        assert!(bytes.read_into(usize::MAX, &mut dst).is_err());
        let shared = unsafe { SharedMemory::new(bytes.as_ptr(), bytes.len()) };
        shared.read_into(1, &mut dst).unwrap();
        assert_eq!(dst, [1, 2, 3, 4]);
        assert!(shared.read_into(8, &mut dst).is_err());
    }
}

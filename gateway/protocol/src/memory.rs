//! Access to memory shared with the other domain.
//!
//! The protocol code never holds a reference into shared memory: the peer can
//! change those bytes at any moment, so every access is a copy or an atomic
//! index access through [`SharedMemory`]. The platform crate implements it for
//! its grant `Mapping`; [`LocalMemory`] is an in-process implementation for
//! tests and for the guest simulator's own pages.

use std::sync::{Arc, Mutex, MutexGuard};

/// Memory shared with a peer domain, addressed by byte offset.
///
/// The method signatures are those of the platform crate's `Mapping`, so its
/// implementation is one line per method.
pub trait SharedMemory {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Read a 32-bit index with acquire ordering: everything the peer wrote
    /// before publishing it is visible afterwards (ring.h's `rmb`).
    fn load_u32_acquire(&self, offset: usize) -> Result<u32, Self::Error>;
    /// Publish a 32-bit index with release ordering (ring.h's `wmb`).
    fn store_u32_release(&self, offset: usize, value: u32) -> Result<(), Self::Error>;
    /// Copy bytes out.
    fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), Self::Error>;
    /// Copy bytes in.
    fn write(&self, offset: usize, src: &[u8]) -> Result<(), Self::Error>;
    /// ring.h's `xen_mb()`: orders an index store before a later index load.
    fn full_barrier(&self);
}

impl<T: SharedMemory + ?Sized> SharedMemory for &T {
    type Error = T::Error;
    fn load_u32_acquire(&self, offset: usize) -> Result<u32, Self::Error> {
        (**self).load_u32_acquire(offset)
    }
    fn store_u32_release(&self, offset: usize, value: u32) -> Result<(), Self::Error> {
        (**self).store_u32_release(offset, value)
    }
    fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), Self::Error> {
        (**self).read(offset, dst)
    }
    fn write(&self, offset: usize, src: &[u8]) -> Result<(), Self::Error> {
        (**self).write(offset, src)
    }
    fn full_barrier(&self) {
        (**self).full_barrier()
    }
}

impl<T: SharedMemory + ?Sized> SharedMemory for Arc<T> {
    type Error = T::Error;
    fn load_u32_acquire(&self, offset: usize) -> Result<u32, Self::Error> {
        (**self).load_u32_acquire(offset)
    }
    fn store_u32_release(&self, offset: usize, value: u32) -> Result<(), Self::Error> {
        (**self).store_u32_release(offset, value)
    }
    fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), Self::Error> {
        (**self).read(offset, dst)
    }
    fn write(&self, offset: usize, src: &[u8]) -> Result<(), Self::Error> {
        (**self).write(offset, src)
    }
    fn full_barrier(&self) {
        (**self).full_barrier()
    }
}

/// Why a [`LocalMemory`] access failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalMemoryError {
    #[error("access of {len} bytes at offset {offset} is outside the {size}-byte local memory")]
    OutOfBounds {
        offset: usize,
        len: usize,
        size: usize,
    },
    #[error("32-bit index access at offset {0} is not 4-byte aligned")]
    Misaligned(usize),
}

/// Process-local memory behind a mutex: a stand-in for a shared page in
/// tests. The mutex gives the acquire/release ordering the trait promises.
#[derive(Debug)]
pub struct LocalMemory {
    bytes: Mutex<Vec<u8>>,
}

impl LocalMemory {
    /// `len` zeroed bytes.
    pub fn new(len: usize) -> LocalMemory {
        LocalMemory {
            bytes: Mutex::new(vec![0; len]),
        }
    }

    /// One zeroed 4096-byte page.
    pub fn page() -> LocalMemory {
        LocalMemory::new(crate::PAGE_SIZE)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the whole contents.
    pub fn snapshot(&self) -> Vec<u8> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while holding the lock cannot leave the bytes in a state
        // worse than a misbehaving peer could, so poisoning is ignored.
        self.bytes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn range(
        size: usize,
        offset: usize,
        len: usize,
    ) -> Result<std::ops::Range<usize>, LocalMemoryError> {
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(offset..end),
            _ => Err(LocalMemoryError::OutOfBounds { offset, len, size }),
        }
    }
}

impl SharedMemory for LocalMemory {
    type Error = LocalMemoryError;

    fn load_u32_acquire(&self, offset: usize) -> Result<u32, LocalMemoryError> {
        let mut b = [0u8; 4];
        if offset & 3 != 0 {
            return Err(LocalMemoryError::Misaligned(offset));
        }
        self.read(offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn store_u32_release(&self, offset: usize, value: u32) -> Result<(), LocalMemoryError> {
        if offset & 3 != 0 {
            return Err(LocalMemoryError::Misaligned(offset));
        }
        self.write(offset, &value.to_le_bytes())
    }

    fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), LocalMemoryError> {
        let bytes = self.lock();
        let r = Self::range(bytes.len(), offset, dst.len())?;
        if let Some(src) = bytes.get(r) {
            dst.copy_from_slice(src);
        }
        Ok(())
    }

    fn write(&self, offset: usize, src: &[u8]) -> Result<(), LocalMemoryError> {
        let mut bytes = self.lock();
        let r = Self::range(bytes.len(), offset, src.len())?;
        if let Some(dst) = bytes.get_mut(r) {
            dst.copy_from_slice(src);
        }
        Ok(())
    }

    fn full_barrier(&self) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
}

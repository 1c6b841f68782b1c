//! The protocol crate's rings work on any [`SharedMemory`]; this adapts the
//! platform's [`Mapping`] (our granted pages, or the backend's pages we
//! mapped) to it.

use std::sync::Arc;

use pvgate_platform::{Mapping, MappingError};
use pvgate_protocol::SharedMemory;

/// A shared mapping, cheap to clone (the rings and the shell both hold it).
#[derive(Clone, Debug)]
pub struct Shm(pub Arc<Mapping>);

impl Shm {
    pub fn new(mapping: Mapping) -> Shm {
        Shm(Arc::new(mapping))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl SharedMemory for Shm {
    type Error = MappingError;

    fn load_u32_acquire(&self, offset: usize) -> Result<u32, MappingError> {
        self.0.load_u32_acquire(offset)
    }

    fn store_u32_release(&self, offset: usize, value: u32) -> Result<(), MappingError> {
        self.0.store_u32_release(offset, value)
    }

    fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), MappingError> {
        self.0.read(offset, dst)
    }

    fn write(&self, offset: usize, src: &[u8]) -> Result<(), MappingError> {
        self.0.write(offset, src)
    }

    fn full_barrier(&self) {
        pvgate_platform::mapping::full_barrier();
    }
}

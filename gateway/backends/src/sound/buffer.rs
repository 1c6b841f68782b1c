//! Mapping an OPEN's buffer through its page directory, within the
//! guest's page budget.

use pvgate_platform::{DomId, Mapping, Platform};
use pvgate_protocol::pagedir::{self, DirPage, DirectoryWalker};
use pvgate_protocol::sndif::Open;

use super::outputs::{PageReservation, SoundOutputs};
use super::requests::{Refusal, EFAULT, ENOMEM};
use super::stream::{BufferMapper, PcmBuffer};

/// The stream buffer as the gateway holds it: one contiguous mapping of
/// the guest's (non-contiguous) pages, counted against its budget until
/// dropped.
pub struct MappedBuffer {
    mapping: Mapping,
    len: usize,
    _pages: PageReservation,
}

impl PcmBuffer for MappedBuffer {
    fn len(&self) -> usize {
        self.len
    }
    fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), String> {
        self.mapping.read(offset, dst).map_err(|e| e.to_string())
    }
    fn write(&self, offset: usize, src: &[u8]) -> Result<(), String> {
        self.mapping.write(offset, src).map_err(|e| e.to_string())
    }
}

/// Maps buffers of one guest through the platform's grant mapper.
pub struct GrantBufferMapper {
    pub platform: Platform,
    pub domid: DomId,
    pub outputs: SoundOutputs,
    pub max_pages: usize,
}

impl BufferMapper for GrantBufferMapper {
    fn map(&mut self, open: &Open) -> Result<Box<dyn PcmBuffer>, Refusal> {
        let data_refs = pagedir::grant_count(open.buffer_sz);
        // Reserve before touching any grant: a guest over budget costs us
        // nothing.
        let pages = self
            .outputs
            .reserve_pages(self.domid, data_refs as usize, self.max_pages)
            .map_err(|e| Refusal::new(ENOMEM, format!("OPEN: {e}")))?;
        let bad_dir =
            |reason: String| Refusal::new(EFAULT, format!("OPEN: page directory: {reason}"));
        let mut walker = DirectoryWalker::new(open.gref_directory, data_refs)
            .map_err(|e| bad_dir(e.to_string()))?;
        let mut page: DirPage = [0u8; pagedir::PAGE_SIZE];
        while let Some(dir_ref) = walker.next_page_ref() {
            let dir = self
                .platform
                .grants
                .map(self.domid, &[dir_ref], false)
                .map_err(|e| bad_dir(e.to_string()))?;
            // Copied once; the walker validates the copy.
            dir.read(0, &mut page).map_err(|e| bad_dir(e.to_string()))?;
            walker.feed(&page).map_err(|e| bad_dir(e.to_string()))?;
        }
        let refs = walker.finish().map_err(|e| bad_dir(e.to_string()))?;
        // Writable: READ and GET_VOLUME write into it.
        let mapping = self
            .platform
            .grants
            .map(self.domid, &refs, true)
            .map_err(|e| Refusal::new(EFAULT, format!("OPEN: buffer pages: {e}")))?;
        Ok(Box::new(MappedBuffer {
            mapping,
            len: open.buffer_sz as usize,
            _pages: pages,
        }))
    }
}

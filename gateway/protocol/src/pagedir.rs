//! Page directories: how displif and sndif pass the grant references of a
//! large, non-contiguous buffer.
//!
//! A directory page (`struct xendispl_page_directory`, identical to
//! `struct xensnd_page_directory`) holds `gref_dir_next_page` and then 1023
//! data grant references. Pages chain through `gref_dir_next_page`; 0 ends
//! the chain. The number of data references is not sent: it is
//! `ceil(buffer_sz / 4096)` ([`grant_count`]).
//!
//! The frontend builds the pages ([`build_directory`], or
//! [`build_links`] for be-alloc, where the backend fills in the
//! references). The backend copies directory pages out one at a time and
//! feeds them to a [`DirectoryWalker`], which refuses loops, chains longer
//! or shorter than the buffer needs, and zero data references.

use crate::abi::displif::xendispl_page_directory;
use crate::abi::sndif::xensnd_page_directory;
use crate::GrantRef;
use core::mem::{offset_of, size_of};
use std::collections::HashSet;
use std::ops::Range;

/// Directory pages are Xen pages.
pub const PAGE_SIZE: usize = crate::PAGE_SIZE;

/// Offset of `gref_dir_next_page` in a directory page.
pub const NEXT_OFFSET: usize = offset_of!(xendispl_page_directory, gref_dir_next_page);
/// Offset of `gref[0]` in a directory page.
pub const REFS_OFFSET: usize = offset_of!(xendispl_page_directory, gref);
/// Data grant references per directory page (1023).
pub const REFS_PER_PAGE: usize = (PAGE_SIZE - REFS_OFFSET) / size_of::<GrantRef>();

const _: () = assert!(offset_of!(xensnd_page_directory, gref) == REFS_OFFSET);
const _: () = assert!(offset_of!(xensnd_page_directory, gref_dir_next_page) == NEXT_OFFSET);

/// One directory page, as copied out of (or into) shared memory.
pub type DirPage = [u8; PAGE_SIZE];

/// Grant references a buffer of `buffer_sz` bytes needs: `ceil(size/4096)`.
/// (displif's `data_ofs` is an offset inside that buffer and does not add
/// pages.)
pub fn grant_count(buffer_sz: u32) -> u32 {
    buffer_sz.div_ceil(PAGE_SIZE as u32)
}

/// Directory pages needed for `data_refs` references. At least one page
/// always exists (the request names its first page).
pub fn directory_pages(data_refs: u32) -> u32 {
    data_refs.div_ceil(REFS_PER_PAGE as u32).max(1)
}

/// What is wrong with a directory (or with the inputs to build one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageDirError {
    #[error("the first directory page reference is 0")]
    ZeroDirectoryRef,
    #[error("directory page reference {dir_ref} appears twice in the chain (a loop)")]
    Loop { dir_ref: GrantRef },
    #[error("the directory chain ends after {pages_seen} pages, but {data_refs} references need {pages_needed}")]
    ChainTooShort {
        pages_seen: u32,
        pages_needed: u32,
        data_refs: u32,
    },
    #[error("directory page {page} links to page ref {next}, but {data_refs} references need only {pages_needed} pages")]
    ChainTooLong {
        page: u32,
        next: GrantRef,
        pages_needed: u32,
        data_refs: u32,
    },
    #[error("data grant reference #{index} is 0")]
    ZeroDataRef { index: u32 },
    #[error("directory page reference #{index} is 0")]
    ZeroDirRef { index: u32 },
    #[error("{data_refs} references need {needed} directory pages, but {given} page references were given")]
    WrongDirPageCount {
        data_refs: u32,
        needed: u32,
        given: usize,
    },
    #[error("more than u32::MAX grant references")]
    TooManyRefs,
    #[error("a directory page was fed after the chain was complete")]
    AlreadyComplete,
    #[error("the directory is incomplete: {pages_seen} of {pages_needed} pages read")]
    Incomplete { pages_seen: u32, pages_needed: u32 },
}

fn count(n: usize) -> Result<u32, PageDirError> {
    u32::try_from(n).map_err(|_| PageDirError::TooManyRefs)
}

fn put_ref(page: &mut DirPage, off: usize, r: GrantRef) {
    if let Some(dst) = page.get_mut(off..off + 4) {
        dst.copy_from_slice(&r.to_le_bytes());
    }
}

fn get_ref(page: &DirPage, off: usize) -> GrantRef {
    let mut b = [0u8; 4];
    if let Some(src) = page.get(off..off + 4) {
        b.copy_from_slice(src);
    }
    GrantRef::from_le_bytes(b)
}

fn check_dir_refs(dir_refs: &[GrantRef], data_refs: u32) -> Result<(), PageDirError> {
    let needed = directory_pages(data_refs);
    if dir_refs.len() != needed as usize {
        return Err(PageDirError::WrongDirPageCount {
            data_refs,
            needed,
            given: dir_refs.len(),
        });
    }
    if let Some(i) = dir_refs.iter().position(|r| *r == 0) {
        return Err(PageDirError::ZeroDirRef { index: count(i)? });
    }
    Ok(())
}

/// Frontend, buffer allocated by the frontend: directory pages listing
/// `data_refs`, page `i` to be granted as `dir_refs[i]`.
pub fn build_directory(
    dir_refs: &[GrantRef],
    data_refs: &[GrantRef],
) -> Result<Vec<Box<DirPage>>, PageDirError> {
    let n = count(data_refs.len())?;
    check_dir_refs(dir_refs, n)?;
    if let Some(i) = data_refs.iter().position(|r| *r == 0) {
        return Err(PageDirError::ZeroDataRef { index: count(i)? });
    }
    let mut pages = build_links(dir_refs, n)?;
    for (page, chunk) in pages.iter_mut().zip(data_refs.chunks(REFS_PER_PAGE)) {
        for (k, r) in chunk.iter().enumerate() {
            put_ref(page, REFS_OFFSET + k * 4, *r);
        }
    }
    Ok(pages)
}

/// Frontend, be-alloc: directory pages with only the chain filled in; the
/// backend writes the data references.
pub fn build_links(
    dir_refs: &[GrantRef],
    data_refs: u32,
) -> Result<Vec<Box<DirPage>>, PageDirError> {
    check_dir_refs(dir_refs, data_refs)?;
    let mut pages = Vec::with_capacity(dir_refs.len());
    for i in 0..dir_refs.len() {
        let mut page = Box::new([0u8; PAGE_SIZE]);
        let next = dir_refs.get(i + 1).copied().unwrap_or(0);
        put_ref(&mut page, NEXT_OFFSET, next);
        pages.push(page);
    }
    Ok(pages)
}

/// Bytes to write at [`REFS_OFFSET`] of a directory page to list `refs`
/// (backend, be-alloc). At most [`REFS_PER_PAGE`] are taken.
pub fn encode_refs(refs: &[GrantRef]) -> Vec<u8> {
    refs.iter()
        .take(REFS_PER_PAGE)
        .flat_map(|r| r.to_le_bytes())
        .collect()
}

/// Reads the data references of a directory page by page, validating the
/// chain. Backend side for frontend-allocated buffers ([`Self::feed`]) and
/// be-alloc ([`Self::feed_link`]); frontend side to read back be-alloc
/// references.
#[derive(Debug, Clone)]
pub struct DirectoryWalker {
    data_refs: u32,
    pages_needed: u32,
    pages_seen: u32,
    next: Option<GrantRef>,
    seen: HashSet<GrantRef>,
    refs: Vec<GrantRef>,
}

impl DirectoryWalker {
    /// `first` is the request's `gref_directory`; `data_refs` comes from
    /// the buffer size ([`grant_count`]).
    pub fn new(first: GrantRef, data_refs: u32) -> Result<DirectoryWalker, PageDirError> {
        if first == 0 {
            return Err(PageDirError::ZeroDirectoryRef);
        }
        Ok(DirectoryWalker {
            data_refs,
            pages_needed: directory_pages(data_refs),
            pages_seen: 0,
            next: Some(first),
            seen: HashSet::new(),
            refs: Vec::new(),
        })
    }

    /// The directory page to map and copy next; `None` once complete.
    pub fn next_page_ref(&self) -> Option<GrantRef> {
        self.next
    }

    /// Directory pages the buffer needs.
    pub fn pages_needed(&self) -> u32 {
        self.pages_needed
    }

    /// Validates the link of the page just read and returns the indices of
    /// the data references that belong on it.
    pub fn feed_link(&mut self, page: &DirPage) -> Result<Range<usize>, PageDirError> {
        let this = self.next.ok_or(PageDirError::AlreadyComplete)?;
        if !self.seen.insert(this) {
            return Err(PageDirError::Loop { dir_ref: this });
        }
        let index = self.pages_seen;
        self.pages_seen += 1;
        let next = get_ref(page, NEXT_OFFSET);
        let is_last = self.pages_seen == self.pages_needed;
        self.next = match (is_last, next) {
            (true, 0) => None,
            (true, next) => {
                return Err(PageDirError::ChainTooLong {
                    page: index,
                    next,
                    pages_needed: self.pages_needed,
                    data_refs: self.data_refs,
                })
            }
            (false, 0) => {
                return Err(PageDirError::ChainTooShort {
                    pages_seen: self.pages_seen,
                    pages_needed: self.pages_needed,
                    data_refs: self.data_refs,
                })
            }
            (false, next) if self.seen.contains(&next) => {
                return Err(PageDirError::Loop { dir_ref: next })
            }
            (false, next) => Some(next),
        };
        let start = (index as usize).saturating_mul(REFS_PER_PAGE);
        let end = start
            .saturating_add(REFS_PER_PAGE)
            .min(self.data_refs as usize);
        Ok(start.min(end)..end)
    }

    /// Validates the page just read and collects its data references.
    pub fn feed(&mut self, page: &DirPage) -> Result<(), PageDirError> {
        let range = self.feed_link(page)?;
        let first_index = range.start;
        for (k, index) in range.enumerate() {
            let r = get_ref(page, REFS_OFFSET + k * 4);
            if r == 0 {
                return Err(PageDirError::ZeroDataRef {
                    index: count(index)?,
                });
            }
            debug_assert_eq!(self.refs.len(), first_index + k);
            self.refs.push(r);
        }
        Ok(())
    }

    /// The data references, once every page was fed.
    pub fn finish(self) -> Result<Vec<GrantRef>, PageDirError> {
        if self.next.is_some() {
            return Err(PageDirError::Incomplete {
                pages_seen: self.pages_seen,
                pages_needed: self.pages_needed,
            });
        }
        Ok(self.refs)
    }
}

/// Parses a whole directory given a way to copy out the page behind a
/// directory reference (e.g. map it and copy it, or look it up in a test).
pub fn parse_directory<E>(
    first: GrantRef,
    data_refs: u32,
    mut copy_page: impl FnMut(GrantRef) -> Result<Box<DirPage>, E>,
) -> Result<Vec<GrantRef>, ParseError<E>> {
    let mut walker = DirectoryWalker::new(first, data_refs)?;
    while let Some(r) = walker.next_page_ref() {
        let page = copy_page(r).map_err(ParseError::Copy)?;
        walker.feed(&page)?;
    }
    Ok(walker.finish()?)
}

/// [`parse_directory`]'s error: the directory or the page copy failed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError<E> {
    #[error(transparent)]
    Directory(#[from] PageDirError),
    #[error("copying a directory page failed")]
    Copy(E),
}

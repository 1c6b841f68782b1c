//! Wire types for the protocols pvgate serves — Xen's `ring.h`, displif,
//! sndif and kbdif — plus page directories and xenstore keys. Pure code: no
//! I/O, no `unsafe`.
//!
//! # Modules
//!
//! | module | job |
//! |---|---|
//! | [`memory`] | [`SharedMemory`]: copy/atomic access to a shared page (implemented by the platform's grant mapping), and [`LocalMemory`] for tests |
//! | [`ring`] | ring.h request/response rings: [`BackRing`](ring::BackRing) (backend), [`FrontRing`](ring::FrontRing) (frontend), notify/final-check semantics, overflow rule |
//! | [`evtpage`] | one-way rings indexed modulo their length: the displif/sndif event page (63 slots) and the kbdif in/out rings |
//! | [`kbdpage`] | the kbdif shared page, typed, for each side |
//! | [`displif`] | displif requests, responses, events; pixel formats; dumb pitch |
//! | [`sndif`] | sndif requests, responses, events; PCM formats and their properties |
//! | [`kbdif`] | kbdif input events |
//! | [`pagedir`] | page directories: build (frontend), walk and validate (backend), grant counts |
//! | [`xenbus`] | XenBus states |
//! | [`keys`] | xenstore key names, strict value parsers, Linux-compatible (`sscanf`-like) readers |
//! | [`sndif_config`] | the sndif card → device → stream tree with snd-xen-front's inheritance |
//! | [`abi`] | `#[repr(C)]` mirrors of the C structs and the C-named constants; every offset above comes from them, and `tests/c_layout.rs` checks them against the installed headers |
//!
//! # Trust
//!
//! The peer domain is untrusted. Rings copy each slot out of shared memory
//! once into a fixed-size array and decode that copy; producer indices that
//! claim more entries than a ring holds are typed errors (close the
//! device); decoders check opcodes, zero cookies and grant references, zero
//! or overflowing sizes, and return errors that say which field of which
//! operation was wrong. Nothing here panics on input.

pub mod abi;
pub mod displif;
pub mod evtpage;
pub mod kbdif;
pub mod kbdpage;
pub mod keys;
pub mod memory;
pub mod pagedir;
pub mod ring;
pub mod sndif;
pub mod sndif_config;
mod wire;
pub mod xenbus;

/// A grant reference (v1 grant tables). 0 is never valid for a PV driver.
pub type GrantRef = u32;

/// The page size of every ring protocol here, whatever the OS page size.
pub const PAGE_SIZE: usize = abi::ring::XEN_PAGE_SIZE;

pub use memory::{LocalMemory, SharedMemory};

//! The simulated hypervisor: domain memory, v1 grant tables and event
//! channels, shared by several processes through a sim directory `DIR`.
//!
//! Processes attach as a domain: the gateway as dom0, guest simulators as
//! domU N, in any language. Nothing here trusts what another process wrote:
//! every entry, index and frame read from a file is checked.
//!
//! # Files
//!
//! Everything of domain `D` is under `DIR/domains/D/` (`D` in decimal):
//!
//! | file | what |
//! |---|---|
//! | `memory` | the domain's RAM. Frame `f` is bytes `[f*4096, (f+1)*4096)`. A sparse file; its size (a whole number of pages, at most 2^20) is set by whoever creates the domain's memory and never changes. |
//! | `memory-owners` | empty lock file. Whoever owns frame `f` holds a write lock on byte `f` (`fcntl` byte-range lock, OFD or POSIX). Allocate a frame by taking that lock without waiting; free it by unlocking. A guest with a single process may skip this and pick frames itself. |
//! | `grant-table` | the v1 grant table: exactly 32768 entries of Xen's `struct grant_entry_v1 { uint16_t flags; uint16_t domid; uint32_t frame; }`, little-endian, 8 bytes each (262144 bytes). Flags as in `xen/grant_table.h`: `GTF_permit_access` (1), `GTF_readonly` (1<<2), `GTF_reading` (1<<3), `GTF_writing` (1<<4). An entry is free when its `flags` are 0. Grefs 0..7 are never allocated (0 is "no grant"). |
//! | `grant-pins` | empty lock file: the pin counts. Every mapping of gref `g` holds a read lock on byte `2g`, and also on byte `2g+1` if it maps writable. |
//! | `evtchn.sock` | the event channel control socket (unix stream). Connecting to it is acting as domain `D`. Created by the hypervisor when the domain is added. |
//! | `ports/<name>.sock` | a port's notification socket (unix datagram), bound by the process that owns the port; `<name>` is its choice. |
//! | `ports/<port>.peer` | a symlink kept by the hypervisor while port `<port>` is bound: it points at the peer's notification socket (`../../<peer-domid>/ports/<name>.sock`). Absent while unbound. |
//!
//! Unix socket paths are limited to 107 bytes, so keep `DIR` short.
//!
//! # Granting (the granting domain)
//!
//! - Grant frame `f` to domain `R`: take `flock(LOCK_EX)` on `grant-table`
//!   (only the domain's own processes take it, to pick entries without
//!   colliding), find an entry `g >= 8` with `flags == 0`, write `frame = f`
//!   and `domid = R`, then (release ordering) `flags = GTF_permit_access`,
//!   plus `GTF_readonly` for a read-only grant. Unlock. Publish `g`.
//! - Revoke gref `g`: take a write lock on bytes `[2g, 2g+2)` of `grant-pins`
//!   without waiting. If that fails, a peer maps it: the grant stays (Xen
//!   refuses too). Otherwise set `flags = 0` and unlock.
//!
//! # Mapping (the mapping domain `M`, e.g. dom0 mapping guest `D`'s grants)
//!
//! Under an exclusive `flock` on `D/grant-pins`: for each gref, take the read
//! lock(s) above (failure: the granter is revoking it), then in one
//! compare-and-swap of the entry's first 32 bits check `GTF_permit_access`,
//! `domid == M`, not `GTF_readonly` if writable, and set `GTF_reading` (and
//! `GTF_writing`); then read `frame` and check it is inside `D/memory`. The
//! pages are `mmap`ed `MAP_SHARED` from `D/memory` into one contiguous range.
//! On unmap: `munmap`, then under the same `flock` drop the locks and clear
//! `GTF_reading`/`GTF_writing` where no other mapping still holds the bytes.
//! The kernel drops the locks of a process that dies, so a crashed mapper
//! never keeps a grant pinned (`mapper.rs` explains why this is race-free).
//!
//! # Event channels
//!
//! Ports are per domain, numbered from 1. A port is owned by one connection to
//! the domain's `evtchn.sock`: it is closed when that connection closes (by
//! the owner, or because its process died). Protocol: the client sends ONE
//! line and reads ONE line (ASCII, `\n`-terminated, at most 256 bytes):
//!
//! - `ALLOC <remote-domid> <socket-name>` → `OK <port>`: a new port, unbound,
//!   that only `<remote-domid>` may bind.
//! - `BIND <remote-domid> <remote-port> <socket-name>` → `OK <local-port>`:
//!   bind to a port of `<remote-domid>` that exists, is unbound and was
//!   allocated for us. Before replying, the hypervisor points both ports'
//!   `.peer` links at each other's sockets.
//! - any failure → `ERR <reason>`, and the connection is closed.
//!
//! `<socket-name>` is a file name (1..=64 of `[A-Za-z0-9._-]`, ending `.sock`,
//! not starting with `.`) of a datagram socket the client has already bound in
//! its own `ports/` directory. After `OK` the client keeps the connection open
//! and sends nothing more (anything sent closes the port).
//!
//! Closing a bound port returns its peer to unbound, still for the same
//! remote domain, so a restarted backend can bind the same remote port again
//! (Xen's `evtchn_close`). Both `.peer` links are removed.
//!
//! Notify: send a datagram (any content, e.g. one byte) from any socket to
//! `DIR/domains/<own-domid>/ports/<own-port>.peer`, without blocking.
//! `ENOENT`/`ECONNREFUSED` mean the port is unbound or the peer is gone;
//! `EAGAIN` means the peer already has notifications queued (they coalesce).
//! Wait: receive one datagram on the port's own socket, then drain whatever
//! else is queued; the whole batch is one event, like Xen's pending bit.

//!
//! # Limits (what the sim does not protect against)
//!
//! The sim has no isolation between processes: any process can open any
//! domain's files. It validates everything it *reads* (entries, frames, sizes,
//! control lines), caps refs per mapping ([`MAX_REFS_PER_MAPPING`]), pages
//! mapped per process ([`MAX_MAPPED_PAGES_PER_PROCESS`]) and ports per domain
//! ([`MAX_PORTS_PER_DOMAIN`]), and never blocks on another process's lock for
//! more than 2 s. But a process that shrinks a domain's `memory` or
//! `grant-table` file while someone maps it makes that mapper's next access
//! fault (SIGBUS); real Xen has no such hole, and our guests never resize.

mod control;
mod evtchn_client;
mod evtchn_service;
mod grant_table;
mod layout;
mod mapper;
mod memory;
mod sys;

pub use control::{Reply as ControlReply, Request as ControlRequest};
pub use evtchn_client::{SimEventChannel, SimEventChannels};
pub use evtchn_service::{SimHypervisor, MAX_PORTS_PER_DOMAIN};
pub use grant_table::{
    GrantEntry, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_TYPE_MASK, GTF_WRITING,
};
pub use layout::{
    DomainPaths, FIRST_ALLOCATABLE_GREF, GRANT_ENTRIES, GRANT_ENTRY_SIZE, GRANT_TABLE_BYTES,
    MAX_MEMORY_PAGES,
};
pub use mapper::{
    mapped_pages, SimGrantMapper, DEFAULT_DOMAIN_PAGES, MAX_MAPPED_PAGES_PER_PROCESS,
    MAX_REFS_PER_MAPPING,
};
pub use memory::{Frame, SimDomainMemory};

/// Bytes per page in the simulated machine (and on x86 Xen).
pub const PAGE_SIZE: usize = sys::PAGE_SIZE;

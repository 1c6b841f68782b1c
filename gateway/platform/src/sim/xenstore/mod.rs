//! The simulated xenstored: the real xenstore wire protocol
//! (`xen/io/xs_wire.h`) on unix sockets, with Xen's permission rules, so that
//! the gateway (through `xenstore-rs`) and guests written in any language talk
//! to it exactly as they would to C xenstored.
//!
//! # Socket layout and identity
//!
//! Under the sim directory `DIR`:
//! - `DIR/xenstored.sock` — every connection here is **dom0** (privileged),
//!   like xenstored's own socket. The gateway and the toolstack (the guest
//!   simulator in its toolstack role) use it; point `XENSTORED_PATH` at it.
//! - `DIR/domains/<domid>/xenstore.sock` — exists while domain `<domid>` is
//!   introduced; every connection here is **that guest** (unprivileged), as a
//!   guest's xenstore ring would be. A guest may hold at most
//!   [`Limits::max_connections_per_domain`] connections at once.
//!
//! A guest comes to exist when dom0 sends `XS_INTRODUCE` with payload
//! `"<domid>\0<mfn>\0<evtchn>\0"` (mfn and evtchn are recorded and passed to
//! the [`DomainObserver`], nothing else). The server then, before it answers:
//! creates the guest's socket; creates, unless the toolstack already did,
//! the nodes `libxl__domain_make` creates (in the sim INTRODUCE does it so
//! that a bare introduce yields a usable guest): `/local/domain/<domid>`,
//! `.../device` and `.../control` with perms `n0 r<domid>` (dom0 owns, the
//! guest reads) and `.../data`, `drivers`, `feature`, `attr`, `error` with
//! `n<domid>` (the guest owns); fires `@introduceDomain`; and calls
//! [`DomainObserver::on_domain_introduced`].
//! `XS_RELEASE` (`"<domid>\0"`, dom0 only) removes the socket, closes the
//! guest's connections, fires `@releaseDomain` and calls
//! [`DomainObserver::on_domain_released`]; the guest's nodes stay (libxl
//! removes them on domain destruction).
//!
//! At start the store holds `/`, `/local`, `/local/domain` and
//! `/local/domain/0`, all `n0`.
//!
//! # Rules (as C xenstored)
//! - Permissions, node creation and ownership: see [`ops`].
//! - Relative paths are relative to `/local/domain/<own domid>`.
//! - Watches fire for changes at or below the watched path; a removal fires
//!   the removed path for watches at or above it, and each removed descendant
//!   for watches on exactly that descendant. Events go only to connections
//!   that may read the node (or its parent). A new watch fires once at once.
//!   `@introduceDomain`/`@releaseDomain` fire for connections that may read
//!   their perms (dom0 only unless dom0 sets them).
//! - Transactions are optimistic: see [`tree`].
//! - A message whose header announces more than 4096 payload bytes closes
//!   the connection; any other malformed or unknown request gets `XS_ERROR`
//!   `EINVAL` (or `ENOSYS`/`EACCES` for CONTROL, RESUME, SET_TARGET).
//! - Quotas for guests ([`Limits`]); dom0 is trusted as in xenstored.
//!   Exceeding one answers `ENOSPC` (nodes, transactions, entries), `E2BIG`
//!   (watches); a guest that does not read its socket while events pile up
//!   beyond [`Limits::max_pending_messages`] is disconnected.

pub mod ops;
pub mod path;
mod server;
mod state;
#[cfg(test)]
mod state_tests;
pub mod tree;

pub use server::{dom0_socket, guest_socket, serve, XenstoreServer};
pub use state::{ConnId, Effects, XenstoreState};

use std::sync::Arc;

use crate::DomId;

/// Per-guest resource limits (C xenstored's quotas, same defaults where it
/// has them).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Nodes a guest may own (`quota-nb-entry-per-domain`).
    pub max_nodes_per_domain: usize,
    /// Watches per guest connection (`quota-nb-watch-per-domain`).
    pub max_watches_per_connection: usize,
    /// Open transactions per guest connection (`quota-max-transaction`).
    pub max_transactions_per_connection: usize,
    /// Nodes one guest transaction may touch.
    pub max_transaction_entries: usize,
    /// Bytes in one value written by a guest.
    pub max_value_len: usize,
    /// Entries in a perm list set by a guest (`quota-nb-perms-per-node`).
    pub max_perms_per_node: usize,
    /// Simultaneous socket connections of one guest.
    pub max_connections_per_domain: usize,
    /// Replies and events queued for one connection that does not read.
    pub max_pending_messages: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_nodes_per_domain: 1000,
            max_watches_per_connection: 128,
            max_transactions_per_connection: 10,
            max_transaction_entries: 2048,
            max_value_len: crate::xs_client::wire::PAYLOAD_MAX,
            max_perms_per_node: 5,
            max_connections_per_domain: 8,
            max_pending_messages: 1024,
        }
    }
}

/// A domain appearing or going away, for the rest of the simulated hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainEvent {
    Introduced { domid: DomId, mfn: u64, evtchn: u32 },
    Released { domid: DomId },
}

/// Told of introduced and released domains (the event-channel and grant
/// services use it). Called with the server's lock held, before the
/// toolstack's request is answered: must be quick and must not call back
/// into the server.
pub trait DomainObserver: Send + Sync {
    fn on_domain_introduced(&self, domid: DomId, mfn: u64, evtchn: u32) {
        let _ = (domid, mfn, evtchn);
    }
    fn on_domain_released(&self, domid: DomId) {
        let _ = domid;
    }
}

/// Options for [`XenstoreServer::start`].
#[derive(Clone, Default)]
pub struct XenstoreConfig {
    pub limits: Limits,
    pub observer: Option<Arc<dyn DomainObserver>>,
}

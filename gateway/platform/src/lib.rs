//! The platform seam: the only code in pvgate that touches Xen.
//!
//! Three services, each a trait so that the backends run unchanged on real Xen
//! and on the simulator:
//! - [`Store`]: xenstore (read, write, mkdir, rm, directory, permissions,
//!   watches as a stream, transactions).
//! - [`GrantMapper`]: map a guest's grant references as one contiguous
//!   [`Mapping`], and share our own pages to a guest (be-alloc).
//! - [`EventChannels`]: bind interdomain ports, notify, wait asynchronously.
//!
//! Implementations: [`sim`] (the simulated hypervisor used by tests and the
//! demo) and [`xen`] (real Xen; see that module for what it needs).

pub mod mapping;
pub mod sim;
pub mod store;
pub mod xen;
pub mod xs_client;

use std::sync::Arc;

pub use mapping::{Mapping, MappingError};
pub use store::{Perm, PermAccess, Store, StoreError, StoreOps, StoreTransaction, WatchStream};

/// A Xen domain id. 0 is dom0, where the gateway normally runs.
pub type DomId = u16;
/// A grant reference in a domain's v1 grant table. 0 means "none".
pub type GrantRef = u32;
/// An event channel port, local to one domain.
pub type Port = u32;

/// Everything the backends need from the hypervisor, for one domain (ours).
#[derive(Clone)]
pub struct Platform {
    /// The domain this process runs as (0 for the gateway in dom0).
    pub domid: DomId,
    pub store: Arc<dyn Store>,
    pub grants: Arc<dyn GrantMapper>,
    pub events: Arc<dyn EventChannels>,
}

/// Errors from grant mapping and sharing.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("grant ref {gref} of domain {domid} is not a valid grant to us: {reason}")]
    Invalid {
        domid: DomId,
        gref: GrantRef,
        reason: String,
    },
    #[error("too many grant refs in one mapping: {count} (limit {limit})")]
    TooMany { count: usize, limit: usize },
    #[error("grant ref {gref} is still mapped by domain {by}; cannot revoke it")]
    InUse { gref: GrantRef, by: DomId },
    #[error("grant table error: {0}")]
    Io(#[from] std::io::Error),
}

/// Maps other domains' granted pages, and shares our own.
pub trait GrantMapper: Send + Sync {
    /// Map `refs` (all granted by `domid`, in order) as one contiguous mapping,
    /// as gntdev does: page i of the mapping is the page behind `refs[i]`.
    /// Read-only grants can only be mapped with `writable == false`.
    /// The pages are unmapped when the returned [`Mapping`] is dropped.
    fn map(&self, domid: DomId, refs: &[GrantRef], writable: bool) -> Result<Mapping, GrantError>;

    /// Allocate `pages` zeroed local pages and grant each of them to `domid`
    /// (for be-alloc buffers). The grants are revoked, and the pages freed,
    /// when the returned [`SharedPages`] is dropped (Xen keeps a page alive
    /// while the peer still maps it).
    fn share(&self, domid: DomId, pages: usize, writable: bool) -> Result<SharedPages, GrantError>;
}

/// Local pages granted to another domain.
pub struct SharedPages {
    /// Our view of the pages, contiguous.
    pub mapping: Mapping,
    /// One grant reference per page, in order.
    pub refs: Vec<GrantRef>,
}

/// Errors from event channel operations.
#[derive(Debug, thiserror::Error)]
pub enum EventChannelError {
    #[error("cannot bind to port {remote_port} of domain {domid}: {reason}")]
    Bind {
        domid: DomId,
        remote_port: Port,
        reason: String,
    },
    #[error("event channel port {0} is closed")]
    Closed(Port),
    #[error("event channel error: {0}")]
    Io(#[from] std::io::Error),
}

/// Event channels of the local domain.
#[async_trait::async_trait]
pub trait EventChannels: Send + Sync {
    /// Bind to `remote_port` of domain `domid` (which the peer allocated as
    /// unbound for us) and return our local end.
    async fn bind_interdomain(
        &self,
        domid: DomId,
        remote_port: Port,
    ) -> Result<Box<dyn EventChannel>, EventChannelError>;

    /// Allocate a port that `remote` may bind to (what a frontend does before
    /// publishing `event-channel` in xenstore).
    async fn alloc_unbound(
        &self,
        remote: DomId,
    ) -> Result<Box<dyn EventChannel>, EventChannelError>;
}

/// One bound (or unbound-but-allocated) local port. Closed on drop.
#[async_trait::async_trait]
pub trait EventChannel: Send + Sync {
    fn local_port(&self) -> Port;
    /// Signal the peer. Cheap and non-blocking; a notification to a peer that
    /// has gone away is dropped (as on Xen) but reported as `Closed`.
    fn notify(&self) -> Result<(), EventChannelError>;
    /// Wait until the peer has notified us at least once since the last call.
    /// Notifications coalesce, exactly as Xen's pending bit does.
    async fn wait(&self) -> Result<(), EventChannelError>;
}

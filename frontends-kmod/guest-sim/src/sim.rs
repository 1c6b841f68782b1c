//! Attaching to the simulated Xen in a sim directory: as dom0's toolstack
//! (`DIR/xenstored.sock`) and as the guest (`DIR/domains/<N>/xenstore.sock`,
//! its memory, grant table and event channels).

use std::path::Path;
use std::sync::Arc;

use pvgate_platform::sim::hypervisor::SimDomainMemory;
use pvgate_platform::sim::xenstore::dom0_socket;
use pvgate_platform::xs_client::XsStore;
use pvgate_platform::{GrantRef, Platform, StoreError};

use crate::input::FrameLookup;
use crate::toolstack::DomainRegistry;
use crate::DomId;

/// A guest's view of the sim, plus its own memory (for page frame numbers).
pub struct GuestPlatform {
    pub platform: Platform,
    pub memory: SimDomainMemory,
}

impl GuestPlatform {
    /// `page-ref` values: the frame behind one of our grants.
    pub fn frame_lookup(&self) -> FrameLookup {
        let memory = self.memory.clone();
        Arc::new(move |gref: GrantRef| memory.grant_entry(gref).map(|e| u64::from(e.frame)))
    }
}

/// Connect as domain `domid` (which must have been introduced).
pub async fn connect_guest(dir: &Path, domid: DomId) -> anyhow::Result<GuestPlatform> {
    let platform = pvgate_platform::sim::connect(dir, domid).await?;
    let memory = SimDomainMemory::open(dir, domid).map_err(|e| {
        anyhow::anyhow!(
            "guest {domid}: cannot open its memory in {}: {e}",
            dir.display()
        )
    })?;
    Ok(GuestPlatform { platform, memory })
}

/// Connect as dom0's toolstack.
pub async fn connect_toolstack(dir: &Path) -> anyhow::Result<XsStore> {
    let socket = dom0_socket(dir);
    XsStore::connect(Some(&socket)).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to dom0 xenstore at {}: {e}",
            socket.display()
        )
    })
}

/// XS_INTRODUCE / XS_RELEASE through the toolstack's connection.
pub struct XsRegistry<'a>(pub &'a XsStore);

#[async_trait::async_trait]
impl DomainRegistry for XsRegistry<'_> {
    async fn introduce(&self, domid: DomId) -> Result<(), StoreError> {
        // The store page frame and its event channel mean nothing to the
        // sim (guests reach xenstore through a socket).
        self.0.introduce_domain(domid, 0, 0).await
    }

    async fn release(&self, domid: DomId) -> Result<(), StoreError> {
        self.0.release_domain(domid).await
    }
}

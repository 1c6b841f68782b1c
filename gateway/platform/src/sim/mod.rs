//! The simulated hypervisor: what stands in for Xen in tests and the demo.
//!
//! [`SimXen`] runs the two services of a sim directory: the simulated
//! xenstored ([`xenstore`]) and the event channel service ([`hypervisor`]),
//! wired so that introducing a domain in xenstore creates its event
//! channels. Memory and grant tables are plain files that every attached
//! process maps itself (see [`hypervisor`]). [`connect`] attaches to a sim
//! directory as a domain and returns the same [`Platform`] the backends use
//! on real Xen. The on-disk and socket protocols are described in
//! `gateway/platform/SIM-PROTOCOL.md`.

pub mod hypervisor;
pub mod xenstore;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::xs_client::XsStore;
use crate::{DomId, Platform};
use hypervisor::{SimEventChannels, SimGrantMapper, SimHypervisor};
use xenstore::{DomainObserver, XenstoreConfig, XenstoreServer};

/// A running simulated Xen in one directory.
pub struct SimXen {
    dir: PathBuf,
    xenstore: XenstoreServer,
    hypervisor: SimHypervisor,
}

/// Creates and destroys a domain's event channels as xenstore introduces and
/// releases it, as Xen's domain creation does for both.
struct CreateEventChannels(SimHypervisor);

impl DomainObserver for CreateEventChannels {
    fn on_domain_introduced(&self, domid: DomId, _mfn: u64, _evtchn: u32) {
        if let Err(e) = self.0.add_domain(domid) {
            tracing::error!(domid, error = %e, "sim: cannot create the domain's event channels");
        }
    }

    fn on_domain_released(&self, domid: DomId) {
        self.0.remove_domain(domid);
    }
}

impl SimXen {
    /// Start a simulated Xen in `dir` (created if missing). Must be called
    /// within a tokio runtime. Unix socket paths are limited to 107 bytes, so
    /// keep `dir` short.
    pub async fn start(dir: &Path) -> io::Result<SimXen> {
        std::fs::create_dir_all(dir).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))
        })?;
        let hypervisor = SimHypervisor::start(dir)?;
        let config = XenstoreConfig {
            observer: Some(Arc::new(CreateEventChannels(hypervisor.clone()))),
            ..XenstoreConfig::default()
        };
        let xenstore = XenstoreServer::start(dir, config).await?;
        Ok(SimXen {
            dir: dir.to_path_buf(),
            xenstore,
            hypervisor,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// dom0's xenstore socket (what `XENSTORED_PATH` names for the gateway).
    pub fn dom0_xenstore_socket(&self) -> PathBuf {
        self.xenstore.dom0_socket()
    }

    /// Domains introduced so far (dom0 not included).
    pub fn domains(&self) -> Vec<DomId> {
        self.xenstore.introduced_domains()
    }

    /// Stop both services: connections close, sockets go away.
    pub async fn stop(self) {
        self.xenstore.stop();
        drop(self.hypervisor);
    }
}

/// Attach to the simulated Xen in `dir` as domain `domid` (0 for the gateway;
/// a guest must have been introduced by the toolstack first).
pub async fn connect(dir: &Path, domid: DomId) -> io::Result<Platform> {
    let socket = if domid == 0 {
        xenstore::dom0_socket(dir)
    } else {
        xenstore::guest_socket(dir, domid)
    };
    let store = XsStore::connect(Some(&socket)).await.map_err(|e| {
        io::Error::other(format!(
            "domain {domid}: cannot reach the simulated xenstore at {}: {e}",
            socket.display()
        ))
    })?;
    let grants = SimGrantMapper::open(dir, domid).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "domain {domid}: cannot open its memory in {}: {e}",
                dir.display()
            ),
        )
    })?;
    let events = SimEventChannels::connect(dir, domid).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "domain {domid}: cannot reach its event channel service in {}: {e}",
                dir.display()
            ),
        )
    })?;
    Ok(Platform {
        domid,
        store: Arc::new(store),
        grants: Arc::new(grants),
        events: Arc::new(events),
    })
}

//! The real-Xen platform.
//!
//! # What it needs from the machine
//! - **A Xen dom0** (or a driver domain that the toolstack names as the
//!   backend): `/sys/hypervisor/type` reads `xen`. Kernel pages of 4 KiB.
//! - **Privileges**: root (or equivalent access to the devices below). In a
//!   container: the devices passed through, and no seccomp/LSM rule that
//!   blocks `ioctl`/`mmap` on them.
//! - **xenstore**: the xenstored socket `/run/xenstored/socket` (mount
//!   `/run/xenstored` into a container), or the xenbus device
//!   `/dev/xen/xenbus`. `$XENSTORED_PATH` overrides the choice (a socket, or
//!   exactly `/dev/xen/xenbus`).
//! - **Devices**: `/dev/xen/gntdev` (kernel module `xen-gntdev`: mapping
//!   guests' grants) and `/dev/xen/evtchn` (`xen-evtchn`: event channels),
//!   both required; `/dev/xen/gntalloc` (`xen-gntalloc`) only for displays
//!   with `be-alloc=1`. gntalloc shares at most
//!   `/sys/module/xen_gntalloc/parameters/limit` pages at once (default
//!   1024, i.e. 4 MiB: raise it for be-alloc framebuffers).
//! - **Libraries**, loaded at run time (the binary does not link them):
//!   `libxengnttab.so.1` (Debian: `libxengnttab1`) and `libxenevtchn.so.1`
//!   (`libxenevtchn1`). With no logger passed, these libraries print their
//!   own errors on stderr (e.g. a guest's bad grant ref), besides ours.
//!
//! Missing any required piece, [`connect`] fails with a report naming
//! everything missing and what to do, and points to the simulator.

pub mod dispatch;
pub mod evtchn;
pub mod ffi;
pub mod grants;
pub mod probe;
pub mod store;

use std::path::Path;
use std::sync::Arc;

pub use evtchn::XenEventChannels;
pub use grants::XenGrantMapper;
pub use probe::{probe, Requirement, Unavailable};

use crate::Platform;

/// Open the xen platform: load the libraries, open gntdev, gntalloc and
/// evtchn, connect to xenstore and learn our domain id. Must run inside a
/// tokio runtime (the event channel reader and the store are tasks).
pub async fn connect() -> Result<Platform, Unavailable> {
    let fail =
        |failure: String| probe::unavailable_report(&probe::probe(Path::new("/")), Some(&failure));
    let reqs = probe::probe(Path::new("/"));
    // The libraries and devices would fail one at a time below; a machine
    // plainly without Xen gets the whole list at once instead.
    // (Both checks: a container may lack /sys/hypervisor but have the
    // devices, and then trying is the better test.)
    let lacks = |what: &str| reqs.iter().any(|r| !r.present && r.what == what);
    if lacks("a Xen hypervisor") && lacks("the grant device") {
        return Err(probe::unavailable_report(&reqs, None));
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page != grants::XEN_PAGE_SIZE as libc::c_long {
        return Err(fail(format!(
            "this kernel's pages are {page} bytes; pvgate maps grants as {}-byte pages",
            grants::XEN_PAGE_SIZE
        )));
    }
    let gnttab_fns = ffi::GnttabFns::load().map_err(|e| fail(e.to_string()))?;
    let evtchn_fns = ffi::EvtchnFns::load().map_err(|e| fail(e.to_string()))?;
    let grants = XenGrantMapper::open(Arc::new(gnttab_fns)).map_err(|e| fail(e.to_string()))?;
    let events = XenEventChannels::open(evtchn_fns).map_err(|e| fail(e.to_string()))?;
    let store = store::open().await.map_err(fail)?;
    let domid = store::own_domid(&store).await.map_err(fail)?;
    tracing::info!(domid, xenstore = store.target(), "xen platform ready");
    Ok(Platform {
        domid,
        store: Arc::new(store),
        grants: Arc::new(grants),
        events: Arc::new(events),
    })
}

#[cfg(test)]
mod tests {
    /// This machine has no Xen: connect must say so (naming the devices and
    /// pointing to the simulator), not panic or hang.
    #[tokio::test]
    async fn connect_without_xen_reports_what_is_missing() {
        if std::path::Path::new("/dev/xen/gntdev").exists() {
            return; // a real dom0
        }
        let msg = super::connect().await.err().unwrap().to_string();
        assert!(msg.contains("cannot start the xen platform"), "{msg}");
        assert!(msg.contains("/dev/xen/gntdev"), "{msg}");
        assert!(msg.contains("pvgate demo"), "{msg}");
    }

    /// With the library installed but no /dev/xen/evtchn, opening fails with
    /// the device's name instead of crashing.
    #[tokio::test]
    async fn event_channels_without_the_device_name_it() {
        if std::path::Path::new("/dev/xen/evtchn").exists() {
            return;
        }
        let Ok(fns) = super::ffi::EvtchnFns::load() else {
            eprintln!("libxenevtchn.so.1 absent; skipping (apt-get install libxenevtchn1)");
            return;
        };
        let err = super::XenEventChannels::open(fns).err().unwrap();
        assert!(err.to_string().contains("/dev/xen/evtchn"), "{err}");
    }
}

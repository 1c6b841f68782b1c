//! [`EventChannels`] on real Xen, through libxenevtchn (/dev/xen/evtchn).
//!
//! One handle serves every port. Its fd is registered with tokio; a reader
//! task takes pending ports from it and hands them to the [`PortTable`]
//! (which wakes the port's waiter, coalescing) and unmasks them. The header
//! warns that `xenevtchn_pending` may block even on a non-blocking fd, so
//! the reader polls the fd (timeout 0) before every call: only one task ever
//! reads, so "readable" cannot go stale in between.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::dispatch::{PortSignal, PortTable};
use super::ffi::{EvtchnFns, EvtchnHandle};
use super::grants::DOMID_FIRST_RESERVED;
use crate::{DomId, EventChannel, EventChannelError, EventChannels, Port};

/// Pending ports handled before the reader yields to other tasks: a guest
/// notifying in a loop must not monopolise a runtime thread.
const BATCH: usize = 256;
/// Ports are below 2^17 (the FIFO ABI's maximum; 2-level has fewer).
const MAX_PORT: Port = 1 << 17;

/// An open `xenevtchn_handle`. Its calls are ioctls, reads and writes on
/// one fd; the kernel serialises them, so any thread may call.
struct Evtchn {
    fns: EvtchnFns,
    handle: NonNull<EvtchnHandle>,
}

// SAFETY: see the type's comment; closed only on drop.
unsafe impl Send for Evtchn {}
unsafe impl Sync for Evtchn {}

impl Drop for Evtchn {
    fn drop(&mut self) {
        // SAFETY: our handle, closed once, after the reader and every port
        // (they hold Arcs to us).
        unsafe { (self.fns.xenevtchn_close)(self.handle.as_ptr()) };
    }
}

/// `-1` and errno, the library's failure convention, as a Result.
fn port_or_errno(rc: i32) -> io::Result<Port> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as Port)
    }
}

impl Evtchn {
    fn h(&self) -> *mut EvtchnHandle {
        self.handle.as_ptr()
    }
    fn fd(&self) -> RawFd {
        // SAFETY: a valid open handle.
        unsafe { (self.fns.xenevtchn_fd)(self.h()) }
    }
    fn pending(&self) -> io::Result<Port> {
        // SAFETY: a valid open handle; only the reader task calls this.
        port_or_errno(unsafe { (self.fns.xenevtchn_pending)(self.h()) })
    }
    fn unmask(&self, port: Port) -> io::Result<()> {
        // SAFETY: a valid open handle.
        port_or_errno(unsafe { (self.fns.xenevtchn_unmask)(self.h(), port) }).map(drop)
    }
    fn notify(&self, port: Port) -> io::Result<()> {
        // SAFETY: a valid open handle.
        port_or_errno(unsafe { (self.fns.xenevtchn_notify)(self.h(), port) }).map(drop)
    }
    fn unbind(&self, port: Port) -> io::Result<()> {
        // SAFETY: a valid open handle.
        port_or_errno(unsafe { (self.fns.xenevtchn_unbind)(self.h(), port) }).map(drop)
    }
}

/// The handle's fd for tokio's reactor (not owned: the library closes it).
struct EvtchnFd(RawFd);

impl AsRawFd for EvtchnFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Whether `fd` has something to read right now.
fn readable_now(fd: RawFd) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, no wait.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        if n >= 0 {
            if pfd.revents & libc::POLLNVAL != 0 {
                return Err(io::Error::other("the evtchn fd is not open"));
            }
            // POLLERR (the kernel's pending ring overflowed): let
            // xenevtchn_pending fail with the errno that says so.
            return Ok(n > 0 && pfd.revents & (libc::POLLIN | libc::POLLERR) != 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Take pending ports from the kernel for as long as the handle lives.
/// The reader's resources. Fields drop in order: the fd leaves tokio's
/// reactor before the handle (and with it the fd) can close.
struct ReaderIo {
    async_fd: AsyncFd<EvtchnFd>,
    evtchn: Arc<Evtchn>,
}

impl ReaderIo {
    /// Register the handle's fd with tokio (inside a runtime). Fails on an
    /// fd that cannot be polled: not the evtchn device.
    fn new(evtchn: Arc<Evtchn>) -> io::Result<ReaderIo> {
        let fd = evtchn.fd();
        // SAFETY: the fd stays open (the library's, closed only when
        // `evtchn` drops, after `async_fd`) and is never replaced while
        // registered.
        let registered =
            unsafe { AsyncFd::register_with_interest(EvtchnFd(fd), Interest::READABLE) };
        let async_fd = registered.map_err(|e| {
            let e = io::Error::from(e);
            io::Error::new(
                e.kind(),
                format!("/dev/xen/evtchn cannot be polled ({e}): is it really Xen's event channel device?"),
            )
        })?;
        Ok(ReaderIo { async_fd, evtchn })
    }
}

/// Take pending ports from the kernel for as long as the handle lives.
async fn read_pending(io: ReaderIo, table: Arc<PortTable>) {
    let ReaderIo { async_fd, evtchn } = &io;
    let fd = evtchn.fd();
    let failure = loop {
        let mut guard = match async_fd.readable().await {
            Ok(g) => g,
            Err(e) => break format!("waiting on the evtchn fd: {e}"),
        };
        let mut handled = 0;
        let outcome: Result<(), String> = loop {
            if handled == BATCH {
                // Readiness kept: we come back after other tasks ran.
                break Ok(());
            }
            handled += 1;
            match readable_now(fd) {
                Ok(true) => {}
                Ok(false) => {
                    guard.clear_ready();
                    break Ok(());
                }
                Err(e) => break Err(format!("polling the evtchn fd: {e}")),
            }
            match evtchn.pending() {
                Ok(port) => {
                    if table.deliver(port) {
                        if let Err(e) = evtchn.unmask(port) {
                            // The port was unbound under us: harmless.
                            tracing::debug!(port, error = %e, "xenevtchn_unmask failed");
                        }
                    } else {
                        tracing::debug!(port, "event on a port we do not hold; ignored");
                    }
                }
                // A signal: the port is still queued, ask again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    break Ok(());
                }
                // EFBIG: the kernel's ring of pending ports overflowed and
                // events were lost; it stays so until the handle is reset.
                Err(e) => break Err(format!("xenevtchn_pending failed: {e}")),
            }
        };
        drop(guard);
        if let Err(reason) = outcome {
            break reason;
        }
        if handled == BATCH {
            tokio::task::yield_now().await;
        }
    };
    tracing::error!("event channels stopped: {failure}");
    table.fail(&failure);
}

/// Aborts the reader task when the last user of the handle goes.
struct Reader(tokio::task::JoinHandle<()>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Shared {
    evtchn: Arc<Evtchn>,
    table: Arc<PortTable>,
    _reader: Reader,
}

/// [`EventChannels`] over one libxenevtchn handle.
#[derive(Clone)]
pub struct XenEventChannels {
    shared: Arc<Shared>,
}

impl XenEventChannels {
    /// Open /dev/xen/evtchn and start the reader. Must run inside a tokio
    /// runtime.
    pub fn open(fns: EvtchnFns) -> io::Result<XenEventChannels> {
        // SAFETY: NULL logger and no flags (O_CLOEXEC) as the header documents.
        let handle = unsafe { (fns.xenevtchn_open)(std::ptr::null_mut(), 0) };
        let Some(handle) = NonNull::new(handle) else {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "xenevtchn_open (/dev/xen/evtchn) failed: {e}; load xen-evtchn in dom0, run as root, and in a container pass /dev/xen/evtchn"
                ),
            ));
        };
        let evtchn = Arc::new(Evtchn { fns, handle });
        let table = Arc::new(PortTable::new());
        let io = ReaderIo::new(evtchn.clone())?;
        let reader = tokio::spawn(read_pending(io, table.clone()));
        Ok(XenEventChannels {
            shared: Arc::new(Shared {
                evtchn,
                table,
                _reader: Reader(reader),
            }),
        })
    }

    fn channel(&self, signal: Arc<PortSignal>, remote: DomId) -> Box<dyn EventChannel> {
        Box::new(XenEventChannel {
            shared: self.shared.clone(),
            signal,
            remote,
        })
    }
}

#[async_trait::async_trait]
impl EventChannels for XenEventChannels {
    async fn bind_interdomain(
        &self,
        domid: DomId,
        remote_port: Port,
    ) -> Result<Box<dyn EventChannel>, EventChannelError> {
        let refuse = |reason: String| EventChannelError::Bind {
            domid,
            remote_port,
            reason,
        };
        // Both come from the guest's xenstore entries.
        if domid >= DOMID_FIRST_RESERVED {
            return Err(refuse(format!("domain id {domid} is reserved")));
        }
        if remote_port == 0 || remote_port >= MAX_PORT {
            return Err(refuse(format!(
                "port {remote_port} cannot be an interdomain port (1..{MAX_PORT})"
            )));
        }
        let evtchn = &self.shared.evtchn;
        let signal = self.shared.table.register_with(|| {
            // SAFETY: a valid open handle.
            let rc = unsafe {
                (evtchn.fns.xenevtchn_bind_interdomain)(evtchn.h(), u32::from(domid), remote_port)
            };
            port_or_errno(rc).map_err(|e| {
                refuse(format!(
                    "xenevtchn_bind_interdomain: {e} (is the port unbound and allocated for us?)"
                ))
            })
        })?;
        Ok(self.channel(signal, domid))
    }

    async fn alloc_unbound(
        &self,
        remote: DomId,
    ) -> Result<Box<dyn EventChannel>, EventChannelError> {
        if remote >= DOMID_FIRST_RESERVED {
            return Err(EventChannelError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot allocate a port for domain {remote}: the id is reserved"),
            )));
        }
        let evtchn = &self.shared.evtchn;
        let signal = self.shared.table.register_with(|| {
            // SAFETY: a valid open handle.
            let rc =
                unsafe { (evtchn.fns.xenevtchn_bind_unbound_port)(evtchn.h(), u32::from(remote)) };
            port_or_errno(rc).map_err(|e| {
                EventChannelError::Io(io::Error::new(
                    e.kind(),
                    format!("cannot allocate a port for domain {remote}: xenevtchn_bind_unbound_port: {e}"),
                ))
            })
        })?;
        Ok(self.channel(signal, remote))
    }
}

/// One local port. Unregistered, then unbound, on drop.
pub struct XenEventChannel {
    shared: Arc<Shared>,
    signal: Arc<PortSignal>,
    remote: DomId,
}

#[async_trait::async_trait]
impl EventChannel for XenEventChannel {
    fn local_port(&self) -> Port {
        self.signal.port()
    }

    fn notify(&self) -> Result<(), EventChannelError> {
        let port = self.signal.port();
        match self.shared.evtchn.notify(port) {
            Ok(()) => Ok(()),
            // The kernel no longer has this port for our handle. (A peer that
            // closed its end is not an error on Xen: the send is dropped.)
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::EINVAL)) => {
                Err(EventChannelError::Closed(port))
            }
            Err(e) => Err(EventChannelError::Io(io::Error::new(
                e.kind(),
                format!(
                    "xenevtchn_notify on port {port} (domain {}): {e}",
                    self.remote
                ),
            ))),
        }
    }

    async fn wait(&self) -> Result<(), EventChannelError> {
        self.signal.wait().await
    }
}

impl Drop for XenEventChannel {
    fn drop(&mut self) {
        // Unregister first: the kernel may hand the port number to a new
        // bind as soon as it is unbound.
        self.shared.table.unregister(&self.signal);
        let port = self.signal.port();
        if let Err(e) = self.shared.evtchn.unbind(port) {
            tracing::warn!(port, domid = self.remote, error = %e, "xenevtchn_unbind failed");
        }
    }
}

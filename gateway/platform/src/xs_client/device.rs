//! Async I/O on the xenbus device (`/dev/xen/xenbus`), which speaks the
//! same xenstore wire protocol as the xenstored socket through read/write.
//!
//! The file is opened non-blocking and registered with tokio's reactor:
//! reads wait for readiness (the device polls readable when a reply or
//! watch event is queued). Writes go straight to the device: the kernel
//! accepts them at once (it buffers until a whole message is there) and
//! its poll never reports writable, so waiting for write readiness would
//! hang. Should a write ever say EAGAIN, we retry on the next poll.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The reading half.
pub struct DeviceReader(Arc<AsyncFd<File>>);
/// The writing half.
pub struct DeviceWriter(Arc<AsyncFd<File>>);

/// Open the device at `path` for both directions. Must run in a runtime.
pub fn open(path: &Path) -> io::Result<(DeviceReader, DeviceWriter)> {
    let file = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    from_fd(file.into())
}

/// Wrap an already open, non-blocking-capable fd (the device, or in tests
/// one end of a socket).
pub fn from_fd(fd: OwnedFd) -> io::Result<(DeviceReader, DeviceWriter)> {
    let file = File::from(fd);
    set_nonblocking(&file)?;
    // SAFETY: the AsyncFd owns the file, so the fd stays valid and
    // unchanged while it is registered.
    let shared = Arc::new(unsafe { AsyncFd::register(file) }.map_err(|e| {
        let e = io::Error::from(e);
        io::Error::new(
            e.kind(),
            format!("it cannot be polled ({e}): is it really the xenbus device?"),
        )
    })?);
    Ok((DeviceReader(shared.clone()), DeviceWriter(shared)))
}

fn set_nonblocking(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: plain fcntl on a valid fd we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl AsyncRead for DeviceReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = match self.0.poll_read_ready(cx) {
                Poll::Ready(r) => r?,
                Poll::Pending => return Poll::Pending,
            };
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|inner| inner.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Not readable after all; readiness was cleared, wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for DeviceWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.0.get_ref().write(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // No writable readiness to wait for (see the module
                    // comment): try again once other tasks have run.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn both_halves_move_bytes_without_blocking_the_runtime() {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let (mut read, mut write) = from_fd(ours.into()).unwrap();
        theirs.set_nonblocking(true).unwrap();
        let theirs = tokio::net::UnixStream::from_std(theirs).unwrap();

        // A read parked on an empty device does not hold up a write.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 5];
            read.read_exact(&mut buf).await.map(|_| buf)
        });
        tokio::task::yield_now().await;
        write.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        let (mut their_read, mut their_write) = theirs.into_split();
        their_read.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        their_write.write_all(b"hello").await.unwrap();
        let buf = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .expect("the parked read completes")
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"hello");
    }

    /// The side client over device-style I/O (one non-blocking fd, reads
    /// through the reactor, direct writes) against the simulated xenstored:
    /// requests, replies and a transaction round trip as on /dev/xen/xenbus.
    #[tokio::test]
    async fn the_side_client_speaks_xenstore_over_device_io() {
        use crate::xs_client::side::SideClient;
        use crate::xs_client::wire::MsgType;
        let dir = tempfile::tempdir().unwrap();
        let sim = crate::sim::SimXen::start(dir.path()).await.unwrap();
        let socket = std::os::unix::net::UnixStream::connect(sim.dom0_xenstore_socket()).unwrap();
        let side = SideClient::over_device_fd(socket.into(), "fake xenbus").unwrap();
        let reply = side
            .request(MsgType::GetDomainPath, 0, b"0\0", "domain path")
            .await
            .unwrap();
        assert_eq!(
            crate::xs_client::wire::reply_string(&reply),
            b"/local/domain/0"
        );
        let tx = side
            .request(MsgType::TransactionStart, 0, b"\0", "transaction")
            .await
            .unwrap();
        let tx_id: u32 = std::str::from_utf8(crate::xs_client::wire::reply_string(&tx))
            .unwrap()
            .parse()
            .unwrap();
        side.request(MsgType::Write, tx_id, b"/pvgate-test\0hello", "write")
            .await
            .unwrap();
        side.request(MsgType::TransactionEnd, tx_id, b"T\0", "commit")
            .await
            .unwrap();
        let value = side
            .request(MsgType::Read, 0, b"/pvgate-test\0", "read")
            .await
            .unwrap();
        assert_eq!(crate::xs_client::wire::reply_string(&value), b"hello");
        sim.stop().await;
    }

    /// /dev/null standing in for the device (a container test does that)
    /// must fail at once with a reason, not hang a client.
    #[tokio::test]
    async fn a_stand_in_that_cannot_be_polled_is_refused() {
        let err = open(Path::new("/dev/null")).err().unwrap().to_string();
        assert!(err.contains("xenbus device"), "{err}");
    }

    #[tokio::test]
    async fn opening_a_missing_device_fails() {
        let dir = tempfile::tempdir().unwrap();
        assert!(open(&dir.path().join("xenbus")).is_err());
    }
}

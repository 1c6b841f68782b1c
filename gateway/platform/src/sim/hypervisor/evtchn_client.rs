//! The domain's half of event channels: [`EventChannels`] over the simulated
//! hypervisor's control socket, with notifications as datagrams sent straight
//! to the peer process.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixDatagram, UnixStream};

use super::control::{Reply, Request, MAX_LINE};
use super::evtchn_service::MAX_PORTS_PER_DOMAIN;
use super::layout::DomainPaths;
use crate::{DomId, EventChannel, EventChannelError, EventChannels, Port};

/// How long we wait for the hypervisor to answer a request.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// `sizeof(sockaddr_un.sun_path)` minus the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

static NEXT_SOCKET: AtomicU64 = AtomicU64::new(0);

/// The event channels of one domain, through the sim hypervisor's control
/// socket for that domain.
#[derive(Clone, Debug)]
pub struct SimEventChannels {
    paths: DomainPaths,
    domid: DomId,
}

impl SimEventChannels {
    /// Act as domain `domid` of the sim in `sim_dir`. Fails if the hypervisor
    /// has no service for that domain, or if the paths would not fit a unix
    /// socket address.
    pub fn connect(sim_dir: &Path, domid: DomId) -> io::Result<SimEventChannels> {
        let paths = DomainPaths::new(sim_dir, domid);
        let control = paths.evtchn_socket();
        if !control.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "domain {domid} has no event channel service at {} (is the sim hypervisor running, and the domain added?)",
                    control.display()
                ),
            ));
        }
        let longest = paths.peer_link(MAX_PORTS_PER_DOMAIN);
        if longest.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "sim directory path too long for unix sockets: {}",
                    longest.display()
                ),
            ));
        }
        Ok(SimEventChannels { paths, domid })
    }

    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// Make our notification socket, send one request, and keep the control
    /// connection as the port's lifetime.
    async fn open(
        &self,
        request: impl FnOnce(String) -> Request,
    ) -> io::Result<Result<SimEventChannel, String>> {
        let name = format!(
            "p{}-{}.sock",
            std::process::id(),
            NEXT_SOCKET.fetch_add(1, Ordering::Relaxed)
        );
        let socket_path = self.paths.ports_dir().join(&name);
        // A socket of a dead process with our pid may linger.
        let _ = std::fs::remove_file(&socket_path);
        let socket = UnixDatagram::bind(&socket_path)?;
        let socket_file = RemoveOnDrop(socket_path);

        let exchange = async {
            let mut control =
                BufReader::new(UnixStream::connect(self.paths.evtchn_socket()).await?);
            control
                .get_mut()
                .write_all(request(name).to_line().as_bytes())
                .await?;
            let mut line = Vec::new();
            (&mut control)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut line)
                .await?;
            io::Result::Ok((control.into_inner(), line))
        };
        let (control, mut line) = tokio::time::timeout(REPLY_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "the sim hypervisor did not answer")
            })??;
        if line.pop() != Some(b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the sim hypervisor closed the connection without a reply",
            ));
        }
        let line = String::from_utf8_lossy(&line);
        match Reply::parse(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))? {
            Reply::Err(reason) => Ok(Err(reason)),
            Reply::Ok(port) => Ok(Ok(SimEventChannel {
                port,
                peer_link: self.paths.peer_link(port),
                socket,
                _control: control.into_std()?,
                _socket_file: socket_file,
            })),
        }
    }
}

#[async_trait::async_trait]
impl EventChannels for SimEventChannels {
    async fn bind_interdomain(
        &self,
        domid: DomId,
        remote_port: Port,
    ) -> Result<Box<dyn EventChannel>, EventChannelError> {
        let opened = self
            .open(|socket| Request::Bind {
                remote: domid,
                remote_port,
                socket,
            })
            .await?;
        match opened {
            Ok(channel) => Ok(Box::new(channel)),
            Err(reason) => Err(EventChannelError::Bind {
                domid,
                remote_port,
                reason,
            }),
        }
    }

    async fn alloc_unbound(
        &self,
        remote: DomId,
    ) -> Result<Box<dyn EventChannel>, EventChannelError> {
        let opened = self
            .open(|socket| Request::Alloc { remote, socket })
            .await?;
        match opened {
            Ok(channel) => Ok(Box::new(channel)),
            Err(reason) => Err(EventChannelError::Io(io::Error::other(format!(
                "domain {}: cannot allocate a port for domain {remote}: {reason}",
                self.domid
            )))),
        }
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One port of ours. Closed (and its peer returned to unbound) on drop.
pub struct SimEventChannel {
    port: Port,
    /// `ports/<port>.peer`: the hypervisor points it at the peer's socket
    /// while we are bound, and removes it when we are not.
    peer_link: PathBuf,
    socket: UnixDatagram,
    /// The port lives exactly as long as this connection.
    _control: std::os::unix::net::UnixStream,
    _socket_file: RemoveOnDrop,
}

#[async_trait::async_trait]
impl EventChannel for SimEventChannel {
    fn local_port(&self) -> Port {
        self.port
    }

    fn notify(&self) -> Result<(), EventChannelError> {
        match self.socket.try_send_to(&[1], &self.peer_link) {
            Ok(_) => Ok(()),
            // The peer's queue is full: it has notifications pending already,
            // and one more would coalesce with them anyway.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            // No link (unbound), or a link to a socket nobody holds (peer died).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                Err(EventChannelError::Closed(self.port))
            }
            Err(e) => Err(EventChannelError::Io(e)),
        }
    }

    async fn wait(&self) -> Result<(), EventChannelError> {
        let mut buf = [0u8; 16];
        self.socket.recv(&mut buf).await?;
        // Everything already queued belongs to this batch: Xen's pending bit
        // is one bit, however many times the peer notified.
        loop {
            match self.socket.try_recv(&mut buf) {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

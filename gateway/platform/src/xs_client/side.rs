//! The supplemental xenstore client, on its own connection, for the
//! operations xenstore-rs 0.8 lacks (see the parent module).
//!
//! Requests are matched to replies by `req_id`: a reader task routes each
//! reply to its waiting caller, so callers may overlap and a caller that gives
//! up cannot desynchronise the connection. The reader also notices when
//! xenstored closes the connection (domain released, server gone) and
//! reports it through [`SideClient::closed`], which the parent uses to fail
//! xenstore-rs calls that would otherwise wait forever.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{oneshot, watch, Mutex};

use crate::store::StoreError;

use super::device;
use super::from_errno;
use super::wire::{self, Errno, Header, MsgType, HEADER_LEN, PAYLOAD_MAX};

type Reply = (Header, Vec<u8>);
type Pending = Arc<StdMutex<Option<HashMap<u32, oneshot::Sender<Reply>>>>>;
type Writer = Arc<Mutex<Box<dyn AsyncWrite + Send + Unpin>>>;

pub struct SideClient {
    writer: Writer,
    /// Callers waiting for a reply; `None` once the connection is closed.
    pending: Pending,
    closed: watch::Receiver<bool>,
    next_req: AtomicU32,
    target: String,
}

impl SideClient {
    pub async fn connect_socket(path: &Path) -> Result<SideClient, StoreError> {
        let stream = UnixStream::connect(path).await.map_err(|e| {
            StoreError::Io(io::Error::new(
                e.kind(),
                format!("cannot connect to xenstored socket {}: {e}", path.display()),
            ))
        })?;
        let (read, write) = stream.into_split();
        Ok(SideClient::new(
            Box::new(read),
            Box::new(write),
            path.display().to_string(),
        ))
    }

    /// The xenbus device (`/dev/xen/xenbus`), for a domain without a
    /// xenstored socket. One non-blocking open file serves both directions
    /// through tokio's reactor (see [`device`]): `tokio::fs::File` would park
    /// a blocking read on a worker thread for the life of the connection,
    /// which also keeps the runtime from shutting down.
    pub async fn open_device(path: &Path) -> Result<SideClient, StoreError> {
        let (read, write) = device::open(path).map_err(|e| {
            StoreError::Io(io::Error::new(
                e.kind(),
                format!("cannot open {}: {e}", path.display()),
            ))
        })?;
        Ok(SideClient::new(
            Box::new(read),
            Box::new(write),
            path.display().to_string(),
        ))
    }

    /// Over an already open fd that speaks the wire protocol the way the
    /// xenbus device does (in tests, a socket to the simulated xenstored):
    /// the device path without the device.
    pub fn over_device_fd(fd: std::os::fd::OwnedFd, target: &str) -> io::Result<SideClient> {
        let (read, write) = device::from_fd(fd)?;
        Ok(SideClient::new(
            Box::new(read),
            Box::new(write),
            target.to_string(),
        ))
    }

    fn new(
        read: Box<dyn AsyncRead + Send + Unpin>,
        write: Box<dyn AsyncWrite + Send + Unpin>,
        target: String,
    ) -> SideClient {
        let pending: Pending = Arc::new(StdMutex::new(Some(HashMap::new())));
        let (closed_tx, closed) = watch::channel(false);
        tokio::spawn(read_replies(
            read,
            pending.clone(),
            closed_tx,
            target.clone(),
        ));
        SideClient {
            writer: Arc::new(Mutex::new(write)),
            pending,
            closed,
            next_req: AtomicU32::new(1),
            target,
        }
    }

    /// Resolves once xenstored has closed this connection.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closed = self.closed.clone();
        async move {
            // An error means the reader is gone: closed as well.
            let _ = closed.wait_for(|&c| c).await;
        }
    }

    /// Send one request and return its reply's payload; an `XS_ERROR` reply
    /// becomes the matching [`StoreError`] naming `what` (usually the path).
    pub async fn request(
        &self,
        kind: MsgType,
        tx_id: u32,
        payload: &[u8],
        what: &str,
    ) -> Result<Vec<u8>, StoreError> {
        let io_err = |e: io::Error| {
            StoreError::Io(io::Error::new(
                e.kind(),
                format!("xenstore {} ({what}): {e}", self.target),
            ))
        };
        let req_id = self.next_req.fetch_add(1, Ordering::Relaxed);
        let message =
            wire::encode(kind, req_id, tx_id, payload).map_err(|_| StoreError::Invalid {
                path: what.to_string(),
                reason: format!(
                    "request of {} bytes exceeds xenstore's {PAYLOAD_MAX}",
                    payload.len()
                ),
            })?;
        let (reply_tx, reply_rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match pending.as_mut() {
                Some(map) => map.insert(req_id, reply_tx),
                None => return Err(io_err(closed_error())),
            };
        }
        // Written from its own task so that a caller that gives up cannot
        // leave half a message on the connection.
        let writer = self.writer.clone();
        let written = tokio::spawn(async move {
            let mut writer = writer.lock().await;
            writer.write_all(&message).await?;
            writer.flush().await
        });
        let write_result = written.await.map_err(io::Error::other).and_then(|r| r);
        if let Err(e) = write_result {
            if let Some(map) = self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                map.remove(&req_id);
            }
            return Err(io_err(e));
        }
        let (header, body) = reply_rx.await.map_err(|_| io_err(closed_error()))?;
        if header.kind == MsgType::Error as u32 {
            let name = String::from_utf8_lossy(wire::reply_string(&body)).into_owned();
            return Err(match Errno::from_name(&name) {
                Some(errno) => from_errno(what, errno),
                None => StoreError::Invalid {
                    path: what.to_string(),
                    reason: format!("xenstored answered error {name:?}"),
                },
            });
        }
        if header.kind != kind as u32 {
            return Err(io_err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "reply of type {} to a request of type {}",
                    header.kind, kind as u32
                ),
            )));
        }
        Ok(body)
    }
}

fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "xenstored closed the connection")
}

async fn read_replies(
    mut read: Box<dyn AsyncRead + Send + Unpin>,
    pending: Pending,
    closed: watch::Sender<bool>,
    target: String,
) {
    let result: io::Result<()> = async {
        loop {
            let mut head = [0u8; HEADER_LEN];
            read.read_exact(&mut head).await?;
            let header = Header::parse(&head);
            let len = header.len as usize;
            if len > PAYLOAD_MAX {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("xenstored sent a {len}-byte payload (max {PAYLOAD_MAX})"),
                ));
            }
            let mut body = vec![0u8; len];
            read.read_exact(&mut body).await?;
            // No watches are set on this connection; an event is not a reply.
            if header.kind == MsgType::WatchEvent as u32 {
                continue;
            }
            let waiter = pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                .and_then(|m| m.remove(&header.req_id));
            match waiter {
                Some(w) => {
                    let _ = w.send((header, body));
                }
                None => tracing::warn!(
                    "xenstore {target}: reply to unknown request {} ignored",
                    header.req_id
                ),
            }
        }
    }
    .await;
    if let Err(e) = result {
        if e.kind() != io::ErrorKind::UnexpectedEof {
            tracing::warn!("xenstore {target}: connection lost: {e}");
        }
    }
    // Dropping the waiters fails their requests.
    pending.lock().unwrap_or_else(|e| e.into_inner()).take();
    let _ = closed.send(true);
}

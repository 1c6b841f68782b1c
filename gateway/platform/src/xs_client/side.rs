//! The supplemental xenstore client: one request at a time on its own
//! connection, for the operations xenstore-rs 0.8 lacks (see the parent
//! module). It never sets watches, so every message it reads is the reply to
//! the request it just sent.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::Mutex;

use crate::store::StoreError;

use super::from_errno;
use super::wire::{self, Errno, Header, MsgType, HEADER_LEN, PAYLOAD_MAX};

trait Channel: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Channel for T {}

pub struct SideClient {
    channel: Arc<Mutex<Pin<Box<dyn Channel>>>>,
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
        Ok(SideClient::new(
            Box::pin(stream),
            path.display().to_string(),
        ))
    }

    /// The xenbus device of a domain without a xenstored socket. The device
    /// takes whole messages per write and returns replies in order, which is
    /// all this client needs.
    pub async fn open_device(path: &Path) -> Result<SideClient, StoreError> {
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .await
            .map_err(|e| {
                StoreError::Io(io::Error::new(
                    e.kind(),
                    format!("cannot open {}: {e}", path.display()),
                ))
            })?;
        Ok(SideClient::new(Box::pin(file), path.display().to_string()))
    }

    fn new(channel: Pin<Box<dyn Channel>>, target: String) -> SideClient {
        SideClient {
            channel: Arc::new(Mutex::new(channel)),
            next_req: AtomicU32::new(1),
            target,
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
        let req_id = self.next_req.fetch_add(1, Ordering::Relaxed);
        let message =
            wire::encode(kind, req_id, tx_id, payload).map_err(|_| StoreError::Invalid {
                path: what.to_string(),
                reason: format!(
                    "request of {} bytes exceeds xenstore's {PAYLOAD_MAX}",
                    payload.len()
                ),
            })?;
        // The exchange runs in its own task so that a caller that gives up
        // (a dropped future) cannot leave half a message on the connection.
        let channel = self.channel.clone();
        let exchange = tokio::spawn(async move {
            let mut channel = channel.lock().await;
            channel.write_all(&message).await?;
            channel.flush().await?;
            loop {
                let mut head = [0u8; HEADER_LEN];
                channel.read_exact(&mut head).await?;
                let header = Header::parse(&head);
                let len = header.len as usize;
                if len > PAYLOAD_MAX {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("reply announces {len} bytes, more than {PAYLOAD_MAX}"),
                    ));
                }
                let mut body = vec![0u8; len];
                channel.read_exact(&mut body).await?;
                // No watches are set here; skip any event rather than misread it.
                if header.kind != MsgType::WatchEvent as u32 {
                    return Ok((header, body));
                }
            }
        });
        let io_err = |e: io::Error| {
            StoreError::Io(io::Error::new(
                e.kind(),
                format!("xenstore {} ({what}): {e}", self.target),
            ))
        };
        let (header, body) = exchange
            .await
            .map_err(|e| io_err(io::Error::other(e)))?
            .map_err(io_err)?;
        if header.req_id != req_id {
            return Err(io_err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "reply to request {} while waiting for {req_id}",
                    header.req_id
                ),
            )));
        }
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

//! [`XsStore`]: the gateway's [`Store`] over a xenstored socket — real
//! xenstored, or the simulated one ([`crate::sim::xenstore`]).
//!
//! # Why two connections
//! The gateway uses `xenstore-rs` (0.8) as DESIGN.md chooses, but its tokio
//! client only offers read, write, directory, rm and watch: every message it
//! sends carries transaction id 0, and it has no MKDIR, GET_PERMS, SET_PERMS,
//! GET_DOMAIN_PATH or TRANSACTION_START/END. So an `XsStore` holds:
//! - an `xenstore_rs::tokio::XsTokio` for read/write/directory/rm/watch;
//! - a small supplemental client ([`side`]) on a second connection to the
//!   same socket for everything else, including every operation inside a
//!   transaction (which must carry the transaction's id). It sends one
//!   request at a time and sets no watches, so replies arrive in order.
//!
//! Both connections are dom0's (or, from a guest's socket, that guest's), so
//! xenstored sees one identity. Causality holds because every call awaits its
//! reply before returning.
//!
//! # Lost connections
//! When xenstored closes the connection (the sim releasing a guest, the
//! daemon stopping), xenstore-rs 0.8 leaves every pending and later call
//! waiting forever. The supplemental client's reader notices the close, and
//! every xenstore-rs call is raced against it, so callers get
//! `StoreError::Io` (broken pipe) and watch streams end. `connect` makes one
//! round trip so that a refused connection is an error at once.
//!
//! # Watch delivery
//! `xenstore-rs` hands watch events to a bounded(8) channel with a blocking
//! send inside its single I/O task: a consumer that awaits a store request
//! while its watch has 8 undelivered events would deadlock the whole client.
//! Each watch therefore gets a task that moves events at once into an
//! unbounded channel; the [`WatchStream`] reads from that. (Growth is bounded
//! by what xenstored sends us: our own store, trusted.)

pub mod device;
pub mod side;
pub mod wire;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;
use xenstore_rs::tokio::XsTokio;
use xenstore_rs::{AsyncWatch, AsyncXs};

use crate::store::{Perm, Store, StoreError, StoreOps, StoreTransaction, WatchStream};
use crate::DomId;

use side::SideClient;
use wire::{Errno, MsgType};

/// Where xenstore-rs looks when `XENSTORED_PATH` is not set.
pub const DEFAULT_XENSTORED_PATH: &str = "/run/xenstored/socket";
/// The xenbus device, for a domain without a xenstored socket.
pub const XENBUS_DEVICE: &str = "/dev/xen/xenbus";
/// How long `connect` waits for xenstored's first answer.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `XsTokio::new` takes its socket path only from `XENSTORED_PATH`. To open
/// a given socket we set the variable, connect, and restore it; this lock
/// keeps two such connects (several sims in one test process) from seeing
/// each other's value.
static XENSTORED_PATH_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Open an `xenstore-rs` tokio client on the xenstored socket at `path`.
///
/// xenstore-rs takes the path only from `XENSTORED_PATH`, so the variable is
/// set for the connect and then restored, under a process-wide lock. Note
/// that XsTokio falls back to the xenbus device when the socket refuses; the
/// caller should have checked the socket first if that matters.
pub async fn xs_tokio_at(path: &Path) -> io::Result<XsTokio> {
    let _guard = XENSTORED_PATH_LOCK.lock().await;
    let previous = std::env::var_os("XENSTORED_PATH");
    std::env::set_var("XENSTORED_PATH", path);
    let result = XsTokio::new().await;
    match previous {
        Some(v) => std::env::set_var("XENSTORED_PATH", v),
        None => std::env::remove_var("XENSTORED_PATH"),
    }
    result
}

/// A [`Store`] speaking the xenstore wire protocol.
pub struct XsStore {
    xs: XsTokio,
    side: Arc<SideClient>,
    target: String,
}

impl XsStore {
    /// Connect to the xenstored socket at `path` (or the xenbus device, when
    /// `path` is [`XENBUS_DEVICE`]), or, with `None`, where xenstore-rs
    /// would: `$XENSTORED_PATH`, else `/run/xenstored/socket`, else the
    /// xenbus device.
    pub async fn connect(path: Option<&Path>) -> Result<XsStore, StoreError> {
        // xenstore-rs's connection first: should xenstored refuse one of the
        // two (a guest at its connection limit), it then refuses the side
        // connection too, which we notice below, rather than leaving
        // xenstore-rs waiting on a dead socket.
        if let Some(p) = path {
            // xenstore-rs opens a device only at its fixed path (it tries the
            // path as a socket, then falls back to XENBUS_DEVICE).
            if is_char_device(p) && p != Path::new(XENBUS_DEVICE) {
                return Err(StoreError::Io(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "{} is a device; xenstore-rs only opens the xenbus device at {XENBUS_DEVICE}",
                        p.display()
                    ),
                )));
            }
        }
        let xs = match path {
            Some(p) => xs_tokio_at(p).await,
            None => {
                // Keep a concurrent xs_tokio_at from changing the variable under us.
                let _guard = XENSTORED_PATH_LOCK.lock().await;
                XsTokio::new().await
            }
        };
        let explicit = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("XENSTORED_PATH").map(PathBuf::from));
        let (side, target) = match &explicit {
            Some(p) if is_char_device(p) => {
                (SideClient::open_device(p).await?, p.display().to_string())
            }
            Some(p) => (
                SideClient::connect_socket(p).await?,
                p.display().to_string(),
            ),
            None => match SideClient::connect_socket(Path::new(DEFAULT_XENSTORED_PATH)).await {
                Ok(side) => (side, DEFAULT_XENSTORED_PATH.to_string()),
                Err(_) => (
                    SideClient::open_device(Path::new(XENBUS_DEVICE)).await?,
                    XENBUS_DEVICE.to_string(),
                ),
            },
        };
        let xs = xs.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("xenstore-rs cannot connect to {target}: {e}"),
            )
        })?;
        // One round trip proves xenstored accepted us. Bounded: something
        // that accepts the connection but never answers (a stand-in device,
        // a wedged daemon) must fail the start, not hang it.
        let what = format!("connecting to {target}");
        let hello = side.request(MsgType::GetDomainPath, 0, b"0\0", &what);
        tokio::time::timeout(CONNECT_TIMEOUT, hello)
            .await
            .map_err(|_| {
                StoreError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{target} did not answer within {} s: is xenstored running?",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                ))
            })??;
        Ok(XsStore {
            xs,
            side: Arc::new(side),
            target,
        })
    }

    /// Run an xenstore-rs call, failing it if xenstored closes our
    /// connections: xenstore-rs 0.8 would wait forever for the reply.
    async fn guarded<T>(
        &self,
        path: &str,
        call: impl std::future::Future<Output = io::Result<T>>,
    ) -> Result<T, StoreError> {
        tokio::select! {
            biased;
            result = call => result.map_err(|e| from_xs_error(path, e)),
            () = self.side.closed() => Err(StoreError::Io(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("xenstore {}: {path}: xenstored closed the connection", self.target),
            ))),
        }
    }

    /// The socket or device this store talks to.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// XS_INTRODUCE (dom0 only): make `domid` known to xenstored.
    pub async fn introduce_domain(
        &self,
        domid: DomId,
        mfn: u64,
        evtchn: u32,
    ) -> Result<(), StoreError> {
        let args = [domid.to_string(), mfn.to_string(), evtchn.to_string()];
        self.side
            .request(
                MsgType::Introduce,
                0,
                &wire::join_strings(&args),
                "@introduceDomain",
            )
            .await
            .map(drop)
    }

    /// XS_RELEASE (dom0 only): forget `domid`.
    pub async fn release_domain(&self, domid: DomId) -> Result<(), StoreError> {
        self.side
            .request(
                MsgType::Release,
                0,
                &wire::join_strings(&[domid.to_string()]),
                "@releaseDomain",
            )
            .await
            .map(drop)
    }

    pub async fn is_domain_introduced(&self, domid: DomId) -> Result<bool, StoreError> {
        let reply = self
            .side
            .request(
                MsgType::IsDomainIntroduced,
                0,
                &wire::join_strings(&[domid.to_string()]),
                "",
            )
            .await?;
        Ok(wire::reply_string(&reply) == b"T")
    }
}

/// Whether `path` is a character device (the xenbus device) rather than a
/// socket.
pub fn is_char_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device())
}

/// Map an error from xenstore-rs (which keeps the errno name in the message:
/// "XS interface error ENOENT") to a [`StoreError`].
fn from_xs_error(path: &str, e: io::Error) -> StoreError {
    let text = e.to_string();
    match text
        .strip_prefix("XS interface error ")
        .and_then(Errno::from_name)
    {
        Some(errno) => from_errno(path, errno),
        None => StoreError::Io(io::Error::new(e.kind(), format!("{path}: {text}"))),
    }
}

/// Map an errno name from xenstored to a [`StoreError`].
pub fn from_errno(path: &str, errno: Errno) -> StoreError {
    let path = path.to_string();
    match errno {
        Errno::ENOENT => StoreError::NotFound { path },
        Errno::EACCES | Errno::EPERM | Errno::EROFS => StoreError::PermissionDenied { path },
        Errno::EAGAIN => StoreError::Again,
        Errno::EIO | Errno::ENOMEM => {
            StoreError::Io(io::Error::other(format!("xenstored: {path}: {errno}")))
        }
        other => StoreError::Invalid {
            path,
            reason: format!("xenstored answered {other}"),
        },
    }
}

fn string_reply(path: &str, reply: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(wire::reply_string(reply).to_vec()).map_err(|_| StoreError::Invalid {
        path: path.to_string(),
        reason: "value is not UTF-8".into(),
    })
}

fn list_reply(path: &str, reply: &[u8]) -> Result<Vec<String>, StoreError> {
    if reply.is_empty() {
        return Ok(Vec::new());
    }
    wire::split_strings(reply)
        .map(|v| v.into_iter().map(str::to_string).collect())
        .ok_or_else(|| StoreError::Invalid {
            path: path.to_string(),
            reason: "malformed list in xenstored's reply".into(),
        })
}

fn perms_reply(path: &str, reply: &[u8]) -> Result<Vec<Perm>, StoreError> {
    list_reply(path, reply)?
        .iter()
        .map(|s| {
            Perm::from_wire(s).ok_or_else(|| StoreError::Invalid {
                path: path.to_string(),
                reason: format!("bad permission {s:?} in xenstored's reply"),
            })
        })
        .collect()
}

fn perms_request(path: &str, perms: &[Perm]) -> Vec<u8> {
    let mut strings = vec![path.to_string()];
    strings.extend(perms.iter().map(|p| p.to_wire()));
    wire::join_strings(&strings)
}

/// Operations shared by the store and its transactions over the supplemental
/// connection, for transaction `tx_id` (0: none).
async fn side_op(side: &SideClient, tx_id: u32, op: SideOp<'_>) -> Result<Vec<u8>, StoreError> {
    match op {
        SideOp::Read(path) => {
            side.request(MsgType::Read, tx_id, &wire::join_strings(&[path]), path)
                .await
        }
        SideOp::Write(path, value) => {
            let mut payload = wire::join_strings(&[path]);
            payload.extend_from_slice(value.as_bytes());
            side.request(MsgType::Write, tx_id, &payload, path).await
        }
        SideOp::Mkdir(path) => {
            side.request(MsgType::Mkdir, tx_id, &wire::join_strings(&[path]), path)
                .await
        }
        SideOp::Rm(path) => {
            side.request(MsgType::Rm, tx_id, &wire::join_strings(&[path]), path)
                .await
        }
        SideOp::Directory(path) => {
            side.request(
                MsgType::Directory,
                tx_id,
                &wire::join_strings(&[path]),
                path,
            )
            .await
        }
        SideOp::GetPerms(path) => {
            side.request(MsgType::GetPerms, tx_id, &wire::join_strings(&[path]), path)
                .await
        }
        SideOp::SetPerms(path, perms) => {
            side.request(MsgType::SetPerms, tx_id, &perms_request(path, perms), path)
                .await
        }
    }
}

enum SideOp<'a> {
    Read(&'a str),
    Write(&'a str, &'a str),
    Mkdir(&'a str),
    Rm(&'a str),
    Directory(&'a str),
    GetPerms(&'a str),
    SetPerms(&'a str, &'a [Perm]),
}

#[async_trait::async_trait]
impl StoreOps for XsStore {
    async fn read(&self, path: &str) -> Result<String, StoreError> {
        Ok(self.guarded(path, self.xs.read(path)).await?.into())
    }

    async fn write(&self, path: &str, value: &str) -> Result<(), StoreError> {
        self.guarded(path, self.xs.write(path, value)).await
    }

    async fn mkdir(&self, path: &str) -> Result<(), StoreError> {
        side_op(&self.side, 0, SideOp::Mkdir(path)).await.map(drop)
    }

    async fn rm(&self, path: &str) -> Result<(), StoreError> {
        self.guarded(path, self.xs.rm(path)).await
    }

    async fn directory(&self, path: &str) -> Result<Vec<String>, StoreError> {
        let names = self.guarded(path, self.xs.directory(path)).await?;
        Ok(names.into_iter().map(Into::into).collect())
    }

    async fn get_perms(&self, path: &str) -> Result<Vec<Perm>, StoreError> {
        let reply = side_op(&self.side, 0, SideOp::GetPerms(path)).await?;
        perms_reply(path, &reply)
    }

    async fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), StoreError> {
        side_op(&self.side, 0, SideOp::SetPerms(path, perms))
            .await
            .map(drop)
    }
}

#[async_trait::async_trait]
impl Store for XsStore {
    async fn watch(&self, path: &str) -> Result<WatchStream, StoreError> {
        let mut events = Box::pin(self.guarded(path, self.xs.watch(path)).await?);
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let closed = self.side.closed();
        tokio::spawn(async move {
            tokio::pin!(closed);
            loop {
                tokio::select! {
                    event = events.next() => match event {
                        Some(p) => if tx.send(p.into()).is_err() { break },
                        None => break,
                    },
                    // The consumer dropped its stream: drop ours, which unwatches.
                    _ = tx.closed() => break,
                    // xenstored closed our connections: end the stream.
                    _ = &mut closed => break,
                }
            }
        });
        Ok(Box::pin(futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }

    async fn get_domain_path(&self, domid: DomId) -> Result<String, StoreError> {
        let what = format!("domain path of dom{domid}");
        let reply = self
            .side
            .request(
                MsgType::GetDomainPath,
                0,
                &wire::join_strings(&[domid.to_string()]),
                &what,
            )
            .await?;
        string_reply(&what, &reply)
    }

    async fn transaction_start(&self) -> Result<Box<dyn StoreTransaction>, StoreError> {
        let reply = self
            .side
            .request(MsgType::TransactionStart, 0, b"\0", "transaction")
            .await?;
        let id = std::str::from_utf8(wire::reply_string(&reply))
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|&id| id != 0)
            .ok_or_else(|| StoreError::Invalid {
                path: "transaction".into(),
                reason: "xenstored returned a malformed transaction id".into(),
            })?;
        Ok(Box::new(XsTransaction {
            side: self.side.clone(),
            tx_id: id,
            finished: false,
        }))
    }
}

/// An open transaction; every operation carries its id. Aborted on drop if
/// neither committed nor aborted.
pub struct XsTransaction {
    side: Arc<SideClient>,
    tx_id: u32,
    finished: bool,
}

impl XsTransaction {
    async fn end(mut self: Box<Self>, commit: bool) -> Result<(), StoreError> {
        self.finished = true;
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.side
            .request(MsgType::TransactionEnd, self.tx_id, arg, "transaction")
            .await
            .map(drop)
    }
}

impl Drop for XsTransaction {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // xenstored would keep it open (and count it against our quota)
        // until the connection closes.
        let side = self.side.clone();
        let tx_id = self.tx_id;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = side
                    .request(MsgType::TransactionEnd, tx_id, b"F\0", "transaction")
                    .await;
            });
        }
    }
}

#[async_trait::async_trait]
impl StoreOps for XsTransaction {
    async fn read(&self, path: &str) -> Result<String, StoreError> {
        let reply = side_op(&self.side, self.tx_id, SideOp::Read(path)).await?;
        string_reply(path, &reply)
    }

    async fn write(&self, path: &str, value: &str) -> Result<(), StoreError> {
        side_op(&self.side, self.tx_id, SideOp::Write(path, value))
            .await
            .map(drop)
    }

    async fn mkdir(&self, path: &str) -> Result<(), StoreError> {
        side_op(&self.side, self.tx_id, SideOp::Mkdir(path))
            .await
            .map(drop)
    }

    async fn rm(&self, path: &str) -> Result<(), StoreError> {
        side_op(&self.side, self.tx_id, SideOp::Rm(path))
            .await
            .map(drop)
    }

    async fn directory(&self, path: &str) -> Result<Vec<String>, StoreError> {
        let reply = side_op(&self.side, self.tx_id, SideOp::Directory(path)).await?;
        list_reply(path, &reply)
    }

    async fn get_perms(&self, path: &str) -> Result<Vec<Perm>, StoreError> {
        let reply = side_op(&self.side, self.tx_id, SideOp::GetPerms(path)).await?;
        perms_reply(path, &reply)
    }

    async fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), StoreError> {
        side_op(&self.side, self.tx_id, SideOp::SetPerms(path, perms))
            .await
            .map(drop)
    }
}

#[async_trait::async_trait]
impl StoreTransaction for XsTransaction {
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.end(true).await
    }

    async fn abort(self: Box<Self>) -> Result<(), StoreError> {
        self.end(false).await
    }
}

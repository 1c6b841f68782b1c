//! The tokio shell around [`XenstoreState`]: listeners, one reader and one
//! writer task per connection.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

use crate::xs_client::wire::{Header, HEADER_LEN, PAYLOAD_MAX};
use crate::DomId;

use super::state::{ConnId, XenstoreState};
use super::{DomainEvent, DomainObserver, XenstoreConfig};

/// `DIR/xenstored.sock`: dom0's socket.
pub fn dom0_socket(dir: &Path) -> PathBuf {
    dir.join("xenstored.sock")
}

/// `DIR/domains/<domid>/xenstore.sock`: a guest's socket, while introduced.
pub fn guest_socket(dir: &Path, domid: DomId) -> PathBuf {
    dir.join("domains")
        .join(domid.to_string())
        .join("xenstore.sock")
}

/// A running simulated xenstored. Stops (tasks ended, sockets removed) on
/// [`XenstoreServer::stop`] or drop.
pub struct XenstoreServer {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    observer: Option<Arc<dyn DomainObserver>>,
    inner: Mutex<Inner>,
}

struct Inner {
    state: XenstoreState,
    conns: HashMap<ConnId, ConnHandle>,
    /// Accept loops by domid (0: dom0's socket).
    listeners: HashMap<DomId, JoinHandle<()>>,
    stopped: bool,
}

struct ConnHandle {
    outgoing: mpsc::Sender<Vec<u8>>,
    reader: AbortHandle,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the state half-updated in a way that
        // matters more than stopping the whole simulator would.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl XenstoreServer {
    /// Create `dir` (and `dir/domains`) if needed, bind dom0's socket and
    /// start serving. Must run inside a tokio runtime.
    pub async fn start(dir: &Path, config: XenstoreConfig) -> io::Result<XenstoreServer> {
        std::fs::create_dir_all(dir.join("domains"))?;
        let listener = bind(&dom0_socket(dir))?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            observer: config.observer,
            inner: Mutex::new(Inner {
                state: XenstoreState::new(config.limits),
                conns: HashMap::new(),
                listeners: HashMap::new(),
                stopped: false,
            }),
        });
        let task = tokio::spawn(accept_loop(shared.clone(), listener, 0));
        shared.lock().listeners.insert(0, task);
        Ok(XenstoreServer { shared })
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// dom0's socket path (what `XENSTORED_PATH` should name).
    pub fn dom0_socket(&self) -> PathBuf {
        dom0_socket(&self.shared.dir)
    }

    /// Guest `domid`'s socket path (it exists while the guest is introduced).
    pub fn guest_socket(&self, domid: DomId) -> PathBuf {
        guest_socket(&self.shared.dir, domid)
    }

    /// Domains currently introduced.
    pub fn introduced_domains(&self) -> Vec<DomId> {
        self.shared.lock().state.introduced_domains()
    }

    /// Stop serving: close every connection and remove the sockets.
    pub fn stop(&self) {
        let mut inner = self.shared.lock();
        if inner.stopped {
            return;
        }
        inner.stopped = true;
        for (domid, task) in inner.listeners.drain() {
            task.abort();
            let path = if domid == 0 {
                dom0_socket(&self.shared.dir)
            } else {
                guest_socket(&self.shared.dir, domid)
            };
            let _ = std::fs::remove_file(path);
        }
        for (_, conn) in inner.conns.drain() {
            conn.reader.abort();
        }
    }
}

impl Drop for XenstoreServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serve the simulated xenstore under `dir` until this future is dropped
/// (for `pvgate sim-xen`).
pub async fn serve(dir: &Path, config: XenstoreConfig) -> io::Result<()> {
    let _server = XenstoreServer::start(dir, config).await?;
    std::future::pending::<()>().await;
    Ok(())
}

/// Bind a unix socket, replacing a stale socket file left by a previous run.
fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
    UnixListener::bind(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("binding xenstore socket {}: {e}", path.display()),
        )
    })
}

async fn accept_loop(shared: Arc<Shared>, listener: UnixListener, domid: DomId) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("sim xenstore: accept on dom{domid}'s socket failed: {e}");
                continue;
            }
        };
        add_connection(&shared, stream, domid);
    }
}

fn add_connection(shared: &Arc<Shared>, stream: UnixStream, domid: DomId) {
    let mut inner = shared.lock();
    if inner.stopped {
        return;
    }
    let id = match inner.state.connect(domid) {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!("sim xenstore: refused a connection of dom{domid}: {e}");
            return;
        }
    };
    let (read_half, write_half) = stream.into_split();
    let (tx, rx) = mpsc::channel(inner.state.limits().max_pending_messages.max(1));
    tokio::spawn(writer(write_half, rx));
    let reader = tokio::spawn(reader(shared.clone(), id, domid, read_half)).abort_handle();
    inner.conns.insert(
        id,
        ConnHandle {
            outgoing: tx,
            reader,
        },
    );
}

async fn writer(mut socket: OwnedWriteHalf, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(message) = rx.recv().await {
        if socket.write_all(&message).await.is_err() {
            break;
        }
    }
}

async fn reader(shared: Arc<Shared>, id: ConnId, domid: DomId, socket: OwnedReadHalf) {
    let mut socket = BufReader::new(socket);
    let mut header = [0u8; HEADER_LEN];
    let mut payload = vec![0u8; PAYLOAD_MAX];
    loop {
        if socket.read_exact(&mut header).await.is_err() {
            break;
        }
        let h = Header::parse(&header);
        let len = h.len as usize;
        if len > PAYLOAD_MAX {
            // xenstored drops a client that violates XENSTORE_PAYLOAD_MAX:
            // the stream can no longer be trusted to be in step.
            tracing::warn!(
                "sim xenstore: dom{domid} connection {id} announced a {len}-byte payload (max {PAYLOAD_MAX}); closing it"
            );
            break;
        }
        if socket.read_exact(&mut payload[..len]).await.is_err() {
            break;
        }
        process(&shared, id, h, &payload[..len]);
    }
    let mut inner = shared.lock();
    inner.state.disconnect(id);
    inner.conns.remove(&id);
}

fn process(shared: &Arc<Shared>, id: ConnId, header: Header, payload: &[u8]) {
    let mut inner = shared.lock();
    if inner.stopped {
        return;
    }
    let fx = inner.state.handle(id, header, payload);
    // Domain sockets change before the toolstack hears OK, so that a guest
    // may connect as soon as its introduction is answered.
    for event in &fx.domain_events {
        match *event {
            DomainEvent::Introduced { domid, mfn, evtchn } => {
                match open_guest_socket(&shared.dir, domid) {
                    Ok(listener) => {
                        let task = tokio::spawn(accept_loop(shared.clone(), listener, domid));
                        if let Some(old) = inner.listeners.insert(domid, task) {
                            old.abort();
                        }
                    }
                    Err(e) => {
                        tracing::error!("sim xenstore: no socket for introduced dom{domid}: {e}")
                    }
                }
                if let Some(observer) = &shared.observer {
                    observer.on_domain_introduced(domid, mfn, evtchn);
                }
            }
            DomainEvent::Released { domid } => {
                if let Some(task) = inner.listeners.remove(&domid) {
                    task.abort();
                }
                let path = guest_socket(&shared.dir, domid);
                let _ = std::fs::remove_file(&path);
                if let Some(parent) = path.parent() {
                    let _ = std::fs::remove_dir(parent);
                }
                if let Some(observer) = &shared.observer {
                    observer.on_domain_released(domid);
                }
            }
        }
    }
    let mut overflowed = Vec::new();
    for (conn, message) in fx.messages {
        if let Some(handle) = inner.conns.get(&conn) {
            if handle.outgoing.try_send(message).is_err() && !overflowed.contains(&conn) {
                overflowed.push(conn);
            }
        }
    }
    for conn in overflowed {
        tracing::warn!(
            "sim xenstore: connection {conn} does not read its replies/events; closing it"
        );
        inner.state.disconnect(conn);
        if let Some(handle) = inner.conns.remove(&conn) {
            handle.reader.abort();
        }
    }
    for conn in fx.close {
        if let Some(handle) = inner.conns.remove(&conn) {
            handle.reader.abort();
        }
    }
}

fn open_guest_socket(dir: &Path, domid: DomId) -> io::Result<UnixListener> {
    let path = guest_socket(dir, domid);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    bind(&path)
}

//! The hypervisor's half of event channels: one control socket per domain,
//! the port table of every domain, and the peer links that route
//! notifications. Runs inside whichever process hosts the simulated
//! hypervisor (the test, or `pvgate sim-xen`).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::AbortHandle;

use super::control::{Reply, Request, MAX_LINE};
use super::layout::DomainPaths;
use crate::{DomId, Port};

/// Ports 1..=this exist in each domain (Xen's 2-level ABI on 32-bit guests
/// has 1024; we allow more but keep a cap so a guest cannot exhaust us).
pub const MAX_PORTS_PER_DOMAIN: Port = 4095;
/// A client that connects must send its request within this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The simulated hypervisor's event channel service. Clones share it; it
/// stops (its listeners and connections are dropped) when the last clone is
/// dropped.
#[derive(Clone)]
pub struct SimHypervisor {
    hv: Arc<Hv>,
    _stop: Arc<StopOnDrop>,
}

struct Hv {
    dir: PathBuf,
    runtime: tokio::runtime::Handle,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    domains: HashMap<DomId, DomainPorts>,
    connections: HashMap<u64, AbortHandle>,
    next_connection: u64,
}

struct DomainPorts {
    ports: BTreeMap<Port, PortState>,
    listener: AbortHandle,
}

/// One allocated port. `remote` is whom it is for (unbound) or bound to;
/// `peer` is the remote port once bound.
struct PortState {
    connection: u64,
    socket: String,
    remote: DomId,
    peer: Option<Port>,
}

struct StopOnDrop(Arc<Hv>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        for (_, domain) in state.domains.drain() {
            domain.listener.abort();
        }
        for (_, connection) in state.connections.drain() {
            connection.abort();
        }
    }
}

impl Hv {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn paths(&self, domid: DomId) -> DomainPaths {
        DomainPaths::new(&self.dir, domid)
    }

    fn handle(&self, domid: DomId, connection: u64, request: Request) -> Reply {
        let mut state = self.lock();
        let result = match request {
            Request::Alloc { remote, socket } => {
                self.alloc(&mut state, domid, connection, remote, socket)
            }
            Request::Bind {
                remote,
                remote_port,
                socket,
            } => self.bind(&mut state, domid, connection, remote, remote_port, socket),
        };
        match result {
            Ok(port) => Reply::Ok(port),
            Err(reason) => Reply::Err(reason),
        }
    }

    fn alloc(
        &self,
        state: &mut State,
        domid: DomId,
        connection: u64,
        remote: DomId,
        socket: String,
    ) -> Result<Port, String> {
        let domain = state
            .domains
            .get_mut(&domid)
            .ok_or_else(|| format!("domain {domid} is gone"))?;
        let port = lowest_free(&domain.ports)
            .ok_or_else(|| format!("domain {domid} has no free ports"))?;
        // A stale link from an earlier holder of this number must not route
        // our notifications anywhere.
        let _ = std::fs::remove_file(self.paths(domid).peer_link(port));
        domain.ports.insert(
            port,
            PortState {
                connection,
                socket,
                remote,
                peer: None,
            },
        );
        Ok(port)
    }

    fn bind(
        &self,
        state: &mut State,
        domid: DomId,
        connection: u64,
        remote: DomId,
        remote_port: Port,
        socket: String,
    ) -> Result<Port, String> {
        let target = state
            .domains
            .get(&remote)
            .ok_or_else(|| format!("domain {remote} does not exist"))?
            .ports
            .get(&remote_port)
            .ok_or_else(|| format!("domain {remote} has no port {remote_port}"))?;
        if let Some(peer) = target.peer {
            return Err(format!(
                "port {remote_port} of domain {remote} is already bound (to port {peer} of domain {})",
                target.remote
            ));
        }
        if target.remote != domid {
            return Err(format!(
                "port {remote_port} of domain {remote} was allocated for domain {}, not {domid}",
                target.remote
            ));
        }
        let target_socket = target.socket.clone();
        let domain = state
            .domains
            .get(&domid)
            .ok_or_else(|| format!("domain {domid} is gone"))?;
        // (For a loopback bind, `remote_port` is taken, so never chosen here.)
        let local = lowest_free(&domain.ports)
            .ok_or_else(|| format!("domain {domid} has no free ports"))?;

        // Route both directions before anyone learns of the binding, so the
        // first notification either way already finds its target.
        let our_link = self.paths(domid).peer_link(local);
        let their_link = self.paths(remote).peer_link(remote_port);
        link(&our_link, remote, &target_socket)
            .map_err(|e| format!("cannot link {}: {e}", our_link.display()))?;
        if let Err(e) = link(&their_link, domid, &socket) {
            let _ = std::fs::remove_file(&our_link);
            return Err(format!("cannot link {}: {e}", their_link.display()));
        }

        if let Some(target) = state
            .domains
            .get_mut(&remote)
            .and_then(|d| d.ports.get_mut(&remote_port))
        {
            target.peer = Some(local);
        }
        if let Some(domain) = state.domains.get_mut(&domid) {
            domain.ports.insert(
                local,
                PortState {
                    connection,
                    socket,
                    remote,
                    peer: Some(remote_port),
                },
            );
        }
        Ok(local)
    }

    /// Close `port` of `domid` if `connection` still owns it. Its peer, if
    /// any, goes back to unbound (for us), as Xen's evtchn_close does.
    fn close(&self, domid: DomId, port: Port, connection: u64) {
        let mut state = self.lock();
        state.connections.remove(&connection);
        let Some(domain) = state.domains.get_mut(&domid) else {
            return;
        };
        if domain.ports.get(&port).map(|p| p.connection) != Some(connection) {
            return;
        }
        let Some(closed) = domain.ports.remove(&port) else {
            return;
        };
        self.forget_port(&mut state, domid, port, &closed);
    }

    fn forget_port(&self, state: &mut State, domid: DomId, port: Port, closed: &PortState) {
        let paths = self.paths(domid);
        let _ = std::fs::remove_file(paths.peer_link(port));
        let _ = std::fs::remove_file(paths.ports_dir().join(&closed.socket));
        let Some(peer_port) = closed.peer else {
            return;
        };
        if let Some(peer) = state
            .domains
            .get_mut(&closed.remote)
            .and_then(|d| d.ports.get_mut(&peer_port))
        {
            if peer.peer == Some(port) && peer.remote == domid {
                peer.peer = None;
                let _ = std::fs::remove_file(self.paths(closed.remote).peer_link(peer_port));
            }
        }
    }
}

fn lowest_free(ports: &BTreeMap<Port, PortState>) -> Option<Port> {
    (1..=MAX_PORTS_PER_DOMAIN).find(|p| !ports.contains_key(p))
}

/// Atomically (re)point `link_path` at `ports/<socket>` of domain `to`, with a
/// relative target so the sim directory can be anywhere.
fn link(link_path: &Path, to: DomId, socket: &str) -> io::Result<()> {
    let target = PathBuf::from("../..")
        .join(to.to_string())
        .join("ports")
        .join(socket);
    let mut tmp = link_path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp)?;
    std::fs::rename(&tmp, link_path)
}

async fn read_request(stream: &mut BufReader<UnixStream>) -> Result<Request, String> {
    let mut line = Vec::new();
    let read = tokio::time::timeout(
        REQUEST_TIMEOUT,
        (&mut *stream)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line),
    )
    .await;
    match read {
        Err(_) => return Err("no request within the timeout".into()),
        Ok(Err(e)) => return Err(format!("read error: {e}")),
        Ok(Ok(_)) => {}
    }
    if line.pop() != Some(b'\n') {
        return Err(format!("request not a line of at most {MAX_LINE} bytes"));
    }
    let line = std::str::from_utf8(&line).map_err(|_| "request is not UTF-8".to_string())?;
    Request::parse(line)
}

async fn serve_connection(hv: Arc<Hv>, domid: DomId, connection: u64, stream: UnixStream) {
    let mut stream = BufReader::new(stream);
    let reply = match read_request(&mut stream).await {
        Ok(request) => hv.handle(domid, connection, request),
        Err(reason) => Reply::Err(reason),
    };
    let port = match reply {
        Reply::Ok(port) => Some(port),
        Reply::Err(_) => None,
    };
    let written = stream.get_mut().write_all(reply.to_line().as_bytes()).await;
    if let (Some(_), Ok(())) = (port, written) {
        // The port lives as long as the connection. Anything more the client
        // sends is a protocol error and closes the port too.
        let mut byte = [0u8; 1];
        let _ = stream.read(&mut byte).await;
    }
    if let Some(port) = port {
        hv.close(domid, port, connection);
    } else {
        hv.lock().connections.remove(&connection);
    }
}

async fn serve_domain(hv: Arc<Hv>, domid: DomId, listener: std::os::unix::net::UnixListener) {
    let listener = match UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(domid, error = %e, "sim hypervisor: cannot listen for event channels");
            return;
        }
    };
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(domid, error = %e, "sim hypervisor: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let mut state = hv.lock();
        let connection = state.next_connection;
        state.next_connection += 1;
        let task = hv
            .runtime
            .spawn(serve_connection(hv.clone(), domid, connection, stream));
        state.connections.insert(connection, task.abort_handle());
    }
}

impl SimHypervisor {
    /// Start the service for the sim directory `dir`, with dom0. Must be
    /// called within a tokio runtime, which then runs the service.
    pub fn start(dir: impl Into<PathBuf>) -> io::Result<SimHypervisor> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            io::Error::other(format!("the sim hypervisor needs a tokio runtime: {e}"))
        })?;
        let dir = dir.into();
        std::fs::create_dir_all(dir.join("domains"))?;
        let hv = Arc::new(Hv {
            dir,
            runtime,
            state: Mutex::new(State::default()),
        });
        let this = SimHypervisor {
            _stop: Arc::new(StopOnDrop(hv.clone())),
            hv,
        };
        this.add_domain(0)?;
        Ok(this)
    }

    /// The sim directory.
    pub fn dir(&self) -> &Path {
        &self.hv.dir
    }

    /// Create domain `domid`'s event channel service (XS_INTRODUCE). Doing it
    /// again for a live domain changes nothing.
    pub fn add_domain(&self, domid: DomId) -> io::Result<()> {
        let mut state = self.hv.lock();
        if state.domains.contains_key(&domid) {
            return Ok(());
        }
        let paths = self.hv.paths(domid);
        let ports = paths.ports_dir();
        // Whatever a previous run left is void: ports belong to connections.
        let _ = std::fs::remove_dir_all(&ports);
        std::fs::create_dir_all(&ports)?;
        let socket = paths.evtchn_socket();
        let _ = std::fs::remove_file(&socket);
        let listener = std::os::unix::net::UnixListener::bind(&socket).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {}: {e}", socket.display()),
            )
        })?;
        listener.set_nonblocking(true)?;
        let task = self
            .hv
            .runtime
            .spawn(serve_domain(self.hv.clone(), domid, listener));
        state.domains.insert(
            domid,
            DomainPorts {
                ports: BTreeMap::new(),
                listener: task.abort_handle(),
            },
        );
        Ok(())
    }

    /// Destroy domain `domid`'s event channels (XS_RELEASE): every port it
    /// had is closed, and its peers go back to unbound.
    pub fn remove_domain(&self, domid: DomId) {
        let mut state = self.hv.lock();
        let Some(domain) = state.domains.remove(&domid) else {
            return;
        };
        domain.listener.abort();
        for (port, closed) in &domain.ports {
            if let Some(connection) = state.connections.remove(&closed.connection) {
                connection.abort();
            }
            self.hv.forget_port(&mut state, domid, *port, closed);
        }
        let _ = std::fs::remove_file(self.hv.paths(domid).evtchn_socket());
    }

    /// The domains that currently have an event channel service.
    pub fn domains(&self) -> Vec<DomId> {
        let mut v: Vec<DomId> = self.hv.lock().domains.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

//! Simulated event channels: Xen's interdomain semantics (alloc unbound, bind,
//! notify both ways, coalescing, close returns the peer to unbound), the
//! validation of binds, the raw control protocol a non-Rust guest would use,
//! and all of it across processes.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pvgate_platform::sim::hypervisor::{DomainPaths, SimEventChannels, SimHypervisor};
use pvgate_platform::{EventChannel, EventChannelError, EventChannels};

const LONG: Duration = Duration::from_secs(5);
/// Long enough for a notification that was sent to have arrived; used only to
/// check that none was sent.
const QUIET: Duration = Duration::from_millis(200);

async fn delivered(ch: &dyn EventChannel) {
    tokio::time::timeout(LONG, ch.wait())
        .await
        .expect("notification not delivered")
        .unwrap();
}

async fn nothing_pending(ch: &dyn EventChannel) {
    assert!(
        tokio::time::timeout(QUIET, ch.wait()).await.is_err(),
        "unexpected notification"
    );
}

/// The hypervisor learns of a close asynchronously; poll until notify says so.
async fn becomes_closed(ch: &dyn EventChannel) {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        match ch.notify() {
            Err(EventChannelError::Closed(p)) => {
                assert_eq!(p, ch.local_port());
                return;
            }
            Ok(()) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "peer never became closed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn bind_reason(e: EventChannelError, domid: u16, port: u32) -> String {
    match e {
        EventChannelError::Bind {
            domid: d,
            remote_port,
            reason,
        } => {
            assert_eq!((d, remote_port), (domid, port));
            reason
        }
        other => panic!("expected a Bind error, got {other:?}"),
    }
}

fn start(dir: &Path, guests: &[u16]) -> SimHypervisor {
    let hv = SimHypervisor::start(dir).unwrap();
    for &g in guests {
        hv.add_domain(g).unwrap();
    }
    hv
}

#[tokio::test]
async fn alloc_bind_notify_both_ways_and_coalesce() {
    let dir = tempfile::tempdir().unwrap();
    let _hv = start(dir.path(), &[5]);
    let guest = SimEventChannels::connect(dir.path(), 5).unwrap();
    let dom0 = SimEventChannels::connect(dir.path(), 0).unwrap();

    let front = guest.alloc_unbound(0).await.unwrap();
    assert!(front.local_port() >= 1);
    // Unbound: nobody to notify.
    assert!(matches!(front.notify(), Err(EventChannelError::Closed(_))));
    let back = dom0.bind_interdomain(5, front.local_port()).await.unwrap();

    back.notify().unwrap();
    delivered(front.as_ref()).await;
    front.notify().unwrap();
    delivered(back.as_ref()).await;

    // Five notifications before a wait are one event, like Xen's pending bit.
    for _ in 0..5 {
        back.notify().unwrap();
    }
    tokio::time::sleep(QUIET).await;
    delivered(front.as_ref()).await;
    nothing_pending(front.as_ref()).await;
    // And the next notification wakes it again.
    back.notify().unwrap();
    delivered(front.as_ref()).await;
}

#[tokio::test]
async fn ports_are_per_domain() {
    let dir = tempfile::tempdir().unwrap();
    let _hv = start(dir.path(), &[5, 6]);
    let a = SimEventChannels::connect(dir.path(), 5)
        .unwrap()
        .alloc_unbound(0)
        .await
        .unwrap();
    let b = SimEventChannels::connect(dir.path(), 6)
        .unwrap()
        .alloc_unbound(0)
        .await
        .unwrap();
    assert_eq!(
        a.local_port(),
        b.local_port(),
        "each domain numbers its own ports"
    );
    let dom0 = SimEventChannels::connect(dir.path(), 0).unwrap();
    let to_a = dom0.bind_interdomain(5, a.local_port()).await.unwrap();
    let to_b = dom0.bind_interdomain(6, b.local_port()).await.unwrap();
    to_b.notify().unwrap();
    delivered(b.as_ref()).await;
    nothing_pending(a.as_ref()).await;
    a.notify().unwrap();
    delivered(to_a.as_ref()).await;
    nothing_pending(to_b.as_ref()).await;
}

#[tokio::test]
async fn binds_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let _hv = start(dir.path(), &[5, 6]);
    let guest = SimEventChannels::connect(dir.path(), 5).unwrap();
    let other = SimEventChannels::connect(dir.path(), 6).unwrap();
    let dom0 = SimEventChannels::connect(dir.path(), 0).unwrap();
    let front = guest.alloc_unbound(0).await.unwrap();
    let port = front.local_port();

    let r = bind_reason(
        other.bind_interdomain(5, port).await.err().unwrap(),
        5,
        port,
    );
    assert!(r.contains("allocated for domain 0, not 6"), "{r}");
    let r = bind_reason(dom0.bind_interdomain(5, 999).await.err().unwrap(), 5, 999);
    assert!(r.contains("no port 999"), "{r}");
    let r = bind_reason(
        dom0.bind_interdomain(42, port).await.err().unwrap(),
        42,
        port,
    );
    assert!(r.contains("domain 42 does not exist"), "{r}");

    let _back = dom0.bind_interdomain(5, port).await.unwrap();
    let r = bind_reason(dom0.bind_interdomain(5, port).await.err().unwrap(), 5, port);
    assert!(r.contains("already bound"), "{r}");
}

#[tokio::test]
async fn a_closed_backend_leaves_the_port_for_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let _hv = start(dir.path(), &[5]);
    let guest = SimEventChannels::connect(dir.path(), 5).unwrap();
    let dom0 = SimEventChannels::connect(dir.path(), 0).unwrap();
    let front = guest.alloc_unbound(0).await.unwrap();
    let back = dom0.bind_interdomain(5, front.local_port()).await.unwrap();
    back.notify().unwrap();
    delivered(front.as_ref()).await;

    drop(back);
    becomes_closed(front.as_ref()).await;

    // The restarted backend binds the same remote port; events flow again.
    let back = dom0.bind_interdomain(5, front.local_port()).await.unwrap();
    front.notify().unwrap();
    delivered(back.as_ref()).await;
    back.notify().unwrap();
    delivered(front.as_ref()).await;
}

#[tokio::test]
async fn a_closed_frontend_leaves_the_backend_port_unbound_for_that_guest() {
    let dir = tempfile::tempdir().unwrap();
    let _hv = start(dir.path(), &[5, 6]);
    let guest = SimEventChannels::connect(dir.path(), 5).unwrap();
    let dom0 = SimEventChannels::connect(dir.path(), 0).unwrap();
    let front = guest.alloc_unbound(0).await.unwrap();
    let back = dom0.bind_interdomain(5, front.local_port()).await.unwrap();
    drop(front);
    becomes_closed(back.as_ref()).await;
    // As on Xen, the backend's port is now unbound, for domain 5 only.
    let other = SimEventChannels::connect(dir.path(), 6).unwrap();
    assert!(other.bind_interdomain(0, back.local_port()).await.is_err());
    let front = guest.bind_interdomain(0, back.local_port()).await.unwrap();
    back.notify().unwrap();
    delivered(front.as_ref()).await;
}

#[tokio::test]
async fn removing_a_domain_closes_its_ports() {
    let dir = tempfile::tempdir().unwrap();
    let hv = start(dir.path(), &[5]);
    let guest = SimEventChannels::connect(dir.path(), 5).unwrap();
    let dom0 = SimEventChannels::connect(dir.path(), 0).unwrap();
    let front = guest.alloc_unbound(0).await.unwrap();
    let back = dom0.bind_interdomain(5, front.local_port()).await.unwrap();
    hv.remove_domain(5);
    assert!(matches!(back.notify(), Err(EventChannelError::Closed(_))));
    assert!(SimEventChannels::connect(dir.path(), 5).is_err());
    assert_eq!(hv.domains(), vec![0]);
}

/// The documented protocol, spoken with plain std sockets as a guest in
/// another language would.
#[tokio::test]
async fn the_raw_control_protocol_works_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let _hv = start(dir.path(), &[5]);
    let paths = DomainPaths::new(dir.path(), 5);
    let sock = UnixDatagram::bind(paths.ports_dir().join("raw-1.sock")).unwrap();
    let control = tokio::task::spawn_blocking({
        let path = paths.evtchn_socket();
        move || {
            let mut c = UnixStream::connect(path).unwrap();
            c.write_all(b"ALLOC 0 raw-1.sock\n").unwrap();
            let mut line = String::new();
            BufReader::new(c.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            (c, line)
        }
    })
    .await
    .unwrap();
    let (_control, line) = control;
    let port: u32 = line.strip_prefix("OK ").unwrap().trim().parse().unwrap();

    let back = SimEventChannels::connect(dir.path(), 0)
        .unwrap()
        .bind_interdomain(5, port)
        .await
        .unwrap();
    // Notify: a datagram to our own port's .peer link.
    sock.send_to(b"x", paths.peer_link(port)).unwrap();
    delivered(back.as_ref()).await;
    back.notify().unwrap();
    sock.set_read_timeout(Some(LONG)).unwrap();
    let mut buf = [0u8; 8];
    assert!(sock.recv(&mut buf).unwrap() >= 1);

    // Garbage gets an ERR line and a closed connection.
    for bad in [
        &b"HELLO 1\n"[..],
        b"ALLOC 0 ../../0/x.sock\n",
        &[b'A'; 400][..],
    ] {
        let reply = tokio::task::spawn_blocking({
            let path = paths.evtchn_socket();
            let bad = bad.to_vec();
            move || {
                let mut c = UnixStream::connect(path).unwrap();
                c.write_all(&bad).unwrap();
                let mut reply = String::new();
                c.read_to_string(&mut reply).unwrap();
                reply
            }
        })
        .await
        .unwrap();
        assert!(reply.starts_with("ERR "), "{reply:?}");
    }
}

// ---- across processes -------------------------------------------------------

const ROLE: &str = "PVGATE_SIM_EVTCHN_ROLE";
const DIR: &str = "PVGATE_SIM_EVTCHN_DIR";
const PORT: &str = "PVGATE_SIM_EVTCHN_PORT";

/// Not a test on its own: the entry point of helper processes spawned by the
/// tests below (it returns at once when run normally).
#[test]
fn helper_process_entry() {
    let (Ok(role), Ok(dir)) = (std::env::var(ROLE), std::env::var(DIR)) else {
        return;
    };
    assert_eq!(role, "backend", "unknown helper role");
    let port: u32 = std::env::var(PORT).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Exit when the test closes our stdin (or dies), never linger.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    rt.block_on(async {
        // A backend in dom0: bind the guest's port, then echo every event.
        let dom0 = SimEventChannels::connect(Path::new(&dir), 0).unwrap();
        let ch = dom0.bind_interdomain(7, port).await.unwrap();
        println!("BOUND {}", ch.local_port());
        loop {
            ch.wait().await.unwrap();
            ch.notify().unwrap();
        }
    });
}

fn spawn_backend(dir: &Path, port: u32) -> (Child, u32) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, "backend")
        .env(DIR, dir)
        .env(PORT, port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.map_while(Result::ok) {
        // libtest prints "test helper_process_entry ... " before our line.
        if let Some((_, p)) = line.split_once("BOUND ") {
            if let Ok(port) = p.trim().parse() {
                return (child, port);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("backend helper exited before binding");
}

#[tokio::test]
async fn a_killed_backend_process_can_be_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let _hv = start(dir.path(), &[7]);
    let guest = SimEventChannels::connect(dir.path(), 7).unwrap();
    let front = guest.alloc_unbound(0).await.unwrap();

    let port = front.local_port();
    let path = dir.path().to_path_buf();
    let (mut backend, _) = tokio::task::spawn_blocking(move || spawn_backend(&path, port))
        .await
        .unwrap();
    front.notify().unwrap();
    delivered(front.as_ref()).await;

    // The backend process dies: its port closes, ours becomes unbound.
    backend.kill().unwrap();
    backend.wait().unwrap();
    becomes_closed(front.as_ref()).await;

    // A new backend process binds the same port and events flow again.
    let path = dir.path().to_path_buf();
    let (mut backend, _) = tokio::task::spawn_blocking(move || spawn_backend(&path, port))
        .await
        .unwrap();
    front.notify().unwrap();
    delivered(front.as_ref()).await;
    backend.kill().unwrap();
    backend.wait().unwrap();
}

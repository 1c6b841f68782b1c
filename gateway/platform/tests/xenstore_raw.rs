//! The simulated xenstored against raw, hand-built and hostile wire messages.

use std::time::Duration;

use pvgate_platform::sim::xenstore::{Limits, XenstoreConfig, XenstoreServer};
use pvgate_platform::store::StoreOps;
use pvgate_platform::xs_client::wire::{Header, MsgType, HEADER_LEN};
use pvgate_platform::xs_client::XsStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Bound on waiting for a reply, so a broken server fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

async fn start(limits: Limits) -> (tempfile::TempDir, XenstoreServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = XenstoreServer::start(
        dir.path(),
        XenstoreConfig {
            limits,
            observer: None,
        },
    )
    .await
    .unwrap();
    (dir, server)
}

fn message(kind: u32, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        kind,
        req_id,
        tx_id,
        len: payload.len() as u32,
    };
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Read one message; `None` on EOF.
async fn receive(sock: &mut UnixStream) -> Option<(Header, Vec<u8>)> {
    let mut head = [0u8; HEADER_LEN];
    let read = tokio::time::timeout(PATIENCE, sock.read_exact(&mut head))
        .await
        .expect("reply or close within the patience bound");
    read.ok()?;
    let header = Header::parse(&head);
    let mut body = vec![0u8; header.len as usize];
    sock.read_exact(&mut body).await.ok()?;
    Some((header, body))
}

async fn call(sock: &mut UnixStream, kind: u32, req_id: u32, payload: &[u8]) -> (Header, Vec<u8>) {
    sock.write_all(&message(kind, req_id, 0, payload))
        .await
        .unwrap();
    let (h, body) = receive(sock)
        .await
        .expect("a reply, not a closed connection");
    assert_eq!(h.req_id, req_id, "reply echoes req_id");
    (h, body)
}

/// Read until EOF; returns how many bytes came before it.
async fn assert_closed(sock: &mut UnixStream) -> usize {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        let n = tokio::time::timeout(PATIENCE, sock.read(&mut buf))
            .await
            .expect("connection closed within the patience bound")
            .unwrap_or(0);
        if n == 0 {
            return total;
        }
        total += n;
    }
}

#[tokio::test]
async fn replies_follow_xs_wire_exactly() {
    let (_dir, server) = start(Limits::default()).await;
    let mut s = UnixStream::connect(server.dom0_socket()).await.unwrap();
    let (h, body) = call(&mut s, MsgType::Write as u32, 7, b"/k\0value").await;
    assert_eq!(
        (h.kind, h.tx_id, body.as_slice()),
        (MsgType::Write as u32, 0, &b"OK\0"[..])
    );
    // READ replies carry the value without a terminating nul.
    let (h, body) = call(&mut s, MsgType::Read as u32, 8, b"/k\0").await;
    assert_eq!(
        (h.kind, body.as_slice()),
        (MsgType::Read as u32, &b"value"[..])
    );
    let (h, body) = call(&mut s, MsgType::Read as u32, 9, b"/none\0").await;
    assert_eq!(
        (h.kind, body.as_slice()),
        (MsgType::Error as u32, &b"ENOENT\0"[..])
    );
    let (h, body) = call(&mut s, MsgType::Watch as u32, 10, b"/k\0tok\0").await;
    assert_eq!(
        (h.kind, body.as_slice()),
        (MsgType::Watch as u32, &b"OK\0"[..])
    );
    let (h, body) = receive(&mut s).await.unwrap();
    assert_eq!(
        (h.kind, h.req_id, h.tx_id, body.as_slice()),
        (MsgType::WatchEvent as u32, 0, 0, &b"/k\0tok\0"[..])
    );
}

#[tokio::test]
async fn malformed_messages_get_errors_and_the_server_lives_on() {
    let (_dir, server) = start(Limits::default()).await;
    let dom0 = XsStore::connect(Some(&server.dom0_socket())).await.unwrap();
    dom0.introduce_domain(5, 1, 1).await.unwrap();
    let mut guest = UnixStream::connect(server.guest_socket(5)).await.unwrap();

    // Garbage type, a path without its nul, trailing junk, a reserved type.
    for (req_id, (kind, payload)) in [
        (0xdead_beefu32, &b"/x\0"[..]),
        (MsgType::Read as u32, b"/local/domain/5/data"),
        (MsgType::Read as u32, b"data\0junk"),
        (20, b""),
        (MsgType::Error as u32, b"EINVAL\0"),
    ]
    .into_iter()
    .enumerate()
    {
        let (h, body) = call(&mut guest, kind, req_id as u32, payload).await;
        assert_eq!(h.kind, MsgType::Error as u32, "type {kind:#x}");
        assert_eq!(body, b"EINVAL\0", "type {kind:#x}");
    }
    // The same connection still works.
    let (h, body) = call(&mut guest, MsgType::Directory as u32, 50, b"data\0").await;
    assert_eq!(
        (h.kind, body.as_slice()),
        (MsgType::Directory as u32, &b""[..])
    );

    // A header announcing more than XENSTORE_PAYLOAD_MAX closes that connection.
    let mut header = Header {
        kind: MsgType::Write as u32,
        req_id: 1,
        tx_id: 0,
        len: 4097,
    }
    .to_bytes()
    .to_vec();
    header.extend_from_slice(&[b'a'; 64]);
    guest.write_all(&header).await.unwrap();
    assert_closed(&mut guest).await;

    // Random bytes as a header: closed as well (or answered, never a crash).
    let mut noise = UnixStream::connect(server.guest_socket(5)).await.unwrap();
    noise.write_all(&[0xff; 40]).await.unwrap();
    assert_closed(&mut noise).await;

    // Everyone else carries on.
    dom0.write("/alive", "yes").await.unwrap();
    assert_eq!(dom0.read("/alive").await.unwrap(), "yes");
    let mut again = UnixStream::connect(server.guest_socket(5)).await.unwrap();
    let (_, body) = call(&mut again, MsgType::GetDomainPath as u32, 1, b"5\0").await;
    assert_eq!(body, b"/local/domain/5\0");
}

#[tokio::test]
async fn random_messages_from_a_guest_each_get_one_reply() {
    let (_dir, server) = start(Limits::default()).await;
    let dom0 = XsStore::connect(Some(&server.dom0_socket())).await.unwrap();
    dom0.introduce_domain(9, 1, 1).await.unwrap();
    let mut guest = UnixStream::connect(server.guest_socket(9)).await.unwrap();
    // xorshift: deterministic, so a failure reproduces.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let alphabet = b"/ab0@-_\0\xff.Tdata";
    for req_id in 0..300u32 {
        // Mostly real types (INTRODUCE/RELEASE excluded: they answer EACCES
        // anyway), some invalid ones; payloads of odd bytes and odd lengths.
        let kind = (next() % 26) as u32;
        let len = (next() % 64) as usize;
        let payload: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let tx_id = if next() % 4 == 0 {
            (next() % 3) as u32
        } else {
            0
        };
        guest
            .write_all(&message(kind, req_id, tx_id, &payload))
            .await
            .unwrap();
        // Skip watch events; the reply to this request must come.
        loop {
            let (h, _) = receive(&mut guest).await.expect("connection stays open");
            if h.kind == MsgType::WatchEvent as u32 {
                continue;
            }
            assert_eq!(h.req_id, req_id);
            assert!(h.kind == kind || h.kind == MsgType::Error as u32);
            break;
        }
    }
    dom0.write("/still", "ok").await.unwrap();
}

#[tokio::test]
async fn a_guest_that_never_reads_is_disconnected_not_buffered() {
    let (_dir, server) = start(Limits {
        max_pending_messages: 8,
        ..Limits::default()
    })
    .await;
    let dom0 = XsStore::connect(Some(&server.dom0_socket())).await.unwrap();
    dom0.introduce_domain(5, 1, 1).await.unwrap();
    let mut guest = UnixStream::connect(server.guest_socket(5)).await.unwrap();
    // 50 watches with long tokens: every write below data/ sends ~50 kB.
    for i in 0..50u32 {
        let mut payload = b"data\0".to_vec();
        payload.extend_from_slice(format!("{i:04}{}", "t".repeat(1000)).as_bytes());
        payload.push(0);
        let (h, _) = call(&mut guest, MsgType::Watch as u32, i, &payload).await;
        assert_eq!(h.kind, MsgType::Watch as u32);
        // Its initial event.
        let (h, _) = receive(&mut guest).await.unwrap();
        assert_eq!(h.kind, MsgType::WatchEvent as u32);
    }
    // Now the guest stops reading: far more than the socket buffers and the
    // queue hold.
    for i in 0..200 {
        dom0.write(&format!("/local/domain/5/data/n{i}"), "x")
            .await
            .unwrap();
    }
    let delivered = assert_closed(&mut guest).await;
    let sent = 200 * 50 * 1000;
    assert!(
        delivered < sent / 2,
        "closed for not reading, not after delivering everything ({delivered} of {sent} bytes)"
    );
    assert_eq!(dom0.read("/local/domain/5/data/n0").await.unwrap(), "x");
}

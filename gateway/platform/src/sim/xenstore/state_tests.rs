//! Tests of the sans-IO server through whole wire messages.

use super::state::{ConnId, XenstoreState};
use super::{DomainEvent, Limits};
use crate::xs_client::wire::{Header, MsgType, HEADER_LEN};

/// A decoded message the server sent.
#[derive(Debug, PartialEq, Eq)]
struct Out {
    conn: ConnId,
    kind: u32,
    req_id: u32,
    tx_id: u32,
    payload: Vec<u8>,
}

fn decode(messages: Vec<(ConnId, Vec<u8>)>) -> Vec<Out> {
    messages
        .into_iter()
        .map(|(conn, bytes)| {
            let head: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
            let h = Header::parse(&head);
            assert_eq!(h.len as usize, bytes.len() - HEADER_LEN);
            Out {
                conn,
                kind: h.kind,
                req_id: h.req_id,
                tx_id: h.tx_id,
                payload: bytes[HEADER_LEN..].to_vec(),
            }
        })
        .collect()
}

struct Harness {
    state: XenstoreState,
    next_req: u32,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> Harness {
        Harness {
            state: XenstoreState::new(limits),
            next_req: 100,
        }
    }

    fn raw(&mut self, conn: ConnId, kind: u32, tx_id: u32, payload: &[u8]) -> Vec<Out> {
        self.next_req += 1;
        let header = Header {
            kind,
            req_id: self.next_req,
            tx_id,
            len: payload.len() as u32,
        };
        let out = decode(self.state.handle(conn, header, payload).messages);
        // Every request gets exactly one reply, first, echoing req_id/tx_id.
        assert_eq!(out[0].conn, conn);
        assert_eq!(out[0].req_id, self.next_req);
        assert_eq!(out[0].tx_id, tx_id);
        assert!(out[0].kind == kind || out[0].kind == MsgType::Error as u32);
        out
    }

    fn req(&mut self, conn: ConnId, kind: MsgType, tx_id: u32, args: &[&str]) -> Vec<Out> {
        let mut payload = Vec::new();
        for a in args {
            payload.extend_from_slice(a.as_bytes());
            payload.push(0);
        }
        self.raw(conn, kind as u32, tx_id, &payload)
    }

    /// The reply payload, or the error name.
    fn call(
        &mut self,
        conn: ConnId,
        kind: MsgType,
        tx_id: u32,
        args: &[&str],
    ) -> Result<Vec<u8>, String> {
        let out = self.req(conn, kind, tx_id, args);
        reply(&out[0])
    }

    fn write(&mut self, conn: ConnId, path: &str, value: &str) -> Result<Vec<u8>, String> {
        let mut payload = path.as_bytes().to_vec();
        payload.push(0);
        payload.extend_from_slice(value.as_bytes());
        let out = self.raw(conn, MsgType::Write as u32, 0, &payload);
        reply(&out[0])
    }
}

fn reply(out: &Out) -> Result<Vec<u8>, String> {
    if out.kind == MsgType::Error as u32 {
        Err(String::from_utf8(out.payload.clone()).unwrap())
    } else {
        Ok(out.payload.clone())
    }
}

fn events(out: &[Out], conn: ConnId) -> Vec<String> {
    out.iter()
        .filter(|o| o.conn == conn && o.kind == MsgType::WatchEvent as u32)
        .map(|o| {
            assert_eq!((o.req_id, o.tx_id), (0, 0));
            String::from_utf8(o.payload.clone()).unwrap()
        })
        .collect()
}

fn err(name: &str) -> Result<Vec<u8>, String> {
    Err(format!("{name}\0"))
}

#[test]
fn write_read_directory_and_replies_as_xenstored_sends_them() {
    let mut h = Harness::new();
    let d0 = h.state.connect(0).unwrap();
    assert_eq!(h.write(d0, "/a/b", "hello"), Ok(b"OK\0".to_vec()));
    assert_eq!(
        h.call(d0, MsgType::Read, 0, &["/a/b"]),
        Ok(b"hello".to_vec())
    );
    assert_eq!(h.call(d0, MsgType::Read, 0, &["/a"]), Ok(b"".to_vec()));
    assert_eq!(
        h.call(d0, MsgType::Directory, 0, &["/a"]),
        Ok(b"b\0".to_vec())
    );
    assert_eq!(
        h.call(d0, MsgType::Directory, 0, &["/a/b"]),
        Ok(b"".to_vec())
    );
    assert_eq!(h.call(d0, MsgType::Read, 0, &["/nope"]), err("ENOENT"));
    assert_eq!(h.call(d0, MsgType::Mkdir, 0, &["/m"]), Ok(b"OK\0".to_vec()));
    assert_eq!(
        h.call(d0, MsgType::GetPerms, 0, &["/m"]),
        Ok(b"n0\0".to_vec())
    );
    assert_eq!(
        h.call(d0, MsgType::SetPerms, 0, &["/m", "n0", "r3"]),
        Ok(b"OK\0".to_vec())
    );
    assert_eq!(
        h.call(d0, MsgType::GetPerms, 0, &["/m"]),
        Ok(b"n0\0r3\0".to_vec())
    );
    assert_eq!(
        h.call(d0, MsgType::GetDomainPath, 0, &["7"]),
        Ok(b"/local/domain/7\0".to_vec())
    );
    assert_eq!(h.call(d0, MsgType::Rm, 0, &["/a"]), Ok(b"OK\0".to_vec()));
    assert_eq!(h.call(d0, MsgType::Read, 0, &["/a/b"]), err("ENOENT"));
}

#[test]
fn watches_fire_once_at_once_then_for_changes_at_or_below() {
    let mut h = Harness::new();
    let d0 = h.state.connect(0).unwrap();
    let out = h.req(d0, MsgType::Watch, 0, &["/be", "tok"]);
    assert_eq!(reply(&out[0]), Ok(b"OK\0".to_vec()));
    assert_eq!(events(&out, d0), vec!["/be\0tok\0"]);

    let out = h.req(d0, MsgType::Write, 0, &["/be/vkbd/0/state"]);
    assert_eq!(events(&out, d0), vec!["/be/vkbd/0/state\0tok\0"]);
    let out = h.req(d0, MsgType::Write, 0, &["/bee"]);
    assert!(
        events(&out, d0).is_empty(),
        "a sibling with a common prefix is not below"
    );
    let out = h.req(d0, MsgType::Mkdir, 0, &["/be/vkbd/0/state"]);
    assert!(
        events(&out, d0).is_empty(),
        "mkdir of an existing node changes nothing"
    );

    // Removal: the removed path for watches above, descendants for exact ones.
    h.req(d0, MsgType::Watch, 0, &["/be/vkbd/0/state", "exact"]);
    let out = h.req(d0, MsgType::Rm, 0, &["/be/vkbd"]);
    let mut got = events(&out, d0);
    got.sort();
    assert_eq!(got, vec!["/be/vkbd\0tok\0", "/be/vkbd/0/state\0exact\0"]);

    assert_eq!(
        h.call(d0, MsgType::Unwatch, 0, &["/be", "tok"]),
        Ok(b"OK\0".to_vec())
    );
    assert_eq!(
        h.call(d0, MsgType::Unwatch, 0, &["/be", "tok"]),
        err("ENOENT")
    );
    let out = h.req(d0, MsgType::Write, 0, &["/be/x"]);
    assert!(events(&out, d0).is_empty());
    assert_eq!(
        h.call(d0, MsgType::Watch, 0, &["/q", "t"]),
        Ok(b"OK\0".to_vec())
    );
    assert_eq!(h.call(d0, MsgType::Watch, 0, &["/q", "t"]), err("EEXIST"));
}

#[test]
fn relative_watches_report_relative_paths() {
    let mut h = Harness::new();
    let d0 = h.state.connect(0).unwrap();
    let out = h.req(d0, MsgType::Watch, 0, &["backend", "t"]);
    assert_eq!(events(&out, d0), vec!["backend\0t\0"]);
    let out = h.req(d0, MsgType::Write, 0, &["/local/domain/0/backend/vdispl"]);
    assert_eq!(events(&out, d0), vec!["backend/vdispl\0t\0"]);
}

fn introduce(h: &mut Harness, d0: ConnId, domid: u16) {
    assert_eq!(
        h.call(
            d0,
            MsgType::Introduce,
            0,
            &[&domid.to_string(), "1234", "3"]
        ),
        Ok(b"OK\0".to_vec())
    );
}

#[test]
fn introduce_and_release_make_and_end_a_guest() {
    let mut h = Harness::new();
    let d0 = h.state.connect(0).unwrap();
    assert_eq!(
        h.state.connect(5),
        Err(crate::xs_client::wire::Errno::ENOENT)
    );
    h.req(d0, MsgType::Watch, 0, &["@introduceDomain", "i"]);
    h.req(d0, MsgType::Watch, 0, &["@releaseDomain", "r"]);
    let header = Header {
        kind: MsgType::Introduce as u32,
        req_id: 1,
        tx_id: 0,
        len: 9,
    };
    let fx = h.state.handle(d0, header, b"5\x001234\x003\0");
    assert_eq!(
        fx.domain_events,
        vec![DomainEvent::Introduced {
            domid: 5,
            mfn: 1234,
            evtchn: 3
        }]
    );
    assert!(events(&decode(fx.messages), d0).contains(&"@introduceDomain\0i\0".to_string()));
    assert_eq!(
        h.call(d0, MsgType::IsDomainIntroduced, 0, &["5"]),
        Ok(b"T\0".to_vec())
    );
    assert_eq!(
        h.call(d0, MsgType::IsDomainIntroduced, 0, &["6"]),
        Ok(b"F\0".to_vec())
    );
    // libxl's layout: the domain dir is dom0's, readable by the guest.
    assert_eq!(
        h.call(d0, MsgType::GetPerms, 0, &["/local/domain/5"]),
        Ok(b"n0\0r5\0".to_vec())
    );
    assert_eq!(
        h.call(d0, MsgType::GetPerms, 0, &["/local/domain/5/data"]),
        Ok(b"n5\0".to_vec())
    );

    let g = h.state.connect(5).unwrap();
    // A guest may not introduce or release anyone.
    assert_eq!(
        h.call(g, MsgType::Introduce, 0, &["6", "1", "1"]),
        err("EACCES")
    );
    assert_eq!(h.call(g, MsgType::Release, 0, &["5"]), err("EACCES"));
    // ... and does not see the special events (dom0 only by default).
    h.req(g, MsgType::Watch, 0, &["@releaseDomain", "g"]);

    let header = Header {
        kind: MsgType::Release as u32,
        req_id: 2,
        tx_id: 0,
        len: 2,
    };
    let fx = h.state.handle(d0, header, b"5\0");
    assert_eq!(fx.domain_events, vec![DomainEvent::Released { domid: 5 }]);
    assert_eq!(fx.close, vec![g]);
    let out = decode(fx.messages);
    assert_eq!(events(&out, d0), vec!["@releaseDomain\0r\0"]);
    assert!(events(&out, g).is_empty());
    assert_eq!(h.call(d0, MsgType::Release, 0, &["5"]), err("ENOENT"));
    assert_eq!(
        h.state.connect(5),
        Err(crate::xs_client::wire::Errno::ENOENT)
    );
}

#[test]
fn guests_are_confined_by_permissions() {
    let mut h = Harness::new();
    let d0 = h.state.connect(0).unwrap();
    introduce(&mut h, d0, 5);
    introduce(&mut h, d0, 6);
    let g5 = h.state.connect(5).unwrap();
    let g6 = h.state.connect(6).unwrap();
    // Relative paths are the guest's own; data/ is the guest's.
    assert_eq!(h.write(g5, "data/x", "1"), Ok(b"OK\0".to_vec()));
    assert_eq!(
        h.call(d0, MsgType::Read, 0, &["/local/domain/5/data/x"]),
        Ok(b"1".to_vec())
    );
    assert_eq!(
        h.call(d0, MsgType::GetPerms, 0, &["/local/domain/5/data/x"]),
        Ok(b"n5\0".to_vec())
    );
    // The backend's tree and other guests are closed to it.
    h.write(d0, "/local/domain/0/backend/vkbd/5/0/state", "1")
        .unwrap();
    assert_eq!(
        h.write(g5, "/local/domain/0/backend/vkbd/5/0/state", "4"),
        err("EACCES")
    );
    assert_eq!(
        h.call(g5, MsgType::Read, 0, &["/local/domain/6/data"]),
        err("EACCES")
    );
    assert_eq!(
        h.call(g5, MsgType::Read, 0, &["/local/domain/6/nothing"]),
        err("EACCES")
    );
    assert_eq!(
        h.write(g5, "/local/domain/5/new", "x"),
        err("EACCES"),
        "the domain dir is dom0's"
    );
    assert_eq!(
        h.call(g5, MsgType::Read, 0, &["/local/domain/5/nothing"]),
        err("ENOENT")
    );
    assert_eq!(h.call(g5, MsgType::Control, 0, &["x"]), err("EACCES"));
    assert_eq!(h.call(d0, MsgType::Control, 0, &["x"]), err("ENOSYS"));

    // Watch events follow read permission (or the parent's).
    h.req(g6, MsgType::Watch, 0, &["/local/domain/5", "spy"]);
    h.req(g5, MsgType::Watch, 0, &["/local/domain/5", "own"]);
    let out = h.req(g5, MsgType::Write, 0, &["data/y"]);
    assert!(
        events(&out, g6).is_empty(),
        "dom6 must not see dom5's writes"
    );
    assert_eq!(events(&out, g5), vec!["/local/domain/5/data/y\0own\0"]);
}

#[test]
fn transactions_conflict_and_fire_watches_at_commit() {
    let mut h = Harness::new();
    let d0 = h.state.connect(0).unwrap();
    let other = h.state.connect(0).unwrap();
    h.write(d0, "/t/n", "0").unwrap();
    h.req(other, MsgType::Watch, 0, &["/t", "w"]);

    let tx = h.call(d0, MsgType::TransactionStart, 0, &[""]).unwrap();
    let tx: u32 = std::str::from_utf8(&tx[..tx.len() - 1])
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(tx, 0);
    assert_eq!(h.call(d0, MsgType::Read, tx, &["/t/n"]), Ok(b"0".to_vec()));
    let out = h.raw(d0, MsgType::Write as u32, tx, b"/t/n\x001");
    assert!(
        events(&out, other).is_empty(),
        "nothing fires before commit"
    );
    assert_eq!(
        h.call(other, MsgType::Read, 0, &["/t/n"]),
        Ok(b"0".to_vec())
    );
    let out = h.req(d0, MsgType::TransactionEnd, tx, &["T"]);
    assert_eq!(reply(&out[0]), Ok(b"OK\0".to_vec()));
    assert_eq!(events(&out, other), vec!["/t/n\0w\0"]);
    assert_eq!(
        h.call(other, MsgType::Read, 0, &["/t/n"]),
        Ok(b"1".to_vec())
    );

    // Someone else writes what the transaction read: EAGAIN, nothing applied.
    let tx = h.call(d0, MsgType::TransactionStart, 0, &[""]).unwrap();
    let tx: u32 = std::str::from_utf8(&tx[..tx.len() - 1])
        .unwrap()
        .parse()
        .unwrap();
    h.call(d0, MsgType::Read, tx, &["/t/n"]).unwrap();
    h.raw(d0, MsgType::Write as u32, tx, b"/t/m\x00tx");
    h.write(other, "/t/n", "2").unwrap();
    assert_eq!(
        h.call(d0, MsgType::TransactionEnd, tx, &["T"]),
        err("EAGAIN")
    );
    assert_eq!(h.call(d0, MsgType::Read, 0, &["/t/m"]), err("ENOENT"));
    // The transaction is gone either way.
    assert_eq!(h.call(d0, MsgType::Read, tx, &["/t/n"]), err("ENOENT"));
    assert_eq!(
        h.call(d0, MsgType::TransactionEnd, tx, &["F"]),
        err("ENOENT")
    );
    // No nested transactions, and END needs T or F.
    assert_eq!(
        h.call(d0, MsgType::TransactionStart, 5, &[""]),
        err("EBUSY")
    );
    let tx = h.call(d0, MsgType::TransactionStart, 0, &[""]).unwrap();
    let tx: u32 = std::str::from_utf8(&tx[..tx.len() - 1])
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        h.call(d0, MsgType::TransactionEnd, tx, &["X"]),
        err("EINVAL")
    );
    assert_eq!(
        h.call(d0, MsgType::TransactionEnd, tx, &["F"]),
        Ok(b"OK\0".to_vec())
    );
}

#[test]
fn malformed_requests_get_einval_and_change_nothing() {
    let mut h = Harness::new();
    let d0 = h.state.connect(0).unwrap();
    for (kind, payload) in [
        (20u32, &b"/x\0"[..]),                 // XS_RESTRICT, removed
        (999, b"/x\0"),                        // no such type
        (u32::MAX, b""),                       // XS_INVALID
        (MsgType::Read as u32, b"/x"),         // path without its nul
        (MsgType::Read as u32, b"/x\0/y\0"),   // two args where one is due
        (MsgType::Read as u32, b"\xff\xfe\0"), // not UTF-8
        (MsgType::Write as u32, b"/x"),        // no nul at all
        (MsgType::Watch as u32, b"/x\0"),      // token missing
        (MsgType::WatchEvent as u32, b"/x\0t\0"),
        (MsgType::Error as u32, b"EINVAL\0"),
        (MsgType::SetPerms as u32, b"/x\0"),
        (MsgType::SetPerms as u32, b"/\0q0\0"),
        (MsgType::GetDomainPath as u32, b"70000\0"),
        (MsgType::DirectoryPart as u32, b"/\0-1\0"),
        (MsgType::Introduce as u32, b"0\x001\x001\0"),
        (MsgType::Mkdir as u32, b"/a//b\0"),
        (MsgType::Mkdir as u32, b"/a/\0"),
    ] {
        let out = h.raw(d0, kind, 0, payload);
        assert_eq!(
            reply(&out[0]),
            err("EINVAL"),
            "type {kind} payload {payload:?}"
        );
    }
    // The header's len must match the payload given.
    let header = Header {
        kind: MsgType::Read as u32,
        req_id: 9,
        tx_id: 0,
        len: 10,
    };
    let out = decode(h.state.handle(d0, header, b"/\0").messages);
    assert_eq!(reply(&out[0]), err("EINVAL"));
    assert_eq!(
        h.call(d0, MsgType::Directory, 0, &["/"]),
        Ok(b"local\0".to_vec())
    );
}

#[test]
fn guest_quotas_bound_what_a_guest_can_hold() {
    let mut h = Harness::with_limits(Limits {
        max_nodes_per_domain: 20,
        max_watches_per_connection: 2,
        max_transactions_per_connection: 1,
        max_transaction_entries: 8,
        max_value_len: 16,
        max_connections_per_domain: 2,
        ..Limits::default()
    });
    let d0 = h.state.connect(0).unwrap();
    introduce(&mut h, d0, 5);
    let g = h.state.connect(5).unwrap();
    h.state.connect(5).unwrap();
    assert_eq!(
        h.state.connect(5),
        Err(crate::xs_client::wire::Errno::ENOSPC)
    );

    assert_eq!(
        h.call(g, MsgType::Watch, 0, &["data", "1"]),
        Ok(b"OK\0".to_vec())
    );
    assert_eq!(
        h.call(g, MsgType::Watch, 0, &["data", "2"]),
        Ok(b"OK\0".to_vec())
    );
    assert_eq!(h.call(g, MsgType::Watch, 0, &["data", "3"]), err("E2BIG"));

    assert_eq!(h.write(g, "data/big", &"x".repeat(17)), err("ENOSPC"));
    assert_eq!(h.write(g, "data/ok", &"x".repeat(16)), Ok(b"OK\0".to_vec()));

    // 5 owned at introduce (data, drivers, feature, attr, error) + ok = 6.
    let mut made = 6;
    while h.write(g, &format!("data/n{made}"), "").is_ok() {
        made += 1;
        assert!(made <= 20);
    }
    assert_eq!(made, 20);
    assert_eq!(h.write(g, "data/one-more", ""), err("ENOSPC"));
    // dom0 is not limited.
    assert_eq!(
        h.write(d0, "/local/domain/5/data/by-dom0", ""),
        Ok(b"OK\0".to_vec())
    );

    let tx = h.call(g, MsgType::TransactionStart, 0, &[""]).unwrap();
    let tx: u32 = std::str::from_utf8(&tx[..tx.len() - 1])
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        h.call(g, MsgType::TransactionStart, 0, &[""]),
        err("ENOSPC")
    );
    let mut refused = false;
    for i in 0..20 {
        if h.call(g, MsgType::Read, tx, &[&format!("data/missing{i}")]) == err("ENOSPC") {
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "a transaction may not touch unboundedly many nodes"
    );
}

#[test]
fn replies_larger_than_the_payload_limit_are_e2big() {
    let mut h = Harness::new();
    let d0 = h.state.connect(0).unwrap();
    // 200 children of 30 bytes: a 6 kB list, which only DIRECTORY_PART can page.
    for i in 0..200 {
        h.write(d0, &format!("/big/child-with-a-longish-name-{i:04}"), "")
            .unwrap();
    }
    assert_eq!(h.call(d0, MsgType::Directory, 0, &["/big"]), err("E2BIG"));
    let part = h
        .call(d0, MsgType::DirectoryPart, 0, &["/big", "0"])
        .unwrap();
    assert!(part.len() <= crate::xs_client::wire::PAYLOAD_MAX);
    let names: Vec<&[u8]> = part.split(|&b| b == 0).skip(1).collect();
    assert_eq!(names[0], b"child-with-a-longish-name-0000");
}

//! The simulated xenstored driven through xenstore-rs, exactly as the gateway
//! reaches a real xenstored: via `XsStore` and directly via `XsTokio`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use pvgate_platform::sim::xenstore::{DomainObserver, Limits, XenstoreConfig, XenstoreServer};
use pvgate_platform::store::{transaction, Perm, Store, StoreError, StoreOps, WatchStream};
use pvgate_platform::xs_client::{xs_tokio_at, XsStore};
use pvgate_platform::DomId;
use xenstore_rs::{AsyncWatch, AsyncXs};

/// Generous bound so that a broken server fails the test instead of hanging
/// it; never a speed assertion.
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

async fn dom0(server: &XenstoreServer) -> XsStore {
    XsStore::connect(Some(&server.dom0_socket())).await.unwrap()
}

async fn guest(server: &XenstoreServer, toolstack: &XsStore, domid: DomId) -> XsStore {
    toolstack.introduce_domain(domid, 4242, 1).await.unwrap();
    XsStore::connect(Some(&server.guest_socket(domid)))
        .await
        .unwrap()
}

async fn next(stream: &mut WatchStream) -> String {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("watch event within the patience bound")
        .expect("watch stream still open")
}

fn perm(s: &str) -> Perm {
    Perm::from_wire(s).unwrap()
}

#[tokio::test]
async fn xenstore_rs_reads_writes_and_lists_the_sim() {
    let (_dir, server) = start(Limits::default()).await;
    let xs = xs_tokio_at(&server.dom0_socket()).await.unwrap();
    xs.write("/local/domain/0/backend/vdispl/5/0/state", "2")
        .await
        .unwrap();
    xs.write("/local/domain/0/backend/vdispl/5/0/be-alloc", "0")
        .await
        .unwrap();
    assert_eq!(
        &*xs.read("/local/domain/0/backend/vdispl/5/0/state")
            .await
            .unwrap(),
        "2"
    );
    let mut names: Vec<String> = xs
        .directory("/local/domain/0/backend/vdispl/5/0")
        .await
        .unwrap()
        .into_iter()
        .map(Into::into)
        .collect();
    names.sort();
    assert_eq!(names, vec!["be-alloc", "state"]);
    let err = xs.read("/local/domain/0/nothing").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    xs.rm("/local/domain/0/backend/vdispl/5").await.unwrap();
    assert!(xs
        .read("/local/domain/0/backend/vdispl/5/0/state")
        .await
        .is_err());

    // The same data through XsStore, including what xenstore-rs lacks.
    let store = dom0(&server).await;
    store.write("/a/b", "v").await.unwrap();
    assert_eq!(
        &*xs.read("/a/b").await.unwrap(),
        "v",
        "both clients see one store"
    );
    store.mkdir("/a/empty").await.unwrap();
    assert_eq!(store.read("/a/empty").await.unwrap(), "");
    assert_eq!(store.directory("/a").await.unwrap(), vec!["b", "empty"]);
    assert_eq!(store.get_perms("/a/b").await.unwrap(), vec![perm("n0")]);
    store
        .set_perms("/a/b", &[perm("n0"), perm("r7")])
        .await
        .unwrap();
    assert_eq!(
        store.get_perms("/a/b").await.unwrap(),
        vec![perm("n0"), perm("r7")]
    );
    assert_eq!(store.get_domain_path(9).await.unwrap(), "/local/domain/9");
    assert!(matches!(
        store.read("/a/c").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.read_opt("/a/c").await.unwrap(), None);
}

#[tokio::test]
async fn watches_fire_for_writes_below_the_watched_path_only() {
    let (_dir, server) = start(Limits::default()).await;
    let store = dom0(&server).await;
    let mut w = store.watch("/local/domain/0/backend/vkbd").await.unwrap();
    assert_eq!(
        next(&mut w).await,
        "/local/domain/0/backend/vkbd",
        "fires once at once"
    );

    store
        .write("/local/domain/0/backend/vsnd/5/0/state", "1")
        .await
        .unwrap();
    store
        .write("/local/domain/0/backend/vkbdx", "1")
        .await
        .unwrap();
    store
        .write("/local/domain/0/backend/vkbd/5/0/state", "2")
        .await
        .unwrap();
    // Events arrive in order, so the unrelated writes above would come first.
    assert_eq!(next(&mut w).await, "/local/domain/0/backend/vkbd/5/0/state");
    store.rm("/local/domain/0/backend/vkbd/5").await.unwrap();
    assert_eq!(next(&mut w).await, "/local/domain/0/backend/vkbd/5");

    // Directly through xenstore-rs's own watch stream as well.
    let xs = xs_tokio_at(&server.dom0_socket()).await.unwrap();
    let mut raw = Box::pin(xs.watch("/fe").await.unwrap());
    let first = tokio::time::timeout(PATIENCE, raw.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*first, "/fe");
    store.write("/other", "x").await.unwrap();
    store.write("/fe/x", "y").await.unwrap();
    let second = tokio::time::timeout(PATIENCE, raw.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*second, "/fe/x");
}

#[tokio::test]
async fn unconsumed_watch_events_do_not_stall_requests() {
    // xenstore-rs blocks its I/O task when a watch has 8 undelivered events;
    // XsStore drains them, so requests keep working while nobody reads.
    let (_dir, server) = start(Limits::default()).await;
    let store = dom0(&server).await;
    let mut w = store.watch("/busy").await.unwrap();
    for i in 0..50 {
        tokio::time::timeout(PATIENCE, store.write(&format!("/busy/{i}"), "x"))
            .await
            .expect("write not stalled by undelivered watch events")
            .unwrap();
    }
    assert_eq!(next(&mut w).await, "/busy");
    for i in 0..50 {
        assert_eq!(next(&mut w).await, format!("/busy/{i}"));
    }
}

#[tokio::test]
async fn conflicting_transactions_fail_with_again_and_succeed_on_retry() {
    let (_dir, server) = start(Limits::default()).await;
    let a = dom0(&server).await;
    let b = Arc::new(dom0(&server).await);
    a.write("/counter", "0").await.unwrap();

    // Two transactions on the same node: the second to commit loses.
    let t1 = a.transaction_start().await.unwrap();
    let t2 = b.transaction_start().await.unwrap();
    assert_eq!(t1.read("/counter").await.unwrap(), "0");
    assert_eq!(t2.read("/counter").await.unwrap(), "0");
    t1.write("/counter", "1").await.unwrap();
    t2.write("/counter", "2").await.unwrap();
    assert_eq!(
        a.read("/counter").await.unwrap(),
        "0",
        "invisible before commit"
    );
    t1.commit().await.unwrap();
    assert!(matches!(t2.commit().await, Err(StoreError::Again)));
    assert_eq!(a.read("/counter").await.unwrap(), "1");

    // The retry helper: the first attempt is disturbed by another writer
    // between its read and its commit, the second succeeds.
    let attempts = Arc::new(Mutex::new(0));
    let result = transaction(&a, |tx| {
        let attempts = attempts.clone();
        let b = b.clone();
        Box::pin(async move {
            let n: u32 = tx.read("/counter").await?.parse().unwrap();
            let attempt = {
                let mut guard = attempts.lock().unwrap();
                *guard += 1;
                *guard
            };
            if attempt == 1 {
                b.write("/counter", "10").await?;
            }
            tx.write("/counter", &(n + 1).to_string()).await?;
            tx.mkdir("/made-in-tx").await?;
            Ok(n)
        })
    })
    .await
    .unwrap();
    assert_eq!(*attempts.lock().unwrap(), 2);
    assert_eq!(result, 10, "the retry saw the other writer's value");
    assert_eq!(a.read("/counter").await.unwrap(), "11");
    assert_eq!(a.read("/made-in-tx").await.unwrap(), "");

    // An aborted transaction changes nothing.
    let t = a.transaction_start().await.unwrap();
    t.write("/counter", "99").await.unwrap();
    t.abort().await.unwrap();
    assert_eq!(a.read("/counter").await.unwrap(), "11");
}

#[tokio::test]
async fn a_guest_cannot_write_backend_nodes_or_read_other_guests() {
    let (_dir, server) = start(Limits::default()).await;
    let toolstack = dom0(&server).await;
    toolstack
        .write("/local/domain/0/backend/vkbd/5/0/state", "2")
        .await
        .unwrap();
    toolstack
        .write("/local/domain/6/secret", "s")
        .await
        .unwrap();
    let g = guest(&server, &toolstack, 5).await;

    let e = g
        .write("/local/domain/0/backend/vkbd/5/0/state", "4")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied { .. }), "{e}");
    let e = g
        .write("/local/domain/0/backend/vkbd/5/0/new", "4")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied { .. }), "{e}");
    let e = g.read("/local/domain/6/secret").await.unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied { .. }), "{e}");
    let e = g.rm("/local/domain/0/backend").await.unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied { .. }), "{e}");
    let e = g
        .set_perms("/local/domain/5", &[perm("n5")])
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied { .. }), "{e}");
    let e = g.introduce_domain(7, 1, 1).await.unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied { .. }), "{e}");
    // Unchanged.
    assert_eq!(
        toolstack
            .read("/local/domain/0/backend/vkbd/5/0/state")
            .await
            .unwrap(),
        "2"
    );
    // Its own data dir is its own, and relative paths start at its domain.
    g.write("data/hello", "world").await.unwrap();
    assert_eq!(
        toolstack.read("/local/domain/5/data/hello").await.unwrap(),
        "world"
    );
    assert_eq!(g.get_perms("data/hello").await.unwrap(), vec![perm("n5")]);
}

#[tokio::test]
async fn a_guest_writes_its_frontend_when_perms_are_set_as_libxl_does() {
    let (_dir, server) = start(Limits::default()).await;
    let toolstack = dom0(&server).await;
    let g = guest(&server, &toolstack, 5).await;
    let fe = "/local/domain/5/device/vkbd/0";
    let be = "/local/domain/0/backend/vkbd/5/0";
    // libxl__device_generic_add: frontend owned by the guest, readable by the
    // backend domain; backend owned by the backend domain, readable by the guest.
    transaction(&toolstack, |tx| {
        Box::pin(async move {
            tx.write(&format!("{fe}/backend"), be).await?;
            tx.write(&format!("{fe}/state"), "1").await?;
            tx.set_perms(fe, &[perm("n5"), perm("r0")]).await?;
            tx.set_perms(&format!("{fe}/backend"), &[perm("n5"), perm("r0")])
                .await?;
            tx.set_perms(&format!("{fe}/state"), &[perm("n5"), perm("r0")])
                .await?;
            tx.write(&format!("{be}/frontend"), fe).await?;
            tx.write(&format!("{be}/state"), "1").await?;
            tx.set_perms(be, &[perm("n0"), perm("r5")]).await?;
            tx.set_perms(&format!("{be}/frontend"), &[perm("n0"), perm("r5")])
                .await?;
            tx.set_perms(&format!("{be}/state"), &[perm("n0"), perm("r5")])
                .await?;
            Ok(())
        })
    })
    .await
    .unwrap();

    let mut backend_watch = toolstack.watch(fe).await.unwrap();
    assert_eq!(next(&mut backend_watch).await, fe);
    let mut frontend_watch = g.watch(&format!("{be}/state")).await.unwrap();
    assert_eq!(next(&mut frontend_watch).await, format!("{be}/state"));

    // The frontend half of the handshake, as a guest does it.
    assert_eq!(g.read(&format!("{be}/state")).await.unwrap(), "1");
    g.write(&format!("{fe}/page-ref"), "8").await.unwrap();
    g.write("device/vkbd/0/state", "3").await.unwrap();
    assert_eq!(next(&mut backend_watch).await, format!("{fe}/page-ref"));
    assert_eq!(next(&mut backend_watch).await, format!("{fe}/state"));
    assert_eq!(toolstack.read(&format!("{fe}/state")).await.unwrap(), "3");
    // New frontend keys are the guest's and inherit the backend's read access.
    assert_eq!(
        g.get_perms(&format!("{fe}/page-ref")).await.unwrap(),
        vec![perm("n5"), perm("r0")]
    );

    toolstack.write(&format!("{be}/state"), "4").await.unwrap();
    assert_eq!(next(&mut frontend_watch).await, format!("{be}/state"));
    assert_eq!(g.read(&format!("{be}/state")).await.unwrap(), "4");
    let e = g.write(&format!("{be}/state"), "5").await.unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied { .. }), "{e}");
}

#[tokio::test]
async fn watch_events_reach_only_domains_that_may_read() {
    let (_dir, server) = start(Limits::default()).await;
    let toolstack = dom0(&server).await;
    let g5 = guest(&server, &toolstack, 5).await;
    let g6 = guest(&server, &toolstack, 6).await;
    let mut spy = g6.watch("/local/domain/5").await.unwrap();
    assert_eq!(next(&mut spy).await, "/local/domain/5");
    g5.write("data/private", "1").await.unwrap();
    toolstack
        .write("/local/domain/6/data/public", "2")
        .await
        .unwrap();
    let mut own = g6.watch("/local/domain/6/data").await.unwrap();
    assert_eq!(next(&mut own).await, "/local/domain/6/data");
    toolstack
        .write("/local/domain/6/data/again", "3")
        .await
        .unwrap();
    assert_eq!(next(&mut own).await, "/local/domain/6/data/again");
    // dom5's write would have reached the spy before dom0's later write; it did not.
    toolstack
        .set_perms("/local/domain/5/data/private", &[perm("n5"), perm("r6")])
        .await
        .unwrap();
    assert_eq!(next(&mut spy).await, "/local/domain/5/data/private");
}

struct Recorder(Mutex<Vec<String>>);

impl DomainObserver for Recorder {
    fn on_domain_introduced(&self, domid: DomId, mfn: u64, evtchn: u32) {
        self.0
            .lock()
            .unwrap()
            .push(format!("introduced {domid} {mfn} {evtchn}"));
    }
    fn on_domain_released(&self, domid: DomId) {
        self.0.lock().unwrap().push(format!("released {domid}"));
    }
}

#[tokio::test]
async fn introduce_and_release_manage_the_guest_socket_and_tell_the_observer() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
    let server = XenstoreServer::start(
        dir.path(),
        XenstoreConfig {
            limits: Limits::default(),
            observer: Some(recorder.clone()),
        },
    )
    .await
    .unwrap();
    let toolstack = dom0(&server).await;
    let mut intro = toolstack.watch("@introduceDomain").await.unwrap();
    assert_eq!(next(&mut intro).await, "@introduceDomain");
    let mut rel = toolstack.watch("@releaseDomain").await.unwrap();
    assert_eq!(next(&mut rel).await, "@releaseDomain");
    assert!(!server.guest_socket(3).exists());

    let g = guest(&server, &toolstack, 3).await;
    assert!(server.guest_socket(3).exists());
    assert_eq!(next(&mut intro).await, "@introduceDomain");
    assert!(toolstack.is_domain_introduced(3).await.unwrap());
    assert_eq!(server.introduced_domains(), vec![3]);
    g.write("data/x", "1").await.unwrap();

    toolstack.release_domain(3).await.unwrap();
    assert_eq!(next(&mut rel).await, "@releaseDomain");
    assert!(!server.guest_socket(3).exists());
    assert!(!toolstack.is_domain_introduced(3).await.unwrap());
    let e = g.read("data/x").await.unwrap_err();
    assert!(
        matches!(e, StoreError::Io(_)),
        "the guest's connections are closed: {e}"
    );
    let e = g.get_perms("data/x").await.unwrap_err();
    assert!(matches!(e, StoreError::Io(_)), "{e}");
    assert!(XsStore::connect(Some(&server.guest_socket(3)))
        .await
        .is_err());
    assert_eq!(
        *recorder.0.lock().unwrap(),
        vec!["introduced 3 4242 1".to_string(), "released 3".to_string()]
    );
    // The node stays for the toolstack to remove, as with C xenstored.
    assert_eq!(toolstack.read("/local/domain/3/data/x").await.unwrap(), "1");
}

#[tokio::test]
async fn guest_quotas_are_enforced_through_the_socket() {
    let (_dir, server) = start(Limits {
        max_nodes_per_domain: 12,
        max_watches_per_connection: 3,
        max_transactions_per_connection: 2,
        max_connections_per_domain: 4,
        ..Limits::default()
    })
    .await;
    let toolstack = dom0(&server).await;
    let g = guest(&server, &toolstack, 5).await;

    let mut streams = Vec::new();
    for i in 0..3 {
        streams.push(g.watch(&format!("data/w{i}")).await.unwrap());
    }
    assert!(g.watch("data/w3").await.is_err(), "watch quota");

    let _t1 = g.transaction_start().await.unwrap();
    let _t2 = g.transaction_start().await.unwrap();
    let e = g
        .transaction_start()
        .await
        .err()
        .expect("transaction quota");
    assert!(
        matches!(e, StoreError::Invalid { ref reason, .. } if reason.contains("ENOSPC")),
        "{e}"
    );

    let mut written = 0;
    let e = loop {
        match g.write(&format!("data/n{written}"), "x").await {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        assert!(written <= 12, "node quota never hit");
    };
    assert!(
        matches!(e, StoreError::Invalid { ref reason, .. } if reason.contains("ENOSPC")),
        "{e}"
    );
    // Introduce made 5 guest-owned nodes; 12 in all.
    assert_eq!(written, 7);

    // Its own XsStore uses two connections; a second store makes four.
    let _g2 = XsStore::connect(Some(&server.guest_socket(5)))
        .await
        .unwrap();
    assert!(
        XsStore::connect(Some(&server.guest_socket(5)))
            .await
            .is_err(),
        "connection quota"
    );
    // At the socket level: a connection beyond the limit is closed at once.
    let mut raw = tokio::net::UnixStream::connect(server.guest_socket(5))
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(PATIENCE, tokio::io::AsyncReadExt::read(&mut raw, &mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "refused connection is closed");
    // dom0 is unaffected.
    toolstack.write("/still/fine", "1").await.unwrap();
}

#[tokio::test]
async fn dropped_watches_and_transactions_are_given_back() {
    // With room for one watch and one transaction, a second of each only
    // fits once the first was released by dropping it.
    let (_dir, server) = start(Limits {
        max_watches_per_connection: 1,
        max_transactions_per_connection: 1,
        ..Limits::default()
    })
    .await;
    let toolstack = dom0(&server).await;
    let g = guest(&server, &toolstack, 5).await;

    let mut w = g.watch("data/a").await.unwrap();
    assert_eq!(next(&mut w).await, "data/a");
    assert!(g.watch("data/b").await.is_err());
    drop(w);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut w = loop {
        // The unwatch travels asynchronously; retry until it has arrived.
        match g.watch("data/b").await {
            Ok(w) => break w,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => panic!("the dropped watch was never removed: {e}"),
        }
    };
    assert_eq!(next(&mut w).await, "data/b");
    g.write("data/b", "1").await.unwrap();
    assert_eq!(next(&mut w).await, "data/b");

    let t = g.transaction_start().await.unwrap();
    t.write("data/t", "never").await.unwrap();
    assert!(g.transaction_start().await.is_err());
    drop(t);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let t = loop {
        match g.transaction_start().await {
            Ok(t) => break t,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => panic!("the dropped transaction was never aborted: {e}"),
        }
    };
    t.commit().await.unwrap();
    assert!(matches!(
        g.read("data/t").await,
        Err(StoreError::NotFound { .. })
    ));
}

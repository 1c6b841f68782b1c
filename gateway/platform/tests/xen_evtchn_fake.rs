//! The xen platform's event channels end to end, without Xen: a fake
//! `libxenevtchn` (C, built here with gcc) whose "kernel" is a pipe. The
//! test fires ports into the pipe as Xen would mark them pending; our
//! reader task must poll the fd through tokio, take the ports, wake the
//! right channel (coalescing), unmask, and unbind on drop. What the fake
//! cannot show (real masking, real gntdev/evtchn devices) waits for the
//! QEMU test in tests/xen-qemu/.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pvgate_platform::xen::ffi::EvtchnFns;
use pvgate_platform::xen::XenEventChannels;
use pvgate_platform::{EventChannelError, EventChannels};

const FAKE: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

struct xenevtchn_handle { int rd, wr; };
#define PORTS 1024
static struct xenevtchn_handle *last;
static int next_port = 10;
static int unmasks[PORTS], notified[PORTS], unbound[PORTS], devnull;

struct xenevtchn_handle *xenevtchn_open(void *logger, unsigned flags) {
    int p[2];
    struct xenevtchn_handle *h = malloc(sizeof *h);
    if (!h) return NULL;
    if (devnull) { /* what the library does with /dev/null as the device */
        h->rd = h->wr = open("/dev/null", O_RDWR | O_CLOEXEC);
        return last = h;
    }
    if (pipe2(p, O_CLOEXEC)) return NULL;
    h->rd = p[0]; h->wr = p[1];
    return last = h;
}
int xenevtchn_close(struct xenevtchn_handle *h) {
    close(h->rd);
    if (h->wr != h->rd) close(h->wr);
    free(h);
    return 0;
}
int xenevtchn_fd(struct xenevtchn_handle *h) { return h->rd; }
int xenevtchn_notify(struct xenevtchn_handle *h, uint32_t port) {
    if (port >= PORTS || unbound[port]) { errno = ENOTCONN; return -1; }
    notified[port]++; return 0;
}
int xenevtchn_bind_unbound_port(struct xenevtchn_handle *h, uint32_t domid) { return next_port++; }
int xenevtchn_bind_interdomain(struct xenevtchn_handle *h, uint32_t domid, uint32_t remote) {
    if (domid == 99) { errno = ESRCH; return -1; }
    return next_port++;
}
int xenevtchn_unbind(struct xenevtchn_handle *h, uint32_t port) { unbound[port]++; return 0; }
/* Blocks on an empty pipe, as the real one may: the reader must poll first. */
int xenevtchn_pending(struct xenevtchn_handle *h) {
    uint32_t port;
    if (read(h->rd, &port, sizeof port) != sizeof port) return -1;
    return (int)port;
}
int xenevtchn_unmask(struct xenevtchn_handle *h, uint32_t port) { unmasks[port % PORTS]++; return 0; }

/* The test's side: what the hypervisor and the kernel would do. */
void fake_fire(uint32_t port) { if (write(last->wr, &port, sizeof port) != sizeof port) abort(); }
int fake_unmasks(uint32_t port) { return unmasks[port]; }
int fake_notified(uint32_t port) { return notified[port]; }
int fake_unbound(uint32_t port) { return unbound[port]; }
void fake_devnull(void) { devnull = 1; }
"#;

fn build_fake(dir: &Path) -> PathBuf {
    let src = dir.join("fake_evtchn.c");
    let lib = dir.join("libfakeevtchn.so");
    std::fs::write(&src, FAKE).unwrap();
    let out = Command::new("gcc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run gcc ({e}); this test needs it: apt-get install gcc")
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

struct Controls {
    _lib: libloading::Library,
    fire: unsafe extern "C" fn(u32),
    unmasks: unsafe extern "C" fn(u32) -> i32,
    notified: unsafe extern "C" fn(u32) -> i32,
    unbound: unsafe extern "C" fn(u32) -> i32,
}

impl Controls {
    fn open(path: &Path) -> Controls {
        // SAFETY: our fake, with these exact C types; dlopen of the same
        // path returns the already loaded copy, so the state is shared.
        unsafe {
            let lib = libloading::Library::new(path).unwrap();
            Controls {
                fire: *lib.get(b"fake_fire\0").unwrap(),
                unmasks: *lib.get(b"fake_unmasks\0").unwrap(),
                notified: *lib.get(b"fake_notified\0").unwrap(),
                unbound: *lib.get(b"fake_unbound\0").unwrap(),
                _lib: lib,
            }
        }
    }
    fn fire(&self, port: u32) {
        unsafe { (self.fire)(port) }
    }
    fn unmasks(&self, port: u32) -> i32 {
        unsafe { (self.unmasks)(port) }
    }
    fn notified(&self, port: u32) -> i32 {
        unsafe { (self.notified)(port) }
    }
    fn unbound(&self, port: u32) -> i32 {
        unsafe { (self.unbound)(port) }
    }
}

async fn settle() {
    // Let the reader task run (current-thread runtime) and drain the pipe.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[tokio::test]
async fn ports_are_read_through_tokio_woken_coalesced_unmasked_and_unbound() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_fake(dir.path());
    let fake = Controls::open(&path);
    let fns = EvtchnFns::load_from(path.to_str().unwrap()).unwrap();
    let events = XenEventChannels::open(fns).unwrap();

    let a = events.bind_interdomain(5, 3).await.unwrap();
    let b = events.alloc_unbound(6).await.unwrap();
    let (pa, pb) = (a.local_port(), b.local_port());
    assert_ne!(pa, pb);

    // Three events before anyone waits: one wake, three unmasks.
    for _ in 0..3 {
        fake.fire(pa);
    }
    tokio::time::timeout(Duration::from_secs(5), a.wait())
        .await
        .expect("the pending port wakes its waiter")
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), a.wait())
            .await
            .is_err(),
        "notifications coalesce"
    );
    assert_eq!(fake.unmasks(pa), 3);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), b.wait())
            .await
            .is_err(),
        "the other port saw nothing"
    );

    // A waiter parked first is woken.
    let waiting = tokio::spawn(async move { b.wait().await.map(|()| b) });
    settle().await;
    fake.fire(pb);
    let b = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken")
        .unwrap()
        .unwrap();

    // A port that is not ours is ignored and left masked.
    fake.fire(500);
    settle().await;
    assert_eq!(fake.unmasks(500), 0);

    // More events than one batch: the reader yields and comes back.
    for _ in 0..600 {
        fake.fire(pb);
    }
    tokio::time::timeout(Duration::from_secs(5), b.wait())
        .await
        .unwrap()
        .unwrap();
    settle().await;
    assert_eq!(fake.unmasks(pb), 601);

    a.notify().unwrap();
    assert_eq!(fake.notified(pa), 1);

    // Dropped: unbound, and its later events are ignored.
    drop(a);
    assert_eq!(fake.unbound(pa), 1);
    fake.fire(pa);
    settle().await;
    assert_eq!(fake.unmasks(pa), 3);
    drop(b);
    assert_eq!(fake.unbound(pb), 1);
}

#[tokio::test]
async fn bind_errors_name_the_domain_and_port_and_bad_input_never_reaches_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_fake(dir.path());
    let fns = EvtchnFns::load_from(path.to_str().unwrap()).unwrap();
    let events = XenEventChannels::open(fns).unwrap();

    let err = events.bind_interdomain(99, 7).await.err().unwrap();
    assert!(
        matches!(
            err,
            EventChannelError::Bind {
                domid: 99,
                remote_port: 7,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("domain 99") && msg.contains("port 7"), "{msg}");

    for (domid, port) in [(5, 0), (5, 1 << 17), (0x7FF0, 3)] {
        let err = events.bind_interdomain(domid, port).await.err().unwrap();
        assert!(matches!(err, EventChannelError::Bind { .. }), "{err}");
    }
    assert!(events.alloc_unbound(0x7FF5).await.is_err());
}

#[tokio::test]
async fn a_stand_in_device_that_cannot_be_polled_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_fake(dir.path());
    // SAFETY: `void fake_devnull(void)` in our fake.
    let lib = unsafe { libloading::Library::new(&path) }.unwrap();
    unsafe {
        let f: unsafe extern "C" fn() = *lib.get(b"fake_devnull\0").unwrap();
        f();
    }
    let fns = EvtchnFns::load_from(path.to_str().unwrap()).unwrap();
    let err = XenEventChannels::open(fns).err().unwrap().to_string();
    assert!(err.contains("/dev/xen/evtchn cannot be polled"), "{err}");
}

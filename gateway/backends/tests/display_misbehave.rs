//! Each guest-simulator misbehaviour that concerns displif, while a second,
//! well-behaved guest keeps flipping: the bad request is refused (or the
//! bad device closed) and the good guest's flips keep being answered.

mod display_common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use display_common::*;
use futures::StreamExt;
use pvgate_guest_sim::content::Scene;
use pvgate_guest_sim::display::FlipOutcome;
use pvgate_guest_sim::guest::GuestSim;
use pvgate_guest_sim::misbehave::{on_display, Mode, Outcome};
use pvgate_protocol::displif::PixelFormat;
use tokio::task::JoinHandle;

const BAD: u16 = 41;
const GOOD: u16 = 42;

/// The good guest flipping in the background.
struct Flipper {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<u64>,
}

impl Flipper {
    async fn start(guest: &GuestSim) -> Flipper {
        let session = guest.displays[0]
            .connected(WAIT)
            .await
            .expect("good guest connected");
        let mut screen = Screen::new(session, 0, PixelFormat::Xrgb8888, Scene::Desktop).await;
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (done, stop) = (done.clone(), stop.clone());
            tokio::spawn(async move {
                let mut timeouts = 0;
                while !stop.load(Ordering::Relaxed) {
                    match screen.flip_next().await.1 {
                        FlipOutcome::Done => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        FlipOutcome::FrameDoneTimedOut => timeouts += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                timeouts
            })
        };
        Flipper { done, stop, task }
    }

    /// Wait until `more` further flips completed.
    async fn progresses(&self, more: u64) {
        let start = self.done.load(Ordering::Relaxed);
        tokio::time::timeout(WAIT, async {
            while self.done.load(Ordering::Relaxed) < start + more {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the good guest's flips keep being answered");
    }

    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let timeouts = self.task.await.expect("flipper");
        assert_eq!(timeouts, 0, "no flip of the good guest timed out");
    }
}

/// Wait until the backend's state for `domid`'s device is one of `states`.
async fn backend_state(h: &Harness, domid: u16, states: &[&str]) -> String {
    let path = format!("/local/domain/0/backend/vdispl/{domid}/0/state");
    let store = h.dom0.store.clone();
    let mut watch = store.watch(&path).await.expect("watch");
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(v) = store.read_opt(&path).await.ok().flatten() {
                if states.contains(&v.as_str()) {
                    return v;
                }
            }
            watch.next().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{path} never became one of {states:?}"))
}

struct Scenario {
    h: Harness,
    bad: Option<GuestSim>,
    good: GuestSim,
    flipper: Flipper,
    backends: Vec<Backend>,
}

async fn scenario() -> Scenario {
    let h = Harness::start().await;
    let bad = h.add_guest(BAD, &["connectors=64x64"]).await;
    let good = h.add_guest(GOOD, &["connectors=128x96"]).await;
    let backends = vec![h.backend(BAD, 0), h.backend(GOOD, 0)];
    let flipper = Flipper::start(&good).await;
    flipper.progresses(2).await;
    Scenario {
        h,
        bad: Some(bad),
        good,
        flipper,
        backends,
    }
}

impl Scenario {
    fn bad(&self) -> &GuestSim {
        self.bad.as_ref().expect("bad guest still here")
    }

    async fn misbehave(&self, mode: Mode) -> Outcome {
        let session = self.bad().displays[0]
            .connected(WAIT)
            .await
            .expect("bad guest connected");
        on_display(mode, &session, Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", mode.name()))
    }

    /// The bad guest's device still works for a proper request.
    async fn bad_guest_still_served(&self) {
        let session = self.bad().displays[0].current().expect("still connected");
        let edid = session
            .get_edid(0, pvgate_guest_sim::display::EDID_MAX_SIZE)
            .await
            .expect("a valid request after the bad one is served");
        assert_eq!(edid.len(), 128);
    }

    async fn end(self) {
        self.flipper.progresses(3).await;
        self.flipper.finish().await;
        drop(self.good);
        drop(self.bad);
        for b in self.backends {
            b.stop().await;
        }
        drop(self.h);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grant_is_refused_with_efault() {
    let s = scenario().await;
    let out = s.misbehave(Mode::InvalidGref).await;
    assert_eq!(out.statuses, vec![-14], "{out:?}");
    // Every refusal is logged with guest, device and reason.
    let line = logs()
        .find(&[
            "refused displif request",
            &format!("guest={BAD}"),
            "DBUF_CREATE",
            "status=-14",
        ])
        .unwrap_or_else(|| panic!("no refusal logged; logs: {:#?}", logs().lines()));
    for part in ["device=0", "DBUF_CREATE", "reason=", "grant", "status=-14"] {
        assert!(line.contains(part), "{part:?} missing from {line:?}");
    }
    s.bad_guest_still_served().await;
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_to_another_domain_are_refused_with_efault() {
    let s = scenario().await;
    let out = s.misbehave(Mode::ForeignGref).await;
    assert_eq!(out.statuses, vec![-14], "{out:?}");
    s.bad_guest_still_served().await;
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflowing_sizes_are_refused_with_einval() {
    let s = scenario().await;
    let out = s.misbehave(Mode::Overflow).await;
    assert_eq!(out.statuses, vec![-22], "{out:?}");
    s.bad_guest_still_served().await;
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_opcodes_are_answered_enosys() {
    let s = scenario().await;
    let out = s.misbehave(Mode::GarbageOpcodes).await;
    assert_eq!(out.sent, 8);
    assert_eq!(out.statuses, vec![-38; 8], "{out:?}");
    s.bad_guest_still_served().await;
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_index_running_ahead_closes_that_device_only() {
    let s = scenario().await;
    s.misbehave(Mode::RingAhead).await;
    backend_state(&s.h, BAD, &["5", "6"]).await;
    assert!(s.h.outputs.of_guest(BAD).is_empty(), "its outputs are gone");
    assert_eq!(backend_state(&s.h, GOOD, &["4"]).await, "4");
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_flood_closes_that_device_only() {
    let s = scenario().await;
    let out = s.misbehave(Mode::Flood).await;
    // Refused one by one (no such framebuffer) until the budget ran out.
    assert!(
        out.statuses.iter().all(|st| *st == -2),
        "{:?}",
        &out.statuses[..8.min(out.statuses.len())]
    );
    assert!(out.silent, "the device stopped answering");
    backend_state(&s.h, BAD, &["5", "6"]).await;
    assert_eq!(backend_state(&s.h, GOOD, &["4"]).await, "4");
    s.end().await;
}

/// Vanish and Hang are process-level modes of the binary; in process, the
/// guest's tasks are aborted mid-stream without closing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_vanishes_mid_stream_does_not_disturb_others() {
    let mut s = scenario().await;
    let session = s.bad().displays[0].connected(WAIT).await.unwrap();
    let mut screen = Screen::new(session, 0, PixelFormat::Xrgb8888, Scene::Pattern).await;
    for _ in 0..3 {
        screen.flip_next().await;
    }
    drop(screen);
    if let Some(bad) = s.bad.take() {
        bad.vanish();
    }
    s.flipper.progresses(5).await;
    assert_eq!(backend_state(&s.h, GOOD, &["4"]).await, "4");
    s.end().await;
}

/// Hang: the guest keeps its rings, grants and channels but stops reading
/// events, while its compositor's PG_FLIPs keep coming (its interrupt
/// handler is what hung). The event page has 63 slots. Pinned down here:
/// every flip is still answered at once (the gateway never waits for the
/// guest to read), the first 63 EVT_PG_FLIPs fill the page, every later one
/// is dropped and counted rather than queued (a hung guest costs no memory),
/// the device stays connected, and the good guest is served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_guest_whose_event_page_fills_is_answered_and_its_events_dropped() {
    use pvgate_protocol::displif::{DisplRequest, DisplRequestOp, DisplResponse};
    const EVENT_SLOTS: u64 = 63;
    const FLIPS: u64 = 100;
    let mut s = scenario().await;
    let session = s.bad().displays[0].connected(WAIT).await.unwrap();
    let mut screen = Screen::new(session.clone(), 0, PixelFormat::Xrgb8888, Scene::Pattern).await;
    // Normal flips first: their events are read, the page is empty.
    for _ in 0..3 {
        assert_eq!(screen.flip_next().await.1, FlipOutcome::Done);
    }
    let fb = screen.fbs[0];
    let ring = session.request_channel(0).expect("connector 0's ring");
    let frozen = s.bad.take().expect("bad guest").freeze();
    let k = key(BAD, 0, 0);
    // The flip counter may be bumped just after the event the guest waited
    // for went out: let the three normal flips settle in it before taking
    // the baseline (CI once read it one flip early).
    let stats = || s.h.outputs.get(k).expect("bad guest's output").stats();
    let settle_by = tokio::time::Instant::now() + WAIT;
    let before = loop {
        let a = stats();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let b = stats();
        if (b.flips >= 3 && a.flips == b.flips) || tokio::time::Instant::now() > settle_by {
            break b;
        }
    };
    assert_eq!(before.events_dropped, 0);

    for i in 0..FLIPS {
        let rsp = ring
            .call(|id| {
                DisplRequest {
                    id,
                    op: DisplRequestOp::PgFlip {
                        fb_cookie: std::num::NonZeroU64::new(fb).unwrap(),
                    },
                }
                .encode()
            })
            .await
            .unwrap_or_else(|e| panic!("flip {i} of the frozen guest was not answered: {e:?}"));
        let rsp = DisplResponse::decode(&rsp).expect("a response");
        assert_eq!(rsp.status, 0, "flip {i}");
    }
    let after = stats();
    assert_eq!(after.flips - before.flips, FLIPS, "every flip answered");
    assert_eq!(
        after.events_dropped,
        FLIPS - EVENT_SLOTS,
        "63 events fill the page, the rest are dropped, not queued"
    );
    // Not treated as a protocol failure: the device stays connected (the
    // guest may recover and read the 63 events, whose ids are in sequence).
    assert_eq!(backend_state(&s.h, BAD, &["4"]).await, "4");
    s.flipper.progresses(5).await;
    drop(frozen);
    s.end().await;
}

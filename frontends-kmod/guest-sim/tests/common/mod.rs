//! Test support: an in-process simulated Xen, and a minimal backend made of
//! gateway-side pieces (platform traits + protocol crate) acting as dom0.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use pvgate_guest_sim::io::shm::Shm;
use pvgate_platform::sim::SimXen;
use pvgate_platform::{DomId, EventChannel, Platform, Store};
use pvgate_protocol::evtpage::{EventProducer, EventRingLayout, EVENT_SIZE};
use pvgate_protocol::ring::{BackRing, RingLayout, Slot};

pub const WAIT: Duration = Duration::from_secs(10);

/// The simulated Xen, running in this process.
pub struct Sim {
    pub dir: tempfile::TempDir,
    pub xen: SimXen,
}

impl Sim {
    pub async fn start() -> Sim {
        // Unix socket paths are short: keep the directory in /tmp.
        let dir = tempfile::Builder::new()
            .prefix("gs")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let xen = SimXen::start(dir.path()).await.expect("sim xen");
        Sim { dir, xen }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// dom0's platform: the backend's view.
    pub async fn dom0(&self) -> Platform {
        pvgate_platform::sim::connect(self.path(), 0)
            .await
            .expect("dom0 platform")
    }
}

/// Wait until `path` satisfies `pred`, following a watch.
pub async fn wait_node(
    store: &dyn Store,
    path: &str,
    pred: impl Fn(Option<&str>) -> bool,
) -> Option<String> {
    let mut watch = store.watch(path).await.expect("watch");
    let fut = async {
        loop {
            let v = store.read_opt(path).await.ok().flatten();
            if pred(v.as_deref()) {
                return v;
            }
            watch.next().await?;
        }
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {path}"))
}

pub async fn read(store: &dyn Store, path: &str) -> String {
    store
        .read(path)
        .await
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// One mapped request ring with its bound event channel.
pub struct RingEnd {
    pub ring: BackRing<Shm>,
    pub evtchn: Box<dyn EventChannel>,
    pub shm: Shm,
}

impl RingEnd {
    pub async fn connect(
        dom0: &Platform,
        guest: DomId,
        gref: u32,
        port: u32,
        layout: RingLayout,
    ) -> RingEnd {
        let shm = Shm::new(dom0.grants.map(guest, &[gref], true).expect("map ring"));
        let evtchn = dom0
            .events
            .bind_interdomain(guest, port)
            .await
            .expect("bind ring evtchn");
        RingEnd {
            ring: BackRing::attach(shm.clone(), layout, 0),
            evtchn,
            shm,
        }
    }

    /// The next request (copied out), waiting on the event channel.
    pub async fn next(&mut self) -> Slot {
        let fut = async {
            loop {
                if let Some(s) = self.ring.next_request().expect("ring") {
                    return s;
                }
                if self.ring.final_check_for_requests().expect("ring") {
                    continue;
                }
                self.evtchn.wait().await.expect("wait");
            }
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .expect("no request from the guest")
    }

    /// Like [`next`](Self::next), but `None` once the ring or the event
    /// channel fails (a guest that went away).
    pub async fn try_next(&mut self) -> Option<Slot> {
        loop {
            if let Some(s) = self.ring.next_request().ok()? {
                return Some(s);
            }
            if self.ring.final_check_for_requests().ok()? {
                continue;
            }
            self.evtchn.wait().await.ok()?;
        }
    }

    pub fn respond(&mut self, rsp: &Slot) {
        self.ring.put_response(rsp).expect("put response");
        if self.ring.push_responses_and_check_notify().expect("push") {
            self.evtchn.notify().expect("notify");
        }
    }
}

/// One mapped event page with its bound event channel.
pub struct EventEnd {
    pub producer: EventProducer<Shm, EVENT_SIZE>,
    pub evtchn: Box<dyn EventChannel>,
    pub shm: Shm,
    layout: EventRingLayout<EVENT_SIZE>,
}

impl EventEnd {
    pub async fn connect(
        dom0: &Platform,
        guest: DomId,
        gref: u32,
        port: u32,
        layout: EventRingLayout<EVENT_SIZE>,
    ) -> EventEnd {
        let shm = Shm::new(
            dom0.grants
                .map(guest, &[gref], true)
                .expect("map event page"),
        );
        let evtchn = dom0
            .events
            .bind_interdomain(guest, port)
            .await
            .expect("bind event evtchn");
        EventEnd {
            producer: EventProducer::attach(shm.clone(), layout).expect("event page"),
            evtchn,
            shm,
            layout,
        }
    }

    pub fn push(&mut self, ev: &[u8; EVENT_SIZE]) {
        self.producer.push(ev).expect("push event");
        self.evtchn.notify().expect("notify");
    }

    /// The guest's consumer index on the page.
    pub fn in_cons(&self) -> u32 {
        use pvgate_protocol::SharedMemory;
        self.shm
            .load_u32_acquire(self.layout.cons_offset)
            .expect("in_cons")
    }

    /// Wait until the guest consumed `n` events.
    pub async fn wait_consumed(&self, n: u32) {
        let fut = async {
            while self.in_cons() < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .expect("guest did not consume the event");
    }
}

/// The backend half of a device's XenBus handshake: InitWait, wait for the
/// frontend to publish (`ready` states), then `connect`, then Connected.
pub async fn backend_handshake<T, F, Fut>(
    dom0: &Platform,
    backend_path: &str,
    ready: &[&str],
    connect: F,
) -> T
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let store = &*dom0.store;
    wait_node(store, &format!("{backend_path}/state"), |v| v.is_some()).await;
    let frontend = read(store, &format!("{backend_path}/frontend")).await;
    store
        .write(&format!("{backend_path}/state"), "2")
        .await
        .expect("InitWait");
    wait_node(store, &format!("{frontend}/state"), |v| {
        v.is_some_and(|s| ready.contains(&s))
    })
    .await;
    let t = connect(frontend.clone()).await;
    store
        .write(&format!("{backend_path}/state"), "4")
        .await
        .expect("Connected");
    wait_node(store, &format!("{frontend}/state"), |v| v == Some("4")).await;
    t
}

/// The backend side of a vdispl with one connector: rings mapped, bound.
pub async fn connect_display(dom0: &Platform, domid: DomId, be: &str) -> (RingEnd, EventEnd) {
    backend_handshake(dom0, be, &["3"], |fe| {
        let dom0 = dom0.clone();
        async move {
            let s = &*dom0.store;
            let num = |k: String| async move { read(s, &k).await.parse::<u32>().expect("number") };
            let (rref, rport) = (
                num(format!("{fe}/0/req-ring-ref")).await,
                num(format!("{fe}/0/req-event-channel")).await,
            );
            let (eref, eport) = (
                num(format!("{fe}/0/evt-ring-ref")).await,
                num(format!("{fe}/0/evt-event-channel")).await,
            );
            (
                RingEnd::connect(&dom0, domid, rref, rport, RingLayout::DISPLIF).await,
                EventEnd::connect(&dom0, domid, eref, eport, EventRingLayout::DISPLIF).await,
            )
        }
    })
    .await
}

/// The backend side of a vsnd with one stream: rings mapped, bound.
pub async fn connect_sound(dom0: &Platform, domid: DomId, be: &str) -> (RingEnd, EventEnd) {
    backend_handshake(dom0, be, &["3"], |fe| {
        let dom0 = dom0.clone();
        async move {
            let s = &*dom0.store;
            let st = format!("{fe}/0/0");
            let num = |k: String| async move { read(s, &k).await.parse::<u32>().expect("number") };
            let (rref, rport) = (
                num(format!("{st}/ring-ref")).await,
                num(format!("{st}/event-channel")).await,
            );
            let (eref, eport) = (
                num(format!("{st}/evt-ring-ref")).await,
                num(format!("{st}/evt-event-channel")).await,
            );
            (
                RingEnd::connect(&dom0, domid, rref, rport, RingLayout::SNDIF).await,
                EventEnd::connect(&dom0, domid, eref, eport, EventRingLayout::SNDIF).await,
            )
        }
    })
    .await
}

/// Create the domain with the toolstack and start its frontends in-process.
pub async fn start_guest(
    sim: &Sim,
    config: pvgate_guest_sim::GuestConfig,
) -> pvgate_guest_sim::GuestSim {
    use pvgate_guest_sim::sim::{connect_guest, connect_toolstack, XsRegistry};
    let ts = connect_toolstack(sim.path()).await.expect("toolstack");
    pvgate_guest_sim::toolstack::Toolstack::new(&ts, &XsRegistry(&ts))
        .create_domain(&config)
        .await
        .expect("create domain");
    let guest = connect_guest(sim.path(), config.domid)
        .await
        .expect("guest");
    pvgate_guest_sim::GuestSim::start(
        config,
        guest.platform.clone(),
        pvgate_guest_sim::StartOptions {
            report: None,
            frame_lookup: Some(guest.frame_lookup()),
        },
    )
    .await
    .expect("guest sim")
}

/// Map the buffer behind a page directory the guest granted.
pub fn map_directory(
    dom0: &Platform,
    domid: DomId,
    gref: u32,
    buffer_sz: u32,
    writable: bool,
) -> (Vec<u32>, Shm) {
    use pvgate_protocol::pagedir::{self, DirPage, DirectoryWalker};
    let mut walker =
        DirectoryWalker::new(gref, pagedir::grant_count(buffer_sz)).expect("directory");
    while let Some(next) = walker.next_page_ref() {
        let m = dom0
            .grants
            .map(domid, &[next], false)
            .expect("map directory page");
        let mut page: DirPage = [0u8; pagedir::PAGE_SIZE];
        m.read(0, &mut page).expect("read directory");
        walker.feed(&page).expect("walk directory");
    }
    let refs = walker.finish().expect("directory complete");
    let shm = Shm::new(dom0.grants.map(domid, &refs, writable).expect("map buffer"));
    (refs, shm)
}

/// GET_EDID from the guest, answered by the test backend with `edid`.
pub async fn edid_round_trip(
    dom0: &Platform,
    domid: DomId,
    session: std::sync::Arc<pvgate_guest_sim::display::DisplaySession>,
    req: &mut RingEnd,
    edid: &[u8],
) {
    let guest = tokio::spawn(async move {
        session
            .get_edid(0, pvgate_guest_sim::display::EDID_MAX_SIZE)
            .await
    });
    let slot = req.next().await;
    let request = pvgate_protocol::displif::DisplRequest::decode(&slot).expect("request");
    let pvgate_protocol::displif::DisplRequestOp::GetEdid(g) = request.op else {
        panic!("expected GET_EDID, got {:?}", request.op)
    };
    assert_eq!(g.buffer_sz, pvgate_guest_sim::display::EDID_MAX_SIZE);
    let mut walker = pvgate_protocol::pagedir::DirectoryWalker::new(
        g.gref_directory,
        pvgate_protocol::pagedir::grant_count(g.buffer_sz),
    )
    .expect("dir");
    let dir = dom0
        .grants
        .map(domid, &[g.gref_directory], false)
        .expect("map dir");
    let mut page: pvgate_protocol::pagedir::DirPage = [0u8; pvgate_protocol::pagedir::PAGE_SIZE];
    dir.read(0, &mut page).expect("read dir");
    walker.feed(&page).expect("walk");
    let refs = walker.finish().expect("refs");
    let buf = dom0
        .grants
        .map(domid, &refs, true)
        .expect("map edid buffer");
    buf.write(0, edid).expect("write edid");
    let rsp = pvgate_protocol::displif::DisplResponse {
        id: request.id,
        status: 0,
        body: pvgate_protocol::displif::DisplResponseBody::GetEdid {
            edid_sz: edid.len() as u32,
        },
    };
    req.respond(&rsp.encode());
    let got = guest.await.expect("join").expect("GET_EDID");
    assert_eq!(got, edid);
}

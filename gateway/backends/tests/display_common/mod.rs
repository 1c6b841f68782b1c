//! Test support for the displif backend: a simulated Xen in a temp dir,
//! simulated guests (toolstack + xen-drm-front-like frontend, in process),
//! the backend under test, and a guest-side double-buffered screen.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use pvgate_backends::display::{
    DisplayBackend, DisplayLimits, DisplayOutputs, FlipHook, OutputKey,
};
use pvgate_backends::xenbus::device::run_device;
use pvgate_backends::xenbus::{ConnectWhen, DeviceError};
use pvgate_guest_sim::config::{DisplayConfig, GuestConfig};
use pvgate_guest_sim::content::pixfmt;
use pvgate_guest_sim::content::{Frame as SimFrame, Renderer, Scene};
use pvgate_guest_sim::display::{Dbuf, DisplaySession, FlipOutcome};
use pvgate_guest_sim::guest::{GuestSim, StartOptions};
use pvgate_guest_sim::sim::{connect_guest, connect_toolstack, XsRegistry};
use pvgate_guest_sim::toolstack::Toolstack;
use pvgate_media::{EncoderHub, Frame};
use pvgate_platform::sim::hypervisor::SimDomainMemory;
use pvgate_platform::sim::SimXen;
use pvgate_platform::xs_client::XsStore;
use pvgate_platform::Platform;
use pvgate_protocol::displif::PixelFormat;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(10);

/// The simulated host: Xen, dom0's platform, and the gateway-side registries.
pub struct Harness {
    pub sim: SimXen,
    pub dom0: Platform,
    pub toolstack: XsStore,
    pub outputs: DisplayOutputs,
    pub hub: EncoderHub,
    // Last, so the sim stops before its directory goes.
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start() -> Harness {
        logs();
        // Unix socket paths are limited to 107 bytes: keep it short.
        let dir = tempfile::Builder::new()
            .prefix("pv")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let sim = SimXen::start(dir.path()).await.expect("sim xen");
        let dom0 = pvgate_platform::sim::connect(dir.path(), 0)
            .await
            .expect("dom0 platform");
        let toolstack = connect_toolstack(dir.path()).await.expect("toolstack");
        Harness {
            sim,
            dom0,
            toolstack,
            outputs: DisplayOutputs::new(),
            hub: EncoderHub::new(),
            dir,
        }
    }

    /// Create a domain with one vdispl device per spec (e.g.
    /// `"connectors=640x480"`) and start its frontends.
    pub async fn add_guest(&self, domid: u16, displays: &[&str]) -> GuestSim {
        self.add_guest_with_memory(domid, displays).await.0
    }

    /// [`Self::add_guest`], plus the guest's memory (to inspect its grants).
    pub async fn add_guest_with_memory(
        &self,
        domid: u16,
        displays: &[&str],
    ) -> (GuestSim, SimDomainMemory) {
        let config = GuestConfig {
            domid,
            name: format!("guest{domid}"),
            displays: displays
                .iter()
                .map(|s| DisplayConfig::parse(s).expect("vdispl spec"))
                .collect(),
            sound_cards: vec![],
            inputs: vec![],
        };
        Toolstack::new(&self.toolstack, &XsRegistry(&self.toolstack))
            .create_domain(&config)
            .await
            .expect("create domain");
        let guest = connect_guest(self.dir.path(), domid)
            .await
            .expect("guest platform");
        let sim = GuestSim::start(config, guest.platform, StartOptions::default())
            .await
            .expect("guest sim");
        (sim, guest.memory)
    }

    /// Start the backend for `domid`'s vdispl device `devid`.
    pub fn backend(&self, domid: u16, devid: u32) -> Backend {
        self.backend_with(domid, devid, DisplayLimits::default(), None)
    }

    pub fn backend_with(
        &self,
        domid: u16,
        devid: u32,
        limits: DisplayLimits,
        hook: Option<FlipHook>,
    ) -> Backend {
        let (stop, stop_rx) = watch::channel(false);
        let mut backend = DisplayBackend::new(self.outputs.clone(), self.hub.clone(), limits);
        if let Some(h) = hook {
            backend = backend.with_flip_hook(h);
        }
        let task = tokio::spawn(run_device(
            self.dom0.clone(),
            "vdispl",
            domid,
            devid,
            ConnectWhen::Initialised,
            backend,
            stop_rx,
        ));
        Backend { stop, task }
    }

    /// Wait until the copy worker of `key` has copied at least `copies`
    /// flips.
    pub async fn wait_copies(&self, key: OutputKey, copies: u64) {
        let fut = async {
            loop {
                if let Some(o) = self.outputs.get(key) {
                    if o.stats().copies >= copies {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .unwrap_or_else(|_| panic!("{key:?}: fewer than {copies} copies within {WAIT:?}"));
    }
}

/// A running backend task.
pub struct Backend {
    stop: watch::Sender<bool>,
    pub task: JoinHandle<Result<(), DeviceError>>,
}

impl Backend {
    /// Stop as a gateway shutting down does (no state written).
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let r = tokio::time::timeout(WAIT, self.task)
            .await
            .expect("backend stops");
        r.expect("join").expect("backend result");
    }
}

pub fn key(domid: u16, devid: u32, connector: u32) -> OutputKey {
    OutputKey {
        domid,
        devid,
        connector,
    }
}

/// The timestamp the guest puts in frame `n`'s strip (deterministic, so a
/// test can re-render the exact picture).
pub fn timestamp(n: u32) -> u64 {
    1_000_000 + u64::from(n) * 16_667
}

/// The guest's picture → the gateway's frame type (X byte 0xFF).
pub fn to_media(s: &SimFrame) -> Frame {
    let mut f = Frame::new(s.width, s.height).expect("frame");
    for y in 0..s.height {
        for x in 0..s.width {
            f.set_pixel(x, y, 0xFF00_0000 | s.pixels[(y * s.width + x) as usize]);
        }
    }
    f
}

/// Largest per-channel difference between two same-size frames.
pub fn max_channel_diff(a: &Frame, b: &Frame) -> u8 {
    assert_eq!((a.width(), a.height()), (b.width(), b.height()));
    let mut max = 0u8;
    for y in 0..a.height() {
        let (ra, rb) = (a.row(y).unwrap(), b.row(y).unwrap());
        for (pa, pb) in ra.chunks_exact(4).zip(rb.chunks_exact(4)) {
            for c in 0..3 {
                max = max.max(pa[c].abs_diff(pb[c]));
            }
        }
    }
    max
}

/// A guest compositor on one connector: two buffers, draw into the back
/// one, flip, wait for EVT_PG_FLIP.
pub struct Screen {
    pub session: Arc<DisplaySession>,
    pub conn: usize,
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    pub bufs: Vec<Dbuf>,
    pub fbs: Vec<u64>,
    pub renderer: Renderer,
    front: usize,
    /// The next frame number to draw.
    pub next: u32,
}

impl Screen {
    pub async fn new(
        session: Arc<DisplaySession>,
        conn: usize,
        format: PixelFormat,
        scene: Scene,
    ) -> Screen {
        let info = session.connectors()[conn];
        let (w, h) = (info.width, info.height);
        let mut bufs = Vec::new();
        let mut fbs = Vec::new();
        for _ in 0..2 {
            let b = session
                .create_dbuf(w, h, format.bpp())
                .await
                .expect("DBUF_CREATE");
            fbs.push(session.fb_attach(&b, format).await.expect("FB_ATTACH"));
            bufs.push(b);
        }
        let mut s = Screen {
            session,
            conn,
            width: w,
            height: h,
            format,
            bufs,
            fbs,
            renderer: Renderer::new(scene, w, h),
            front: 0,
            next: 0,
        };
        s.draw(0, 0);
        s.next = 1;
        s.session
            .set_config(conn, Some((s.fbs[0], w, h, format.bpp())))
            .await
            .expect("SET_CONFIG");
        s
    }

    /// The picture of frame `n`.
    pub fn picture(&self, n: u32) -> SimFrame {
        self.renderer.render(n, timestamp(n), None)
    }

    fn draw(&self, buf: usize, n: u32) {
        let pitch = pixfmt::min_pitch(self.format, self.width);
        let bytes = pixfmt::encode_to_vec(&self.picture(n), self.format, pitch).expect("encode");
        self.bufs[buf].write(0, &bytes).expect("write buffer");
    }

    /// Draw the next frame into the back buffer and flip to it.
    pub async fn flip_next(&mut self) -> (u32, FlipOutcome) {
        let n = self.next;
        let back = 1 - self.front;
        self.draw(back, n);
        let outcome = self
            .session
            .page_flip(self.conn, self.fbs[back])
            .await
            .expect("PG_FLIP");
        self.front = back;
        self.next += 1;
        (n, outcome)
    }

    /// What the guest's buffers hold for frame `n`, read back as a correct
    /// backend would see it.
    pub fn as_seen(&self, n: u32) -> Frame {
        let pitch = pixfmt::min_pitch(self.format, self.width);
        let bytes = pixfmt::encode_to_vec(&self.picture(n), self.format, pitch).expect("encode");
        let back =
            pixfmt::decode(&bytes, self.width, self.height, pitch, self.format).expect("decode");
        to_media(&back)
    }
}

// The log capture lives in one place for every test helper module.
#[path = "../log_capture/mod.rs"]
mod log_capture;
pub use log_capture::logs;

//! Shared by the input_* tests: a simulated Xen in a short temp dir, guests
//! built by the toolstack and driven by the guest simulator (whose kbdif
//! frontend consumes as xen-kbdfront does), the kbdif backend under test,
//! and a hand-made frontend that publishes a page and never consumes.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pvgate_backends::display::{DisplayBackend, DisplayLimits, DisplayOutputs};
use pvgate_backends::input::{serve_device_as, InputKind, InputLimits, InputOutputs, InputSink};
use pvgate_backends::xenbus::device::run_device;
use pvgate_backends::xenbus::{ConnectWhen, DeviceError};
use pvgate_guest_sim::config::{DisplayConfig, GuestConfig, InputConfig};
use pvgate_guest_sim::content::InputState;
use pvgate_guest_sim::guest::{GuestSim, InputHandle, StartOptions};
use pvgate_guest_sim::io::channel::GrantedPage;
use pvgate_guest_sim::sim::{connect_guest, connect_toolstack, XsRegistry};
use pvgate_guest_sim::toolstack::Toolstack;
use pvgate_media::EncoderHub;
use pvgate_platform::sim::SimXen;
use pvgate_platform::xs_client::XsStore;
use pvgate_platform::Platform;
use pvgate_protocol::kbdif::KbdInEvent;
use pvgate_protocol::xenbus::XenbusState;
use pvgate_protocol::SharedMemory;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(10);

/// The simulated host and the gateway-side registries.
pub struct Harness {
    pub sim: SimXen,
    pub dom0: Platform,
    pub toolstack: XsStore,
    pub inputs: InputOutputs,
    pub displays: DisplayOutputs,
    pub hub: EncoderHub,
    // Last, so the sim stops before its directory goes.
    pub dir: tempfile::TempDir,
}

/// A guest config with one vkb per spec (xl syntax) and vdispl per spec.
pub fn guest_config(domid: u16, displays: &[&str], vkbs: &[&str]) -> GuestConfig {
    GuestConfig {
        domid,
        name: format!("guest{domid}"),
        displays: displays
            .iter()
            .map(|s| DisplayConfig::parse(s).expect("vdispl spec"))
            .collect(),
        sound_cards: vec![],
        inputs: vkbs
            .iter()
            .map(|s| InputConfig::parse(s).expect("vkb spec"))
            .collect(),
    }
}

impl Harness {
    pub async fn start() -> Harness {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
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
            inputs: InputOutputs::new(),
            displays: DisplayOutputs::new(),
            hub: EncoderHub::new(),
            dir,
        }
    }

    /// What `xl create` writes (no frontend runs yet).
    pub async fn create(&self, config: &GuestConfig) {
        Toolstack::new(&self.toolstack, &XsRegistry(&self.toolstack))
            .create_domain(config)
            .await
            .expect("create domain");
    }

    /// The guest's own platform (as the guest).
    pub async fn guest_platform(&self, domid: u16) -> Platform {
        connect_guest(self.dir.path(), domid)
            .await
            .expect("guest platform")
            .platform
    }

    /// Start the guest simulator's frontends for `config`.
    pub async fn start_guest(&self, config: GuestConfig) -> GuestSim {
        let platform = self.guest_platform(config.domid).await;
        GuestSim::start(config, platform, StartOptions::default())
            .await
            .expect("guest sim")
    }

    /// The usual start of a test: create `config`'s domain, serve its first
    /// vkbd device, start the guest, wait until its frontend is Connected,
    /// and take the gateway's input sink for it.
    pub async fn connected_vkbd(&self, config: GuestConfig) -> (Backend, GuestSim, InputSink) {
        let domid = config.domid;
        self.create(&config).await;
        let be = self.input_backend(domid, 0, InputKind::Vkbd).await;
        let guest = self.start_guest(config).await;
        guest.inputs[0]
            .device
            .wait_state(pvgate_guest_sim::xenbus::XenbusState::Connected, WAIT)
            .await
            .expect("frontend Connected");
        let sink = self.sink(domid).await;
        (be, guest, sink)
    }

    /// Start the kbdif backend for `domid`'s device `devid`, and wait until
    /// it offers InitWait (its features are written by then).
    pub async fn input_backend(&self, domid: u16, devid: u32, kind: InputKind) -> Backend {
        self.input_backend_with(domid, devid, kind, InputLimits::default())
            .await
    }

    pub async fn input_backend_with(
        &self,
        domid: u16,
        devid: u32,
        kind: InputKind,
        limits: InputLimits,
    ) -> Backend {
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(serve_device_as(
            kind,
            self.dom0.clone(),
            domid,
            devid,
            self.inputs.clone(),
            limits,
            stop_rx,
        ));
        let b = Backend { stop, task };
        self.wait_backend_state(domid, devid, kind, |s| s != XenbusState::Initialising)
            .await;
        b
    }

    /// Start the display backend for `domid`'s vdispl device 0.
    pub fn display_backend(&self, domid: u16) -> Backend {
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_device(
            self.dom0.clone(),
            "vdispl",
            domid,
            0,
            ConnectWhen::Initialised,
            DisplayBackend::new(
                self.displays.clone(),
                self.hub.clone(),
                DisplayLimits::default(),
            ),
            stop_rx,
        ));
        Backend { stop, task }
    }

    pub fn backend_path(&self, domid: u16, devid: u32, kind: InputKind) -> String {
        format!(
            "/local/domain/0/backend/{}/{domid}/{devid}",
            kind.backend_kind()
        )
    }

    pub async fn backend_state(&self, domid: u16, devid: u32, kind: InputKind) -> XenbusState {
        let v = self
            .dom0
            .store
            .read_opt(&format!("{}/state", self.backend_path(domid, devid, kind)))
            .await
            .ok()
            .flatten();
        XenbusState::parse_like_linux(v.as_deref())
    }

    pub async fn wait_backend_state(
        &self,
        domid: u16,
        devid: u32,
        kind: InputKind,
        ok: impl Fn(XenbusState) -> bool,
    ) -> XenbusState {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.backend_state(domid, devid, kind).await;
            if ok(s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "dom{domid} {}/{devid}: backend state stuck at {s:?}",
                kind.backend_kind()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The guest's input sink, once connected.
    pub async fn sink(&self, domid: u16) -> InputSink {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(s) = self.inputs.get(domid) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "dom{domid}: no input device connected within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
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

/// Wait until the guest's input state satisfies `ok`; returns it.
pub async fn wait_input(handle: &InputHandle, ok: impl Fn(&InputState) -> bool) -> InputState {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = handle.snapshot();
        if ok(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "guest input state never got there: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Receive `n` kbdif events the guest consumed.
pub async fn recv_events(rx: &mut broadcast::Receiver<KbdInEvent>, n: usize) -> Vec<KbdInEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Ok(e)) => out.push(e),
            other => panic!("after {out:?}: no further event ({other:?})"),
        }
    }
    out
}

/// A frontend written by hand: publishes a page and channel as
/// xen-kbdfront does, then never consumes (or scribbles on its indices).
pub struct RawGuest {
    pub page: GrantedPage,
    pub frontend: String,
}

pub const IN_CONS: usize = 0;
pub const IN_PROD: usize = 4;

impl RawGuest {
    /// Publish on `domid`'s device/vkbd/`devid` and go Initialised.
    pub async fn publish(h: &Harness, domid: u16, devid: u32) -> RawGuest {
        let platform = h.guest_platform(domid).await;
        let page = GrantedPage::allocate(&platform, 0).await.expect("page");
        let fe = format!("/local/domain/{domid}/device/vkbd/{devid}");
        let store = &platform.store;
        for (k, v) in [
            ("request-abs-pointer", "1".to_string()),
            ("request-multi-touch", "1".to_string()),
            ("page-gref", page.gref.to_string()),
            ("event-channel", page.port().to_string()),
            ("state", "3".to_string()),
        ] {
            store.write(&format!("{fe}/{k}"), &v).await.expect("write");
        }
        RawGuest { page, frontend: fe }
    }

    pub fn cons(&self) -> u32 {
        self.page.shm.load_u32_acquire(IN_CONS).expect("in_cons")
    }

    pub fn prod(&self) -> u32 {
        self.page.shm.load_u32_acquire(IN_PROD).expect("in_prod")
    }

    pub fn set_cons(&self, v: u32) {
        self.page
            .shm
            .store_u32_release(IN_CONS, v)
            .expect("in_cons");
    }
}

/// Log lines captured for assertions (install with
/// `tracing::subscriber::set_default` on a current-thread runtime).
#[derive(Clone, Default)]
pub struct LogCapture(pub Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> LogCapture {
        self.clone()
    }
}

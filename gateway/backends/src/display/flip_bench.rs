//! PG_FLIP → EVT_PG_FLIP latency, measured against the simulated
//! xen-drm-front: shared by `cargo bench -p pvgate-backends --bench flip`
//! (criterion) and `pvgate bench display` (one table with the display
//! path's other figures), so both measure the same thing the same way.
//!
//! Two figures per flip:
//! - backend: from the PG_FLIP taken off the ring to its response and
//!   EVT_PG_FLIP published (what the gateway adds);
//! - guest-seen: from the request put on the ring to EVT_PG_FLIP received by
//!   the simulated guest (adds the sim's event channels and the guest's
//!   tasks).
//!
//! The guest flips at 60 Hz, each flip changing a 256×64 window (desktop-like
//! small damage), optionally while an H.264 and a VP8 encoder consume every
//! flip (the load that delayed flips when each copy cloned the whole frame).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pvgate_guest_sim::config::{DisplayConfig, GuestConfig};
use pvgate_guest_sim::content::{pixfmt, Renderer, Scene};
use pvgate_guest_sim::display::{DisplaySession, FlipOutcome};
use pvgate_guest_sim::guest::{GuestSim, StartOptions};
use pvgate_guest_sim::sim::{connect_guest, connect_toolstack, XsRegistry};
use pvgate_guest_sim::toolstack::Toolstack;
use pvgate_media::hub::Subscription;
use pvgate_media::{Codec, EncoderHub, EncoderParams};
use pvgate_platform::sim::SimXen;
use pvgate_protocol::displif::PixelFormat;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{DisplayBackend, DisplayOutputs, FlipHook, FlipStage, OutputKey};
use crate::xenbus::device::run_device;
use crate::xenbus::{ConnectWhen, DeviceError};

/// Gap between flips: a 60 Hz guest.
pub const FLIP_GAP: Duration = Duration::from_millis(16);

/// Width of the window each flip changes (64 rows high).
const WINDOW: usize = 256;

const WAIT: Duration = Duration::from_secs(10);

/// When each flip (by sequence number) was received, and the measured
/// receive → answer times.
type BackendTimes = Arc<Mutex<(HashMap<u64, Instant>, Vec<Duration>)>>;

/// A simulated host with one guest flipping on one connector, served by a
/// displif backend; drop it to tear everything down.
pub struct FlipBench {
    /// Encoders under load (kept alive, never read: they encode anyway).
    _subs: Vec<Subscription>,
    session: Arc<DisplaySession>,
    fbs: [u64; 2],
    bufs: Vec<pvgate_guest_sim::display::Dbuf>,
    width: u32,
    band: Vec<u8>,
    n: u32,
    backend_times: BackendTimes,
    stop: watch::Sender<bool>,
    backend: Option<JoinHandle<Result<(), DeviceError>>>,
    _guest: GuestSim,
    _sim: SimXen,
    // Last: the sim stops before its directory goes.
    _dir: tempfile::TempDir,
}

impl FlipBench {
    /// Start a simulated Xen, guest `domid` with one `width`×`height`
    /// connector showing the desktop scene, and its backend; with `load`,
    /// subscribe an H.264 and a VP8 encoder to the connector.
    pub async fn start(domid: u16, width: u32, height: u32, load: bool) -> anyhow::Result<Self> {
        use anyhow::Context;
        // Unix socket paths are limited to 107 bytes: keep it short.
        let dir = tempfile::Builder::new().prefix("pvfb").tempdir_in("/tmp")?;
        let sim = SimXen::start(dir.path()).await.context("sim xen")?;
        let dom0 = pvgate_platform::sim::connect(dir.path(), 0)
            .await
            .context("dom0 platform")?;
        let toolstack = connect_toolstack(dir.path()).await.context("toolstack")?;
        let config = GuestConfig {
            domid,
            name: format!("bench{domid}"),
            displays: vec![
                DisplayConfig::parse(&format!("connectors={width}x{height}"))
                    .map_err(|e| anyhow::anyhow!("vdispl spec: {e}"))?,
            ],
            sound_cards: vec![],
            inputs: vec![],
        };
        Toolstack::new(&toolstack, &XsRegistry(&toolstack))
            .create_domain(&config)
            .await
            .context("create domain")?;
        let guest_platform = connect_guest(dir.path(), domid)
            .await
            .context("guest platform")?;
        let guest = GuestSim::start(config, guest_platform.platform, StartOptions::default())
            .await
            .context("guest sim")?;

        let backend_times: BackendTimes = Arc::default();
        let hook: FlipHook = {
            let t = backend_times.clone();
            Arc::new(move |_k, stage| {
                let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
                match stage {
                    FlipStage::Received { seq } => {
                        t.0.insert(seq, Instant::now());
                    }
                    FlipStage::Answered { seq } => {
                        if let Some(at) = t.0.remove(&seq) {
                            t.1.push(at.elapsed());
                        }
                    }
                    _ => {}
                }
            })
        };
        let hub = EncoderHub::new();
        let backend = DisplayBackend::new(DisplayOutputs::new(), hub.clone(), Default::default())
            .with_flip_hook(hook);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_device(
            dom0,
            "vdispl",
            domid,
            0,
            ConnectWhen::Initialised,
            backend,
            stop_rx,
        ));
        let session = guest.displays[0]
            .connected(WAIT)
            .await
            .map_err(|e| anyhow::anyhow!("guest display did not connect: {e:?}"))?;

        // Two buffers showing the desktop scene, the first one on screen.
        let format = PixelFormat::Xrgb8888;
        let pitch = pixfmt::min_pitch(format, width);
        let picture = Renderer::new(Scene::Desktop, width, height).render(0, 0, None);
        let bytes = pixfmt::encode_to_vec(&picture, format, pitch)
            .map_err(|e| anyhow::anyhow!("render: {e}"))?;
        let mut bufs = Vec::new();
        let mut fbs = [0u64; 2];
        for fb in &mut fbs {
            let b = session
                .create_dbuf(width, height, format.bpp())
                .await
                .map_err(|e| anyhow::anyhow!("DBUF_CREATE: {e}"))?;
            b.write(0, &bytes)
                .map_err(|e| anyhow::anyhow!("draw: {e}"))?;
            *fb = session
                .fb_attach(&b, format)
                .await
                .map_err(|e| anyhow::anyhow!("FB_ATTACH: {e}"))?;
            bufs.push(b);
        }
        session
            .set_config(0, Some((fbs[0], width, height, format.bpp())))
            .await
            .map_err(|e| anyhow::anyhow!("SET_CONFIG: {e}"))?;

        let mut subs = Vec::new();
        if load {
            let id = OutputKey {
                domid,
                devid: 0,
                connector: 0,
            }
            .hub_id();
            for codec in [Codec::H264, Codec::Vp8] {
                subs.push(hub.subscribe(id, EncoderParams::new(codec, 4_000_000))?);
            }
        }
        Ok(FlipBench {
            _subs: subs,
            session,
            fbs,
            bufs,
            width,
            band: vec![0u8; WINDOW * 4],
            n: 0,
            backend_times,
            stop,
            backend: Some(task),
            _guest: guest,
            _sim: sim,
            _dir: dir,
        })
    }

    /// Move the window, flip, and return the guest-seen latency. Sleeps
    /// [`FLIP_GAP`] afterwards (not counted).
    pub async fn one_flip(&mut self) -> anyhow::Result<Duration> {
        self.n += 1;
        self.band.fill((self.n % 251) as u8);
        let pitch = self.width as usize * 4;
        let x = (self.n as usize * 8) % (self.width as usize - WINDOW);
        for buf in &self.bufs {
            for row in 0..64 {
                let _ = buf.write((100 + row) * pitch + x * 4, &self.band);
            }
        }
        let fb = self.fbs[(self.n % 2) as usize];
        let t = Instant::now();
        let outcome = self
            .session
            .page_flip(0, fb)
            .await
            .map_err(|e| anyhow::anyhow!("PG_FLIP: {e}"))?;
        let took = t.elapsed();
        anyhow::ensure!(outcome == FlipOutcome::Done, "PG_FLIP: {outcome:?}");
        tokio::time::sleep(FLIP_GAP).await;
        Ok(took)
    }

    /// The backend's receive → answer times so far (taken out).
    pub fn take_backend_times(&self) -> Vec<Duration> {
        std::mem::take(
            &mut self
                .backend_times
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .1,
        )
    }

    /// Stop the backend and let everything go.
    pub async fn finish(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.backend.take() {
            let _ = tokio::time::timeout(WAIT, task).await;
        }
    }
}

/// The `p` quantile (0..=1) of sorted samples, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One configuration's result.
#[derive(Debug, Clone)]
pub struct FlipRow {
    pub width: u32,
    pub height: u32,
    /// H.264 + VP8 encoders were consuming every flip.
    pub load: bool,
    pub flips: usize,
    pub backend: [Duration; 2],
    pub guest: [Duration; 2],
}

impl FlipRow {
    /// Summarise the samples of one configuration (any order).
    pub fn new(
        (width, height): (u32, u32),
        load: bool,
        mut guest: Vec<Duration>,
        mut backend: Vec<Duration>,
    ) -> FlipRow {
        guest.sort();
        backend.sort();
        FlipRow {
            width,
            height,
            load,
            flips: guest.len(),
            backend: [percentile(&backend, 0.5), percentile(&backend, 0.99)],
            guest: [percentile(&guest, 0.5), percentile(&guest, 0.99)],
        }
    }
}

/// Measure `flips` flips (after a few unmeasured ones) for every size, with
/// and without encoders.
pub async fn run(sizes: &[(u32, u32)], flips: usize) -> anyhow::Result<Vec<FlipRow>> {
    let mut rows = Vec::new();
    let mut domid = 60;
    for &(w, h) in sizes {
        for load in [false, true] {
            domid += 1;
            let mut b = FlipBench::start(domid, w, h, load).await?;
            // Warm-up: the first copies and encodes allocate.
            for _ in 0..10 {
                b.one_flip().await?;
            }
            b.take_backend_times();
            let mut guest = Vec::with_capacity(flips);
            for _ in 0..flips {
                guest.push(b.one_flip().await?);
            }
            let backend = b.take_backend_times();
            b.finish().await;
            rows.push(FlipRow::new((w, h), load, guest, backend));
        }
    }
    Ok(rows)
}

/// The rows as a markdown table.
pub fn to_markdown(rows: &[FlipRow]) -> String {
    let mut s = String::from(
        "PG_FLIP → EVT_PG_FLIP (sim platform, guest in process, 60 Hz flips, a 256×64 window changed per flip)\n\n\
         | connector | encoders running | flips | backend p50 | backend p99 | guest-seen p50 | guest-seen p99 |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {}×{} | {} | {} | {:.1?} | {:.1?} | {:.1?} | {:.1?} |\n",
            r.width,
            r.height,
            if r.load { "H.264 + VP8" } else { "none" },
            r.flips,
            r.backend[0],
            r.backend[1],
            r.guest[0],
            r.guest[1],
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_micros(51));
        assert_eq!(percentile(&v, 0.99), Duration::from_micros(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    /// The bench itself runs end to end (a few flips, small screen).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_run_measures_every_flip() {
        let rows = run(&[(320, 240)], 5).await.expect("runs");
        assert_eq!(rows.len(), 2);
        for r in &rows {
            assert_eq!(r.flips, 5);
            assert!(r.guest[0] > Duration::ZERO && r.backend[0] > Duration::ZERO);
        }
        let md = to_markdown(&rows);
        assert!(md.contains("| 320×240 | H.264 + VP8 | 5 |"), "{md}");
    }
}

//! PG_FLIP → EVT_PG_FLIP latency at 1280×720 and 1920×1080, with and
//! without encoders (H.264 + VP8) consuming every flip. Two figures:
//! - backend: from the PG_FLIP taken off the ring to its response and
//!   EVT_PG_FLIP published (what the gateway adds);
//! - guest: from the request put on the ring to EVT_PG_FLIP received by the
//!   simulated guest (adds the sim's event channels and the guest's tasks).
//!
//! Prints p50/p99 tables.
//!
//! `cargo bench -p pvgate-backends --bench flip`

#[path = "../tests/display_common/mod.rs"]
mod display_common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pvgate_backends::display::{FlipHook, FlipStage};

use criterion::{criterion_group, criterion_main, Criterion};
use display_common::*;
use pvgate_guest_sim::content::Scene;
use pvgate_guest_sim::display::FlipOutcome;
use pvgate_media::{Codec, EncoderParams};
use pvgate_protocol::displif::PixelFormat;

/// Gap between flips: a 60 Hz guest.
const GAP: Duration = Duration::from_millis(16);

/// When each flip (by id) was received, and the measured answer times.
type BackendTimes = Arc<Mutex<(HashMap<u64, Instant>, Vec<Duration>)>>;

struct Setup {
    _h: Harness,
    _guest: pvgate_guest_sim::guest::GuestSim,
    screen: Screen,
    _subs: Vec<pvgate_media::hub::Subscription>,
    _be: Backend,
    band: Vec<u8>,
    n: u32,
    backend_times: BackendTimes,
}

async fn setup(domid: u16, w: u32, h: u32, load: bool) -> Setup {
    let harness = Harness::start().await;
    let guest = harness
        .add_guest(domid, &[&format!("connectors={w}x{h}")])
        .await;
    let backend_times: BackendTimes = Arc::default();
    let hook: FlipHook = {
        let t = backend_times.clone();
        Arc::new(move |_k, stage| {
            let mut t = t.lock().unwrap();
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
    let be = harness.backend_with(domid, 0, Default::default(), Some(hook));
    let session = guest.displays[0].connected(WAIT).await.expect("connected");
    let screen = Screen::new(session, 0, PixelFormat::Xrgb8888, Scene::Desktop).await;
    let mut subs = Vec::new();
    if load {
        for codec in [Codec::H264, Codec::Vp8] {
            let p = EncoderParams::new(codec, 4_000_000);
            subs.push(
                harness
                    .hub
                    .subscribe(key(domid, 0, 0).hub_id(), p)
                    .expect("encoder"),
            );
        }
    }
    Setup {
        _h: harness,
        _guest: guest,
        screen,
        _subs: subs,
        _be: be,
        band: vec![0u8; 256 * 4],
        n: 0,
        backend_times,
    }
}

impl Setup {
    /// Change a 256×64 window (about 5 % of tiles at 720p would be more;
    /// this is desktop-like small damage), flip, and time the flip.
    async fn one_flip(&mut self) -> Duration {
        self.n += 1;
        let fill = (self.n % 251) as u8;
        self.band.fill(fill);
        let pitch = self.screen.width as usize * 4;
        let x = (self.n as usize * 8) % (self.screen.width as usize - 256);
        for buf in &self.screen.bufs {
            for row in 0..64 {
                let _ = buf.write((100 + row) * pitch + x * 4, &self.band);
            }
        }
        let fb = self.screen.fbs[(self.n % 2) as usize];
        let t = Instant::now();
        let outcome = self.screen.session.page_flip(0, fb).await.expect("flip");
        let took = t.elapsed();
        assert_eq!(outcome, FlipOutcome::Done);
        tokio::time::sleep(GAP).await;
        took
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn flip_latency(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("pg_flip_to_evt");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_millis(500));
    let mut report = Vec::new();
    let mut domid = 60;
    for (w, h) in [(1280u32, 720u32), (1920, 1080)] {
        for load in [false, true] {
            domid += 1;
            let mut s = rt.block_on(setup(domid, w, h, load));
            let samples = RefCell::new(Vec::new());
            let name = format!("{w}x{h}/{}", if load { "h264+vp8" } else { "no-encoder" });
            group.bench_function(&name, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let d = s.one_flip().await;
                            samples.borrow_mut().push(d);
                            total += d;
                        }
                        total
                    })
                })
            });
            let mut v = samples.into_inner();
            v.sort();
            let mut b = std::mem::take(&mut s.backend_times.lock().unwrap().1);
            b.sort();
            report.push((
                name,
                v.len(),
                [percentile(&b, 0.5), percentile(&b, 0.99)],
                [percentile(&v, 0.5), percentile(&v, 0.99)],
            ));
            rt.block_on(async move { drop(s) });
        }
    }
    group.finish();
    println!("\nPG_FLIP → EVT_PG_FLIP (sim platform, guest in process, 60 Hz flips, ~5 % damage)");
    println!("| connector | encoders | flips | backend p50 | backend p99 | guest-seen p50 | guest-seen p99 |");
    println!("|---|---|---|---|---|---|---|");
    for (name, n, [b50, b99], [g50, g99]) in report {
        let (res, load) = name.split_once('/').unwrap_or((&name, ""));
        println!("| {res} | {load} | {n} | {b50:.1?} | {b99:.1?} | {g50:.1?} | {g99:.1?} |");
    }
}

criterion_group!(benches, flip_latency);
criterion_main!(benches);

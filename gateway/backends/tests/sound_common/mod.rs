//! Shared by the sound_* tests: a simulated Xen in a short temp dir, a
//! guest (the guest simulator, in process) with one vsnd card, and the
//! gateway's sound backend serving it on a chosen clock.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use pvgate_audio::opus::OpusDecoder;
use pvgate_audio::{AudioSubscriber, Layout};
use pvgate_backends::sound::{
    serve_device_with_clock, Clock, SoundLimits, SoundOutputs, StreamKey, StreamOutput,
};
use pvgate_guest_sim::config::{GuestConfig, SoundCardConfig};
use pvgate_guest_sim::guest::{GuestSim, StartOptions};
use pvgate_guest_sim::sim::{connect_guest, connect_toolstack, XsRegistry};
use pvgate_guest_sim::sound::{SoundSession, SoundStream};
use pvgate_guest_sim::toolstack::Toolstack;
use pvgate_platform::sim::SimXen;
use pvgate_platform::Platform;
use pvgate_protocol::ring::Slot;
use pvgate_protocol::sndif::SndResponse;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(10);

/// The host's monotonic clock slowed down by `slowdown`: stream time runs
/// that many times slower than real time, so that a loaded test machine
/// (many engineers building at once) still keeps the guest's writes ahead
/// of the card without any timing assertion in the test.
pub struct SlowClock {
    origin: tokio::time::Instant,
    slowdown: u64,
}

impl SlowClock {
    pub fn shared(slowdown: u64) -> Arc<dyn Clock> {
        Arc::new(SlowClock {
            origin: tokio::time::Instant::now(),
            slowdown: slowdown.max(1),
        })
    }
}

#[async_trait::async_trait]
impl Clock for SlowClock {
    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64 / self.slowdown
    }

    async fn sleep_until(&self, deadline_ns: u64) {
        let real = Duration::from_nanos(deadline_ns.saturating_mul(self.slowdown));
        tokio::time::sleep_until(self.origin + real).await;
    }
}
pub const DOMID: u16 = 7;

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub sim: Option<SimXen>,
    pub dom0: Platform,
    pub guest: GuestSim,
    pub session: Arc<SoundSession>,
    pub outputs: SoundOutputs,
    pub stop: watch::Sender<bool>,
    pub backend: JoinHandle<Result<(), pvgate_backends::xenbus::DeviceError>>,
}

impl Rig {
    /// A guest with the vsnd card `card` (xl syntax, items split by `|`),
    /// served by the sound backend on `clock` with `limits`.
    pub async fn start(card: &str, clock: Arc<dyn Clock>, limits: SoundLimits) -> Rig {
        logs();
        let dir = tempfile::Builder::new()
            .prefix("pv")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let sim = SimXen::start(dir.path()).await.expect("sim xen");
        let config = GuestConfig {
            domid: DOMID,
            name: "sound".into(),
            sound_cards: vec![SoundCardConfig::parse(card).expect("vsnd spec")],
            ..GuestConfig::default()
        };
        let ts = connect_toolstack(dir.path()).await.expect("toolstack");
        Toolstack::new(&ts, &XsRegistry(&ts))
            .create_domain(&config)
            .await
            .expect("create domain");
        let dom0 = pvgate_platform::sim::connect(dir.path(), 0)
            .await
            .expect("dom0");
        let outputs = SoundOutputs::new();
        let (stop, stop_rx) = watch::channel(false);
        let backend = tokio::spawn(serve_device_with_clock(
            dom0.clone(),
            DOMID,
            0,
            outputs.clone(),
            limits,
            clock,
            stop_rx,
        ));
        let gp = connect_guest(dir.path(), DOMID).await.expect("guest");
        let guest = GuestSim::start(config, gp.platform, StartOptions::default())
            .await
            .expect("guest sim");
        let session = match guest.sounds[0].connected(WAIT).await {
            Ok(s) => s,
            Err(e) => {
                let backend = if backend.is_finished() {
                    format!("{:?}", backend.await)
                } else {
                    "still running".into()
                };
                panic!("vsnd not connected: {e}; backend: {backend}");
            }
        };
        Rig {
            dir,
            sim: Some(sim),
            dom0,
            guest,
            session,
            outputs,
            stop,
            backend,
        }
    }

    pub fn stream(&self, index: usize) -> Arc<SoundStream> {
        self.session.stream(index).expect("stream")
    }

    pub fn output(&self, index: u32) -> Arc<StreamOutput> {
        self.outputs
            .get(key(index))
            .unwrap_or_else(|| panic!("stream {index} not registered"))
    }

    /// The backend's xenbus state node.
    pub async fn backend_state(&self) -> String {
        self.dom0
            .store
            .read(&format!("/local/domain/0/backend/vsnd/{DOMID}/0/state"))
            .await
            .unwrap_or_default()
    }
}

pub fn key(stream: u32) -> StreamKey {
    StreamKey {
        domid: DOMID,
        devid: 0,
        stream,
    }
}

/// Collects a playback stream's Opus frames until told to stop, then
/// decodes them (in sequence order) to interleaved stereo at 48 kHz.
pub struct OpusCollector {
    task: JoinHandle<(Vec<Arc<pvgate_audio::AudioFrame>>, u64)>,
    done: watch::Sender<bool>,
}

impl OpusCollector {
    pub fn start(mut sub: AudioSubscriber) -> OpusCollector {
        let (done, mut done_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut frames = Vec::new();
            loop {
                tokio::select! {
                    f = sub.recv() => match f {
                        Some(f) => frames.push(f),
                        None => break,
                    },
                    _ = done_rx.changed() => {
                        while let Some(f) = sub.try_recv() {
                            frames.push(f);
                        }
                        break;
                    }
                }
            }
            (frames, sub.lost_frames())
        });
        OpusCollector { task, done }
    }

    /// (decoded stereo samples, frames received, frames lost to lag).
    pub async fn finish(self) -> (Vec<f32>, usize, u64) {
        self.done.send_replace(true);
        let (frames, lost) = self.task.await.expect("collector");
        let mut dec = OpusDecoder::new(Layout::Stereo).expect("decoder");
        let mut pcm = Vec::new();
        let mut last_seq = None;
        for f in &frames {
            if let Some(prev) = last_seq {
                assert_eq!(f.sequence, prev + 1, "Opus frames out of sequence");
            }
            last_seq = Some(f.sequence);
            dec.decode(&f.data, &mut pcm).expect("decode Opus");
        }
        (pcm, frames.len(), lost)
    }
}

/// One channel of interleaved stereo.
pub fn channel(stereo: &[f32], index: usize) -> Vec<f32> {
    stereo.iter().skip(index).step_by(2).copied().collect()
}

/// Status of a raw response slot (an answer to a garbage operation echoes
/// the operation, so it does not decode as a typed response).
pub fn status(slot: &Slot) -> i32 {
    match SndResponse::decode(slot) {
        Ok(r) => r.status,
        Err(_) => i32::from_le_bytes([slot[4], slot[5], slot[6], slot[7]]),
    }
}

/// Put raw request slots on a stream's ring; return the statuses of the
/// answers, in order.
pub async fn raw_requests(stream: &SoundStream, slots: &[Slot]) -> Vec<i32> {
    let ch = stream.request_channel();
    let sent = ch.send_raw(slots).await.expect("send raw");
    assert_eq!(sent, slots.len(), "ring full");
    let mut statuses = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while statuses.len() < sent && tokio::time::Instant::now() < deadline {
        let got = ch
            .drain_responses(Duration::from_secs(1))
            .await
            .expect("responses");
        statuses.extend(got.iter().map(status));
    }
    statuses
}

// The log capture lives in one place for every test helper module.
#[path = "../log_capture/mod.rs"]
mod log_capture;
pub use log_capture::logs;

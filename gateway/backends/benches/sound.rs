//! Sound backend cost per stream: a 48 kHz stereo stream (no resampling)
//! and a 44.1 kHz stereo stream (resampled to 48 kHz), S16_LE, 10 ms
//! WRITEs as snd-xen-front sends them, driven through the sans-IO stream
//! (request handling, pacing, conversion, Opus) on a virtual clock.
//!
//! Printed:
//! - WRITE → Opus frame ready: wall time from handling the WRITE that
//!   completes a 20 ms frame (with its data due at once) to the frame
//!   being available to a subscriber, p50/p99. This is what the gateway
//!   adds; the stream's own buffer (the pacing) comes on top by design.
//! - CPU per stream: processing time per second of audio, as % of a core.
//!
//! `cargo bench -p pvgate-backends --bench sound`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use pvgate_backends::sound::hwparams::StreamSpace;
use pvgate_backends::sound::requests::Refusal;
use pvgate_backends::sound::stream::{BufferMapper, MediaSettings, PcmBuffer, StreamCore};
use pvgate_backends::sound::{StreamKey, StreamLimits, StreamOutput};
use pvgate_protocol::keys::StreamType;
use pvgate_protocol::sndif::{
    mask_of, Open, PcmFormat, RwRange, SndRequest, SndRequestOp, TriggerType,
};
use pvgate_protocol::sndif_config::{PcmHw, StreamConfig};

struct Memory(std::sync::Mutex<Vec<u8>>);

impl PcmBuffer for Memory {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), String> {
        let m = self.0.lock().unwrap();
        dst.copy_from_slice(m.get(offset..offset + dst.len()).ok_or("out of range")?);
        Ok(())
    }
    fn write(&self, offset: usize, src: &[u8]) -> Result<(), String> {
        let mut m = self.0.lock().unwrap();
        m.get_mut(offset..offset + src.len())
            .ok_or("out of range")?
            .copy_from_slice(src);
        Ok(())
    }
}

struct Mapper(Vec<u8>);

impl BufferMapper for Mapper {
    fn map(&mut self, open: &Open) -> Result<Box<dyn PcmBuffer>, Refusal> {
        let mut data = self.0.clone();
        data.resize(open.buffer_sz as usize, 0);
        Ok(Box::new(Memory(std::sync::Mutex::new(data))))
    }
}

const FRAME: u32 = 4;
const PERIODS: u32 = 8;

/// A stream open and started at `rate`, its buffer holding a tone.
fn stream(rate: u32) -> (StreamCore, Arc<StreamOutput>, u32, Mapper) {
    let mut hw = PcmHw::linux_default();
    hw.formats = mask_of([PcmFormat::S16Le]);
    let config = StreamConfig {
        index: 0,
        card_index: 0,
        path: "/bench".into(),
        kind: StreamType::Playback,
        unique_id: None,
        pcm_hw: hw.clone(),
    };
    let output = StreamOutput::unregistered(
        StreamKey {
            domid: 1,
            devid: 0,
            stream: 0,
        },
        config,
    );
    let limits = StreamLimits::default();
    let mut core = StreamCore::new(
        StreamSpace::new(&hw, &limits),
        MediaSettings {
            opus: limits.opus,
            capture_source: limits.capture_source,
        },
        output.clone(),
    );
    let period = rate / 100 * FRAME;
    let tone: Vec<u8> = (0..period * PERIODS / FRAME)
        .flat_map(|i| {
            let t = f64::from(i) / f64::from(rate);
            let l = (0.25 * (std::f64::consts::TAU * 440.0 * t).sin() * 32767.0) as i16;
            let r = (0.25 * (std::f64::consts::TAU * 660.0 * t).sin() * 32767.0) as i16;
            [l.to_le_bytes(), r.to_le_bytes()].concat()
        })
        .collect();
    let mut mapper = Mapper(tone);
    let mut pos = Vec::new();
    let open = SndRequest {
        id: 1,
        op: SndRequestOp::Open(Open {
            pcm_rate: rate,
            pcm_format: PcmFormat::S16Le,
            pcm_channels: 2,
            buffer_sz: period * PERIODS,
            gref_directory: 1,
            period_sz: period,
        }),
    };
    core.handle(&open, 0, &mut mapper, &mut pos).expect("OPEN");
    let start = SndRequest {
        id: 2,
        op: SndRequestOp::Trigger(TriggerType::Start),
    };
    core.handle(&start, 0, &mut mapper, &mut pos)
        .expect("START");
    (core, output, period, mapper)
}

/// Runs `periods` 10 ms WRITEs; returns the WRITE→frame latencies and
/// the total processing time.
fn run(rate: u32, periods: u64) -> (Vec<Duration>, Duration) {
    let (mut core, output, period, mut mapper) = stream(rate);
    let mut sub = output.subscribe();
    let mut latencies = Vec::new();
    let mut busy = Duration::ZERO;
    let mut pos = Vec::new();
    let period_ns = 10_000_000u64;
    for k in 0..periods {
        let offset = ((k % u64::from(PERIODS)) as u32) * period;
        let write = SndRequest {
            id: 3,
            op: SndRequestOp::Write(RwRange {
                offset,
                length: period,
            }),
        };
        // The data is due as it arrives: the card consumed the previous
        // period exactly now.
        let now = k * period_ns;
        let t0 = Instant::now();
        core.handle(&write, now, &mut mapper, &mut pos)
            .expect("WRITE");
        core.poll(now + period_ns, &mut pos);
        core.encode_all();
        let got = sub.try_recv();
        let dt = t0.elapsed();
        busy += dt;
        if got.is_some() {
            latencies.push(dt);
            while sub.try_recv().is_some() {}
        }
        pos.clear();
    }
    (latencies, busy)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn bench(c: &mut Criterion) {
    println!("\nsound: WRITE → Opus frame ready, per stream (S16_LE stereo, 10 ms WRITEs, 20 ms Opus frames at 96 kbit/s)");
    println!(
        "{:<28} {:>10} {:>10} {:>14}",
        "stream", "p50", "p99", "CPU/stream"
    );
    for (name, rate) in [
        ("48 kHz stereo", 48_000),
        ("44.1 kHz stereo (resampled)", 44_100),
    ] {
        // 60 s of audio.
        let (mut lat, busy) = run(rate, 6000);
        lat.sort();
        println!(
            "{:<28} {:>8.1}µs {:>8.1}µs {:>13.2}%",
            name,
            percentile(&lat, 0.5).as_secs_f64() * 1e6,
            percentile(&lat, 0.99).as_secs_f64() * 1e6,
            busy.as_secs_f64() / 60.0 * 100.0
        );
    }
    let mut g = c.benchmark_group("sound");
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    for (name, rate) in [("1s_48k", 48_000u32), ("1s_44k1", 44_100)] {
        g.bench_function(name, |b| b.iter(|| run(rate, 100)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Playback cost per stream: WRITE bytes in → Opus frame out.
//!
//! `cargo bench -p pvgate-audio` prints, for 48 kHz stereo (no resampling)
//! and 44.1 kHz stereo (resampled to 48 kHz):
//! - latency: processing time of one guest WRITE (20 ms of S16_LE, a
//!   typical period) through the pacer and the pipeline until its Opus frame
//!   is published, p50 and p99 over 3000 WRITEs;
//! - CPU: microseconds of processing per second of audio.
//!
//! Criterion then measures the same per-WRITE step statistically.

use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use pvgate_audio::{
    AudioHub, OpusSettings, PacingConfig, PcmFormat, PlaybackConfig, PlaybackPacer,
    PlaybackPipeline, SampleFormat, Trigger,
};

struct Stream {
    pacer: PlaybackPacer,
    pipeline: PlaybackPipeline,
    chunk: Vec<u8>,
    chunk_ns: u64,
    now: u64,
    out: Vec<u8>,
    _sub: pvgate_audio::AudioSubscriber,
}

impl Stream {
    fn new(rate: u32, opus: OpusSettings) -> Self {
        let format = SampleFormat::new(PcmFormat::S16Le).unwrap();
        let period = rate / 50; // 20 ms
        let pacing = PacingConfig {
            rate,
            frame_bytes: 4,
            period_frames: period,
            buffer_frames: period * 4,
        };
        let hub = AudioHub::default();
        let sub = hub.subscribe();
        let cfg = PlaybackConfig {
            format,
            rate,
            channels: 2,
            opus,
        };
        // A music-like signal (two tones and a little noise) so Opus works
        // as hard as on real content.
        let mut x = 12_345u32;
        let samples: Vec<f32> = (0..period as usize)
            .flat_map(|i| {
                let t = i as f32 / rate as f32;
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = ((x >> 9) as f32 / (1u32 << 23) as f32 - 1.0) * 0.05;
                let l = 0.3 * (2.0 * std::f32::consts::PI * 440.0 * t).sin() + noise;
                let r = 0.3 * (2.0 * std::f32::consts::PI * 660.0 * t).sin() - noise;
                [l, r]
            })
            .collect();
        let mut chunk = Vec::new();
        format.encode(&samples, &mut chunk);
        let mut s = Self {
            pacer: PlaybackPacer::new(pacing).unwrap(),
            pipeline: PlaybackPipeline::new(cfg, hub).unwrap(),
            chunk,
            chunk_ns: u64::from(period) * 1_000_000_000 / u64::from(rate),
            now: 0,
            out: Vec::new(),
            _sub: sub,
        };
        let mut out = Vec::new();
        s.pacer.write(&s.chunk.clone());
        s.pacer.trigger(Trigger::Start, 0, &mut out);
        s
    }

    /// One guest WRITE of 20 ms and the 20 ms of stream time it pays for:
    /// returns Opus frames published.
    fn step(&mut self) -> usize {
        self.pacer.write(&self.chunk);
        self.now += self.chunk_ns;
        self.out.clear();
        let tick = self.pacer.poll(self.now, &mut self.out);
        let mut frames = self.pipeline.push_pcm(&self.out).unwrap();
        if tick.silence_frames > 0 {
            frames += self.pipeline.push_silence(tick.silence_frames).unwrap();
        }
        frames
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, rate: u32, opus: OpusSettings) {
    let mut s = Stream::new(rate, opus);
    for _ in 0..200 {
        s.step();
    }
    let n = 3_000;
    let mut per_write = Vec::with_capacity(n);
    let mut frames = 0;
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        frames += s.step();
        per_write.push(t.elapsed());
    }
    let total = started.elapsed();
    per_write.sort();
    let audio_s = n as f64 * s.chunk_ns as f64 / 1e9;
    println!(
        "{name}: WRITE->Opus frame latency p50 {:.1} us, p99 {:.1} us, max {:.1} us; CPU {:.0} us per second of audio ({:.2}% of a core); {frames} frames",
        percentile(&per_write, 0.5).as_secs_f64() * 1e6,
        percentile(&per_write, 0.99).as_secs_f64() * 1e6,
        per_write.last().unwrap().as_secs_f64() * 1e6,
        total.as_secs_f64() * 1e6 / audio_s,
        total.as_secs_f64() / audio_s * 100.0,
    );
}

fn cases() -> Vec<(&'static str, u32, OpusSettings)> {
    let ms10 = OpusSettings {
        frame: pvgate_audio::FrameDuration::Ms10,
        ..OpusSettings::default()
    };
    vec![
        ("48k_stereo_opus20ms", 48_000, OpusSettings::default()),
        (
            "44k1_stereo_resampled_opus20ms",
            44_100,
            OpusSettings::default(),
        ),
        ("48k_stereo_opus10ms", 48_000, ms10),
        ("44k1_stereo_resampled_opus10ms", 44_100, ms10),
    ]
}

fn playback(c: &mut Criterion) {
    let mut group = c.benchmark_group("playback_write_20ms");
    for (name, rate, opus) in cases() {
        let mut s = Stream::new(rate, opus);
        group.bench_function(name, |b| b.iter(|| s.step()));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = playback
}

fn main() {
    for (name, rate, opus) in cases() {
        report(name, rate, opus);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

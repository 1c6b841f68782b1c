//! Criterion micro-benchmarks of each display stage per frame at 720p and
//! 1080p for static, desktop-like and full-motion content. Short measurement
//! times keep the whole run to a couple of minutes on two cores.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use pvgate_media::bench::{bench_bitrate, bench_frames};
use pvgate_media::encoder::Prepare;
use pvgate_media::testpattern::Content;
use pvgate_media::{
    new_encoder, Codec, DamageTracker, EncoderParams, Frame, PixelFormat, SourceLayout,
};
use std::hint::black_box;
use std::time::Duration;

const SIZES: [(u32, u32); 2] = [(1280, 720), (1920, 1080)];
const FRAMES: u32 = 8;

fn stages(c: &mut Criterion) {
    for (w, h) in SIZES {
        for content in Content::ALL {
            let frames = bench_frames(content, w, h, FRAMES);
            let raw: Vec<Vec<u8>> = frames.iter().map(|f| f.packed().into_owned()).collect();
            let id = format!("{w}x{h}/{}", content.name());
            let layout = SourceLayout::dumb(w, h, PixelFormat::Xrgb8888, 0).unwrap();
            let mut group = c.benchmark_group("display");

            let mut tracker = DamageTracker::new(layout).unwrap();
            tracker.detect(&raw[0]).unwrap();
            let mut i = 0;
            group.bench_function(BenchmarkId::new("damage", &id), |b| {
                b.iter(|| {
                    i = (i + 1) % raw.len();
                    black_box(tracker.detect(&raw[i]).unwrap());
                })
            });

            let mut tracker = DamageTracker::new(layout).unwrap();
            let mut target = Frame::new(w, h).unwrap();
            tracker.update(&raw[0], &mut target).unwrap();
            let mut i = 0;
            group.bench_function(BenchmarkId::new("damage+copy", &id), |b| {
                b.iter(|| {
                    i = (i + 1) % raw.len();
                    black_box(tracker.update(&raw[i], &mut target).unwrap());
                })
            });

            let mut prep = Prepare::default();
            let mut i = 0;
            group.bench_function(BenchmarkId::new("xrgb-to-i420", &id), |b| {
                b.iter(|| {
                    i = (i + 1) % frames.len();
                    black_box(prep.to_i420(&frames[i], w, h).unwrap().y()[0]);
                })
            });

            for codec in [Codec::H264, Codec::Vp8] {
                let mut enc = new_encoder(EncoderParams::new(codec, bench_bitrate(w, h))).unwrap();
                let mut n = 0u32;
                group.bench_function(BenchmarkId::new(format!("encode-{codec}"), &id), |b| {
                    b.iter(|| {
                        let f = &frames[n as usize % frames.len()];
                        let pts = Duration::from_millis(34) * n;
                        n += 1;
                        black_box(enc.encode(f, pts, false).unwrap());
                    })
                });
            }
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500));
    targets = stages
}
criterion_main!(benches);

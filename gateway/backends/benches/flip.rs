//! PG_FLIP → EVT_PG_FLIP latency at 1280×720 and 1920×1080, with and
//! without encoders (H.264 + VP8) consuming every flip, under criterion.
//! The measuring code is `pvgate_backends::display::flip_bench`, shared
//! with `pvgate bench display`.
//!
//! Prints a p50/p99 table.
//!
//! `cargo bench -p pvgate-backends --bench flip`

use std::cell::RefCell;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use pvgate_backends::display::flip_bench::{to_markdown, FlipBench, FlipRow};

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
            let mut s = rt
                .block_on(FlipBench::start(domid, w, h, load))
                .expect("bench setup");
            let samples = RefCell::new(Vec::new());
            let name = format!("{w}x{h}/{}", if load { "h264+vp8" } else { "no-encoder" });
            group.bench_function(&name, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let d = s.one_flip().await.expect("flip");
                            samples.borrow_mut().push(d);
                            total += d;
                        }
                        total
                    })
                })
            });
            let backend = s.take_backend_times();
            report.push(FlipRow::new((w, h), load, samples.into_inner(), backend));
            rt.block_on(s.finish());
        }
    }
    group.finish();
    println!("\n{}", to_markdown(&report));
}

criterion_group!(benches, flip_latency);
criterion_main!(benches);

//! Policy call costs: `cargo bench -p pvgate-policy --bench policy`.
//!
//! - per-call latency of each question, built-in policy vs the `default`
//!   plugin (same decisions, so the difference is the sandbox's cost:
//!   lowering the arguments, the call, lifting and validating the result);
//! - instantiation from the `InstancePre` (what a restart after a trap
//!   costs);
//! - reload of a changed file (compiled code from the cache), and a cold
//!   compile for reference;
//! - fuel per decision, printed before the timings.
//!
//! The example plugins are built first if missing (see tests/support).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use pvgate_policy::types::*;
use pvgate_policy::{CacheDir, PolicyEngine, PolicyEngineConfig, TenantPolicy};
use support::*;

struct Inputs {
    guest: Guest,
    connector: DisplayConnector,
    stream: SoundStream,
    viewer: Viewer,
    stats: LinkStats,
    now: Clock,
}

fn inputs() -> Inputs {
    Inputs {
        guest: guest(5, &["silver"]),
        connector: connector(1920, 1080),
        stream: stream(),
        viewer: viewer(Role::Control),
        stats: stats(),
        now: Clock {
            unix_seconds: 1_795_514_400,
        },
    }
}

fn print_fuel(name: &str, t: &TenantPolicy, i: &Inputs) {
    let v = t.video_with_report(&i.guest, &i.connector).1;
    let a = t.audio_with_report(&i.guest, &i.stream).1;
    let m = t.admit_with_report(&i.guest, &i.viewer, i.now).1;
    let j = t
        .adjust_with_report(&i.guest, &i.connector, &i.viewer, &i.stats)
        .1;
    println!(
        "fuel per decision ({name}): video {:?}, audio {:?}, admit {:?}, adjust {:?}",
        v.fuel_used, a.fuel_used, m.fuel_used, j.fuel_used
    );
}

fn calls(c: &mut Criterion) {
    let engine = engine();
    let i = inputs();
    let tenants = [
        ("builtin", engine.builtin("b")),
        (
            "default-plugin",
            engine.load("p", example("default"), cfg(&[])).unwrap(),
        ),
        (
            "tiers-plugin",
            engine.load("t", example("tiers"), cfg(&[])).unwrap(),
        ),
    ];
    for (name, t) in &tenants[1..] {
        print_fuel(name, t, &i);
    }
    let mut g = c.benchmark_group("call");
    for (name, t) in &tenants {
        g.bench_with_input(BenchmarkId::new("video", name), t, |b, t| {
            b.iter(|| t.video(&i.guest, &i.connector))
        });
        g.bench_with_input(BenchmarkId::new("audio", name), t, |b, t| {
            b.iter(|| t.audio(&i.guest, &i.stream))
        });
        g.bench_with_input(BenchmarkId::new("admit", name), t, |b, t| {
            b.iter(|| t.admit(&i.guest, &i.viewer, i.now))
        });
        g.bench_with_input(BenchmarkId::new("adjust", name), t, |b, t| {
            b.iter(|| t.adjust(&i.guest, &i.connector, &i.viewer, &i.stats))
        });
    }
    g.finish();
}

fn lifecycle(c: &mut Criterion) {
    let engine = engine();
    let t = engine.load("p", example("default"), cfg(&[])).unwrap();
    let mut g = c.benchmark_group("lifecycle");
    g.bench_function("instantiate (InstancePre)", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| t.bench_instantiate().expect("instantiate"))
                .sum()
        })
    });

    // Reload: the file alternates between two plugins (both already in the
    // compile cache), so every reload() swaps; only reload() is timed.
    let (_dir, file) = copy_to_temp(&example("default"));
    let r = engine.load("r", &file, cfg(&[])).unwrap();
    let (default, tiers) = (example("default"), example("tiers"));
    engine.check(&tiers).unwrap(); // warm the cache
    let mut flip = false;
    g.bench_function("reload (cached compile)", |b| {
        b.iter_custom(|n| {
            let mut total = Duration::ZERO;
            for _ in 0..n {
                flip = !flip;
                replace_file(&file, if flip { &tiers } else { &default });
                let start = Instant::now();
                assert!(r.reload().unwrap());
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();

    // A cold compile, once (criterion would take minutes at this size).
    let cold = PolicyEngine::new(PolicyEngineConfig {
        cache_dir: CacheDir::Disabled,
        ..config()
    })
    .unwrap();
    let start = Instant::now();
    let info = cold.check(example("tiers")).unwrap();
    println!(
        "cold compile + check of tiers.wasm ({} bytes): {:.1} ms",
        info.size,
        start.elapsed().as_secs_f64() * 1e3
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = calls, lifecycle
}
criterion_main!(benches);

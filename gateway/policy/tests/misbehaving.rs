//! The `misbehaving` example in each mode: every bad call is stopped within
//! a bounded time, answered with the fallback, and counted; replacing the
//! file with a good plugin recovers without a restart.
//!
//! Time bounds here are generous upper limits ("within 5 s"), never tight
//! ones: the machine is shared and slow at times.

mod support;

use std::time::{Duration, Instant};

use pvgate_policy::types::*;
use pvgate_policy::{
    BackoffConfig, CallLimits, CorrectionKind, Failure, PolicyEngine, PolicyEngineConfig, Source,
    TenantPolicy,
};
use support::*;

const GENEROUS: Duration = Duration::from_secs(5);

fn misbehaving(e: &PolicyEngine, mode: &str, limits: CallLimits) -> TenantPolicy {
    e.load_with_limits(
        "acme",
        example("misbehaving"),
        cfg(&[("mode", mode)]),
        limits,
    )
    .unwrap_or_else(|err| panic!("{err}"))
}

/// Fuel stops the loop (the deadline is far away).
#[test]
fn loop_is_stopped_by_fuel() {
    let e = engine();
    let t = misbehaving(
        &e,
        "loop",
        CallLimits {
            fuel: 5_000_000,
            deadline: Duration::from_secs(60),
        },
    );
    let g = guest(5, &[]);
    let c = connector(1280, 720);
    let start = Instant::now();
    let (v, r) = t.video_with_report(&g, &c);
    assert!(start.elapsed() < GENEROUS, "took {:?}", start.elapsed());
    assert_eq!(r.failure, Some(Failure::OutOfFuel));
    assert_eq!(r.source, Source::Default);
    assert_eq!(r.fuel_used, Some(5_000_000));
    assert_eq!(
        v,
        e.builtin("x").video(&g, &c),
        "no earlier decision: the built-in one"
    );
    let m = t.metrics().snapshot();
    assert_eq!(
        (m.fuel_exhausted, m.fallbacks, m.traps, m.timeouts),
        (1, 1, 0, 0)
    );

    // Straight after: the instance is backing off, nothing runs.
    let (_, r) = t.video_with_report(&g, &c);
    assert!(
        matches!(r.failure, Some(Failure::BackingOff { .. })),
        "{r:?}"
    );
    assert_eq!(r.fuel_used, None);
    assert_eq!(t.metrics().snapshot().fuel_exhausted, 1);
}

/// The deadline stops the loop (fuel is practically unlimited).
#[test]
fn loop_is_stopped_by_the_deadline() {
    let e = engine();
    let deadline = Duration::from_millis(100);
    let t = misbehaving(
        &e,
        "loop",
        CallLimits {
            fuel: u64::MAX / 2,
            deadline,
        },
    );
    let start = Instant::now();
    let (a, r) = t.admit_with_report(&guest(5, &[]), &viewer(Role::Control), Clock::now());
    let took = start.elapsed();
    assert!(took >= deadline && took < GENEROUS, "took {took:?}");
    assert_eq!(r.failure, Some(Failure::Deadline));
    // Admission never falls back to an old answer: deny, with a reason.
    assert_eq!(r.source, Source::Deny);
    assert!(
        matches!(a, Admission::Deny(ref why) if !why.is_empty()),
        "{a:?}"
    );
    let m = t.metrics().snapshot();
    assert_eq!((m.timeouts, m.fuel_exhausted, m.fallbacks), (1, 0, 1));
}

#[test]
fn alloc_is_stopped_at_the_memory_cap() {
    let e = engine();
    // With the default budget, zeroing 1 MiB chunks burns the fuel before
    // 64 MiB are reached: stopped either way.
    let t = misbehaving(&e, "alloc", CallLimits::default());
    let start = Instant::now();
    let (_, r) = t.audio_with_report(&guest(5, &[]), &stream());
    assert!(start.elapsed() < GENEROUS);
    assert!(
        matches!(r.failure, Some(Failure::OutOfFuel | Failure::MemoryLimit)),
        "{r:?}"
    );
    assert_eq!(r.source, Source::Default);

    // With fuel to spare, the memory cap is what stops it.
    let t = misbehaving(
        &e,
        "alloc",
        CallLimits {
            fuel: 20_000_000_000,
            deadline: Duration::from_secs(30),
        },
    );
    let start = Instant::now();
    let (a, r) = t.audio_with_report(&guest(5, &[]), &stream());
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_eq!(r.failure, Some(Failure::MemoryLimit), "{r:?}");
    assert_eq!(a, e.builtin("x").audio(&guest(5, &[]), &stream()));
    let m = t.metrics().snapshot();
    assert_eq!((m.memory_exhausted, m.fallbacks), (1, 1));
}

#[test]
fn panic_traps() {
    let e = engine();
    let t = misbehaving(&e, "panic", CallLimits::default());
    let (adj, r) = t.adjust_with_report(
        &guest(5, &[]),
        &connector(800, 600),
        &viewer(Role::View),
        &stats(),
    );
    match &r.failure {
        Some(Failure::Trap(msg)) => assert!(msg.contains("unreachable"), "{msg}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(adj, None);
    let m = t.metrics().snapshot();
    assert_eq!((m.traps, m.fallbacks), (1, 1));
}

/// `absurd` answers are clamped into the gateway's bounds, each correction
/// counted.
#[test]
fn absurd_values_are_clamped_and_counted() {
    let e = engine();
    let t = misbehaving(&e, "absurd", CallLimits::default());
    let g = guest(5, &[]);
    let c = connector(1280, 720);

    let (v, r) = t.video_with_report(&g, &c);
    assert_eq!(r.source, Source::Plugin);
    assert_eq!(v.codecs, vec![Codec::H264, Codec::Vp8]);
    assert_eq!(
        (v.min_bitrate_bps, v.max_bitrate_bps),
        (50_000_000, 50_000_000)
    );
    assert_eq!(v.max_fps, 1);
    assert_eq!(v.max_size, Size::new(7680, 4320));
    assert_eq!(v.keyframe_interval_ms, 100);

    let (a, _) = t.audio_with_report(&g, &stream());
    assert_eq!(a.formats, vec![SampleFormat::S16Le, SampleFormat::FloatLe]);
    assert_eq!(
        a.rates,
        vec![16_000, 44_100, 48_000],
        "no offered rate asked: all offered"
    );
    assert_eq!(a.channels_max, 1);
    assert_eq!(a.opus_bitrate_bps, 510_000);

    let (adm, _) = t.admit_with_report(&g, &viewer(Role::View), Clock::now());
    assert_eq!(adm, Admission::Allow(Role::View), "never above the token");

    let (adj, _) = t.adjust_with_report(&g, &c, &viewer(Role::View), &stats());
    assert_eq!(
        adj,
        Some(Adjustment {
            max_bitrate_bps: 50_000,
            max_fps: 1
        })
    );

    let m = t.metrics().snapshot();
    assert_eq!((m.plugin_ok, m.fallbacks, m.traps), (4, 0, 0));
    for k in [
        CorrectionKind::Codecs,
        CorrectionKind::Bitrate,
        CorrectionKind::Fps,
        CorrectionKind::Size,
        CorrectionKind::KeyframeInterval,
        CorrectionKind::AudioFormats,
        CorrectionKind::AudioRates,
        CorrectionKind::AudioFallback,
        CorrectionKind::AudioChannels,
        CorrectionKind::OpusBitrate,
        CorrectionKind::Role,
        CorrectionKind::Adjustment,
    ] {
        assert!(m.correction(k) >= 1, "{k:?} not counted: {m:?}");
    }
    let sum: u64 = m.corrections.iter().map(|(_, n)| n).sum();
    assert_eq!(m.rejected_values, sum);
}

/// After a failure the instance is re-created once the backoff has passed
/// (and fails again here, doubling the wait).
#[test]
fn restart_after_backoff() {
    let e = PolicyEngine::new(PolicyEngineConfig {
        backoff: BackoffConfig {
            initial: Duration::from_millis(20),
            max: Duration::from_secs(30),
        },
        ..config()
    })
    .unwrap();
    let t = misbehaving(&e, "panic", CallLimits::default());
    let g = guest(5, &[]);
    let c = connector(640, 480);
    assert!(matches!(
        t.video_with_report(&g, &c).1.failure,
        Some(Failure::Trap(_))
    ));
    let before = t.metrics().snapshot().instantiations;
    std::thread::sleep(Duration::from_millis(100));
    // Backoff over: re-created, called, trapped again.
    assert!(matches!(
        t.video_with_report(&g, &c).1.failure,
        Some(Failure::Trap(_))
    ));
    assert_eq!(t.metrics().snapshot().instantiations, before + 1);
    assert_eq!(t.metrics().snapshot().traps, 2);
    match t.video_with_report(&g, &c).1.failure {
        Some(Failure::BackingOff { retry_in_ms }) => assert!(retry_in_ms <= 40, "{retry_in_ms}"),
        other => panic!("{other:?}"),
    }
}

/// The last good decision for the same question is the fallback; a good
/// file recovers the tenant without a restart.
#[test]
fn last_good_then_hot_reload_recovers() {
    let e = engine();
    let (_dir, file) = copy_to_temp(&example("default"));
    // `mode` is for the misbehaving plugin; the default one ignores it.
    let t = e
        .load_with_limits(
            "acme",
            &file,
            cfg(&[("mode", "loop")]),
            CallLimits {
                fuel: 5_000_000,
                deadline: Duration::from_secs(10),
            },
        )
        .unwrap();
    let g = guest(5, &["gold"]);
    let c0 = connector(1600, 900);
    let c1 = DisplayConnector {
        index: 1,
        ..connector(1024, 768)
    };
    let good = t.video(&g, &c0);
    assert_eq!(good.max_size, Size::new(1600, 900));

    replace_file(&file, &example("misbehaving"));
    assert!(t.reload().unwrap(), "a changed file is swapped in");
    assert_eq!(t.metrics().snapshot().reloads, 1);
    let (v, r) = t.video_with_report(&g, &c0);
    assert_eq!(r.failure, Some(Failure::OutOfFuel));
    assert_eq!(r.source, Source::LastGood);
    assert_eq!(v, good);
    // Another connector never had a good answer: the built-in one.
    let (v, r) = t.video_with_report(&g, &c1);
    assert_eq!(r.source, Source::Default);
    assert_eq!(v.max_size, Size::new(1024, 768));

    // Fixed: the default plugin again, no restart of anything.
    replace_file(&file, &example("default"));
    assert!(t.reload().unwrap());
    let (v, r) = t.video_with_report(&g, &c1);
    assert_eq!((r.source, r.failure), (Source::Plugin, None));
    assert_eq!(v.max_size, Size::new(1024, 768));
    assert!(!t.reload().unwrap(), "unchanged file: nothing to do");
    let m = t.metrics().snapshot();
    assert_eq!((m.reloads, m.reload_failures), (2, 0));
}

/// A bad new file is refused, logged and counted; the old plugin serves on.
#[test]
fn bad_new_file_keeps_the_old_plugin() {
    let e = engine();
    let (dir, file) = copy_to_temp(&example("tiers"));
    let t = e.load("acme", &file, cfg(&[])).unwrap();
    let g = guest(5, &["bronze"]);
    let c = connector(1920, 1080);
    assert_eq!(t.video(&g, &c).max_size, Size::new(854, 480));

    let core = dir.path().join("core.wasm");
    std::fs::write(&core, wat::parse_str("(module)").unwrap()).unwrap();
    replace_file(&file, &core);
    let err = t.reload().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("tenant `acme`")
            && msg.contains("plugin.wasm")
            && msg.contains("core WebAssembly module"),
        "{msg}"
    );
    let (v, r) = t.video_with_report(&g, &c);
    assert_eq!(
        (r.source, v.max_size),
        (Source::Plugin, Size::new(854, 480))
    );
    assert_eq!(t.metrics().snapshot().reload_failures, 1);
    assert_eq!(t.plugin_info().unwrap().sha256.len(), 64);

    std::fs::remove_file(&file).unwrap();
    assert!(t.reload().is_err(), "a vanished file is an error");
    assert_eq!(t.video(&g, &c).max_size, Size::new(854, 480));
}

/// The watcher thread notices a new file by itself.
#[test]
fn watcher_reloads_a_changed_file() {
    let e = PolicyEngine::new(PolicyEngineConfig {
        reload_poll: Some(Duration::from_millis(50)),
        ..config()
    })
    .unwrap();
    let (_dir, file) = copy_to_temp(&example("default"));
    let t = e.load("acme", &file, cfg(&[])).unwrap();
    let g = guest(5, &["bronze"]);
    let c = connector(1920, 1080);
    assert_eq!(t.video(&g, &c).max_size, Size::new(1920, 1080));
    replace_file(&file, &example("tiers"));
    let start = Instant::now();
    while t.metrics().snapshot().reloads == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "no reload seen");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(t.video(&g, &c).max_size, Size::new(854, 480));
}

/// A call in flight finishes on the old instance while new calls already
/// use the new file; `interrupt` stops the old call.
#[test]
fn calls_in_flight_finish_on_the_old_plugin() {
    let e = engine();
    let (_dir, file) = copy_to_temp(&example("misbehaving"));
    let t = e
        .load_with_limits(
            "acme",
            &file,
            cfg(&[("mode", "loop")]),
            CallLimits {
                fuel: u64::MAX / 2,
                deadline: Duration::from_secs(60),
            },
        )
        .unwrap();
    let t2 = t.clone();
    let looping = std::thread::spawn(move || {
        let start = Instant::now();
        let r = t2.video_with_report(&guest(5, &[]), &connector(800, 600)).1;
        (r, start.elapsed())
    });
    wait_in_flight(&t, 1);
    replace_file(&file, &example("tiers"));
    assert!(t.reload().unwrap());
    let (v, r) = t.video_with_report(&guest(6, &["bronze"]), &connector(1920, 1080));
    assert_eq!(
        (r.source, v.max_size),
        (Source::Plugin, Size::new(854, 480))
    );
    assert_eq!(
        t.metrics().snapshot().in_flight,
        1,
        "the old call still runs"
    );
    t.interrupt();
    let (r, took) = looping.join().unwrap();
    assert_eq!(r.failure, Some(Failure::Interrupted));
    assert!(took < Duration::from_secs(60));
    assert_eq!(t.metrics().snapshot().interrupted, 1);
}

pub fn wait_in_flight(t: &TenantPolicy, n: u64) {
    let start = Instant::now();
    while t.metrics().snapshot().in_flight != n {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "call never started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A plugin that logs a thousand lines per call gets a few through (rate
/// limit) and still answers; a long but finite loop within the budget is
/// not a failure.
#[test]
fn log_flood_is_rate_limited_and_slow_is_fine() {
    let e = engine();
    let t = e
        .load(
            "acme",
            example("misbehaving"),
            cfg(&[("mode", "log-flood"), ("log-lines", "1000")]),
        )
        .unwrap();
    let (_, r) = t.video_with_report(&guest(5, &[]), &connector(800, 600));
    assert_eq!((r.source, r.failure), (Source::Plugin, None));
    let dropped = t.metrics().snapshot().log_lines_dropped;
    assert!((900..1000).contains(&dropped), "{dropped} dropped");

    let t = e
        .load(
            "acme",
            example("misbehaving"),
            cfg(&[("mode", "slow"), ("slow-iterations", "100000")]),
        )
        .unwrap();
    let (_, r) = t.video_with_report(&guest(5, &[]), &connector(800, 600));
    assert_eq!((r.source, r.failure), (Source::Plugin, None));
    assert!(r.fuel_used.unwrap() > 100_000, "{:?}", r.fuel_used);
}

//! A plugin that misbehaves on purpose, for the gateway's tests: every call
//! does what the config key `mode` says.
//!
//! | `mode` | every call |
//! |---|---|
//! | `good` or unset | the defaults (like the `default` plugin) |
//! | `loop` | spins forever: only fuel or the deadline stops it |
//! | `alloc` | allocates 1 MiB chunks and keeps them until memory runs out (traps) |
//! | `panic` | panics: the message goes to `host.log`, then it traps |
//! | `absurd` | returns absurd values (below) for the gateway to clamp |
//! | `slow` | a long but finite loop of `slow-iterations` (default 10^6, about 16 fuel each: ~16 M fuel, a few ms), then the defaults |
//! | `log-flood` | logs `log-lines` lines (default 1000), then the defaults |
//!
//! An unknown mode logs a warning and behaves like `good`.
//!
//! `absurd` answers: video — no codecs, bitrate min and max `u32::MAX`,
//! 0 fps, 100000x100000, keyframe interval 0; audio — all 25 formats (also
//! the ones the gateway does not convert or the guest does not offer), rates
//! `[0, 4294967295]`, 0 channels, Opus at `u32::MAX` bit/s; admit —
//! `allow(control)` whatever the viewer's token grants; adjust — 0 bit/s and
//! 0 fps.
#![no_std]

use core::hint::black_box;

use pvgate_policy_sdk::config;
use pvgate_policy_sdk::prelude::*;

struct Misbehaving;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Good,
    Loop,
    Alloc,
    Panic,
    Absurd,
    Slow,
    LogFlood,
}

/// The configured mode, read on every call so a test can switch it.
fn mode() -> Mode {
    match config::get("mode").as_deref().map(str::trim) {
        None | Some("good") => Mode::Good,
        Some("loop") => Mode::Loop,
        Some("alloc") => Mode::Alloc,
        Some("panic") => Mode::Panic,
        Some("absurd") => Mode::Absurd,
        Some("slow") => Mode::Slow,
        Some("log-flood") => Mode::LogFlood,
        Some(other) => {
            warn!("unknown mode `{other}`, behaving");
            Mode::Good
        }
    }
}

/// The misbehaviour shared by all four calls: `loop`, `alloc` and `panic`
/// never return; otherwise true means "answer absurdly", false "answer with
/// the defaults".
fn misbehave() -> bool {
    match mode() {
        Mode::Good => false,
        Mode::Absurd => true,
        Mode::Loop => spin_forever(),
        Mode::Alloc => allocate_forever(),
        Mode::Panic => panic!("misbehaving on purpose (mode = panic)"),
        Mode::Slow => {
            spin(config::parsed_or("slow-iterations", 1_000_000u64));
            false
        }
        Mode::LogFlood => {
            for i in 0..config::parsed_or("log-lines", 1000u32) {
                info!("log flood line {i}");
            }
            false
        }
    }
}

fn spin_forever() -> ! {
    let mut n = 0u64;
    loop {
        // black_box keeps the loop from being optimised into nothing.
        n = black_box(n.wrapping_add(1));
    }
}

fn spin(iterations: u64) {
    let mut n = 0u64;
    while black_box(n) < iterations {
        n += 1;
    }
}

fn allocate_forever() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Written to, so the pages are really used, not just reserved.
        let mut chunk = vec![0u8; 1 << 20];
        chunk[0] = 1;
        *chunk.last_mut().unwrap() = 1;
        hoard.push(black_box(chunk));
    }
}

impl Policy for Misbehaving {
    fn video(_guest: &Guest, _connector: &DisplayConnector) -> VideoPolicy {
        if !misbehave() {
            return defaults::video();
        }
        VideoPolicy {
            codecs: Vec::new(),
            min_bitrate_bps: u32::MAX,
            max_bitrate_bps: u32::MAX,
            max_fps: 0,
            max_size: Size::new(100_000, 100_000),
            keyframe_interval_ms: 0,
            quality: QualityMode::Motion,
        }
    }

    fn audio(_guest: &Guest, stream: &SoundStream) -> AudioPolicy {
        if !misbehave() {
            return defaults::audio(stream);
        }
        AudioPolicy {
            formats: SampleFormat::ALL.to_vec(),
            rates: vec![0, u32::MAX],
            channels_max: 0,
            opus_bitrate_bps: u32::MAX,
            capture_allowed: true,
        }
    }

    fn admit(_guest: &Guest, viewer: &Viewer, _now: Clock) -> Admission {
        if !misbehave() {
            return defaults::admit(viewer);
        }
        Admission::Allow(Role::Control)
    }

    fn adjust(
        _guest: &Guest,
        _connector: &DisplayConnector,
        _viewer: &Viewer,
        _stats: &LinkStats,
    ) -> Option<Adjustment> {
        if !misbehave() {
            return defaults::adjust();
        }
        Some(Adjustment {
            max_bitrate_bps: 0,
            max_fps: 0,
        })
    }
}

pvgate_policy_sdk::export!(Misbehaving);

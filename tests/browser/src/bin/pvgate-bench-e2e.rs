//! `pvgate bench e2e`: glass-to-glass latency in headless Chromium.
//!
//! A guest simulator stamps every frame with the wall-clock time it drew it
//! (the strip); the page records when each frame was presented
//! (`requestVideoFrameCallback` for WebRTC, the canvas draw for the
//! WebSocket transport). Latency = presentation − stamp, both on this
//! machine's clock, for every size × codec × transport, p50 and p99.
//!
//! Audio likewise: the guest plays a 1 kHz tick on every whole second of
//! its playback timeline (real time from the stream's start); the page
//! reports when each tick's onset reached its audio output. Latency =
//! onset − the whole second before it, per transport.

use std::time::{Duration, Instant};

use anyhow::Context;
use pvgate_browser_tests::browser::{Browser, BrowserOptions};
use pvgate_browser_tests::host::{GuestSpec, Host, Tenant};
use pvgate_browser_tests::page::Viewer;
use pvgate_guest_sim::content::{decode_strip, ImageView, PixelLayout};

struct Args {
    samples: usize,
    sizes: Vec<(u32, u32)>,
    codecs: Vec<String>,
    transports: Vec<String>,
    audio: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        samples: 60,
        sizes: vec![(1280, 720), (1920, 1080)],
        codecs: vec!["h264".into(), "vp8".into()],
        transports: vec!["webrtc".into(), "websocket".into()],
        audio: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--samples" => args.samples = value()?.parse().context("--samples N")?,
            "--size" => {
                args.sizes = value()?
                    .split(',')
                    .map(|s| {
                        let (w, h) = s.split_once('x').context("--size WxH[,WxH]")?;
                        Ok((w.parse()?, h.parse()?))
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            "--codec" => args.codecs = value()?.split(',').map(str::to_string).collect(),
            "--transport" => args.transports = value()?.split(',').map(str::to_string).collect(),
            "--no-audio" => args.audio = false,
            "--audio-only" => args.sizes.clear(),
            "-h" | "--help" => {
                println!(
                    "pvgate bench e2e [--samples N] [--size 1280x720,1920x1080] [--codec h264,vp8] [--transport webrtc,websocket] [--no-audio | --audio-only]\n\
                     Glass-to-glass latency (guest draw → browser presentation) in headless Chromium,\n\
                     and audio latency (guest playback timeline → the page's audio output)."
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?} (see --help)"),
        }
    }
    Ok(args)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn measure(
    size: (u32, u32),
    codec: &str,
    transport: &str,
    samples: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut host = Host::start(vec![Tenant::new("bench", &[1])])?;
    let mut spec = GuestSpec::full(1, size.0, size.1);
    spec.vkb = None;
    spec.fps = 60;
    host.add_guest(spec)?;
    let browser = Browser::start(&BrowserOptions {
        window: Some((size.0 + 40, size.1 + 120)),
        ..Default::default()
    })?;
    let token = host.tenants[0].token("view").to_string();
    let viewer = Viewer::open(
        &browser,
        &host.viewer_url(1, &token, &format!("transport={transport}&codec={codec}")),
    )?;
    viewer.wait_playing(30, Duration::from_secs(60))?;
    // Let the congestion controller and jitter buffers settle.
    std::thread::sleep(Duration::from_secs(2));
    let mut out = Vec::with_capacity(samples);
    let mut last_frame = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while out.len() < samples && Instant::now() < deadline {
        let grabbed = viewer.grab_frame_timed()?;
        let (w, h) = grabbed.image.dimensions();
        let view = ImageView::new(
            grabbed.image.as_raw(),
            w,
            h,
            w as usize * 4,
            PixelLayout::Rgba,
        )?;
        let Some(strip) = decode_strip(&view) else {
            continue;
        };
        if last_frame == Some(strip.frame) {
            continue; // the same frame again: one sample per frame
        }
        last_frame = Some(strip.frame);
        out.push(grabbed.presented_at_ms - strip.timestamp_us as f64 / 1000.0);
    }
    anyhow::ensure!(!out.is_empty(), "no readable frames in {transport}/{codec}");
    Ok(out)
}

/// Audio latency over `transport`: `samples` ticks.
fn measure_audio(transport: &str, samples: usize) -> anyhow::Result<Vec<f64>> {
    let mut host = Host::start(vec![Tenant::new("bench", &[1])])?;
    let mut spec = GuestSpec::full(1, 640, 360);
    spec.vkb = None;
    spec.sound = "ticks";
    host.add_guest(spec)?;
    let browser = Browser::start(&BrowserOptions::default())?;
    let token = host.tenants[0].token("view").to_string();
    let viewer = Viewer::open(
        &browser,
        &host.viewer_url(1, &token, &format!("transport={transport}")),
    )?;
    viewer.wait_playing(10, Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(2));
    let mut out = Vec::with_capacity(samples);
    let deadline = Instant::now() + Duration::from_secs(30 + 2 * samples as u64);
    while out.len() < samples && Instant::now() < deadline {
        for onset in viewer.audio_onsets(Duration::from_secs(10))? {
            // Ticks start on whole seconds; latency is under a second.
            out.push(onset - (onset / 1000.0).floor() * 1000.0);
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "no ticks heard over {transport}: {}",
        viewer.debug_state()
    );
    out.truncate(samples);
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let mut rows = Vec::new();
    for &size in &args.sizes {
        for codec in &args.codecs {
            for transport in &args.transports {
                eprintln!(
                    "measuring {}x{} {codec} over {transport} ({} frames) ...",
                    size.0, size.1, args.samples
                );
                match measure(size, codec, transport, args.samples) {
                    Ok(mut v) => {
                        v.sort_by(|a, b| a.total_cmp(b));
                        rows.push(format!(
                            "| {}×{} | {codec} | {transport} | {} | {:.1} | {:.1} |",
                            size.0,
                            size.1,
                            v.len(),
                            percentile(&v, 0.5),
                            percentile(&v, 0.99)
                        ));
                    }
                    Err(e) => rows.push(format!(
                        "| {}×{} | {codec} | {transport} | failed: {e:#} | | |",
                        size.0, size.1
                    )),
                }
            }
        }
    }
    let mut audio_rows = Vec::new();
    if args.audio {
        for transport in &args.transports {
            eprintln!(
                "measuring audio over {transport} ({} ticks) ...",
                args.samples.min(30)
            );
            match measure_audio(transport, args.samples.min(30)) {
                Ok(mut v) => {
                    v.sort_by(|a, b| a.total_cmp(b));
                    audio_rows.push(format!(
                        "| Opus 48 kHz stereo | {transport} | {} | {:.1} | {:.1} |",
                        v.len(),
                        percentile(&v, 0.5),
                        percentile(&v, 0.99)
                    ));
                }
                Err(e) => audio_rows.push(format!("| Opus | {transport} | failed: {e:#} | | |")),
            }
        }
    }
    println!("| size | codec | transport | frames | glass-to-glass p50 (ms) | p99 (ms) |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    if !audio_rows.is_empty() {
        println!();
        println!("| audio | transport | ticks | guest → speaker p50 (ms) | p99 (ms) |");
        println!("|---|---|---|---|---|");
        for r in audio_rows {
            println!("{r}");
        }
    }
    Ok(())
}

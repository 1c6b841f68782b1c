//! Capture: a tone sent as Opus (as a viewer's microphone would) comes out
//! of READ in the stream's format, rate and channel count, at the right
//! frequency and level.

use pvgate_audio::opus::{OpusEncoder, OpusSettings};
use pvgate_audio::{CaptureConfig, CapturePipeline, Layout, PcmFormat, SampleFormat};
use pvgate_guest_sim::content::tone::{channel, level_at, measure_tone, ToneGenerator};

/// Level of each tone the viewer sends, dBFS.
const LEVEL: f64 = -12.0;
const LEFT_HZ: f64 = 440.0;
const RIGHT_HZ: f64 = 660.0;

/// The viewer side: 48 kHz tone (440 Hz left, 660 Hz right; mono: 440 Hz)
/// as 20 ms Opus packets.
fn microphone_packets(seconds: f64, layout: Layout) -> Vec<Vec<u8>> {
    let mut enc = OpusEncoder::new(OpusSettings {
        layout,
        ..OpusSettings::default()
    })
    .unwrap();
    let pcm = ToneGenerator::new(48_000, layout.channels(), LEVEL)
        .next_frames((48_000.0 * seconds) as usize);
    pcm.chunks_exact(enc.frame_len())
        .map(|f| enc.encode(f).unwrap())
        .collect()
}

/// Runs the capture path as the guest would use it: a packet arrives every
/// 20 ms, and the guest READs 20 ms worth in between. Returns the decoded
/// samples read and the count of silent bytes served after warm-up.
fn capture(format: PcmFormat, rate: u32, channels: usize, source: Layout) -> (Vec<f32>, usize) {
    let sample = SampleFormat::new(format).unwrap();
    let mut pipe =
        CapturePipeline::new(CaptureConfig::new(sample, rate, channels, source)).unwrap();
    let frame_bytes = sample.sample_bytes() * channels;
    let mut out = Vec::new();
    let mut late_silence = 0;
    let mut read_frames_total = 0u64;
    for (i, packet) in microphone_packets(1.2, source).iter().enumerate() {
        pipe.push_opus(packet).unwrap();
        // 20 ms of stream frames, keeping the long-run count exact.
        let want_total = (i as u64 + 1) * u64::from(rate) / 50;
        let frames = (want_total - read_frames_total) as usize;
        read_frames_total = want_total;
        let outcome = pipe.read(frames * frame_bytes, &mut out);
        assert_eq!(
            outcome.data_bytes + outcome.silence_bytes,
            frames * frame_bytes
        );
        // Before the jitter target (40 ms) and the resampler's first block,
        // silence is expected; after 100 ms it must not happen.
        if i >= 5 {
            late_silence += outcome.silence_bytes;
        }
    }
    let mut samples = Vec::new();
    assert_eq!(sample.decode(&out, &mut samples), out.len());
    (samples, late_silence)
}

fn check(format: PcmFormat, rate: u32, channels: usize, source: Layout) {
    let what = format!("{format:?} {rate} Hz {channels} ch from {source:?}");
    let (samples, late_silence) = capture(format, rate, channels, source);
    assert_eq!(late_silence, 0, "{what}: silence served after warm-up");
    let frames = samples.len() / channels;
    // Measure the last 0.75 s.
    let n = (rate as usize) * 3 / 4;
    assert!(
        frames > n + rate as usize / 5,
        "{what}: only {frames} frames"
    );
    let tail = &samples[(frames - n) * channels..];
    let ch0 = channel(tail, channels, 0);
    let strongest = |sig: &[f32], hz: f64, level: f64| {
        let m = measure_tone(sig, rate).unwrap();
        assert!(
            (m.frequency_hz - hz).abs() <= 2.0,
            "{what}: {hz} Hz found at {:.2}",
            m.frequency_hz
        );
        assert!(
            (m.level_dbfs - level).abs() <= 1.0,
            "{what}: {hz} Hz at {:.2} dBFS",
            m.level_dbfs
        );
    };
    let level = |sig: &[f32], hz: f64, want: f64| {
        let got = level_at(sig, rate, hz);
        assert!(
            (got - want).abs() <= 1.0,
            "{what}: {hz} Hz at {got:.2} dBFS, want {want:.2}"
        );
    };
    match (source, channels) {
        (Layout::Stereo, 1) => {
            // Average of left and right: each tone 6 dB down.
            let half = LEVEL - 20.0 * 2f64.log10();
            let m = measure_tone(&ch0, rate).unwrap();
            assert!(
                (m.frequency_hz - LEFT_HZ).abs() <= 2.0 || (m.frequency_hz - RIGHT_HZ).abs() <= 2.0,
                "{what}: peak at {:.2} Hz",
                m.frequency_hz
            );
            level(&ch0, LEFT_HZ, half);
            level(&ch0, RIGHT_HZ, half);
        }
        (Layout::Stereo, _) => {
            strongest(&ch0, LEFT_HZ, LEVEL);
            strongest(&channel(tail, channels, 1), RIGHT_HZ, LEVEL);
            for extra in 2..channels {
                let s = channel(tail, channels, extra);
                assert!(
                    s.iter().all(|x| x.abs() < 1e-3),
                    "{what}: channel {extra} not silent"
                );
            }
        }
        (Layout::Mono, _) => {
            // A mono microphone goes to every channel.
            for c in 0..channels {
                strongest(&channel(tail, channels, c), LEFT_HZ, LEVEL);
            }
        }
    }
}

#[test]
fn microphone_tone_reaches_every_format() {
    for format in PcmFormat::ALL
        .into_iter()
        .filter(|&f| pvgate_audio::is_supported(f))
    {
        check(format, 44_100, 2, Layout::Stereo);
    }
}

#[test]
fn microphone_tone_at_every_rate_and_channel_count() {
    for rate in [8_000, 11_025, 16_000, 22_050, 44_100, 48_000, 96_000] {
        for channels in [1, 2, 6] {
            check(PcmFormat::S16Le, rate, channels, Layout::Stereo);
        }
    }
    check(PcmFormat::F32Le, 16_000, 1, Layout::Mono);
    check(PcmFormat::S32Be, 48_000, 2, Layout::Mono);
}

#[test]
fn jitter_buffer_is_bounded_when_the_guest_does_not_read() {
    let sample = SampleFormat::new(PcmFormat::S16Le).unwrap();
    let cfg = CaptureConfig::new(sample, 48_000, 2, Layout::Stereo);
    let max_frames = 48_000 * cfg.max_ms as usize / 1000;
    let mut pipe = CapturePipeline::new(cfg).unwrap();
    let packets = microphone_packets(2.0, Layout::Stereo);
    for p in &packets {
        pipe.push_opus(p).unwrap();
        assert!(pipe.buffered_frames() <= max_frames);
    }
    assert_eq!(pipe.buffered_frames(), max_frames);
    let s = pipe.stats();
    assert_eq!(
        s.capture_dropped_frames as usize,
        packets.len() * 960 - max_frames
    );
    // What is left is the newest audio: reading it gives tone, not silence.
    let mut out = Vec::new();
    let r = pipe.read(max_frames * 4, &mut out);
    assert_eq!(r.silence_bytes, 0);
    // And then the buffer is empty: silence, not stale data.
    out.clear();
    let r = pipe.read(400, &mut out);
    assert_eq!(r.silence_bytes, 400);
    assert!(out.iter().all(|&b| b == 0));
}

#[test]
fn no_microphone_means_silence_in_the_stream_format() {
    for (format, silent) in [
        (PcmFormat::U8, 0x80u8),
        (PcmFormat::MuLaw, 0xFF),
        (PcmFormat::ALaw, 0xD5),
        (PcmFormat::S16Le, 0),
    ] {
        let sample = SampleFormat::new(format).unwrap();
        let mut pipe =
            CapturePipeline::new(CaptureConfig::new(sample, 8_000, 1, Layout::Stereo)).unwrap();
        let mut out = Vec::new();
        let r = pipe.read(160 * sample.sample_bytes(), &mut out);
        assert_eq!(r.data_bytes, 0);
        assert!(
            out.iter().all(|&b| b == silent),
            "{format:?}: {:02x?}",
            &out[..4]
        );
    }
}

#[test]
fn garbage_from_a_viewer_is_refused_and_counted() {
    let sample = SampleFormat::new(PcmFormat::S16Le).unwrap();
    let mut pipe =
        CapturePipeline::new(CaptureConfig::new(sample, 48_000, 2, Layout::Stereo)).unwrap();
    assert!(pipe.push_opus(&[0xFF, 0xFF, 0xFF]).is_err());
    assert_eq!(pipe.stats().capture_bad_packets, 1);
    // The stream carries on.
    for p in microphone_packets(0.2, Layout::Stereo) {
        pipe.push_opus(&p).unwrap();
    }
    pipe.push_lost(960).unwrap();
    assert!(pipe.buffered_frames() > 0);
}

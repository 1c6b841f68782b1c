//! Playback through the whole pipeline: a 440 Hz left / 660 Hz right tone in
//! every supported sndif format, at several rates and channel counts, is
//! converted, resampled, Opus-encoded and published; the test decodes the
//! published Opus and measures the tones.

mod common;

use common::{channel, find_peak, tone, AMPLITUDE, LEFT_HZ, RIGHT_HZ};
use pvgate_audio::opus::OpusDecoder;
use pvgate_audio::{
    AudioHub, FormatError, Layout, OpusSettings, PcmFormat, PipelineError, PlaybackConfig,
    PlaybackPipeline, SampleFormat,
};

const RATES: [u32; 6] = [8_000, 11_025, 22_050, 44_100, 48_000, 96_000];
const CHANNELS: [usize; 3] = [1, 2, 6];
/// Opus and the resampler need a moment to settle; measure after it.
const SKIP_S: f64 = 0.2;
const SECONDS: f64 = 1.0;

/// Plays the tone through a pipeline; returns decoded 48 kHz stereo.
fn play(format: PcmFormat, rate: u32, channels: usize, write_bytes: usize) -> Vec<f32> {
    let sample = SampleFormat::new(format).unwrap();
    let hub = AudioHub::new(1_000);
    let mut sub = hub.subscribe();
    let cfg = PlaybackConfig {
        format: sample,
        rate,
        channels,
        opus: OpusSettings::default(),
    };
    let mut pipeline = PlaybackPipeline::new(cfg, hub).unwrap();
    let mut bytes = Vec::new();
    sample.encode(&tone(rate, channels, SECONDS), &mut bytes);
    // Writes of a size that does not divide into frames, as a stress of
    // the partial-frame carry.
    let mut published = 0;
    for chunk in bytes.chunks(write_bytes) {
        published += pipeline.push_pcm(chunk).unwrap();
    }
    let mut decoder = OpusDecoder::new(Layout::Stereo).unwrap();
    let mut out = Vec::new();
    let mut count = 0u64;
    while let Some(frame) = sub.try_recv() {
        assert_eq!(frame.sequence, count, "frames in order, none lost");
        assert_eq!(frame.timestamp, count * 960, "timestamps continuous");
        assert_eq!(decoder.decode(&frame.data, &mut out).unwrap(), 960);
        count += 1;
    }
    assert_eq!(count as usize, published);
    assert_eq!(pipeline.stats().frames_encoded, count);
    // All but the resampler's last partial block and the assembler's
    // partial frame came out.
    let expected_frames = (SECONDS * 48_000.0) as u64;
    assert!(
        count * 960 + 960 + 48_000 / 40 >= expected_frames,
        "{count} frames for {SECONDS} s"
    );
    out
}

fn check(format: PcmFormat, rate: u32, channels: usize) {
    let what = format!("{format:?} {rate} Hz {channels} ch");
    let decoded = play(format, rate, channels, 1_001);
    let start = (SKIP_S * 48_000.0) as usize * 2;
    // 0.75 s: 1.33 Hz bins, interpolated well below the ±2 Hz asked for.
    let window = &decoded[start..start + 36_000 * 2];
    let left = channel(window, 2, 0);
    let right = channel(window, 2, 1);
    let (l440, r660) = (
        find_peak(&left, 48_000, LEFT_HZ, 30.0),
        find_peak(&right, 48_000, RIGHT_HZ, 30.0),
    );
    for (peak, want) in [(l440, LEFT_HZ), (r660, RIGHT_HZ)] {
        assert!(
            (peak.hz - want).abs() <= 2.0,
            "{what}: peak at {:.2} Hz, want {want}",
            peak.hz
        );
        assert!(
            peak.db_vs(AMPLITUDE).abs() <= 1.0,
            "{what}: {want} Hz level {:+.2} dB",
            peak.db_vs(AMPLITUDE)
        );
    }
    if channels == 1 {
        // Mono: both tones in both channels.
        for (sig, want) in [(&left, RIGHT_HZ), (&right, LEFT_HZ)] {
            let p = find_peak(sig, 48_000, want, 30.0);
            assert!(
                (p.hz - want).abs() <= 2.0 && p.db_vs(AMPLITUDE).abs() <= 1.0,
                "{what}: mono {want}: {p:?}"
            );
        }
    } else {
        // Channels stay apart: no 660 Hz on the left, no 440 Hz on the right.
        for (sig, wrong) in [(&left, RIGHT_HZ), (&right, LEFT_HZ)] {
            let leak = find_peak(sig, 48_000, wrong, 3.0);
            assert!(
                leak.db_vs(AMPLITUDE) < -30.0,
                "{what}: {wrong} Hz leaks at {:+.1} dB",
                leak.db_vs(AMPLITUDE)
            );
        }
    }
}

fn check_all_rates_and_channels(format: PcmFormat) {
    for rate in RATES {
        for channels in CHANNELS {
            check(format, rate, channels);
        }
    }
}

macro_rules! format_tests {
    ($($name:ident => $format:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check_all_rates_and_channels(PcmFormat::$format);
            }
        )*
    };
}

format_tests! {
    tone_s8 => S8,
    tone_u8 => U8,
    tone_s16_le => S16Le,
    tone_s16_be => S16Be,
    tone_u16_le => U16Le,
    tone_u16_be => U16Be,
    tone_s24_le => S24Le,
    tone_s24_be => S24Be,
    tone_u24_le => U24Le,
    tone_u24_be => U24Be,
    tone_s32_le => S32Le,
    tone_s32_be => S32Be,
    tone_u32_le => U32Le,
    tone_u32_be => U32Be,
    tone_float_le => F32Le,
    tone_float_be => F32Be,
    tone_float64_le => F64Le,
    tone_float64_be => F64Be,
    tone_mu_law => MuLaw,
    tone_a_law => ALaw,
}

#[test]
fn every_supported_format_has_a_tone_test() {
    // The macro list above must cover exactly the supported formats.
    let covered = 20;
    assert_eq!(
        PcmFormat::ALL
            .iter()
            .filter(|&&f| pvgate_audio::is_supported(f))
            .count(),
        covered
    );
}

#[test]
fn unusual_rates_are_resampled_correctly() {
    for rate in [5_512, 16_000, 32_000, 47_999, 88_200, 192_000, 384_000] {
        check(PcmFormat::S16Le, rate, 2);
    }
}

#[test]
fn single_frame_writes_give_the_same_opus_input() {
    // Chunking must not matter: 1-byte writes versus one big write decode
    // to the same tone (the encoder is deterministic for identical input).
    let a = play(PcmFormat::S24Le, 44_100, 2, 1);
    let b = play(PcmFormat::S24Le, 44_100, 2, 1 << 20);
    assert_eq!(a, b);
}

#[test]
fn compressed_formats_are_refused() {
    for f in [
        PcmFormat::Mpeg,
        PcmFormat::Gsm,
        PcmFormat::ImaAdpcm,
        PcmFormat::Iec958SubframeLe,
        PcmFormat::Iec958SubframeBe,
    ] {
        assert_eq!(SampleFormat::new(f), Err(FormatError::Compressed(f)));
        assert_eq!(
            SampleFormat::from_sndif(f as u8),
            Err(FormatError::Compressed(f))
        );
    }
    assert_eq!(
        SampleFormat::from_sndif(200),
        Err(FormatError::Unknown(200))
    );
}

#[test]
fn bad_stream_parameters_are_refused() {
    let format = SampleFormat::new(PcmFormat::S16Le).unwrap();
    let cfg = |rate, channels| PlaybackConfig {
        format,
        rate,
        channels,
        opus: OpusSettings::default(),
    };
    assert!(matches!(
        PlaybackPipeline::new(cfg(48_000, 0), AudioHub::default()),
        Err(PipelineError::Channels(_))
    ));
    assert!(matches!(
        PlaybackPipeline::new(cfg(1, 2), AudioHub::default()),
        Err(PipelineError::Resample(_))
    ));
    assert!(matches!(
        PlaybackPipeline::new(cfg(u32::MAX, 2), AudioHub::default()),
        Err(PipelineError::Resample(_))
    ));
}

#[test]
fn silence_keeps_stream_time_running() {
    let format = SampleFormat::new(PcmFormat::S16Le).unwrap();
    let hub = AudioHub::new(100);
    let mut sub = hub.subscribe();
    let cfg = PlaybackConfig {
        format,
        rate: 44_100,
        channels: 2,
        opus: OpusSettings::default(),
    };
    let mut p = PlaybackPipeline::new(cfg, hub).unwrap();
    // 1 s of silence at 44.1 kHz is 50 frames of 20 ms at 48 kHz (less the
    // resampler's last partial block).
    let n = p.push_silence(44_100).unwrap();
    assert!((48..=50).contains(&n), "{n}");
    let mut dec = OpusDecoder::new(Layout::Stereo).unwrap();
    let mut out = Vec::new();
    let mut last_ts = None;
    while let Some(f) = sub.try_recv() {
        dec.decode(&f.data, &mut out).unwrap();
        last_ts = Some(f.timestamp);
    }
    assert_eq!(last_ts, Some((n as u64 - 1) * 960));
    assert!(
        out.iter().all(|s| s.abs() < 1e-3),
        "silence decodes to silence"
    );
}

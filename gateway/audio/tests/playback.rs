//! Playback through the whole pipeline: a 440 Hz left / 660 Hz right tone in
//! every supported sndif format, at several rates and channel counts, is
//! converted, resampled, Opus-encoded and published; the test decodes the
//! published Opus and measures the tones.

use pvgate_audio::opus::OpusDecoder;
use pvgate_audio::{
    AudioHub, FormatError, Layout, OpusSettings, PcmFormat, PipelineError, PlaybackConfig,
    PlaybackPipeline, SampleFormat,
};
use pvgate_guest_sim::content::tone::{channel, level_at, measure_tone, ToneGenerator};

/// Per format: every rate in stereo, and mono and 5.1 at two rates each.
/// (The format conversion does not depend on rate or channel count, and
/// resampling and channel mapping do not depend on the format, so a full
/// cross product would test nothing more; it would cost twice the time.)
const STEREO_RATES: [u32; 6] = [8_000, 11_025, 22_050, 44_100, 48_000, 96_000];
const MONO_RATES: [u32; 2] = [8_000, 44_100];
const SURROUND_RATES: [u32; 2] = [48_000, 96_000];
/// Level of each tone the guest plays, dBFS.
const LEVEL: f64 = -12.0;
const LEFT_HZ: f64 = 440.0;
const RIGHT_HZ: f64 = 660.0;
/// Opus and the resampler need a moment to settle; measure after it.
const SKIP_S: f64 = 0.2;
const SECONDS: f64 = 0.8;
/// Measured span: 0.5 s, 2 Hz FFT bins, refined by the analyser to far
/// below the ±2 Hz asked for.
const MEASURE_FRAMES: usize = 24_000;

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
    // The guest simulator's tone and its own PCM encoder (independent of
    // the one under test): channel i plays 440 + 220·i Hz.
    let frames = (f64::from(rate) * SECONDS) as usize;
    let bytes = ToneGenerator::new(rate, channels, LEVEL)
        .next_bytes(frames, format)
        .unwrap();
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
        assert_eq!(frame.pts, std::time::Duration::from_millis(count * 20));
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
    let window = &decoded[start..start + MEASURE_FRAMES * 2];
    let left = channel(window, 2, 0);
    let right = channel(window, 2, 1);
    // The strongest tone: frequency within ±2 Hz, level within 1 dB.
    let strongest = |sig: &[f32], hz: f64, side: &str| {
        let m = measure_tone(sig, 48_000).unwrap();
        assert!(
            (m.frequency_hz - hz).abs() <= 2.0,
            "{what}: {side} peak at {:.2} Hz, want {hz}",
            m.frequency_hz
        );
        assert!(
            (m.level_dbfs - LEVEL).abs() <= 1.0,
            "{what}: {side} {hz} Hz at {:.2} dBFS, want {LEVEL}",
            m.level_dbfs
        );
    };
    // The level of a given component, within 1 dB of `want` dBFS.
    let level = |sig: &[f32], hz: f64, want: f64, side: &str| {
        let got = level_at(sig, 48_000, hz);
        assert!(
            (got - want).abs() <= 1.0,
            "{what}: {side} {hz} Hz at {got:.2} dBFS, want {want:.2}"
        );
    };
    let absent = |sig: &[f32], hz: f64, side: &str| {
        let got = level_at(sig, 48_000, hz);
        assert!(
            got < LEVEL - 30.0,
            "{what}: {side} has {hz} Hz at {got:.1} dBFS"
        );
    };
    match channels {
        1 => {
            // Mono (440 Hz) plays in both ears.
            strongest(&left, LEFT_HZ, "left");
            strongest(&right, LEFT_HZ, "right");
        }
        2 => {
            strongest(&left, LEFT_HZ, "left");
            strongest(&right, RIGHT_HZ, "right");
            // Channels stay apart.
            absent(&left, RIGHT_HZ, "left");
            absent(&right, LEFT_HZ, "right");
        }
        _ => {
            // 5.1 in ALSA order plays FL 440, FR 660, RL 880, RR 1100,
            // FC 1320, LFE 1540: fronts at full level, rears and centre at
            // -3 dB, LFE dropped.
            strongest(&left, LEFT_HZ, "left");
            strongest(&right, RIGHT_HZ, "right");
            let minus3 = LEVEL + 20.0 * std::f64::consts::FRAC_1_SQRT_2.log10();
            level(&left, 880.0, minus3, "left");
            level(&right, 1_100.0, minus3, "right");
            level(&left, 1_320.0, minus3, "left");
            level(&right, 1_320.0, minus3, "right");
            absent(&left, RIGHT_HZ, "left");
            absent(&right, LEFT_HZ, "right");
            absent(&left, 1_540.0, "left");
            absent(&right, 1_540.0, "right");
        }
    }
}

fn check_all_rates_and_channels(format: PcmFormat) {
    for rate in STEREO_RATES {
        check(format, rate, 2);
    }
    for rate in MONO_RATES {
        check(format, rate, 1);
    }
    for rate in SURROUND_RATES {
        check(format, rate, 6);
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
        const COVERED: &[PcmFormat] = &[$(PcmFormat::$format),*];
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
    // The tone tests above cover exactly the formats the pipeline accepts.
    let supported: Vec<PcmFormat> = PcmFormat::ALL
        .into_iter()
        .filter(|&f| pvgate_audio::is_supported(f))
        .collect();
    let mut covered = COVERED.to_vec();
    covered.sort();
    assert_eq!(covered, supported);
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

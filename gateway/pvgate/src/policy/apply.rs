//! Turning validated policy decisions into the media pipeline's settings
//! (pure, so every rule is tested without a guest): encoder parameters per
//! connector, the bitrate bounds congestion control moves within, and the
//! sndif limits of a stream.
//!
//! Decisions only ever *narrow*: a session's own settings (the operator's
//! `[streaming]` table, the browser's codecs) stay in force, and the
//! tighter of the two applies.

use pvgate_backends::sound::StreamLimits;
use std::time::Duration;

use pvgate_media::{Codec, Content, EncoderParams};
use pvgate_policy::types::{self as pt, AudioPolicy, SampleFormat, Size, VideoPolicy};
use pvgate_protocol::keys::StreamType;
use pvgate_protocol::sndif::{formats_in_mask, PcmFormat};
use pvgate_protocol::sndif_config::{RateSet, StreamConfig};

use crate::config::StreamingConfig;

pub fn codec_of(c: pt::Codec) -> Codec {
    match c {
        pt::Codec::H264 => Codec::H264,
        pt::Codec::Vp8 => Codec::Vp8,
    }
}

/// The codecs a session may offer, in the policy's order of preference,
/// among those the operator enabled. Empty when the two have nothing in
/// common (the session then says so to the browser).
pub fn codec_preference(policy: &VideoPolicy, configured: &[Codec]) -> Vec<Codec> {
    policy
        .codecs
        .iter()
        .map(|c| codec_of(*c))
        .filter(|c| configured.contains(c))
        .collect()
}

/// The bitrate range congestion control moves within: the operator's range
/// narrowed to the policy's. If they do not overlap the policy wins (it is
/// the tenant's contract; the operator's range is a default).
pub fn bitrate_bounds(policy: &VideoPolicy, min_bps: u32, max_bps: u32) -> (u32, u32) {
    let lo = min_bps.max(policy.min_bitrate_bps);
    let hi = max_bps.min(policy.max_bitrate_bps);
    if lo <= hi {
        (lo, hi)
    } else {
        (policy.min_bitrate_bps, policy.max_bitrate_bps)
    }
}

/// The operator's `[streaming]` settings narrowed by a connector's video
/// decision, for one session: codecs in the policy's order, the bitrate
/// range congestion control moves within, the frame rate.
pub fn narrow_streaming(cfg: &StreamingConfig, policy: &VideoPolicy) -> StreamingConfig {
    let mut c = cfg.clone();
    c.codecs = codec_preference(policy, &cfg.codecs);
    let (lo, hi) = bitrate_bounds(policy, cfg.min_bitrate_bps, cfg.max_bitrate_bps);
    c.min_bitrate_bps = lo;
    c.max_bitrate_bps = hi;
    c.start_bitrate_bps = cfg.start_bitrate_bps.clamp(lo, hi);
    c.max_fps = cfg.max_fps.min(policy.max_fps).max(1);
    c
}

/// The largest even size with `src`'s aspect ratio that fits in `max`, or
/// `None` when `src` fits already (no scaling).
pub fn fit_within(src: (u32, u32), max: Size) -> Option<(u32, u32)> {
    let (w, h) = src;
    if w == 0 || h == 0 || (w <= max.width && h <= max.height) {
        return None;
    }
    // Scale by the tighter ratio; u64 so 8K × 8K cannot overflow.
    let (mw, mh) = (u64::from(max.width.max(2)), u64::from(max.height.max(2)));
    let (w64, h64) = (u64::from(w), u64::from(h));
    let (nw, nh) = if mw * h64 <= mh * w64 {
        (mw, mw * h64 / w64)
    } else {
        (mh * w64 / h64, mh)
    };
    let even = |v: u64| ((v as u32) & !1).max(2);
    Some((even(nw), even(nh)))
}

/// `params` as the policy allows them for a connector showing `resolution`:
/// bitrate within the policy's bounds, frame rate capped, the picture
/// scaled down to fit its maximum size. The codec is the session's choice
/// (see [`codec_preference`]).
pub fn clamp_encoder(
    mut params: EncoderParams,
    policy: &VideoPolicy,
    resolution: (u32, u32),
) -> EncoderParams {
    params.bitrate_bps = params
        .bitrate_bps
        .clamp(policy.min_bitrate_bps, policy.max_bitrate_bps);
    params.max_fps = params.max_fps.clamp(1, policy.max_fps.max(1));
    let current = params.output_size.unwrap_or(resolution);
    if let Some(fitted) = fit_within(current, policy.max_size) {
        params.output_size = Some(fitted);
    }
    // Validation keeps the interval within sane bounds; a policy that wants
    // fewer forced keyframes than the session asked for cannot widen it.
    let interval = Duration::from_millis(u64::from(policy.keyframe_interval_ms));
    params.keyframe_interval = Some(match params.keyframe_interval {
        Some(own) => own.min(interval),
        None => interval,
    });
    params.content = match policy.quality {
        pt::QualityMode::Screen => Content::Screen,
        pt::QualityMode::Motion => Content::Motion,
    };
    params
}

pub fn sample_format(f: PcmFormat) -> SampleFormat {
    match f {
        PcmFormat::S8 => SampleFormat::S8,
        PcmFormat::U8 => SampleFormat::U8,
        PcmFormat::S16Le => SampleFormat::S16Le,
        PcmFormat::S16Be => SampleFormat::S16Be,
        PcmFormat::U16Le => SampleFormat::U16Le,
        PcmFormat::U16Be => SampleFormat::U16Be,
        PcmFormat::S24Le => SampleFormat::S24Le,
        PcmFormat::S24Be => SampleFormat::S24Be,
        PcmFormat::U24Le => SampleFormat::U24Le,
        PcmFormat::U24Be => SampleFormat::U24Be,
        PcmFormat::S32Le => SampleFormat::S32Le,
        PcmFormat::S32Be => SampleFormat::S32Be,
        PcmFormat::U32Le => SampleFormat::U32Le,
        PcmFormat::U32Be => SampleFormat::U32Be,
        PcmFormat::F32Le => SampleFormat::FloatLe,
        PcmFormat::F32Be => SampleFormat::FloatBe,
        PcmFormat::F64Le => SampleFormat::Float64Le,
        PcmFormat::F64Be => SampleFormat::Float64Be,
        PcmFormat::Iec958SubframeLe => SampleFormat::Iec958SubframeLe,
        PcmFormat::Iec958SubframeBe => SampleFormat::Iec958SubframeBe,
        PcmFormat::MuLaw => SampleFormat::MuLaw,
        PcmFormat::ALaw => SampleFormat::ALaw,
        PcmFormat::ImaAdpcm => SampleFormat::ImaAdpcm,
        PcmFormat::Mpeg => SampleFormat::Mpeg,
        PcmFormat::Gsm => SampleFormat::Gsm,
    }
}

fn pcm_format(f: SampleFormat) -> Option<PcmFormat> {
    PcmFormat::ALL.into_iter().find(|p| sample_format(*p) == f)
}

/// ALSA's standard rates: what a continuous `rate_min..=rate_max` range is
/// offered to a plugin as (plugins choose from a list).
pub const STANDARD_RATES: [u32; 13] = [
    5512, 8000, 11025, 16000, 22050, 32000, 44100, 48000, 64000, 88200, 96000, 176400, 192000,
];

/// A stream as a plugin sees it: what the toolstack configured for it.
pub fn sound_stream(config: &StreamConfig) -> pt::SoundStream {
    let hw = &config.pcm_hw;
    let rates = match &hw.rates {
        RateSet::List(l) => l.clone(),
        RateSet::Continuous => STANDARD_RATES
            .into_iter()
            .filter(|r| (hw.rate_min..=hw.rate_max).contains(r))
            .collect(),
    };
    pt::SoundStream {
        unique_id: config
            .unique_id
            .clone()
            .unwrap_or_else(|| config.card_index.to_string()),
        direction: match config.kind {
            StreamType::Playback => pt::Direction::Playback,
            StreamType::Capture => pt::Direction::Capture,
        },
        formats: formats_in_mask(hw.formats)
            .into_iter()
            .map(sample_format)
            .collect(),
        rates,
        channels_min: hw.channels_min,
        channels_max: hw.channels_max,
    }
}

/// `base` narrowed to an audio decision: the formats, rates and channel
/// count a guest may negotiate (HW_PARAM_QUERY/OPEN), and the Opus bitrate
/// viewers get.
pub fn narrow_stream(base: &StreamLimits, a: &AudioPolicy) -> StreamLimits {
    let mut l = base.clone();
    let allowed = a
        .formats
        .iter()
        .filter_map(|f| pcm_format(*f))
        .fold(0u64, |m, f| m | f.mask_bit());
    l.formats &= allowed;
    let rates: Vec<u32> = a
        .rates
        .iter()
        .copied()
        .filter(|r| base.rates.as_ref().is_none_or(|b| b.contains(r)))
        .collect();
    l.rates = Some(rates);
    l.channels_max = base.channels_max.min(a.channels_max).max(base.channels_min);
    l.opus.bitrate_bps = a.opus_bitrate_bps;
    if l.channels_max == 1 {
        // A mono stream needs no stereo Opus: half the bits for the same.
        l.opus.layout = pvgate_audio::Layout::Mono;
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvgate_policy::types::QualityMode;

    fn video(max: Size, fps: u32, lo: u32, hi: u32) -> VideoPolicy {
        VideoPolicy {
            codecs: vec![pt::Codec::Vp8, pt::Codec::H264],
            min_bitrate_bps: lo,
            max_bitrate_bps: hi,
            max_fps: fps,
            max_size: max,
            keyframe_interval_ms: 2000,
            quality: QualityMode::Screen,
        }
    }

    #[test]
    fn sizes_fit_keeping_the_aspect_and_even() {
        let bronze = Size::new(854, 480);
        assert_eq!(fit_within((1920, 1080), bronze), Some((852, 480)));
        assert_eq!(fit_within((1280, 720), bronze), Some((852, 480)));
        assert_eq!(fit_within((640, 480), bronze), None);
        // Wider than 16:9: width bound.
        assert_eq!(fit_within((2560, 1080), bronze), Some((854, 360)));
        assert_eq!(
            fit_within((1024, 768), Size::new(1280, 720)),
            Some((960, 720))
        );
        assert_eq!(fit_within((0, 0), bronze), None);
        assert_eq!(fit_within((7680, 2), Size::new(2, 2)), Some((2, 2)));
    }

    #[test]
    fn encoder_params_are_narrowed() {
        let v = video(Size::new(854, 480), 15, 50_000, 500_000);
        let mut p = EncoderParams::new(Codec::H264, 4_000_000);
        p.max_fps = 30;
        let c = clamp_encoder(p.clone(), &v, (1920, 1080));
        assert_eq!(
            (c.bitrate_bps, c.max_fps, c.output_size),
            (500_000, 15, Some((852, 480)))
        );
        assert_eq!(c.keyframe_interval, Some(Duration::from_secs(2)));
        assert_eq!(c.content, Content::Screen);
        let motion = VideoPolicy {
            quality: QualityMode::Motion,
            keyframe_interval_ms: 500,
            ..v.clone()
        };
        let c = clamp_encoder(p.clone(), &motion, (1920, 1080));
        assert_eq!(
            (c.keyframe_interval, c.content, c.refresh()),
            (Some(Duration::from_millis(500)), Content::Motion, None)
        );
        // A session already below the policy keeps its own values.
        p.max_fps = 10;
        p.bitrate_bps = 100_000;
        let c = clamp_encoder(p, &v, (640, 480));
        assert_eq!(
            (c.bitrate_bps, c.max_fps, c.output_size),
            (100_000, 10, None)
        );
    }

    #[test]
    fn codecs_and_bitrate_bounds() {
        let v = video(Size::new(0, 0), 30, 200_000, 2_000_000);
        assert_eq!(
            codec_preference(&v, &[Codec::H264, Codec::Vp8]),
            vec![Codec::Vp8, Codec::H264]
        );
        assert_eq!(codec_preference(&v, &[Codec::H264]), vec![Codec::H264]);
        assert_eq!(
            bitrate_bounds(&v, 300_000, 12_000_000),
            (300_000, 2_000_000)
        );
        // No overlap: the policy's range.
        assert_eq!(
            bitrate_bounds(&v, 3_000_000, 12_000_000),
            (200_000, 2_000_000)
        );
    }

    #[test]
    fn a_session_narrows_the_operators_streaming_settings() {
        let v = video(Size::new(854, 480), 15, 50_000, 500_000);
        let c = narrow_streaming(&StreamingConfig::default(), &v);
        assert_eq!(c.codecs, vec![Codec::Vp8, Codec::H264]);
        assert_eq!((c.min_bitrate_bps, c.max_bitrate_bps), (300_000, 500_000));
        assert_eq!((c.start_bitrate_bps, c.max_fps), (500_000, 15));
    }

    #[test]
    fn a_continuous_stream_is_offered_as_standard_rates() {
        let mut cfg = StreamConfig {
            index: 0,
            card_index: 1,
            path: "x".into(),
            kind: StreamType::Playback,
            unique_id: None,
            pcm_hw: pvgate_protocol::sndif_config::PcmHw::linux_default(),
        };
        cfg.pcm_hw.formats = PcmFormat::S16Le.mask_bit() | PcmFormat::MuLaw.mask_bit();
        let s = sound_stream(&cfg);
        assert_eq!(s.unique_id, "1");
        assert_eq!(s.rates.first(), Some(&5512));
        assert_eq!(s.rates.last(), Some(&48000));
        assert_eq!(s.formats, vec![SampleFormat::S16Le, SampleFormat::MuLaw]);
    }

    #[test]
    fn audio_decisions_narrow_the_stream() {
        let a = AudioPolicy {
            formats: vec![SampleFormat::S16Le],
            rates: vec![16_000],
            channels_max: 1,
            opus_bitrate_bps: 24_000,
            capture_allowed: false,
        };
        let l = narrow_stream(&StreamLimits::default(), &a);
        assert_eq!(l.formats, PcmFormat::S16Le.mask_bit());
        assert_eq!(l.rates, Some(vec![16_000]));
        assert_eq!(l.channels_max, 1);
        assert_eq!(l.opus.bitrate_bps, 24_000);
        assert_eq!(l.opus.layout, pvgate_audio::Layout::Mono);
    }
}

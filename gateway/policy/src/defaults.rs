//! The built-in policy: what a tenant gets with no plugin configured, and
//! what a failed plugin call falls back to when there is no earlier good
//! decision for the same question.
//!
//! These are the same decisions as the plugin SDK's defaults (the `default`
//! example plugin returns exactly these), so a tenant that installs the
//! default plugin sees no change. Keep the two in step.

use crate::types::*;

/// Codec preference when nobody says otherwise: H.264 first (hardware
/// decoders everywhere), VP8 for browsers without it.
pub const DEFAULT_CODECS: [Codec; 2] = [Codec::H264, Codec::Vp8];
pub const DEFAULT_MIN_BITRATE_BPS: u32 = 300_000;
pub const DEFAULT_MAX_BITRATE_BPS: u32 = 8_000_000;
pub const DEFAULT_MAX_FPS: u32 = 60;
pub const DEFAULT_KEYFRAME_INTERVAL_MS: u32 = 2000;
pub const DEFAULT_CHANNELS_MAX: u32 = 2;
pub const DEFAULT_OPUS_BITRATE_BPS: u32 = 96_000;

/// Encoder settings before validation: `max_size` 0x0 ("the guest's size"),
/// which validation turns into the connector's resolution.
pub fn video(_guest: &Guest, _connector: &DisplayConnector) -> VideoPolicy {
    VideoPolicy {
        codecs: DEFAULT_CODECS.to_vec(),
        min_bitrate_bps: DEFAULT_MIN_BITRATE_BPS,
        max_bitrate_bps: DEFAULT_MAX_BITRATE_BPS,
        max_fps: DEFAULT_MAX_FPS,
        max_size: Size::new(0, 0),
        keyframe_interval_ms: DEFAULT_KEYFRAME_INTERVAL_MS,
        quality: QualityMode::Screen,
    }
}

/// Everything the guest offers that the gateway can convert; stereo at
/// most; capture allowed (the viewer still needs the control role).
pub fn audio(_guest: &Guest, stream: &SoundStream) -> AudioPolicy {
    let mut formats: Vec<SampleFormat> = Vec::new();
    for &f in &stream.formats {
        if f.convertible() && !formats.contains(&f) {
            formats.push(f);
        }
    }
    AudioPolicy {
        formats,
        // Empty = "all the guest offers"; validation makes it explicit.
        rates: Vec::new(),
        channels_max: DEFAULT_CHANNELS_MAX,
        opus_bitrate_bps: DEFAULT_OPUS_BITRATE_BPS,
        capture_allowed: true,
    }
}

/// Everyone with a valid token gets what the token grants.
pub fn admit(_guest: &Guest, viewer: &Viewer, _now: Clock) -> Admission {
    Admission::Allow(viewer.role)
}

/// No per-viewer tightening: congestion control already adapts within the
/// connector's bitrate bounds.
pub fn adjust(
    _guest: &Guest,
    _connector: &DisplayConnector,
    _viewer: &Viewer,
    _stats: &LinkStats,
) -> Option<Adjustment> {
    None
}

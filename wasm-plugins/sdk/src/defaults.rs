//! The gateway's built-in policy: what it does with no plugin, and what every
//! [`Policy`](crate::Policy) method returns unless a plugin overrides it.
//!
//! | question | default |
//! |---|---|
//! | video codecs | H.264, then VP8 |
//! | video bitrate | 300 kbit/s .. 8 Mbit/s (congestion control moves within) |
//! | frame rate | at most 60 fps |
//! | picture size | 0x0: the guest's own mode, not scaled |
//! | keyframes | at least every 2000 ms |
//! | encoder tuning | `screen` (sharp text) |
//! | audio formats | those the guest offers that the gateway converts (all linear PCM; not IEC958, mu-law, a-law, IMA ADPCM, MPEG, GSM) |
//! | audio rates | all the guest offers |
//! | audio channels | at most 2 |
//! | Opus bitrate | 96 kbit/s |
//! | microphone | allowed (to viewers with the control role) |
//! | admission | allowed, with the role the viewer's token grants |
//! | per-viewer adjustment | none |
//!
//! Plugins change a field or two with struct update syntax:
//! `VideoPolicy { max_fps: 30, ..defaults::video() }`.

use alloc::vec::Vec;

use crate::types::{
    Adjustment, Admission, AudioPolicy, Codec, QualityMode, Size, SoundStream, VideoPolicy, Viewer,
};

pub const CODECS: [Codec; 2] = [Codec::H264, Codec::Vp8];
pub const MIN_BITRATE_BPS: u32 = 300_000;
pub const MAX_BITRATE_BPS: u32 = 8_000_000;
pub const MAX_FPS: u32 = 60;
pub const MAX_SIZE: Size = Size::UNLIMITED;
pub const KEYFRAME_INTERVAL_MS: u32 = 2000;
pub const QUALITY: QualityMode = QualityMode::Screen;
pub const CHANNELS_MAX: u32 = 2;
pub const OPUS_BITRATE_BPS: u32 = 96_000;
pub const CAPTURE_ALLOWED: bool = true;

/// The built-in video policy (it does not depend on the guest or connector).
pub fn video() -> VideoPolicy {
    VideoPolicy {
        codecs: CODECS.to_vec(),
        min_bitrate_bps: MIN_BITRATE_BPS,
        max_bitrate_bps: MAX_BITRATE_BPS,
        max_fps: MAX_FPS,
        max_size: MAX_SIZE,
        keyframe_interval_ms: KEYFRAME_INTERVAL_MS,
        quality: QUALITY,
    }
}

/// The built-in audio policy for `stream`: the formats it offers that the
/// gateway converts, all its rates, at most two channels.
pub fn audio(stream: &SoundStream) -> AudioPolicy {
    AudioPolicy {
        formats: convertible_formats(stream),
        rates: stream.rates.clone(),
        channels_max: CHANNELS_MAX,
        opus_bitrate_bps: OPUS_BITRATE_BPS,
        capture_allowed: CAPTURE_ALLOWED,
    }
}

/// The formats `stream` offers that the gateway converts, in the guest's order.
pub fn convertible_formats(stream: &SoundStream) -> Vec<crate::SampleFormat> {
    stream
        .formats
        .iter()
        .copied()
        .filter(|f| f.gateway_converts())
        .collect()
}

/// The built-in admission: everyone their token's role.
pub fn admit(viewer: &Viewer) -> Admission {
    Admission::Allow(viewer.role)
}

/// The built-in adjustment: none, the connector's video policy stands.
pub fn adjust() -> Option<Adjustment> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Direction, SampleFormat};
    use alloc::string::String;
    use alloc::vec;

    #[test]
    fn audio_keeps_offered_convertible_formats_and_rates() {
        let stream = SoundStream {
            unique_id: String::from("0"),
            direction: Direction::Playback,
            formats: vec![
                SampleFormat::MuLaw,
                SampleFormat::S16Le,
                SampleFormat::FloatLe,
            ],
            rates: vec![44100, 48000],
            channels_min: 1,
            channels_max: 8,
        };
        let a = audio(&stream);
        assert_eq!(a.formats, vec![SampleFormat::S16Le, SampleFormat::FloatLe]);
        assert_eq!(a.rates, vec![44100, 48000]);
        assert_eq!(a.channels_max, 2);
        assert_eq!(a.opus_bitrate_bps, 96_000);
        assert!(a.capture_allowed);
    }
}

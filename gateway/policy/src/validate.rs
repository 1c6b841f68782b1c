//! Every decision is checked and clamped into the gateway's bounds here, so
//! a plugin can be wrong but never harmful (the WIT's promise). Each change
//! is reported as a [`Correction`]; the tenant counts them per kind in its
//! metrics and the CLI prints them, so a plugin author sees what the gateway
//! did not accept.
//!
//! The built-in policy goes through the same functions; its corrections are
//! not counted (they only happen when an operator set tighter bounds).

use serde::{Deserialize, Serialize};

use crate::defaults;
use crate::limits::Bounds;
use crate::types::*;

/// What was corrected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CorrectionKind {
    /// Duplicate codecs dropped, or an empty list replaced by the default order.
    Codecs,
    /// A bitrate outside floor..=ceiling clamped.
    Bitrate,
    /// min-bitrate > max-bitrate swapped.
    BitrateOrder,
    /// max-fps outside the gateway's range clamped.
    Fps,
    /// max-size: half-zero, beyond 8K, or odd.
    Size,
    KeyframeInterval,
    /// Formats the guest does not offer or the gateway cannot convert dropped.
    AudioFormats,
    /// Rates the guest does not offer dropped.
    AudioRates,
    /// Nothing usable left in a list: the default decision's value used.
    AudioFallback,
    AudioChannels,
    OpusBitrate,
    /// A role above the token's grant lowered.
    Role,
    /// A deny reason empty, too long or with control characters.
    DenyReason,
    /// An adjustment loosening the connector's policy, or out of bounds.
    Adjustment,
}

impl CorrectionKind {
    pub const ALL: [CorrectionKind; 14] = [
        CorrectionKind::Codecs,
        CorrectionKind::Bitrate,
        CorrectionKind::BitrateOrder,
        CorrectionKind::Fps,
        CorrectionKind::Size,
        CorrectionKind::KeyframeInterval,
        CorrectionKind::AudioFormats,
        CorrectionKind::AudioRates,
        CorrectionKind::AudioFallback,
        CorrectionKind::AudioChannels,
        CorrectionKind::OpusBitrate,
        CorrectionKind::Role,
        CorrectionKind::DenyReason,
        CorrectionKind::Adjustment,
    ];

    /// A stable name for metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            CorrectionKind::Codecs => "codecs",
            CorrectionKind::Bitrate => "bitrate",
            CorrectionKind::BitrateOrder => "bitrate_order",
            CorrectionKind::Fps => "fps",
            CorrectionKind::Size => "size",
            CorrectionKind::KeyframeInterval => "keyframe_interval",
            CorrectionKind::AudioFormats => "audio_formats",
            CorrectionKind::AudioRates => "audio_rates",
            CorrectionKind::AudioFallback => "audio_fallback",
            CorrectionKind::AudioChannels => "audio_channels",
            CorrectionKind::OpusBitrate => "opus_bitrate",
            CorrectionKind::Role => "role",
            CorrectionKind::DenyReason => "deny_reason",
            CorrectionKind::Adjustment => "adjustment",
        }
    }
}

/// One change the gateway made to a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correction {
    pub kind: CorrectionKind,
    /// What was wrong and what was used instead, for logs and the CLI.
    pub detail: String,
}

fn note(out: &mut Vec<Correction>, kind: CorrectionKind, detail: String) {
    out.push(Correction { kind, detail });
}

fn clamp_u32(
    out: &mut Vec<Correction>,
    kind: CorrectionKind,
    what: &str,
    value: u32,
    lo: u32,
    hi: u32,
) -> u32 {
    let clamped = value.clamp(lo, hi.max(lo));
    if clamped != value {
        note(
            out,
            kind,
            format!("{what} {value} outside {lo}..={hi}, using {clamped}"),
        );
    }
    clamped
}

/// Clamp one dimension of max-size: 0 means the guest's own dimension
/// (or the gateway's maximum if the guest's is unknown), then at most the
/// maximum, then even (the encoders work on 2x2 chroma blocks).
fn dimension(value: u32, guest: u32, max: u32) -> u32 {
    let v = if value == 0 {
        if guest == 0 {
            max
        } else {
            guest
        }
    } else {
        value
    };
    let v = v.min(max) & !1;
    v.max(2)
}

pub fn video(
    raw: VideoPolicy,
    connector: &DisplayConnector,
    b: &Bounds,
    out: &mut Vec<Correction>,
) -> VideoPolicy {
    let mut codecs: Vec<Codec> = Vec::with_capacity(raw.codecs.len());
    for c in &raw.codecs {
        if codecs.contains(c) {
            note(
                out,
                CorrectionKind::Codecs,
                format!("duplicate codec {c:?} dropped"),
            );
        } else {
            codecs.push(*c);
        }
    }
    if codecs.is_empty() {
        note(
            out,
            CorrectionKind::Codecs,
            "empty codec list, using the default order h264, vp8".into(),
        );
        codecs = defaults::DEFAULT_CODECS.to_vec();
    }

    let (floor, ceiling) = (b.bitrate_floor_bps, b.bitrate_ceiling_bps);
    let mut min = clamp_u32(
        out,
        CorrectionKind::Bitrate,
        "min-bitrate-bps",
        raw.min_bitrate_bps,
        floor,
        ceiling,
    );
    let mut max = clamp_u32(
        out,
        CorrectionKind::Bitrate,
        "max-bitrate-bps",
        raw.max_bitrate_bps,
        floor,
        ceiling,
    );
    if min > max {
        note(
            out,
            CorrectionKind::BitrateOrder,
            format!("min-bitrate-bps {min} above max-bitrate-bps {max}, swapped"),
        );
        std::mem::swap(&mut min, &mut max);
    }

    let max_fps = clamp_u32(
        out,
        CorrectionKind::Fps,
        "max-fps",
        raw.max_fps,
        b.fps_min,
        b.fps_max,
    );

    let guest = connector.resolution;
    let asked = raw.max_size;
    let max_size = if asked.width == 0 && asked.height == 0 {
        // "0x0 means the guest's own size" (WIT): not a correction.
        Size::new(
            dimension(0, guest.width, b.max_width),
            dimension(0, guest.height, b.max_height),
        )
    } else {
        let s = Size::new(
            dimension(asked.width, guest.width, b.max_width),
            dimension(asked.height, guest.height, b.max_height),
        );
        if s != asked {
            note(
                out,
                CorrectionKind::Size,
                format!(
                    "max-size {}x{} not an even size within {}x{}, using {}x{}",
                    asked.width, asked.height, b.max_width, b.max_height, s.width, s.height
                ),
            );
        }
        s
    };

    let keyframe_interval_ms = clamp_u32(
        out,
        CorrectionKind::KeyframeInterval,
        "keyframe-interval-ms",
        raw.keyframe_interval_ms,
        b.keyframe_min_ms,
        b.keyframe_max_ms,
    );

    VideoPolicy {
        codecs,
        min_bitrate_bps: min,
        max_bitrate_bps: max,
        max_fps,
        max_size,
        keyframe_interval_ms,
        quality: raw.quality,
    }
}

/// The sample rates a guest list can sensibly carry, for guests that do
/// not list theirs.
const RATE_RANGE: std::ops::RangeInclusive<u32> = 8_000..=384_000;

pub fn audio(
    raw: AudioPolicy,
    guest: &Guest,
    stream: &SoundStream,
    b: &Bounds,
    out: &mut Vec<Correction>,
) -> AudioPolicy {
    // Formats: what the plugin wants ∩ what the guest offers ∩ what we can
    // convert, in the plugin's order of preference.
    let offered_any_format = stream.formats.is_empty();
    let mut formats = Vec::with_capacity(raw.formats.len());
    let mut dropped = Vec::new();
    for &f in &raw.formats {
        if formats.contains(&f) {
            continue;
        }
        if f.convertible() && (offered_any_format || stream.formats.contains(&f)) {
            formats.push(f);
        } else {
            dropped.push(f);
        }
    }
    if !dropped.is_empty() {
        note(
            out,
            CorrectionKind::AudioFormats,
            format!("formats {dropped:?} not offered by the guest or not convertible, dropped"),
        );
    }
    if formats.is_empty() {
        formats = defaults::audio(guest, stream).formats;
        note(
            out,
            CorrectionKind::AudioFallback,
            format!("no usable format left, using the default decision's {formats:?}"),
        );
    }

    // Rates: empty means "all the guest offers" (WIT); otherwise ∩ offered.
    let all_offered = || -> Vec<u32> {
        let mut v = Vec::new();
        for &r in &stream.rates {
            if !v.contains(&r) {
                v.push(r);
            }
        }
        v
    };
    let rates = if raw.rates.is_empty() {
        all_offered()
    } else {
        let mut rates = Vec::with_capacity(raw.rates.len());
        let mut dropped = Vec::new();
        for &r in &raw.rates {
            if rates.contains(&r) {
                continue;
            }
            let ok = if stream.rates.is_empty() {
                RATE_RANGE.contains(&r)
            } else {
                stream.rates.contains(&r)
            };
            if ok {
                rates.push(r);
            } else {
                dropped.push(r);
            }
        }
        if !dropped.is_empty() {
            note(
                out,
                CorrectionKind::AudioRates,
                format!("rates {dropped:?} not offered by the guest, dropped"),
            );
        }
        if rates.is_empty() {
            let all = all_offered();
            note(
                out,
                CorrectionKind::AudioFallback,
                format!("no offered rate left, using the default decision's {all:?}"),
            );
            all
        } else {
            rates
        }
    };

    // channels-max is a ceiling: above what the guest offers it just means
    // "all of them" (the defaults' 2 on a mono stream is not a mistake).
    // Only impossible values count as corrections: 0, or more than sndif's
    // 8-bit channel count can express.
    let guest_max = stream.channels_max.max(1);
    let channels_max = if raw.channels_max == 0 || raw.channels_max > 255 {
        let used = if raw.channels_max == 0 { 1 } else { guest_max };
        note(
            out,
            CorrectionKind::AudioChannels,
            format!("channels-max {} impossible, using {used}", raw.channels_max),
        );
        used
    } else {
        raw.channels_max.min(guest_max)
    };
    let opus_bitrate_bps = clamp_u32(
        out,
        CorrectionKind::OpusBitrate,
        "opus-bitrate-bps",
        raw.opus_bitrate_bps,
        b.opus_min_bps,
        b.opus_max_bps,
    );

    AudioPolicy {
        formats,
        rates,
        channels_max,
        opus_bitrate_bps,
        capture_allowed: raw.capture_allowed,
    }
}

pub fn admission(
    raw: Admission,
    viewer: &Viewer,
    b: &Bounds,
    out: &mut Vec<Correction>,
) -> Admission {
    match raw {
        Admission::Allow(role) => {
            if role > viewer.role {
                note(
                    out,
                    CorrectionKind::Role,
                    format!("role {role:?} above the token's {:?}, lowered", viewer.role),
                );
                Admission::Allow(viewer.role)
            } else {
                Admission::Allow(role)
            }
        }
        Admission::Deny(reason) => Admission::Deny(deny_reason(reason, b, out)),
    }
}

/// A reason fit to show a viewer: printable, bounded, not empty.
fn deny_reason(reason: String, b: &Bounds, out: &mut Vec<Correction>) -> String {
    let cleaned: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut cleaned = cleaned.trim().to_string();
    if cleaned.len() > b.deny_reason_max_len {
        let mut cut = b.deny_reason_max_len;
        while !cleaned.is_char_boundary(cut) {
            cut -= 1;
        }
        cleaned.truncate(cut);
    }
    if cleaned.is_empty() {
        cleaned = "access denied by the tenant's policy".to_string();
    }
    if cleaned != reason {
        note(
            out,
            CorrectionKind::DenyReason,
            format!(
                "deny reason of {} bytes cleaned (control characters, length or empty)",
                reason.len()
            ),
        );
    }
    cleaned
}

/// An adjustment may only tighten: at most the connector's validated video
/// policy when known, and always within the gateway's bounds.
pub fn adjustment(
    raw: Option<Adjustment>,
    video: Option<&VideoPolicy>,
    b: &Bounds,
    out: &mut Vec<Correction>,
) -> Option<Adjustment> {
    let a = raw?;
    let (bitrate_hi, fps_hi) = match video {
        Some(v) => (v.max_bitrate_bps, v.max_fps),
        None => (b.bitrate_ceiling_bps, b.fps_max),
    };
    let max_bitrate_bps = clamp_u32(
        out,
        CorrectionKind::Adjustment,
        "adjustment max-bitrate-bps",
        a.max_bitrate_bps,
        b.bitrate_floor_bps,
        bitrate_hi,
    );
    let max_fps = clamp_u32(
        out,
        CorrectionKind::Adjustment,
        "adjustment max-fps",
        a.max_fps,
        b.fps_min,
        fps_hi,
    );
    Some(Adjustment {
        max_bitrate_bps,
        max_fps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest() -> Guest {
        Guest {
            domid: 5,
            name: "g".into(),
            tenant: "t".into(),
            labels: vec![],
        }
    }
    fn conn(w: u32, h: u32) -> DisplayConnector {
        DisplayConnector {
            index: 0,
            resolution: Size::new(w, h),
        }
    }
    fn kinds(out: &[Correction]) -> Vec<CorrectionKind> {
        out.iter().map(|c| c.kind).collect()
    }

    #[test]
    fn video_absurd_values_are_clamped() {
        let raw = VideoPolicy {
            codecs: vec![],
            min_bitrate_bps: u32::MAX,
            max_bitrate_bps: 1,
            max_fps: 0,
            max_size: Size::new(100_000, 99_999),
            keyframe_interval_ms: 0,
            quality: QualityMode::Motion,
        };
        let mut out = vec![];
        let v = video(raw, &conn(1280, 720), &Bounds::default(), &mut out);
        assert_eq!(v.codecs, vec![Codec::H264, Codec::Vp8]);
        assert_eq!((v.min_bitrate_bps, v.max_bitrate_bps), (50_000, 50_000_000));
        assert_eq!(v.max_fps, 1);
        assert_eq!(v.max_size, Size::new(7680, 4320));
        assert_eq!(v.keyframe_interval_ms, 100);
        let k = kinds(&out);
        for want in [
            CorrectionKind::Codecs,
            CorrectionKind::Bitrate,
            CorrectionKind::BitrateOrder,
            CorrectionKind::Fps,
            CorrectionKind::Size,
            CorrectionKind::KeyframeInterval,
        ] {
            assert!(k.contains(&want), "{want:?} missing from {k:?}");
        }
    }

    #[test]
    fn video_zero_size_is_guest_size_without_correction() {
        let mut out = vec![];
        let v = video(
            defaults::video(&guest(), &conn(1366, 768)),
            &conn(1366, 768),
            &Bounds::default(),
            &mut out,
        );
        assert_eq!(v.max_size, Size::new(1366, 768));
        assert!(out.is_empty(), "{out:?}");
        // An odd guest mode becomes even; unknown guest size → the maximum.
        let v = video(
            defaults::video(&guest(), &conn(1365, 0)),
            &conn(1365, 0),
            &Bounds::default(),
            &mut out,
        );
        assert_eq!(v.max_size, Size::new(1364, 4320));
    }

    #[test]
    fn video_duplicates_and_half_zero_size() {
        let mut raw = defaults::video(&guest(), &conn(800, 600));
        raw.codecs = vec![Codec::Vp8, Codec::Vp8, Codec::H264];
        raw.max_size = Size::new(641, 0);
        let mut out = vec![];
        let v = video(raw, &conn(800, 600), &Bounds::default(), &mut out);
        assert_eq!(v.codecs, vec![Codec::Vp8, Codec::H264]);
        assert_eq!(v.max_size, Size::new(640, 600));
        assert_eq!(
            kinds(&out),
            vec![CorrectionKind::Codecs, CorrectionKind::Size]
        );
    }

    fn stream() -> SoundStream {
        SoundStream {
            unique_id: "0".into(),
            direction: Direction::Playback,
            formats: vec![
                SampleFormat::S16Le,
                SampleFormat::MuLaw,
                SampleFormat::FloatLe,
            ],
            rates: vec![44_100, 48_000],
            channels_min: 1,
            channels_max: 2,
        }
    }

    #[test]
    fn audio_intersects_with_offer_and_convertible() {
        let raw = AudioPolicy {
            formats: vec![
                SampleFormat::MuLaw,
                SampleFormat::FloatLe,
                SampleFormat::S24Le,
            ],
            rates: vec![48_000, 96_000],
            channels_max: 300,
            opus_bitrate_bps: 1,
            capture_allowed: false,
        };
        let mut out = vec![];
        let a = audio(raw, &guest(), &stream(), &Bounds::default(), &mut out);
        assert_eq!(a.formats, vec![SampleFormat::FloatLe]);
        assert_eq!(a.rates, vec![48_000]);
        assert_eq!(a.channels_max, 2);
        assert_eq!(a.opus_bitrate_bps, 6_000);
        assert!(!a.capture_allowed);
        assert_eq!(
            kinds(&out),
            vec![
                CorrectionKind::AudioFormats,
                CorrectionKind::AudioRates,
                CorrectionKind::AudioChannels,
                CorrectionKind::OpusBitrate
            ]
        );
    }

    #[test]
    fn audio_empty_intersections_fall_back_to_default_values() {
        let raw = AudioPolicy {
            formats: vec![SampleFormat::Gsm],
            rates: vec![8_000],
            channels_max: 0,
            opus_bitrate_bps: 64_000,
            capture_allowed: true,
        };
        let mut out = vec![];
        let a = audio(raw, &guest(), &stream(), &Bounds::default(), &mut out);
        assert_eq!(a.formats, vec![SampleFormat::S16Le, SampleFormat::FloatLe]);
        assert_eq!(a.rates, vec![44_100, 48_000]);
        assert_eq!(a.channels_max, 1);
        assert_eq!(
            kinds(&out)
                .iter()
                .filter(|k| **k == CorrectionKind::AudioFallback)
                .count(),
            2
        );
    }

    #[test]
    fn default_audio_needs_no_correction() {
        let mut out = vec![];
        let a = audio(
            defaults::audio(&guest(), &stream()),
            &guest(),
            &stream(),
            &Bounds::default(),
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(a.rates, vec![44_100, 48_000]);
        assert_eq!(a.formats, vec![SampleFormat::S16Le, SampleFormat::FloatLe]);
    }

    #[test]
    fn admission_never_above_token() {
        let viewer = Viewer {
            tenant: "t".into(),
            user: "u".into(),
            role: Role::View,
            remote_address: "127.0.0.1:1".into(),
        };
        let mut out = vec![];
        let a = admission(
            Admission::Allow(Role::Control),
            &viewer,
            &Bounds::default(),
            &mut out,
        );
        assert_eq!(a, Admission::Allow(Role::View));
        assert_eq!(kinds(&out), vec![CorrectionKind::Role]);
        out.clear();
        let a = admission(
            Admission::Deny("  \n".into()),
            &viewer,
            &Bounds::default(),
            &mut out,
        );
        assert_eq!(
            a,
            Admission::Deny("access denied by the tenant's policy".into())
        );
        let long = "é".repeat(1000);
        let Admission::Deny(r) =
            admission(Admission::Deny(long), &viewer, &Bounds::default(), &mut out)
        else {
            panic!()
        };
        assert!(r.len() <= 256);
    }

    #[test]
    fn adjustment_only_tightens() {
        let v = video(
            defaults::video(&guest(), &conn(800, 600)),
            &conn(800, 600),
            &Bounds::default(),
            &mut vec![],
        );
        let mut out = vec![];
        let a = adjustment(
            Some(Adjustment {
                max_bitrate_bps: u32::MAX,
                max_fps: 1000,
            }),
            Some(&v),
            &Bounds::default(),
            &mut out,
        );
        assert_eq!(
            a,
            Some(Adjustment {
                max_bitrate_bps: 8_000_000,
                max_fps: 60
            })
        );
        assert_eq!(out.len(), 2);
        assert_eq!(
            adjustment(None, Some(&v), &Bounds::default(), &mut out),
            None
        );
    }
}

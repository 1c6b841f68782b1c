//! Service tiers by guest label: the operator labels a guest `gold`,
//! `silver` or `bronze` in the gateway's config and the plugin sizes its
//! video and audio accordingly. The microphone is a gold feature.
//!
//! | label  | video max            | bitrate (min..max)  | audio                     | microphone |
//! |--------|----------------------|---------------------|---------------------------|------------|
//! | gold   | 1920x1080, 60 fps    | 0.8 .. 8 Mbit/s     | 48 kHz stereo, 128 kbit/s | yes        |
//! | silver | 1280x720, 30 fps     | 0.2 .. 2 Mbit/s     | 48 kHz stereo, 96 kbit/s  | no         |
//! | bronze | 854x480, 15 fps      | 0.05 .. 0.5 Mbit/s  | 16 kHz mono, 24 kbit/s    | no         |
//!
//! A guest with several tier labels gets the best one; a guest with none
//! gets the gateway's defaults (the plugin then behaves like no plugin).
//! No config keys.
#![no_std]

use pvgate_policy_sdk::prelude::*;

struct Tiers;

/// What one tier allows.
struct Tier {
    max_size: Size,
    max_fps: u32,
    max_bitrate_bps: u32,
    sample_rate: u32,
    channels: u32,
    opus_bitrate_bps: u32,
    microphone: bool,
}

/// Best first: the first label found wins.
const TIERS: [(&str, Tier); 3] = [
    (
        "gold",
        Tier {
            max_size: Size::new(1920, 1080),
            max_fps: 60,
            max_bitrate_bps: 8_000_000,
            sample_rate: 48_000,
            channels: 2,
            opus_bitrate_bps: 128_000,
            microphone: true,
        },
    ),
    (
        "silver",
        Tier {
            max_size: Size::new(1280, 720),
            max_fps: 30,
            max_bitrate_bps: 2_000_000,
            sample_rate: 48_000,
            channels: 2,
            opus_bitrate_bps: 96_000,
            microphone: false,
        },
    ),
    (
        "bronze",
        Tier {
            max_size: Size::new(854, 480),
            max_fps: 15,
            max_bitrate_bps: 500_000,
            // Speech quality: Opus wideband.
            sample_rate: 16_000,
            channels: 1,
            opus_bitrate_bps: 24_000,
            microphone: false,
        },
    ),
];

fn tier(guest: &Guest) -> Option<&'static Tier> {
    TIERS
        .iter()
        .find(|(label, _)| guest.has_label(label))
        .map(|(_, tier)| tier)
}

impl Policy for Tiers {
    fn video(guest: &Guest, _connector: &DisplayConnector) -> VideoPolicy {
        let Some(t) = tier(guest) else {
            return defaults::video();
        };
        VideoPolicy {
            // A tenth of the ceiling: congestion control may go that low
            // before it starts dropping frames instead.
            min_bitrate_bps: t.max_bitrate_bps / 10,
            max_bitrate_bps: t.max_bitrate_bps,
            max_fps: t.max_fps,
            max_size: t.max_size,
            ..defaults::video()
        }
    }

    fn audio(guest: &Guest, stream: &SoundStream) -> AudioPolicy {
        let Some(t) = tier(guest) else {
            return defaults::audio(stream);
        };
        AudioPolicy {
            rates: vec![t.sample_rate],
            channels_max: t.channels,
            opus_bitrate_bps: t.opus_bitrate_bps,
            capture_allowed: t.microphone,
            ..defaults::audio(stream)
        }
    }
}

pvgate_policy_sdk::export!(Tiers);

//! What a sound stream and a guest may have: the one place the allowed
//! ranges live, so that the policy layer can narrow them per tenant by
//! handing [`SoundLimits`] of its own to [`super::serve_device`], and per
//! stream through a [`StreamPolicy`] hook.

use std::sync::Arc;

use pvgate_audio::{Layout, OpusSettings};
use pvgate_protocol::sndif::PcmFormat;
use pvgate_protocol::sndif_config::StreamConfig;

use super::outputs::StreamKey;

/// The ranges every stream of a device is held to, on top of what the
/// toolstack configured for it in xenstore (the stricter of the two wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLimits {
    /// Mask of `1 << XENSND_PCM_FORMAT_*` allowed. Compressed formats are
    /// never carried, whatever this says.
    pub formats: u64,
    pub rate_min: u32,
    pub rate_max: u32,
    /// Exactly these rates (within `rate_min..=rate_max`); `None`: any the
    /// stream's configuration allows. A policy's "16 kHz only" lands here.
    pub rates: Option<Vec<u32>>,
    pub channels_min: u32,
    pub channels_max: u32,
    /// Largest stream buffer (octets) a guest may make us map.
    pub buffer_bytes_max: u32,
    /// Smallest period (octets): each period costs the guest a WRITE/READ
    /// and us an event, so tiny periods are a cheap way to burn our CPU.
    pub period_bytes_min: u32,
    /// Fewest periods per buffer (ALSA's `periods_min`).
    pub periods_min: u32,
    /// How playback is encoded for viewers.
    pub opus: OpusSettings,
    /// Channels of the Opus a viewer's microphone sends.
    pub capture_source: Layout,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            formats: pvgate_audio::supported_mask(),
            rate_min: 5512,
            rate_max: 192_000,
            rates: None,
            channels_min: 1,
            channels_max: 8,
            buffer_bytes_max: 1 << 20,
            // snd-xen-front's own minimum period.
            period_bytes_min: 64,
            periods_min: 2,
            opus: OpusSettings::default(),
            capture_source: Layout::Mono,
        }
    }
}

impl StreamLimits {
    /// True if `format` may be used on a stream under these limits.
    pub fn allows_format(&self, format: PcmFormat) -> bool {
        self.formats & format.mask_bit() != 0 && pvgate_audio::is_supported(format)
    }
}

/// Caps per guest (summed over all of its vsnd devices) and per device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLimits {
    /// Streams a guest may have connected at once.
    pub max_streams: usize,
    /// Pages of stream buffers a guest may have mapped at once (ring and
    /// event pages not counted: two per stream, bounded by `max_streams`).
    pub max_buffer_pages: usize,
    /// Requests per second one stream may send, sustained. A guest that
    /// follows the protocol sends one per period (at most a few hundred a
    /// second); far beyond that it is flooding us and the device is closed.
    pub max_requests_per_sec: u32,
    /// Requests a stream may send in a burst above the sustained rate
    /// (HW_PARAM_QUERY storms at open, a ring refilled at once).
    pub request_burst: u32,
}

impl Default for GuestLimits {
    fn default() -> Self {
        GuestLimits {
            max_streams: 32,
            // 16 MiB of buffers.
            max_buffer_pages: 4096,
            max_requests_per_sec: 20_000,
            request_burst: 2_000,
        }
    }
}

/// Decides one stream's limits when the device connects: how the gateway's
/// per-tenant policy narrows what a guest may negotiate (formats, rates,
/// channels) and how its sound is encoded, stream by stream. Called once
/// per stream per connect, off any hot path; it must not block for long.
pub trait StreamPolicy: Send + Sync {
    /// The limits for `key`, whose xenstore configuration is `config`;
    /// `base` is the device's [`StreamLimits`]. The result should be no
    /// looser than `base` (the backend does not check).
    fn stream_limits(
        &self,
        key: &StreamKey,
        config: &StreamConfig,
        base: &StreamLimits,
    ) -> StreamLimits;
}

/// An optional [`StreamPolicy`]; equal when it is the same hook.
#[derive(Clone, Default)]
pub struct PolicyHook(pub Option<Arc<dyn StreamPolicy>>);

impl std::fmt::Debug for PolicyHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "PolicyHook(set)"
        } else {
            "PolicyHook(none)"
        })
    }
}

impl PartialEq for PolicyHook {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for PolicyHook {}

/// Everything [`super::serve_device`] enforces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SoundLimits {
    pub stream: StreamLimits,
    pub guest: GuestLimits,
    /// Per-stream narrowing on top of `stream` (the policy layer's).
    pub policy: PolicyHook,
}

impl SoundLimits {
    /// The limits stream `key` is served under.
    pub fn for_stream(&self, key: &StreamKey, config: &StreamConfig) -> StreamLimits {
        match &self.policy.0 {
            Some(p) => p.stream_limits(key, config, &self.stream),
            None => self.stream.clone(),
        }
    }
}

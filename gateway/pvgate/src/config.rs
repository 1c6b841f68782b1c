//! The gateway's TOML configuration: tenants, their guests and viewer
//! tokens, streaming settings.
//!
//! OWNER: the tenants-and-auth work. This first version has the streaming
//! part the session layer reads.

use pvgate_media::Codec;

/// A STUN or TURN server handed to browsers and used by the gateway's ICE agent.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// How video and audio reach browsers.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamingConfig {
    /// Offer WebRTC; when false every session uses the WebSocket fallback.
    pub webrtc: bool,
    /// STUN/TURN servers; none by default (host candidates only).
    pub ice_servers: Vec<IceServer>,
    /// Codec preference, first preferred, among those the browser decodes.
    pub codecs: Vec<Codec>,
    /// Bounds for the encoder bitrate the congestion controller picks.
    pub min_bitrate_bps: u32,
    pub start_bitrate_bps: u32,
    pub max_bitrate_bps: u32,
    pub max_fps: u32,
    /// Opus bitrate of the audio the viewer hears.
    pub opus_bitrate_bps: u32,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            webrtc: true,
            ice_servers: Vec::new(),
            codecs: vec![Codec::H264, Codec::Vp8],
            min_bitrate_bps: 300_000,
            start_bitrate_bps: 4_000_000,
            max_bitrate_bps: 12_000_000,
            max_fps: 30,
            opus_bitrate_bps: 96_000,
        }
    }
}

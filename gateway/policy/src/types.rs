//! The policy's inputs and decisions as plain Rust types.
//!
//! These mirror `wasm-plugins/wit/policy.wit` one to one, but are our own:
//! the gateway, the CLI and traces use them, and none of them depend on the
//! bindgen-generated types (which change shape with wasmtime versions).
//! Enum values serialise as the WIT names (`s16-le`, `h264`, `control`), so
//! a trace file reads like the WIT it exercises.

use serde::{Deserialize, Serialize};

/// A guest domain as the gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Guest {
    pub domid: u32,
    /// The domain's name (xenstore `/local/domain/<domid>/name`).
    pub name: String,
    /// The tenant that owns the guest.
    pub tenant: String,
    /// Operator labels from the config (for example "gold").
    #[serde(default)]
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl Size {
    pub const fn new(width: u32, height: u32) -> Self {
        Size { width, height }
    }
}

/// One display connector of a guest's vdispl device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DisplayConnector {
    /// Connector index (0..3).
    pub index: u32,
    /// The mode the guest uses now.
    pub resolution: Size,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Playback,
    Capture,
}

/// The PCM formats of sndif (`XENSND_PCM_FORMAT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SampleFormat {
    S8,
    U8,
    S16Le,
    S16Be,
    U16Le,
    U16Be,
    S24Le,
    S24Be,
    U24Le,
    U24Be,
    S32Le,
    S32Be,
    U32Le,
    U32Be,
    FloatLe,
    FloatBe,
    Float64Le,
    Float64Be,
    Iec958SubframeLe,
    Iec958SubframeBe,
    MuLaw,
    ALaw,
    ImaAdpcm,
    Mpeg,
    Gsm,
}

impl SampleFormat {
    /// Every format, in sndif order.
    pub const ALL: [SampleFormat; 25] = [
        SampleFormat::S8,
        SampleFormat::U8,
        SampleFormat::S16Le,
        SampleFormat::S16Be,
        SampleFormat::U16Le,
        SampleFormat::U16Be,
        SampleFormat::S24Le,
        SampleFormat::S24Be,
        SampleFormat::U24Le,
        SampleFormat::U24Be,
        SampleFormat::S32Le,
        SampleFormat::S32Be,
        SampleFormat::U32Le,
        SampleFormat::U32Be,
        SampleFormat::FloatLe,
        SampleFormat::FloatBe,
        SampleFormat::Float64Le,
        SampleFormat::Float64Be,
        SampleFormat::Iec958SubframeLe,
        SampleFormat::Iec958SubframeBe,
        SampleFormat::MuLaw,
        SampleFormat::ALaw,
        SampleFormat::ImaAdpcm,
        SampleFormat::Mpeg,
        SampleFormat::Gsm,
    ];

    /// Whether the gateway's audio path can convert this format to the PCM
    /// it encodes. Linear PCM of any width, sign and byte order, and floats,
    /// yes; IEC958 subframes, companded (mu-law, a-law) and compressed
    /// formats (IMA ADPCM, MPEG, GSM) would need decoders it does not have.
    pub const fn convertible(self) -> bool {
        !matches!(
            self,
            SampleFormat::Iec958SubframeLe
                | SampleFormat::Iec958SubframeBe
                | SampleFormat::MuLaw
                | SampleFormat::ALaw
                | SampleFormat::ImaAdpcm
                | SampleFormat::Mpeg
                | SampleFormat::Gsm
        )
    }
}

/// One PCM stream of a guest's vsnd device, with what the guest offers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SoundStream {
    /// The stream's `unique-id` from xenstore.
    pub unique_id: String,
    pub direction: Direction,
    pub formats: Vec<SampleFormat>,
    /// The sample rates offered (sndif `sample-rates`).
    pub rates: Vec<u32>,
    pub channels_min: u32,
    pub channels_max: u32,
}

/// What a viewer may do. `View < Control`, so "never more than the token
/// grants" is `min(decided, granted)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// See and hear the guest.
    View,
    /// View, plus keyboard, pointer, touch and microphone.
    Control,
}

/// Someone opening a guest in a browser.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Viewer {
    /// The tenant their token belongs to.
    pub tenant: String,
    /// The token's user name from the config.
    pub user: String,
    /// The role the token grants (the most the viewer may get).
    pub role: Role,
    /// The browser's address as the gateway saw it ("ip:port").
    pub remote_address: String,
}

/// Wall-clock time, passed in because plugins have no clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Clock {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub unix_seconds: u64,
}

impl Clock {
    /// The system clock now.
    pub fn now() -> Self {
        let unix_seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Clock { unix_seconds }
    }
}

/// What one viewer's link achieves, measured by the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LinkStats {
    pub rtt_ms: u32,
    /// Fraction of packets lost, in parts per thousand.
    pub loss_permille: u32,
    /// The congestion controller's bandwidth estimate, bits per second.
    pub estimated_bps: u64,
    pub fps_achieved: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Codec {
    H264,
    Vp8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QualityMode {
    /// Desktop content: sharp text, few changes.
    Screen,
    /// Video-like content: smooth motion first.
    Motion,
}

/// Encoder settings for one connector. After validation every field is
/// concrete: `codecs` is never empty, `min_bitrate_bps <= max_bitrate_bps`,
/// and `max_size` is a real, even size (0x0 from a plugin has become the
/// guest's size).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VideoPolicy {
    /// Codecs in preference order.
    pub codecs: Vec<Codec>,
    pub min_bitrate_bps: u32,
    pub max_bitrate_bps: u32,
    pub max_fps: u32,
    pub max_size: Size,
    pub keyframe_interval_ms: u32,
    pub quality: QualityMode,
}

/// What a sound stream may negotiate. After validation `formats` and
/// `rates` are subsets of what the guest offers (explicit lists, not
/// "empty means all").
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AudioPolicy {
    pub formats: Vec<SampleFormat>,
    pub rates: Vec<u32>,
    pub channels_max: u32,
    pub opus_bitrate_bps: u32,
    pub capture_allowed: bool,
}

/// Whether a viewer may open a guest, and with which role.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Admission {
    Allow(Role),
    /// Refused, with the reason the viewer is shown.
    Deny(String),
}

/// A tightening of the video policy for one viewer's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Adjustment {
    pub max_bitrate_bps: u32,
    pub max_fps: u32,
}

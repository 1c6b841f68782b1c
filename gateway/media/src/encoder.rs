//! The encoder seam: one trait for H.264 and VP8, their parameters, and the
//! common front half (output scaling, XRGB → I420).

use crate::colour::{ColourError, I420Frame};
use crate::frame::Frame;
use crate::scale::{ScaleError, Scaler};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    H264,
    Vp8,
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Codec::H264 => "H.264",
            Codec::Vp8 => "VP8",
        })
    }
}

/// What an encoder is asked to produce. Equal parameters share one encoder
/// (see [`crate::hub`]), hence `Eq + Hash`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EncoderParams {
    pub codec: Codec,
    /// Target bitrate in bits per second.
    pub bitrate_bps: u32,
    /// Frames arriving sooner than `1 / max_fps` after the last encoded one
    /// wait (the hub) or are dropped (the encoder itself).
    pub max_fps: u32,
    /// Scale every frame to this size before encoding (rounded down to even
    /// numbers, as I420 needs). `None`: the frame's own size.
    pub output_size: Option<(u32, u32)>,
    /// After this long without damage, encode the last frame once more at
    /// high quality so that static text becomes sharp ([`Content::Screen`]
    /// only).
    pub refresh_after: Duration,
    /// While frames are being encoded, force a keyframe when the last one
    /// is this old, so a viewer that lost data without asking (or could not
    /// ask) recovers within this bound. `None`: keyframes only on request.
    /// A static screen encodes nothing, so it costs nothing then.
    pub keyframe_interval: Option<Duration>,
    /// What the encoder is tuned for.
    pub content: Content,
}

/// The kind of picture an encoder is tuned for (the policy's quality mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Content {
    /// Desktops: sharp text, few changes; screen-content coding tools and
    /// a high-quality refresh once motion stops.
    #[default]
    Screen,
    /// Video-like content: the codecs' camera tuning, smooth motion first,
    /// no refresh frame (a refresh would be a visible quality jump in a
    /// video that merely paused).
    Motion,
}

impl EncoderParams {
    pub fn new(codec: Codec, bitrate_bps: u32) -> EncoderParams {
        EncoderParams {
            codec,
            bitrate_bps,
            max_fps: 30,
            output_size: None,
            refresh_after: Duration::from_millis(300),
            keyframe_interval: None,
            content: Content::Screen,
        }
    }

    /// When to refresh after motion stops, if this content gets a refresh.
    pub fn refresh(&self) -> Option<Duration> {
        match self.content {
            Content::Screen => Some(self.refresh_after),
            Content::Motion => None,
        }
    }

    /// Shortest time between two encoded frames.
    pub fn frame_interval(&self) -> Duration {
        Duration::from_secs(1) / self.max_fps.max(1)
    }

    /// The encoded size for a frame of `width`×`height`.
    pub fn output_dimensions(&self, width: u32, height: u32) -> (u32, u32) {
        let (w, h) = self.output_size.unwrap_or((width, height));
        ((w & !1).max(2), (h & !1).max(2))
    }
}

/// One encoded picture.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub codec: Codec,
    /// H.264: Annex B NAL units (with SPS/PPS before every IDR). VP8: one
    /// frame as the RTP payloader wants it.
    pub data: Vec<u8>,
    pub keyframe: bool,
    /// The high-quality re-encode after motion stopped.
    pub refresh: bool,
    /// Presentation time since the stream started.
    pub pts: Duration,
    pub width: u32,
    pub height: u32,
    /// Wall time spent in scaling, conversion and the codec.
    pub encode_time: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Colour(#[from] ColourError),
    #[error(transparent)]
    Scale(#[from] ScaleError),
    #[error("{codec} encoder: {what} failed: {detail}")]
    Codec {
        codec: Codec,
        what: &'static str,
        detail: String,
    },
    #[error("{codec} encoder: bad parameter: {0}", codec = .1)]
    BadParam(String, Codec),
}

/// A video encoder. Implementations size themselves from the first frame and
/// re-initialise when the frame size changes (starting with a keyframe).
pub trait VideoEncoder: Send {
    /// Encode one frame. `None` when the frame was dropped (it came sooner
    /// than `1 / max_fps` after the previous one, and no keyframe was asked
    /// for) or the codec chose to skip it.
    fn encode(
        &mut self,
        frame: &Frame,
        pts: Duration,
        force_keyframe: bool,
    ) -> Result<Option<EncodedFrame>, EncodeError>;

    /// Re-encode a (static) frame at much higher quality than the bitrate
    /// would normally allow: the refresh after motion stops. Not subject to
    /// the frame-rate limit.
    fn encode_refresh(
        &mut self,
        frame: &Frame,
        pts: Duration,
    ) -> Result<Option<EncodedFrame>, EncodeError>;

    /// Change the target bitrate from the next frame on.
    fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), EncodeError>;

    fn params(&self) -> &EncoderParams;
}

/// Make the encoder `params.codec` names.
pub fn new_encoder(params: EncoderParams) -> Result<Box<dyn VideoEncoder>, EncodeError> {
    Ok(match params.codec {
        Codec::H264 => Box::new(crate::h264::H264Encoder::new(params)?),
        Codec::Vp8 => Box::new(crate::vp8::Vp8Encoder::new(params)?),
    })
}

/// Scaling and colour conversion in front of a codec, with its buffers kept
/// between frames.
#[derive(Default)]
pub struct Prepare {
    scaler: Scaler,
    scaled: Option<Frame>,
    i420: Option<I420Frame>,
}

impl Prepare {
    /// The frame as I420 at `width`×`height` (even numbers).
    pub fn to_i420(
        &mut self,
        frame: &Frame,
        width: u32,
        height: u32,
    ) -> Result<&I420Frame, EncodeError> {
        let source = if (frame.width(), frame.height()) == (width, height) {
            frame
        } else {
            self.scaler
                .scale_into(frame, width, height, &mut self.scaled)?;
            match &self.scaled {
                Some(f) => f,
                None => frame,
            }
        };
        if !matches!(&self.i420, Some(i) if i.width() == width && i.height() == height) {
            self.i420 = Some(I420Frame::new(width, height)?);
        }
        let Some(i420) = self.i420.as_mut() else {
            return Err(ColourError::OddSize(width, height).into());
        };
        i420.fill_from_xrgb(source)?;
        Ok(i420)
    }
}

/// The frame-rate limit shared by both encoders: may a frame at `pts` be
/// encoded, given the last encoded one?
pub(crate) fn too_soon(params: &EncoderParams, last: Option<Duration>, pts: Duration) -> bool {
    match last {
        // A little slack: timestamps of a steady 1/max_fps stream jitter.
        Some(last) => pts < last + params.frame_interval().mul_f64(0.9) && pts >= last,
        None => false,
    }
}

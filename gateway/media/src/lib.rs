//! pvgate media: the video half of the display path.
//!
//! flip → [`damage`] (hash 64×64 tiles, copy changed ones through [`pixfmt`]
//! into a [`frame::Frame`]) → [`slot`] (latest wins) → [`hub`] (one encoder
//! thread per connector and parameter set: [`pacing`], [`scale`], [`colour`],
//! [`h264`] / [`vp8`]) → subscribers. [`decode`] and [`quality`] close the
//! loop for tests and tools; [`bench`] measures it against ffmpeg.

pub mod bench;
pub mod colour;
pub mod damage;
pub mod decode;
pub mod encoder;
pub mod frame;
pub mod framechain;
pub mod h264;
pub mod hub;
pub mod pacing;

pub mod pixfmt;
pub mod quality;
pub mod scale;
pub mod slot;
pub mod source;
pub mod testpattern;

pub mod vp8;

pub use damage::{Damage, DamageTracker, Rect, SourceLayout, TILE};
pub use encoder::{
    new_encoder, Codec, Content, EncodeError, EncodedFrame, EncoderParams, VideoEncoder,
};
pub use frame::{Frame, SharedFrame};
pub use framechain::FrameChain;
pub use hub::{ConnectorFeed, ConnectorId, EncoderHub, EncoderStats, FrameUpdate, Subscription};

pub use pixfmt::PixelFormat;
pub use slot::LatestSlot;
pub use source::{SharedMemory, SourceBuffer};

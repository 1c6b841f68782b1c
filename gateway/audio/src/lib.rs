//! pvgate audio media: what happens to a guest's sound between the sndif
//! rings and the browser, with no I/O of its own.
//!
//! - [`format`]: sndif PCM formats to and from `f32`; compressed ones refused.
//! - [`channels`]: N channels to mono/stereo and back.
//! - [`resample`]: any rate to and from 48 kHz (`rubato`), chunk-size independent.
//! - [`opus`]: Opus encode/decode (libopus) and the frame assembler.
//! - [`volume`]: sndif per-channel volume (0.001 dB steps) and mute.
//! - [`pacing`]: the CUR_POS clock and the playback FIFO (a virtual sound card).
//! - [`jitter`]: the bounded capture buffer served on READ.
//! - [`hub`]: fan-out of encoded frames to any number of viewers.
//! - [`pipeline`]: playback (PCM → Opus frames) and capture (Opus → PCM for READ).
//! - [`stats`]: counters for /metrics.

pub mod channels;
pub mod format;
pub mod hub;
pub mod jitter;
pub mod opus;
pub mod pacing;
pub mod pipeline;
pub mod resample;
pub mod stats;
pub mod volume;

pub use channels::Layout;
pub use format::{is_supported, supported_mask, FormatError, PcmFormat, SampleFormat};
pub use hub::{AudioFrame, AudioHub, AudioSubscriber};
pub use opus::{FrameDuration, OpusApplication, OpusSettings};
pub use pacing::{CurPos, PacingConfig, PlaybackPacer, PositionClock, Trigger};
pub use pipeline::{
    CaptureConfig, CapturePipeline, PipelineError, PlaybackConfig, PlaybackPipeline,
};
pub use stats::{AudioStats, SharedAudioStats};

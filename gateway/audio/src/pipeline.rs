//! The two audio paths of one sndif stream.
//!
//! Playback: the bytes the pacer releases (guest PCM in the stream's format,
//! plus silence for underruns) → `f32` → volume → mono/stereo → 48 kHz →
//! exact Opus frames → the stream's [`AudioHub`]. Each frame carries its
//! stream time in 48 kHz samples, continuous across silence.
//!
//! Capture: Opus packets from a viewer → 48 kHz → the stream's rate →
//! the stream's channels → the stream's format → the jitter buffer that
//! READ is served from.

use thiserror::Error;

use crate::channels::{ChannelCountError, Downmix, Layout, Upmix};
use crate::format::SampleFormat;
use crate::hub::{AudioFrame, AudioHub};
use crate::jitter::{JitterBuffer, ReadOutcome};
use crate::opus::{FrameAssembler, OpusDecoder, OpusEncoder, OpusError, OpusSettings, OPUS_RATE};
use crate::resample::{ResampleError, StreamResampler};
use crate::stats::AudioStats;
use crate::volume::Volume;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Channels(#[from] ChannelCountError),
    #[error(transparent)]
    Resample(#[from] ResampleError),
    #[error(transparent)]
    Opus(#[from] OpusError),
}

/// A playback stream's parameters (from its OPEN) and the encoding wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaybackConfig {
    pub format: SampleFormat,
    pub rate: u32,
    pub channels: usize,
    pub opus: OpusSettings,
}

pub struct PlaybackPipeline {
    format: SampleFormat,
    frame_bytes: usize,
    /// A partial frame left over from the last push.
    carry: Vec<u8>,
    volume: Volume,
    downmix: Downmix,
    resampler: StreamResampler,
    assembler: FrameAssembler,
    encoder: OpusEncoder,
    hub: AudioHub,
    next_timestamp: u64,
    next_sequence: u64,
    decoded: Vec<f32>,
    mapped: Vec<f32>,
    resampled: Vec<f32>,
    stats: AudioStats,
}

impl std::fmt::Debug for PlaybackPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaybackPipeline")
            .field("format", &self.format.format())
            .field("resampler", &self.resampler)
            .field("encoder", &self.encoder)
            .finish()
    }
}

impl PlaybackPipeline {
    pub fn new(cfg: PlaybackConfig, hub: AudioHub) -> Result<Self, PipelineError> {
        let downmix = Downmix::new(cfg.channels, cfg.opus.layout)?;
        let resampler = StreamResampler::new(cfg.rate, OPUS_RATE, cfg.opus.layout.channels())?;
        let encoder = OpusEncoder::new(cfg.opus)?;
        Ok(Self {
            format: cfg.format,
            frame_bytes: cfg.format.sample_bytes() * cfg.channels,
            carry: Vec::new(),
            volume: Volume::new(cfg.channels),
            downmix,
            resampler,
            assembler: FrameAssembler::new(encoder.frame_len()),
            encoder,
            hub,
            next_timestamp: 0,
            next_sequence: 0,
            decoded: Vec::new(),
            mapped: Vec::new(),
            resampled: Vec::new(),
            stats: AudioStats::default(),
        })
    }

    pub fn hub(&self) -> &AudioHub {
        &self.hub
    }

    /// Octets per frame of the stream.
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    pub fn volume_mut(&mut self) -> &mut Volume {
        &mut self.volume
    }

    pub fn volume(&self) -> &Volume {
        &self.volume
    }

    /// Counters (encoding side; the pacer keeps the timing ones).
    pub fn stats(&self) -> AudioStats {
        self.stats
    }

    /// Changes the Opus bitrate from the next frame.
    pub fn set_bitrate(&mut self, bps: u32) -> Result<(), PipelineError> {
        Ok(self.encoder.set_bitrate(bps)?)
    }

    /// Stream PCM in its format. Returns the Opus frames published.
    pub fn push_pcm(&mut self, mut bytes: &[u8]) -> Result<usize, PipelineError> {
        self.decoded.clear();
        if !self.carry.is_empty() {
            let take = (self.frame_bytes - self.carry.len()).min(bytes.len());
            self.carry.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.carry.len() < self.frame_bytes {
                return Ok(0);
            }
            self.format.decode(&self.carry, &mut self.decoded);
            self.carry.clear();
        }
        let whole = bytes.len() - bytes.len() % self.frame_bytes;
        self.format.decode(&bytes[..whole], &mut self.decoded);
        self.carry.extend_from_slice(&bytes[whole..]);
        self.volume.apply(&mut self.decoded);
        self.mapped.clear();
        self.downmix.process(&self.decoded, &mut self.mapped);
        self.resample_and_encode()
    }

    /// `frames` frames of silence at the stream's rate (an underrun), so
    /// that stream time stays continuous.
    pub fn push_silence(&mut self, frames: usize) -> Result<usize, PipelineError> {
        self.mapped.clear();
        self.mapped
            .resize(frames * self.downmix.out().channels(), 0.0);
        self.resample_and_encode()
    }

    fn resample_and_encode(&mut self) -> Result<usize, PipelineError> {
        self.resampled.clear();
        self.resampler.process(&self.mapped, &mut self.resampled)?;
        let Self {
            assembler,
            encoder,
            hub,
            next_timestamp,
            next_sequence,
            stats,
            resampled,
            ..
        } = self;
        let samples = encoder.settings().frame.samples() as u32;
        let mut published = 0;
        assembler.push(resampled, |frame| {
            let data = encoder.encode(frame);
            stats.nonfinite_samples = encoder.nonfinite_samples();
            let data = data.inspect_err(|_| stats.encode_errors += 1)?;
            stats.frames_encoded += 1;
            stats.bytes_encoded += data.len() as u64;
            hub.publish(AudioFrame {
                data,
                timestamp: *next_timestamp,
                pts: std::time::Duration::from_nanos(
                    *next_timestamp * 1_000_000_000 / u64::from(OPUS_RATE),
                ),
                samples,
                sequence: *next_sequence,
            });
            *next_timestamp += u64::from(samples);
            *next_sequence += 1;
            published += 1;
            Ok::<(), OpusError>(())
        })?;
        Ok(published)
    }

    /// After a STOP: forget partial data so a restart begins cleanly;
    /// stream time runs on.
    pub fn reset(&mut self) {
        self.carry.clear();
        self.resampler.reset();
    }

    /// `frames` frames at the stream's rate that will never be encoded
    /// (the encoder fell behind and they were dropped): partial data is
    /// forgotten and stream time moves past them, so the frames that follow
    /// keep their true timestamps and a viewer conceals a gap instead of
    /// hearing the rest late.
    pub fn skip(&mut self, frames: u64) {
        self.carry.clear();
        self.resampler.reset();
        let pending = (self.assembler.pending() / self.downmix.out().channels()) as u64;
        self.assembler.clear();
        let rate = u64::from(self.resampler.from_rate().max(1));
        let skipped = frames.saturating_mul(u64::from(OPUS_RATE)) / rate;
        self.next_timestamp = self
            .next_timestamp
            .saturating_add(pending)
            .saturating_add(skipped);
    }
}

/// A capture stream's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureConfig {
    pub format: SampleFormat,
    pub rate: u32,
    pub channels: usize,
    /// Channels of the viewer's Opus stream.
    pub source: Layout,
    /// Audio held before serving starts (and again after running dry).
    pub target_ms: u32,
    /// Most audio held; older audio is dropped beyond it.
    pub max_ms: u32,
}

impl CaptureConfig {
    /// Defaults: 40 ms of jitter allowance, at most 200 ms held.
    pub fn new(format: SampleFormat, rate: u32, channels: usize, source: Layout) -> Self {
        Self {
            format,
            rate,
            channels,
            source,
            target_ms: 40,
            max_ms: 200,
        }
    }
}

pub struct CapturePipeline {
    format: SampleFormat,
    decoder: OpusDecoder,
    resampler: StreamResampler,
    upmix: Upmix,
    jitter: JitterBuffer,
    volume: Volume,
    decoded: Vec<f32>,
    resampled: Vec<f32>,
    mapped: Vec<f32>,
    encoded: Vec<u8>,
    bad_packets: u64,
}

impl std::fmt::Debug for CapturePipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapturePipeline")
            .field("format", &self.format.format())
            .field("resampler", &self.resampler)
            .finish()
    }
}

impl CapturePipeline {
    pub fn new(cfg: CaptureConfig) -> Result<Self, PipelineError> {
        let upmix = Upmix::new(cfg.source, cfg.channels)?;
        let resampler = StreamResampler::new(OPUS_RATE, cfg.rate, cfg.source.channels())?;
        let decoder = OpusDecoder::new(cfg.source)?;
        let mut silence = Vec::new();
        cfg.format.encode(&vec![0.0; cfg.channels], &mut silence);
        let frames = |ms: u32| (u64::from(cfg.rate) * u64::from(ms) / 1000) as usize;
        Ok(Self {
            format: cfg.format,
            decoder,
            resampler,
            upmix,
            jitter: JitterBuffer::new(silence, frames(cfg.target_ms), frames(cfg.max_ms).max(1)),
            volume: Volume::new(cfg.channels),
            decoded: Vec::new(),
            resampled: Vec::new(),
            mapped: Vec::new(),
            encoded: Vec::new(),
            bad_packets: 0,
        })
    }

    pub fn volume_mut(&mut self) -> &mut Volume {
        &mut self.volume
    }

    /// One Opus packet from the viewer (untrusted). A packet libopus
    /// refuses is counted and reported; the stream carries on.
    pub fn push_opus(&mut self, packet: &[u8]) -> Result<(), PipelineError> {
        self.decoded.clear();
        if let Err(e) = self.decoder.decode(packet, &mut self.decoded) {
            self.bad_packets += 1;
            return Err(e.into());
        }
        self.feed_decoded()
    }

    /// A packet the network lost: let Opus conceal `frames` 48 kHz frames.
    pub fn push_lost(&mut self, frames: usize) -> Result<(), PipelineError> {
        self.decoded.clear();
        self.decoder.conceal(frames, &mut self.decoded)?;
        self.feed_decoded()
    }

    fn feed_decoded(&mut self) -> Result<(), PipelineError> {
        self.resampled.clear();
        self.resampler.process(&self.decoded, &mut self.resampled)?;
        self.mapped.clear();
        self.upmix.process(&self.resampled, &mut self.mapped);
        self.volume.apply(&mut self.mapped);
        self.encoded.clear();
        self.format.encode(&self.mapped, &mut self.encoded);
        self.jitter.push(&self.encoded);
        Ok(())
    }

    /// Serves a READ of `len` octets into `out`.
    pub fn read(&mut self, len: usize, out: &mut Vec<u8>) -> ReadOutcome {
        self.jitter.read(len, out)
    }

    pub fn buffered_frames(&self) -> usize {
        self.jitter.buffered_frames()
    }

    pub fn stats(&self) -> AudioStats {
        AudioStats {
            capture_dropped_frames: self.jitter.dropped_frames(),
            capture_silence_frames: self.jitter.silence_frames(),
            capture_bad_packets: self.bad_packets,
            ..AudioStats::default()
        }
    }

    /// After a STOP: drop what was buffered.
    pub fn reset(&mut self) {
        self.jitter.clear();
        self.resampler.reset();
    }
}

//! Opus encoding and decoding at 48 kHz with libopus (the `opus` crate),
//! and the assembler that cuts a sample stream into exact Opus frames.
//!
//! Application: `Audio` by default. A guest's sound is anything (music,
//! video, calls, system sounds), and `Audio` picks the right coder for the
//! bitrate: CELT at the usual 64-128 kbit/s, but SILK/hybrid if policy turns
//! the bitrate down to speech levels, where CELT alone sounds poor.
//! `RestrictedLowDelay` (CELT only) saves about 4 ms of encoder look-ahead
//! (2.5 ms instead of 6.5 ms); it is offered for setups that want every
//! millisecond, since next to a 10-20 ms frame and the browser's jitter
//! buffer the gain is small.

use crate::channels::Layout;
use thiserror::Error;

/// Opus always runs at 48 kHz here; browsers decode it at 48 kHz.
pub const OPUS_RATE: u32 = 48_000;
/// Largest packet libopus emits for one frame (RFC 6716 §3.4: 1275 bytes
/// per frame); room for a little more.
const MAX_PACKET: usize = 1500;
/// Longest frame a peer may send (120 ms), per channel.
const MAX_DECODED_FRAME: usize = 5760;

pub const MIN_BITRATE: u32 = 6_000;
pub const MAX_BITRATE: u32 = 510_000;

/// Frame duration. WebRTC browsers accept both; 20 ms is cheaper and
/// compresses better, 10 ms halves the packetisation latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameDuration {
    Ms10,
    Ms20,
}

impl FrameDuration {
    /// Samples per channel in one frame at 48 kHz.
    pub fn samples(self) -> usize {
        match self {
            FrameDuration::Ms10 => 480,
            FrameDuration::Ms20 => 960,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpusApplication {
    Audio,
    RestrictedLowDelay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpusSettings {
    pub layout: Layout,
    pub frame: FrameDuration,
    pub bitrate_bps: u32,
    pub application: OpusApplication,
}

impl Default for OpusSettings {
    fn default() -> Self {
        Self {
            layout: Layout::Stereo,
            frame: FrameDuration::Ms20,
            bitrate_bps: 96_000,
            application: OpusApplication::Audio,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpusError {
    #[error("Opus bitrate {0} bit/s is outside {MIN_BITRATE}..={MAX_BITRATE}")]
    Bitrate(u32),
    #[error("Opus frame must have {want} samples ({channels} channel(s)), got {got}")]
    FrameLength {
        want: usize,
        got: usize,
        channels: usize,
    },
    #[error("libopus failed {what}: {reason}")]
    Lib { what: &'static str, reason: String },
}

fn lib(what: &'static str) -> impl FnOnce(opus::Error) -> OpusError {
    move |e| OpusError::Lib {
        what,
        reason: e.to_string(),
    }
}

fn opus_channels(layout: Layout) -> opus::Channels {
    match layout {
        Layout::Mono => opus::Channels::Mono,
        Layout::Stereo => opus::Channels::Stereo,
    }
}

/// One Opus encoder for one stream and quality level.
pub struct OpusEncoder {
    inner: opus::Encoder,
    settings: OpusSettings,
    packet: Vec<u8>,
    /// The frame as handed to libopus: finite and within [-1, 1].
    clean: Vec<f32>,
    nonfinite: u64,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("settings", &self.settings)
            .finish()
    }
}

impl OpusEncoder {
    pub fn new(settings: OpusSettings) -> Result<Self, OpusError> {
        check_bitrate(settings.bitrate_bps)?;
        let application = match settings.application {
            OpusApplication::Audio => opus::Application::Audio,
            OpusApplication::RestrictedLowDelay => opus::Application::LowDelay,
        };
        let mut inner = opus::Encoder::new(OPUS_RATE, opus_channels(settings.layout), application)
            .map_err(lib("creating the encoder"))?;
        inner
            .set_bitrate(opus::Bitrate::Bits(settings.bitrate_bps as i32))
            .map_err(lib("setting the bitrate"))?;
        Ok(Self {
            inner,
            settings,
            packet: vec![0; MAX_PACKET],
            clean: Vec::new(),
            nonfinite: 0,
        })
    }

    pub fn settings(&self) -> OpusSettings {
        self.settings
    }

    /// Interleaved samples in one frame.
    pub fn frame_len(&self) -> usize {
        self.settings.frame.samples() * self.settings.layout.channels()
    }

    /// Changes the bitrate from the next frame on (policy may do this at
    /// any time).
    pub fn set_bitrate(&mut self, bps: u32) -> Result<(), OpusError> {
        check_bitrate(bps)?;
        self.inner
            .set_bitrate(opus::Bitrate::Bits(bps as i32))
            .map_err(lib("setting the bitrate"))?;
        self.settings.bitrate_bps = bps;
        Ok(())
    }

    /// Samples of delay the encoder adds (its look-ahead) at 48 kHz.
    pub fn lookahead(&mut self) -> Result<u32, OpusError> {
        let n = self
            .inner
            .get_lookahead()
            .map_err(lib("reading the look-ahead"))?;
        Ok(n.max(0) as u32)
    }

    /// Non-finite samples replaced by silence so far (see [`Self::encode`]).
    pub fn nonfinite_samples(&self) -> u64 {
        self.nonfinite
    }

    /// Encodes exactly one frame of interleaved samples.
    ///
    /// libopus must only ever see finite samples: a NaN or infinity makes
    /// its CELT transient analysis compute a NaN, which its hardening
    /// checks turn into `abort()` of the whole gateway (and which, without
    /// them, indexes a table out of bounds). Whatever produced the samples,
    /// they are cleaned here, the last step before libopus: non-finite
    /// values become 0 (and are counted), the rest are clamped to [-1, 1]
    /// (full scale; libopus' float input is nominally within it).
    pub fn encode(&mut self, frame: &[f32]) -> Result<Vec<u8>, OpusError> {
        let want = self.frame_len();
        if frame.len() != want {
            return Err(OpusError::FrameLength {
                want,
                got: frame.len(),
                channels: self.settings.layout.channels(),
            });
        }
        self.clean.clear();
        let mut nonfinite = 0u64;
        self.clean.extend(frame.iter().map(|&x| {
            if x.is_finite() {
                x.clamp(-1.0, 1.0)
            } else {
                nonfinite += 1;
                0.0
            }
        }));
        self.nonfinite += nonfinite;
        let n = self
            .inner
            .encode_float(&self.clean, &mut self.packet)
            .map_err(lib("encoding a frame"))?;
        Ok(self.packet[..n].to_vec())
    }
}

fn check_bitrate(bps: u32) -> Result<(), OpusError> {
    if (MIN_BITRATE..=MAX_BITRATE).contains(&bps) {
        Ok(())
    } else {
        Err(OpusError::Bitrate(bps))
    }
}

/// Collects 48 kHz samples and hands them out in exact frames.
#[derive(Debug, Clone)]
pub struct FrameAssembler {
    frame_len: usize,
    pending: Vec<f32>,
}

impl FrameAssembler {
    /// `frame_len`: interleaved samples per frame (must be > 0).
    pub fn new(frame_len: usize) -> Self {
        let frame_len = frame_len.max(1);
        Self {
            frame_len,
            pending: Vec::with_capacity(frame_len),
        }
    }

    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Samples waiting for the rest of their frame.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Adds `samples`; calls `on_frame` once per completed frame, in order.
    pub fn push<E>(
        &mut self,
        mut samples: &[f32],
        mut on_frame: impl FnMut(&[f32]) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.pending.is_empty() {
            let take = (self.frame_len - self.pending.len()).min(samples.len());
            self.pending.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.pending.len() < self.frame_len {
                return Ok(());
            }
            on_frame(&self.pending)?;
            self.pending.clear();
        }
        let mut frames = samples.chunks_exact(self.frame_len);
        for frame in &mut frames {
            on_frame(frame)?;
        }
        self.pending.extend_from_slice(frames.remainder());
        Ok(())
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

/// Opus packets to 48 kHz interleaved samples.
pub struct OpusDecoder {
    inner: opus::Decoder,
    layout: Layout,
    scratch: Vec<f32>,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("layout", &self.layout)
            .finish()
    }
}

impl OpusDecoder {
    pub fn new(layout: Layout) -> Result<Self, OpusError> {
        let inner = opus::Decoder::new(OPUS_RATE, opus_channels(layout))
            .map_err(lib("creating the decoder"))?;
        Ok(Self {
            inner,
            layout,
            scratch: vec![0.0; MAX_DECODED_FRAME * layout.channels()],
        })
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Decodes one packet (from an untrusted peer: libopus validates it),
    /// appending interleaved samples to `out`. Returns frames decoded.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<f32>) -> Result<usize, OpusError> {
        let n = self
            .inner
            .decode_float(packet, &mut self.scratch, false)
            .map_err(lib("decoding a packet"))?;
        let len = n.min(MAX_DECODED_FRAME) * self.layout.channels();
        out.extend_from_slice(&self.scratch[..len]);
        Ok(n)
    }

    /// Conceals `frames` lost frames (packet loss concealment).
    pub fn conceal(&mut self, frames: usize, out: &mut Vec<f32>) -> Result<usize, OpusError> {
        let frames = frames.min(MAX_DECODED_FRAME);
        let len = frames * self.layout.channels();
        let n = self
            .inner
            .decode_float(&[], &mut self.scratch[..len], false)
            .map_err(lib("concealing a lost packet"))?;
        out.extend_from_slice(&self.scratch[..n.min(frames) * self.layout.channels()]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembler_emits_exact_frames_across_pushes() {
        let mut a = FrameAssembler::new(4);
        let mut frames: Vec<Vec<f32>> = Vec::new();
        let input: Vec<f32> = (0..11).map(|i| i as f32).collect();
        for piece in [&input[..1], &input[1..6], &input[6..7], &input[7..11]] {
            a.push::<()>(piece, |f| {
                frames.push(f.to_vec());
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(frames, vec![vec![0., 1., 2., 3.], vec![4., 5., 6., 7.]]);
        assert_eq!(a.pending(), 3);
    }

    #[test]
    fn encoder_refuses_bad_bitrate_and_frame_length() {
        let bad = OpusSettings {
            bitrate_bps: 1_000,
            ..OpusSettings::default()
        };
        assert_eq!(
            OpusEncoder::new(bad).unwrap_err(),
            OpusError::Bitrate(1_000)
        );
        let mut enc = OpusEncoder::new(OpusSettings::default()).unwrap();
        assert!(matches!(
            enc.encode(&[0.0; 10]),
            Err(OpusError::FrameLength {
                want: 1920,
                got: 10,
                ..
            })
        ));
        assert_eq!(enc.set_bitrate(600_000), Err(OpusError::Bitrate(600_000)));
        enc.set_bitrate(32_000).unwrap();
        assert_eq!(enc.settings().bitrate_bps, 32_000);
    }

    #[test]
    fn bitrate_change_changes_packet_size() {
        let mut enc = OpusEncoder::new(OpusSettings::default()).unwrap();
        // Noise-like content so the packet size follows the bitrate.
        let mut x = 1u32;
        let mut frame = || -> Vec<f32> {
            (0..1920)
                .map(|_| {
                    x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (x >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect()
        };
        let mut size = |enc: &mut OpusEncoder| -> usize {
            (0..20).map(|_| enc.encode(&frame()).unwrap().len()).sum()
        };
        let high = size(&mut enc);
        enc.set_bitrate(16_000).unwrap();
        let _ = size(&mut enc);
        let low = size(&mut enc);
        // 96 kbit/s and 16 kbit/s over 20 frames of 20 ms: 4800 vs 800 bytes.
        assert!(high > 3 * low, "high {high} low {low}");
    }

    #[test]
    fn decoder_rejects_garbage_without_panicking() {
        let mut dec = OpusDecoder::new(Layout::Stereo).unwrap();
        let mut out = Vec::new();
        // A code-3 packet claiming 63 frames of 60 ms: longer than 120 ms.
        assert!(dec.decode(&[0xFF, 0x3F], &mut out).is_err());
        assert!(out.is_empty());
        assert_eq!(dec.conceal(480, &mut out).unwrap(), 480);
        assert_eq!(out.len(), 960);
    }

    /// Without the cleaning in `encode`, libopus' hardening check
    /// (`celt_encoder.c: assertion failed: !celt_isnan(...)`) aborts this
    /// test binary on the first NaN frame.
    #[test]
    fn non_finite_and_out_of_range_samples_never_reach_libopus() {
        for layout in [Layout::Mono, Layout::Stereo] {
            let settings = OpusSettings {
                layout,
                ..OpusSettings::default()
            };
            let mut enc = OpusEncoder::new(settings).unwrap();
            let mut dec = OpusDecoder::new(layout).unwrap();
            let n = enc.frame_len();
            let tone = |k: usize| {
                (0..n)
                    .map(|i| {
                        let t = (k * n + i) as f32 / (48_000.0 * layout.channels() as f32);
                        0.5 * (2.0 * std::f32::consts::PI * 660.0 * t).sin()
                    })
                    .collect::<Vec<f32>>()
            };
            let poisoned = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30];
            let mut out = Vec::new();
            let mut bad = 0u64;
            for k in 0..50 {
                let mut frame = tone(k);
                if k % 2 == 1 {
                    for (j, s) in frame.iter_mut().enumerate().step_by(7) {
                        *s = poisoned[j % poisoned.len()];
                    }
                    bad += frame.iter().filter(|s| !s.is_finite()).count() as u64;
                }
                if k == 20 {
                    frame.fill(f32::NAN);
                    bad += n as u64;
                }
                let p = enc.encode(&frame).expect("a poisoned frame still encodes");
                out.clear();
                dec.decode(&p, &mut out).unwrap();
                assert!(out.iter().all(|s| s.is_finite()), "{layout:?} frame {k}");
            }
            assert_eq!(enc.nonfinite_samples(), bad);
            // The encoder is not left broken: clean frames afterwards come
            // back as the tone.
            let mut tail = Vec::new();
            for k in 50..100 {
                let p = enc.encode(&tone(k)).unwrap();
                dec.decode(&p, &mut tail).unwrap();
            }
            let rest = &tail[tail.len() / 2..];
            let rms = (rest.iter().map(|s| s * s).sum::<f32>() / rest.len() as f32).sqrt();
            assert!((rms - 0.3536).abs() < 0.05, "{layout:?}: rms {rms}");
        }
    }

    #[test]
    fn round_trip_keeps_a_tone() {
        for app in [OpusApplication::Audio, OpusApplication::RestrictedLowDelay] {
            let settings = OpusSettings {
                layout: Layout::Mono,
                frame: FrameDuration::Ms10,
                application: app,
                ..OpusSettings::default()
            };
            let mut enc = OpusEncoder::new(settings).unwrap();
            let mut dec = OpusDecoder::new(Layout::Mono).unwrap();
            let tone: Vec<f32> = (0..48_000)
                .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 48_000.0).sin())
                .collect();
            let mut out = Vec::new();
            for frame in tone.chunks_exact(480) {
                let p = enc.encode(frame).unwrap();
                dec.decode(&p, &mut out).unwrap();
            }
            assert_eq!(out.len(), tone.len());
            let tail = &out[24_000..];
            let rms = (tail.iter().map(|s| s * s).sum::<f32>() / tail.len() as f32).sqrt();
            // 0.5 amplitude sine: RMS 0.354.
            assert!((rms - 0.3536).abs() < 0.04, "{app:?}: rms {rms}");
        }
    }
}

//! Streaming sample-rate conversion with `rubato`, for input that arrives in
//! chunks of any size.
//!
//! Input is collected until one resampler block is full, so the output does
//! not depend on how the input was cut: the same samples come out whether
//! the guest wrote 1 frame or 10 000 at a time (a test checks this), which
//! is what "no clicks between chunks" needs.
//!
//! Which resampler: the synchronous FFT resampler (fast, high quality) when
//! the rate pair has a small common block, i.e. every rate ALSA names
//! (44100 -> 48000 works in blocks of 147 -> 160 frames); the asynchronous
//! sinc resampler for odd rates (47999 has no common block shorter than a
//! second, which would be a second of latency with the FFT resampler).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, Fft, FixedAsync, FixedSync, Resampler, SincInterpolationParameters, WindowFunction,
};
use thiserror::Error;

/// The lowest and highest rates accepted. sndif has no limits of its own;
/// these cover ALSA's 5512..384000 with margin and keep block sizes sane.
pub const MIN_RATE: u32 = 1_000;
pub const MAX_RATE: u32 = 768_000;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResampleError {
    #[error("sample rate {0} Hz is outside {MIN_RATE}..={MAX_RATE} Hz")]
    Rate(u32),
    #[error("a resampler needs at least one channel")]
    NoChannels,
    #[error("resampler from {from} Hz to {to} Hz could not be built: {reason}")]
    Construction { from: u32, to: u32, reason: String },
    #[error("resampling failed: {0}")]
    Process(String),
}

/// Converts an interleaved stream from one rate to another.
pub struct StreamResampler {
    from: u32,
    to: u32,
    channels: usize,
    engine: Option<Box<dyn Resampler<f32>>>,
    /// Interleaved input waiting for a full block.
    pending: Vec<f32>,
    block_in: usize,
    scratch_out: Vec<f32>,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("channels", &self.channels)
            .field("block_in", &self.block_in)
            .finish()
    }
}

/// Longest block (in input time) for which the FFT resampler is used.
const MAX_FFT_BLOCK_MS: usize = 25;
/// Wanted block, in input time: short for latency, long enough for the FFT
/// to stay efficient.
const BLOCK_MS: usize = 10;

impl StreamResampler {
    pub fn new(from: u32, to: u32, channels: usize) -> Result<Self, ResampleError> {
        for rate in [from, to] {
            if !(MIN_RATE..=MAX_RATE).contains(&rate) {
                return Err(ResampleError::Rate(rate));
            }
        }
        if channels == 0 {
            return Err(ResampleError::NoChannels);
        }
        let build_err = |e: rubato::ResamplerConstructionError| ResampleError::Construction {
            from,
            to,
            reason: e.to_string(),
        };
        let (rate_in, rate_out) = (from as usize, to as usize);
        let mut resampler = Self {
            from,
            to,
            channels,
            engine: None,
            pending: Vec::new(),
            block_in: 0,
            scratch_out: Vec::new(),
        };
        if from == to {
            return Ok(resampler);
        }
        let wanted = (rate_in * BLOCK_MS / 1000).max(1);
        let min_block = rate_in / gcd(rate_in, rate_out);
        let engine: Box<dyn Resampler<f32>> = if min_block * 1000 <= rate_in * MAX_FFT_BLOCK_MS {
            // FixedSync::Both: whole blocks in, whole blocks out, nothing
            // kept inside the resampler between calls but its overlap.
            Box::new(
                Fft::<f32>::new(rate_in, rate_out, wanted, channels, FixedSync::Both)
                    .map_err(build_err)?,
            )
        } else {
            let params = SincInterpolationParameters::new(128, WindowFunction::BlackmanHarris2);
            Box::new(
                Async::<f32>::new_sinc(
                    rate_out as f64 / rate_in as f64,
                    1.0,
                    &params,
                    wanted,
                    channels,
                    FixedAsync::Input,
                )
                .map_err(build_err)?,
            )
        };
        resampler.block_in = engine.input_frames_next();
        resampler.scratch_out = vec![0.0; engine.output_frames_max() * channels];
        resampler.pending.reserve(resampler.block_in * channels);
        resampler.engine = Some(engine);
        Ok(resampler)
    }

    pub fn from_rate(&self) -> u32 {
        self.from
    }

    pub fn to_rate(&self) -> u32 {
        self.to
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Output frames the resampler lags its input by (its filter delay);
    /// 0 when passing through.
    pub fn delay_frames(&self) -> usize {
        self.engine.as_ref().map_or(0, |e| e.output_delay())
    }

    /// Input frames collected into one block; output appears a block at a
    /// time.
    pub fn block_frames(&self) -> usize {
        self.block_in
    }

    /// Resamples `input` (interleaved, whole frames), appending whatever
    /// output is ready to `out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), ResampleError> {
        let whole = input.len() - input.len() % self.channels;
        let input = &input[..whole];
        let Some(engine) = self.engine.as_mut() else {
            out.extend_from_slice(input);
            return Ok(());
        };
        let ch = self.channels;
        let block_len = self.block_in * ch;
        let mut rest = input;
        loop {
            // Use the input in place when nothing is pending, else top up
            // the pending block.
            let block: &[f32] = if self.pending.is_empty() && rest.len() >= block_len {
                let (b, r) = rest.split_at(block_len);
                rest = r;
                b
            } else {
                let take = (block_len - self.pending.len()).min(rest.len());
                self.pending.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if self.pending.len() < block_len {
                    return Ok(());
                }
                &self.pending
            };
            let frames_out = self.scratch_out.len() / ch;
            let adapter_in = InterleavedSlice::new(block, ch, self.block_in)
                .map_err(|e| ResampleError::Process(e.to_string()))?;
            let mut adapter_out = InterleavedSlice::new_mut(&mut self.scratch_out, ch, frames_out)
                .map_err(|e| ResampleError::Process(e.to_string()))?;
            let (_, written) = engine
                .process_into_buffer(&adapter_in, &mut adapter_out, None)
                .map_err(|e| ResampleError::Process(e.to_string()))?;
            out.extend_from_slice(&self.scratch_out[..written * ch]);
            // Both engines are built with a fixed input side, so the block
            // size never changes.
            self.pending.clear();
        }
    }

    /// Forgets all pending input and filter state (after a stream STOP).
    pub fn reset(&mut self) {
        self.pending.clear();
        if let Some(e) = self.engine.as_mut() {
            e.reset();
            self.block_in = e.input_frames_next();
        }
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, freq: f32, frames: usize, channels: usize) -> Vec<f32> {
        (0..frames)
            .flat_map(|i| {
                let s = (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * 0.5;
                std::iter::repeat_n(s, channels)
            })
            .collect()
    }

    #[test]
    fn same_rate_passes_through_unchanged() {
        let mut r = StreamResampler::new(48_000, 48_000, 2).unwrap();
        let input = sine(48_000, 440.0, 1000, 2);
        let mut out = Vec::new();
        r.process(&input, &mut out).unwrap();
        assert_eq!(out, input);
        assert_eq!(r.delay_frames(), 0);
    }

    #[test]
    fn output_does_not_depend_on_chunking() {
        for (from, to) in [
            (44_100, 48_000),
            (8_000, 48_000),
            (48_000, 11_025),
            (47_999, 48_000),
        ] {
            let input = sine(from, 440.0, from as usize / 2, 2);
            let mut whole = Vec::new();
            StreamResampler::new(from, to, 2)
                .unwrap()
                .process(&input, &mut whole)
                .unwrap();
            let mut chunked = Vec::new();
            let mut r = StreamResampler::new(from, to, 2).unwrap();
            // Chunk sizes of 1, 7, 13, 1000, ... frames.
            let sizes = [1usize, 7, 13, 1000, 3, 441, 2];
            let mut pos = 0;
            for i in 0.. {
                if pos >= input.len() {
                    break;
                }
                let n = (sizes[i % sizes.len()] * 2).min(input.len() - pos);
                r.process(&input[pos..pos + n], &mut chunked).unwrap();
                pos += n;
            }
            assert_eq!(whole.len(), chunked.len(), "{from}->{to}");
            assert_eq!(whole, chunked, "{from}->{to}");
            // Roughly the right amount of output (less a partial block).
            let expected = input.len() as f64 * to as f64 / from as f64;
            let got = whole.len() as f64;
            assert!(
                got > expected * 0.9 && got <= expected + 2.0,
                "{from}->{to}: {got} of {expected}"
            );
        }
    }

    #[test]
    fn every_alsa_rate_builds_with_a_short_block() {
        for rate in [
            5512, 8000, 11025, 16000, 22050, 32000, 44100, 64000, 88200, 96000, 176400, 192000,
            352800, 384000,
        ] {
            let r = StreamResampler::new(rate, 48_000, 2).unwrap();
            let max_ms = MAX_FFT_BLOCK_MS as u32;
            assert!(
                r.block_frames() as u32 * 1000 <= rate * max_ms,
                "{rate}: block {}",
                r.block_frames()
            );
            let back = StreamResampler::new(48_000, rate, 1).unwrap();
            assert!(back.block_frames() > 0);
        }
        assert_eq!(
            StreamResampler::new(999, 48_000, 2).unwrap_err(),
            ResampleError::Rate(999)
        );
        assert_eq!(
            StreamResampler::new(48_000, 48_000, 0).unwrap_err(),
            ResampleError::NoChannels
        );
    }
}

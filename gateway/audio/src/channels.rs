//! Channel mapping between a stream's interleaved channels and the mono or
//! stereo layout the encoder (or the microphone decoder) works in.
//!
//! Channel order is ALSA's default, which is what a Linux guest writes
//! (snd-xen-front exposes no channel map, so applications use the default):
//! FL FR | RL RR | FC | LFE | SL SR for 2, 4, 5, 6 and 8 channels, and
//! FL FR FC for 3. Anything else: the first two channels are FL and FR and
//! the rest are dropped.
//!
//! The downmix is not normalised: a front channel goes to its side at full
//! level and centre/rear at -3 dB, then the sum is clamped. Normalising
//! would make the common case, stereo content in a 5.1 container with the
//! other channels silent, come out 7.7 dB too quiet.

use thiserror::Error;

/// The layout on the encoder side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    Mono,
    Stereo,
}

impl Layout {
    pub fn channels(self) -> usize {
        match self {
            Layout::Mono => 1,
            Layout::Stereo => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a stream needs 1 to 255 channels, not {0}")]
pub struct ChannelCountError(pub usize);

const MINUS_3DB: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Where each input channel goes, as gains into (left, right).
#[derive(Debug, Clone, PartialEq)]
pub struct Downmix {
    gains: Vec<(f32, f32)>,
    out: Layout,
}

impl Downmix {
    /// From `channels` interleaved channels to `out`.
    pub fn new(channels: usize, out: Layout) -> Result<Self, ChannelCountError> {
        if !(1..=255).contains(&channels) {
            return Err(ChannelCountError(channels));
        }
        const FL: (f32, f32) = (1.0, 0.0);
        const FR: (f32, f32) = (0.0, 1.0);
        const C: (f32, f32) = (MINUS_3DB, MINUS_3DB);
        const RL: (f32, f32) = (MINUS_3DB, 0.0);
        const RR: (f32, f32) = (0.0, MINUS_3DB);
        const LFE: (f32, f32) = (0.0, 0.0);
        let gains = match channels {
            1 => vec![(1.0, 1.0)],
            2 => vec![FL, FR],
            3 => vec![FL, FR, C],
            4 => vec![FL, FR, RL, RR],
            5 => vec![FL, FR, RL, RR, C],
            6 => vec![FL, FR, RL, RR, C, LFE],
            8 => vec![FL, FR, RL, RR, C, LFE, RL, RR],
            n => {
                let mut g = vec![(0.0, 0.0); n];
                g[0] = FL;
                g[1] = FR;
                g
            }
        };
        Ok(Self { gains, out })
    }

    pub fn in_channels(&self) -> usize {
        self.gains.len()
    }

    pub fn out(&self) -> Layout {
        self.out
    }

    /// Maps every whole frame of `input`, appending to `out`; a trailing
    /// partial frame is ignored (the caller only passes whole frames).
    pub fn process(&self, input: &[f32], out: &mut Vec<f32>) {
        let n = self.gains.len();
        let frames = input.chunks_exact(n);
        out.reserve(frames.len() * self.out.channels());
        // Fast paths: the layouts that need no arithmetic.
        match (n, self.out) {
            (2, Layout::Stereo) => {
                out.extend_from_slice(&input[..input.len() - input.len() % 2]);
                return;
            }
            (1, Layout::Mono) => {
                out.extend_from_slice(input);
                return;
            }
            (1, Layout::Stereo) => {
                out.extend(input.iter().flat_map(|&s| [s, s]));
                return;
            }
            _ => {}
        }
        for frame in frames {
            let (mut l, mut r) = (0.0f32, 0.0f32);
            for (&s, &(gl, gr)) in frame.iter().zip(&self.gains) {
                l += s * gl;
                r += s * gr;
            }
            match self.out {
                Layout::Stereo => {
                    out.push(l.clamp(-1.0, 1.0));
                    out.push(r.clamp(-1.0, 1.0));
                }
                Layout::Mono => out.push((0.5 * (l + r)).clamp(-1.0, 1.0)),
            }
        }
    }
}

/// From mono or stereo (a viewer's microphone) to a capture stream's
/// channel count: mono goes to every channel; stereo goes to FL/FR, a mono
/// stream gets their average, and other channels stay silent (a microphone
/// has no surround to fill them with).
#[derive(Debug, Clone, PartialEq)]
pub struct Upmix {
    input: Layout,
    channels: usize,
}

impl Upmix {
    pub fn new(input: Layout, channels: usize) -> Result<Self, ChannelCountError> {
        if !(1..=255).contains(&channels) {
            return Err(ChannelCountError(channels));
        }
        Ok(Self { input, channels })
    }

    pub fn out_channels(&self) -> usize {
        self.channels
    }

    pub fn process(&self, input: &[f32], out: &mut Vec<f32>) {
        let n = self.channels;
        match self.input {
            Layout::Mono => {
                out.reserve(input.len() * n);
                for &s in input {
                    out.extend(std::iter::repeat_n(s, n));
                }
            }
            Layout::Stereo => {
                let frames = input.chunks_exact(2);
                out.reserve(frames.len() * n);
                for lr in frames {
                    let (l, r) = (lr[0], lr[1]);
                    if n == 1 {
                        out.push(0.5 * (l + r));
                    } else {
                        out.push(l);
                        out.push(r);
                        out.extend(std::iter::repeat_n(0.0, n - 2));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stereo_passes_through_and_mono_is_duplicated() {
        let mut out = Vec::new();
        Downmix::new(2, Layout::Stereo)
            .unwrap()
            .process(&[0.1, 0.2, 0.3, 0.4], &mut out);
        assert_eq!(out, vec![0.1, 0.2, 0.3, 0.4]);
        out.clear();
        Downmix::new(1, Layout::Stereo)
            .unwrap()
            .process(&[0.1, 0.3], &mut out);
        assert_eq!(out, vec![0.1, 0.1, 0.3, 0.3]);
        out.clear();
        Downmix::new(2, Layout::Mono)
            .unwrap()
            .process(&[0.2, 0.4, -1.0, 1.0], &mut out);
        assert_eq!(out, vec![0.3f32, 0.0]);
    }

    #[test]
    fn surround_51_in_alsa_order_downmixes_to_its_sides() {
        // FL FR RL RR FC LFE
        let frame = [0.5, 0.0, 0.0, 0.0, 0.0, 0.0];
        let mut out = Vec::new();
        let dm = Downmix::new(6, Layout::Stereo).unwrap();
        dm.process(&frame, &mut out);
        assert_eq!(out, vec![0.5, 0.0]);
        out.clear();
        dm.process(&[0.0, 0.0, 0.0, 0.4, 0.0, 0.9], &mut out);
        assert_eq!(out, vec![0.0, 0.4 * MINUS_3DB]);
        out.clear();
        dm.process(&[0.0, 0.0, 0.0, 0.0, 0.4, 0.0], &mut out);
        assert_eq!(out, vec![0.4 * MINUS_3DB, 0.4 * MINUS_3DB]);
        out.clear();
        // Loud sums are clamped, not wrapped.
        dm.process(&[1.0, -1.0, 1.0, -1.0, 1.0, 0.0], &mut out);
        assert_eq!(out, vec![1.0, -1.0]);
    }

    #[test]
    fn odd_channel_counts_keep_front_pair() {
        let dm = Downmix::new(7, Layout::Stereo).unwrap();
        let mut out = Vec::new();
        dm.process(&[0.1, 0.2, 0.9, 0.9, 0.9, 0.9, 0.9], &mut out);
        assert_eq!(out, vec![0.1, 0.2]);
        assert_eq!(Downmix::new(0, Layout::Mono), Err(ChannelCountError(0)));
        assert_eq!(Downmix::new(256, Layout::Mono), Err(ChannelCountError(256)));
    }

    #[test]
    fn partial_frames_are_ignored() {
        let dm = Downmix::new(6, Layout::Mono).unwrap();
        let mut out = Vec::new();
        dm.process(&[0.2, 0.2, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0], &mut out);
        assert_eq!(out.len(), 1);
        let mut out = Vec::new();
        Downmix::new(2, Layout::Stereo)
            .unwrap()
            .process(&[0.1, 0.2, 0.3], &mut out);
        assert_eq!(out, vec![0.1, 0.2]);
    }

    #[test]
    fn upmix_fills_stream_channels() {
        let mut out = Vec::new();
        Upmix::new(Layout::Mono, 3)
            .unwrap()
            .process(&[0.5], &mut out);
        assert_eq!(out, vec![0.5, 0.5, 0.5]);
        out.clear();
        Upmix::new(Layout::Stereo, 4)
            .unwrap()
            .process(&[0.1, 0.2], &mut out);
        assert_eq!(out, vec![0.1, 0.2, 0.0, 0.0]);
        out.clear();
        Upmix::new(Layout::Stereo, 1)
            .unwrap()
            .process(&[0.2, 0.4], &mut out);
        assert_eq!(out, vec![0.3f32]);
    }
}

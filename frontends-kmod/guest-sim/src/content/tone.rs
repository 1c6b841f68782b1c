//! Sine tones of known frequency per channel (what the guest plays), and the analyser tests
//! use to check what came out the other end (frequency and level of the strongest tone).
//!
//! Levels are dBFS of the sine's peak: a sine reaching ±1.0 is 0 dBFS.

use std::f64::consts::TAU;

use rustfft::{num_complex::Complex, FftPlanner};

use super::pcm::{self, PcmError, PcmFormat};

/// The frequency channel `index` plays by default: 440 Hz, 660 Hz, then 220 Hz apart.
pub fn default_frequency(index: usize) -> f64 {
    440.0 + 220.0 * index as f64
}

/// dBFS to a linear peak amplitude.
pub fn amplitude_of(level_dbfs: f64) -> f64 {
    10f64.powf(level_dbfs / 20.0)
}

/// Interleaved sine tones, one frequency per channel, continuing seamlessly from one chunk to
/// the next: the samples do not depend on how the stream is cut into chunks.
#[derive(Clone, Debug)]
pub struct ToneGenerator {
    rate: u32,
    frequencies: Vec<f64>,
    amplitude: f64,
    /// Per channel, in cycles, kept in [0, 1) so precision does not decay over hours.
    phase: Vec<f64>,
    frames: u64,
}

impl ToneGenerator {
    /// `channels` channels at the default frequencies.
    pub fn new(rate: u32, channels: usize, level_dbfs: f64) -> Self {
        Self::with_frequencies(
            rate,
            (0..channels).map(default_frequency).collect(),
            level_dbfs,
        )
    }

    pub fn with_frequencies(rate: u32, frequencies: Vec<f64>, level_dbfs: f64) -> Self {
        ToneGenerator {
            rate,
            phase: vec![0.0; frequencies.len()],
            frequencies,
            amplitude: amplitude_of(level_dbfs),
            frames: 0,
        }
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }
    pub fn channels(&self) -> usize {
        self.frequencies.len()
    }
    pub fn frequencies(&self) -> &[f64] {
        &self.frequencies
    }
    /// Frames generated so far.
    pub fn position(&self) -> u64 {
        self.frames
    }

    /// Fills `out` with whole interleaved frames; a trailing partial frame is zeroed.
    pub fn fill(&mut self, out: &mut [f32]) {
        let ch = self.channels();
        if ch == 0 || self.rate == 0 {
            out.fill(0.0);
            return;
        }
        let mut frames = out.chunks_exact_mut(ch);
        for frame in &mut frames {
            for ((s, phase), f) in frame
                .iter_mut()
                .zip(self.phase.iter_mut())
                .zip(&self.frequencies)
            {
                *s = (self.amplitude * (TAU * *phase).sin()) as f32;
                *phase += f / f64::from(self.rate);
                *phase -= phase.floor();
            }
            self.frames += 1;
        }
        frames.into_remainder().fill(0.0);
    }

    /// The next `frames` frames as interleaved floats.
    pub fn next_frames(&mut self, frames: usize) -> Vec<f32> {
        let mut out = vec![0.0; frames * self.channels()];
        self.fill(&mut out);
        out
    }

    /// The next `frames` frames as the bytes of a sndif PCM format.
    pub fn next_bytes(&mut self, frames: usize, format: PcmFormat) -> Result<Vec<u8>, PcmError> {
        pcm::sample_size(format)?;
        pcm::encode_to_vec(&self.next_frames(frames), format)
    }
}

/// One channel out of interleaved samples.
pub fn channel(samples: &[f32], channels: usize, index: usize) -> Vec<f32> {
    if channels == 0 {
        return Vec::new();
    }
    samples
        .iter()
        .skip(index)
        .step_by(channels)
        .copied()
        .collect()
}

/// What the analyser found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ToneMeasurement {
    pub frequency_hz: f64,
    /// Peak amplitude of that tone in dBFS.
    pub level_dbfs: f64,
}

/// Periodic Hann window: low leakage, so a weaker tone 220 Hz away does not bias the peak.
fn hann(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.5 - 0.5 * (TAU * i as f64 / n as f64).cos())
        .collect()
}

/// |Σ w·x·e^(-iωn)| at one frequency: the windowed spectrum between FFT bins.
fn windowed_magnitude(samples: &[f32], window: &[f64], rate: f64, hz: f64) -> f64 {
    let step = Complex::from_polar(1.0, -TAU * hz / rate);
    let mut rot = Complex::new(1.0, 0.0);
    let mut acc = Complex::new(0.0, 0.0);
    for (i, (&x, &w)) in samples.iter().zip(window).enumerate() {
        acc += rot * (f64::from(x) * w);
        rot *= step;
        // Renormalise now and then: repeated multiplication drifts off the unit circle.
        if i % 1024 == 1023 {
            rot /= rot.norm();
        }
    }
    acc.norm()
}

fn to_dbfs(magnitude: f64, window: &[f64]) -> f64 {
    let gain: f64 = window.iter().sum();
    20.0 * (2.0 * magnitude / gain).max(1e-12).log10()
}

/// Level in dBFS of the component at exactly `hz` (e.g. to check a channel carries *no* 440 Hz).
pub fn level_at(samples: &[f32], rate: u32, hz: f64) -> f64 {
    let window = hann(samples.len());
    to_dbfs(
        windowed_magnitude(samples, &window, f64::from(rate), hz),
        &window,
    )
}

/// The strongest tone in a mono signal: FFT peak, then a golden-section search of the
/// windowed spectrum within one bin of it. On a 1 s window the frequency is good to a few
/// hundredths of a hertz and the level to well under 0.1 dB for a clean tone. `None` for
/// fewer than 64 samples, a zero rate, or silence.
pub fn measure_tone(samples: &[f32], rate: u32) -> Option<ToneMeasurement> {
    measure_tone_in(samples, rate, 0.0, f64::from(rate) / 2.0)
}

/// Like [`measure_tone`] but only considers peaks between `lo_hz` and `hi_hz`: for a mix of
/// several tones (a mono downmix of 440 + 660 Hz), measure each in its own band.
pub fn measure_tone_in(
    samples: &[f32],
    rate: u32,
    lo_hz: f64,
    hi_hz: f64,
) -> Option<ToneMeasurement> {
    let n = samples.len();
    if n < 64 || rate == 0 {
        return None;
    }
    let window = hann(n);
    let mut buf: Vec<Complex<f64>> = samples
        .iter()
        .zip(&window)
        .map(|(&x, &w)| Complex::new(f64::from(x) * w, 0.0))
        .collect();
    FftPlanner::new().plan_fft_forward(n).process(&mut buf);
    let bin_hz = f64::from(rate) / n as f64;
    // Skip DC and its Hann side lobe.
    let first = ((lo_hz / bin_hz).ceil().max(0.0) as usize).max(2);
    let last = ((hi_hz / bin_hz).floor().max(0.0) as usize).min(n / 2);
    let (k, peak) = buf
        .iter()
        .enumerate()
        .take(last + 1)
        .skip(first)
        .map(|(k, c)| (k, c.norm()))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    if peak <= 0.0 {
        return None;
    }
    let rate_f = f64::from(rate);
    let bin = rate_f / n as f64;
    let (mut lo, mut hi) = ((k as f64 - 1.0) * bin, (k as f64 + 1.0) * bin);
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let mag = |f: f64| windowed_magnitude(samples, &window, rate_f, f);
    let (mut a, mut b) = (hi - ratio * (hi - lo), lo + ratio * (hi - lo));
    let (mut fa, mut fb) = (mag(a), mag(b));
    // Stop at a thousandth of a bin: far finer than any test needs.
    while hi - lo > bin * 1e-3 {
        if fa > fb {
            hi = b;
            (b, fb) = (a, fa);
            a = hi - ratio * (hi - lo);
            fa = mag(a);
        } else {
            lo = a;
            (a, fa) = (b, fb);
            b = lo + ratio * (hi - lo);
            fb = mag(b);
        }
    }
    let f = (lo + hi) / 2.0;
    Some(ToneMeasurement {
        frequency_hz: f,
        level_dbfs: to_dbfs(mag(f), &window),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_frequencies() {
        let g = ToneGenerator::new(48_000, 4, -6.0);
        assert_eq!(g.frequencies(), [440.0, 660.0, 880.0, 1100.0]);
    }

    #[test]
    fn each_channel_measures_its_frequency_and_level() {
        for rate in [8_000u32, 44_100, 48_000, 96_000] {
            for level in [0.0, -6.0, -20.0] {
                let mut g = ToneGenerator::new(rate, 2, level);
                let s = g.next_frames(rate as usize);
                for (i, want) in [440.0, 660.0].into_iter().enumerate() {
                    let m = measure_tone(&channel(&s, 2, i), rate).unwrap();
                    assert!(
                        (m.frequency_hz - want).abs() < 0.1,
                        "{rate} Hz ch{i}: {m:?}"
                    );
                    assert!((m.level_dbfs - level).abs() < 0.1, "{rate} Hz ch{i}: {m:?}");
                    // The other channel's tone is absent.
                    let other = [660.0, 440.0][i];
                    assert!(level_at(&channel(&s, 2, i), rate, other) < level - 60.0);
                }
            }
        }
    }

    #[test]
    fn off_bin_frequencies_and_short_windows() {
        let mut g = ToneGenerator::with_frequencies(48_000, vec![1000.37, 97.5], -3.0);
        let s = g.next_frames(48_000);
        let m = measure_tone(&channel(&s, 2, 0), 48_000).unwrap();
        assert!(
            (m.frequency_hz - 1000.37).abs() < 0.05 && (m.level_dbfs + 3.0).abs() < 0.1,
            "{m:?}"
        );
        let m = measure_tone(&channel(&s, 2, 1), 48_000).unwrap();
        assert!(
            (m.frequency_hz - 97.5).abs() < 0.05 && (m.level_dbfs + 3.0).abs() < 0.1,
            "{m:?}"
        );
        // 100 ms: coarser bins, still well within ±1 Hz.
        let m = measure_tone(&channel(&s[..9_600], 2, 0), 48_000).unwrap();
        assert!((m.frequency_hz - 1000.37).abs() < 0.5, "{m:?}");
    }

    #[test]
    fn chunking_does_not_change_the_samples() {
        let mut whole = ToneGenerator::new(44_100, 3, -1.0);
        let a = whole.next_frames(10_000);
        let mut parts = ToneGenerator::new(44_100, 3, -1.0);
        let mut b = Vec::new();
        for size in [1usize, 7, 441, 1024, 3000].iter().cycle() {
            let left = 10_000 - b.len() / 3;
            if left == 0 {
                break;
            }
            b.extend(parts.next_frames((*size).min(left)));
        }
        assert_eq!(a, b);
        assert_eq!(parts.position(), 10_000);
    }

    #[test]
    fn tone_survives_every_pcm_format() {
        // A low rate keeps this quick in debug builds; accuracy per rate is tested above.
        let rate = 16_000;
        for f in PcmFormat::ALL.into_iter().filter(|&f| pcm::is_supported(f)) {
            let mut g = ToneGenerator::new(rate, 2, -6.0);
            let bytes = g.next_bytes(rate as usize, f).unwrap();
            let back = pcm::decode(&bytes, f).unwrap();
            for (i, want) in [440.0, 660.0].into_iter().enumerate() {
                let m = measure_tone(&channel(&back, 2, i), rate).unwrap();
                assert!((m.frequency_hz - want).abs() < 1.0, "{f:?} ch{i}: {m:?}");
                assert!((m.level_dbfs + 6.0).abs() < 0.5, "{f:?} ch{i}: {m:?}");
            }
        }
        assert!(ToneGenerator::new(rate, 2, 0.0)
            .next_bytes(10, PcmFormat::Gsm)
            .is_err());
    }

    #[test]
    fn silence_and_degenerate_input() {
        assert_eq!(measure_tone(&[0.0; 4800], 48_000), None);
        assert_eq!(measure_tone(&[0.5; 10], 48_000), None);
        assert_eq!(measure_tone(&[0.5; 1000], 0), None);
        let mut g = ToneGenerator::new(48_000, 0, 0.0);
        assert!(g.next_frames(10).is_empty());
        let mut out = [1.0f32; 5];
        ToneGenerator::new(48_000, 2, 0.0).fill(&mut out);
        assert_eq!(out[4], 0.0, "partial trailing frame zeroed");
    }

    #[test]
    fn tones_in_a_mix_are_measured_per_band() {
        let mut g = ToneGenerator::new(48_000, 2, -6.0);
        let s = g.next_frames(48_000);
        // Mono downmix: each tone at half amplitude (-12 dBFS).
        let mono: Vec<f32> = s.chunks_exact(2).map(|f| (f[0] + f[1]) / 2.0).collect();
        for want in [440.0, 660.0] {
            let m = measure_tone_in(&mono, 48_000, want - 50.0, want + 50.0).unwrap();
            assert!((m.frequency_hz - want).abs() < 0.1, "{m:?}");
            assert!((m.level_dbfs + 12.04).abs() < 0.1, "{m:?}");
        }
        assert_eq!(measure_tone_in(&mono, 48_000, 5000.0, 100.0), None);
    }
}

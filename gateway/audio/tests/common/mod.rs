//! Test signal generation and spectral measurement shared by the
//! integration tests.
#![allow(dead_code)]

use rustfft::num_complex::Complex;
use rustfft::FftPlanner;

pub const LEFT_HZ: f64 = 440.0;
pub const RIGHT_HZ: f64 = 660.0;
/// Amplitude of each tone (-9.1 dBFS; two of them still fit a mono mix).
pub const AMPLITUDE: f64 = 0.35;

/// Interleaved test signal at `rate`: 440 Hz in channel 0, 660 Hz in
/// channel 1, silence in the others; a mono stream carries both tones.
pub fn tone(rate: u32, channels: usize, seconds: f64) -> Vec<f32> {
    let frames = (f64::from(rate) * seconds) as usize;
    let mut out = Vec::with_capacity(frames * channels);
    let w = |f: f64, i: usize| {
        (AMPLITUDE * (2.0 * std::f64::consts::PI * f * i as f64 / f64::from(rate)).sin()) as f32
    };
    for i in 0..frames {
        if channels == 1 {
            out.push(w(LEFT_HZ, i) + w(RIGHT_HZ, i));
        } else {
            out.push(w(LEFT_HZ, i));
            out.push(w(RIGHT_HZ, i));
            out.extend(std::iter::repeat_n(0.0, channels - 2));
        }
    }
    out
}

/// Channel `ch` of interleaved `samples`.
pub fn channel(samples: &[f32], channels: usize, ch: usize) -> Vec<f32> {
    samples.iter().skip(ch).step_by(channels).copied().collect()
}

/// A tone found in a signal.
#[derive(Debug, Clone, Copy)]
pub struct Peak {
    pub hz: f64,
    /// Peak amplitude of the sinusoid (1.0 = full scale).
    pub amplitude: f64,
}

impl Peak {
    pub fn db_vs(&self, reference: f64) -> f64 {
        20.0 * (self.amplitude / reference).log10()
    }
}

/// The strongest tone within ±`search_hz` of `near_hz` in `signal`
/// (sampled at `rate`). Hann window; frequency by Gaussian interpolation
/// of the peak bin and its neighbours; amplitude from the energy of the
/// bins around the peak (Parseval), which does not depend on where the
/// tone falls between bins.
pub fn find_peak(signal: &[f32], rate: u32, near_hz: f64, search_hz: f64) -> Peak {
    let n = signal.len();
    assert!(n > 64, "signal too short to measure");
    let window: Vec<f64> = (0..n)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
        .collect();
    let mut buf: Vec<Complex<f64>> = signal
        .iter()
        .zip(&window)
        .map(|(&s, &w)| Complex::new(f64::from(s) * w, 0.0))
        .collect();
    FftPlanner::new().plan_fft_forward(n).process(&mut buf);
    let bin_hz = f64::from(rate) / n as f64;
    let lo = (((near_hz - search_hz) / bin_hz).floor().max(1.0)) as usize;
    let hi = (((near_hz + search_hz) / bin_hz).ceil() as usize).min(n / 2 - 2);
    let mag = |k: usize| buf[k].norm();
    let k = (lo..=hi)
        .max_by(|&a, &b| mag(a).total_cmp(&mag(b)))
        .unwrap();
    let (a, b, c) = (
        mag(k - 1).max(1e-30).ln(),
        mag(k).max(1e-30).ln(),
        mag(k + 1).max(1e-30).ln(),
    );
    let denom = a - 2.0 * b + c;
    let delta = if denom.abs() > 1e-12 {
        0.5 * (a - c) / denom
    } else {
        0.0
    };
    let hz = (k as f64 + delta) * bin_hz;
    // Parseval over the main lobe and a little more (Hann: ±2 bins).
    let span = 4usize;
    let energy: f64 = (k.saturating_sub(span)..=(k + span).min(n / 2 - 1))
        .map(|j| buf[j].norm_sqr())
        .sum();
    let sum_w2: f64 = window.iter().map(|w| w * w).sum();
    // Positive and negative frequencies each hold half of a real tone.
    let amplitude = (4.0 * energy / (n as f64 * sum_w2)).sqrt();
    Peak { hz, amplitude }
}

#[cfg(test)]
mod tests {}

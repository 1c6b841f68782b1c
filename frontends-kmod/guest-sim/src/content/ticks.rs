//! Ticks on the wall clock, for measuring audio latency end to end: a short
//! 1 kHz burst whenever the guest's playback timeline crosses a whole
//! second of real time (CLOCK_REALTIME, µs since the Unix epoch), silence
//! between. A receiver on the same clock takes the onset of each burst it
//! hears, minus the whole second before it, as the latency.

use std::f64::consts::TAU;

/// One burst per this many µs.
pub const TICK_PERIOD_US: u64 = 1_000_000;
/// Burst length.
pub const TICK_LEN_US: u64 = 30_000;
/// Burst frequency: well inside Opus's band, easy to tell from silence.
pub const TICK_HZ: f64 = 1000.0;

/// The sample at wall time `t_us`, with peak `amplitude`.
pub fn tick_sample(t_us: u64, amplitude: f64) -> f32 {
    let phase_us = t_us % TICK_PERIOD_US;
    if phase_us >= TICK_LEN_US {
        return 0.0;
    }
    // Starts at phase 0: the onset is the first sample of the period.
    (amplitude * (TAU * TICK_HZ * phase_us as f64 / 1e6).sin()) as f32
}

/// Interleaved `frames` × `channels` samples starting at wall time
/// `start_us`, `rate` frames per second, every channel the same.
pub fn tick_frames(
    start_us: u64,
    rate: u32,
    channels: usize,
    frames: usize,
    amplitude: f64,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(frames * channels);
    for i in 0..frames as u64 {
        let t = start_us + i * 1_000_000 / u64::from(rate.max(1));
        let v = tick_sample(t, amplitude);
        out.extend(std::iter::repeat_n(v, channels));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_starts_on_each_whole_second_and_silence_follows() {
        let rate = 48_000;
        // 0.99 s .. 2.01 s of wall time.
        let start = 990_000;
        let s = tick_frames(start, rate, 1, rate as usize * 102 / 100, 0.5);
        let t = |i: usize| start + i as u64 * 1_000_000 / u64::from(rate);
        let loud: Vec<u64> = (0..s.len()).filter(|&i| s[i].abs() > 0.01).map(t).collect();
        // The first loud sample is just after 1 s (the sine starts at 0).
        assert!(loud[0] >= 1_000_000 && loud[0] < 1_001_000, "{}", loud[0]);
        assert!(loud.iter().all(|&u| (u % TICK_PERIOD_US) < TICK_LEN_US));
        // Bursts at 1 s and 2 s only.
        assert!(loud.iter().any(|&u| u >= 2_000_000));
        assert!(s.iter().all(|v| v.abs() <= 0.5));
    }

    #[test]
    fn stereo_frames_carry_the_same_sample_on_both_channels() {
        let s = tick_frames(0, 48_000, 2, 480, 0.5);
        assert_eq!(s.len(), 960);
        assert!(s.chunks(2).all(|f| f[0] == f[1]));
        assert!(s.iter().any(|v| v.abs() > 0.4));
    }
}

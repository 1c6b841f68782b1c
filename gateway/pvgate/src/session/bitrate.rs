//! The congestion controller's estimate → the encoder bitrate. Quantised
//! to a few steps so that viewers on similar links land on the same step
//! and share one encoder; each change costs a new subscription and a
//! keyframe, so it goes down quickly (congestion hurts now) and up slowly.

use std::time::{Duration, Instant};

/// Ratio between neighbouring steps.
const STEP_RATIO: f64 = 1.6;
/// Minimum time between a change and a step down.
pub const DOWN_AFTER: Duration = Duration::from_secs(1);
/// Minimum time between a change and a step up.
pub const UP_AFTER: Duration = Duration::from_secs(5);
/// Use at most this share of the estimate for video (audio, RTCP and
/// retransmissions need the rest).
const VIDEO_SHARE: f64 = 0.85;

/// The steps between `min` and `max` (both included), each ≈1.6× the last.
pub fn ladder(min: u32, max: u32) -> Vec<u32> {
    let min = min.max(50_000);
    let max = max.max(min);
    let mut steps = Vec::new();
    let mut v = min as f64;
    while (v as u32) < max && steps.len() < 32 {
        // Round to 50 kbit/s so the numbers read well in /metrics.
        let rounded = ((v / 50_000.0).round() as u32).max(1) * 50_000;
        if steps.last() != Some(&rounded) {
            steps.push(rounded.min(max));
        }
        v *= STEP_RATIO;
    }
    if steps.last() != Some(&max) {
        steps.push(max);
    }
    steps
}

/// The largest step the estimate can carry (the lowest one if none).
pub fn quantize(steps: &[u32], estimate_bps: f64) -> u32 {
    let usable = if estimate_bps.is_finite() {
        estimate_bps * VIDEO_SHARE
    } else {
        0.0
    };
    let lowest = steps.first().copied().unwrap_or(300_000);
    steps
        .iter()
        .copied()
        .rev()
        .find(|s| *s as f64 <= usable)
        .unwrap_or(lowest)
}

/// Chooses the current step from the estimates it is fed.
#[derive(Debug, Clone)]
pub struct BitrateSteps {
    steps: Vec<u32>,
    current: u32,
    changed: Instant,
    /// The tenant policy's per-viewer ceiling (its link adjustment), if any.
    cap: Option<u32>,
}

impl BitrateSteps {
    pub fn new(min: u32, start: u32, max: u32, now: Instant) -> BitrateSteps {
        let steps = ladder(min, max);
        // The start is a bitrate, not an estimate: take the step at or below it.
        let current = steps
            .iter()
            .copied()
            .rev()
            .find(|s| *s <= start)
            .unwrap_or(steps[0]);
        BitrateSteps {
            steps,
            current,
            changed: now,
            cap: None,
        }
    }

    /// The highest step at or under the cap (the lowest if none is).
    fn ceiling(&self) -> u32 {
        let lowest = self.steps[0];
        match self.cap {
            None => self.steps[self.steps.len() - 1],
            Some(cap) => self
                .steps
                .iter()
                .copied()
                .rev()
                .find(|s| *s <= cap)
                .unwrap_or(lowest),
        }
    }

    /// A per-viewer ceiling from the tenant's policy (`None`: lifted). A
    /// lower ceiling applies at once, whatever the hold time (the policy
    /// asked for it); a higher one lets later estimates climb as usual.
    /// `Some(step)` when the encoder should change to it.
    pub fn set_cap(&mut self, now: Instant, cap: Option<u32>) -> Option<u32> {
        self.cap = cap;
        let ceiling = self.ceiling();
        if self.current > ceiling {
            self.current = ceiling;
            self.changed = now;
            Some(ceiling)
        } else {
            None
        }
    }

    pub fn current(&self) -> u32 {
        self.current
    }

    /// A new estimate. `Some(step)` when the encoder should change to it.
    pub fn update(&mut self, now: Instant, estimate_bps: f64) -> Option<u32> {
        let target = quantize(&self.steps, estimate_bps).min(self.ceiling());
        let since = now.saturating_duration_since(self.changed);
        let change = (target < self.current && since >= DOWN_AFTER)
            || (target > self.current && since >= UP_AFTER);
        if change {
            self.current = target;
            self.changed = now;
            Some(target)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_spans_min_to_max_in_few_steps() {
        let l = ladder(300_000, 12_000_000);
        assert_eq!(l.first(), Some(&300_000));
        assert_eq!(l.last(), Some(&12_000_000));
        assert!(l.len() <= 10, "{l:?}");
        assert!(l.windows(2).all(|w| w[0] < w[1]), "{l:?}");
        assert_eq!(ladder(1_000_000, 1_000_000), vec![1_000_000]);
        // Nonsense bounds still give a usable ladder.
        assert_eq!(ladder(5_000_000, 1_000), vec![5_000_000]);
    }

    #[test]
    fn estimates_close_together_share_a_step() {
        let l = ladder(300_000, 12_000_000);
        let a = quantize(&l, 2_300_000.0);
        let b = quantize(&l, 2_500_000.0);
        assert_eq!(a, b);
        assert!(a as f64 <= 2_300_000.0 * VIDEO_SHARE);
        assert_eq!(quantize(&l, 10.0), 300_000, "never below the lowest step");
        assert_eq!(quantize(&l, f64::NAN), 300_000);
        assert_eq!(quantize(&l, 1e12), 12_000_000);
    }

    #[test]
    fn down_fast_up_slow() {
        let t0 = Instant::now();
        let mut s = BitrateSteps::new(300_000, 4_000_000, 12_000_000, t0);
        let start = s.current();
        assert!(start <= 4_000_000);
        // A collapse is followed after a second, not before.
        assert_eq!(s.update(t0 + Duration::from_millis(500), 500_000.0), None);
        let down = s.update(t0 + DOWN_AFTER, 500_000.0).unwrap();
        assert!(down < start);
        // Recovery waits five seconds after that change.
        let t1 = t0 + DOWN_AFTER;
        assert_eq!(s.update(t1 + Duration::from_secs(2), 50e6), None);
        assert_eq!(s.update(t1 + UP_AFTER, 50e6), Some(12_000_000));
        // The same step again is no change.
        assert_eq!(s.update(t1 + UP_AFTER * 3, 50e6), None);
    }

    #[test]
    fn a_policy_cap_holds_the_step_down_and_lifting_it_climbs_slowly() {
        let t0 = Instant::now();
        let mut s = BitrateSteps::new(300_000, 12_000_000, 12_000_000, t0);
        assert_eq!(s.current(), 12_000_000);
        // A cap applies at once, to the step at or under it.
        let capped = s.set_cap(t0, Some(1_000_000)).unwrap();
        assert!((500_000..=1_000_000).contains(&capped), "{capped}");
        assert_eq!(s.set_cap(t0, Some(1_000_000)), None, "no change twice");
        // A rich estimate does not lift it.
        assert_eq!(s.update(t0 + UP_AFTER * 2, 50e6), None);
        assert_eq!(s.current(), capped);
        // A cap under the lowest step gives the lowest step.
        assert_eq!(s.set_cap(t0, Some(1_000)), Some(300_000));
        // Lifted: the estimate climbs again after the usual hold.
        assert_eq!(s.set_cap(t0, None), None);
        assert_eq!(s.update(t0 + Duration::from_secs(1), 50e6), None);
        assert_eq!(s.update(t0 + UP_AFTER, 50e6), Some(12_000_000));
    }
}

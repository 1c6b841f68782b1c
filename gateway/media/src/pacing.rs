//! When to encode: the sans-IO policy in front of an encoder.
//!
//! - Frames without damage are not encoded (they only become the "last
//!   frame" a keyframe request may re-encode).
//! - At most one frame per `1 / max_fps`: a damaged frame arriving sooner
//!   waits as the pending frame; a newer one replaces it (counted as
//!   dropped). Nothing is lost: the newest picture is always encoded.
//! - A keyframe request re-encodes the newest picture as a keyframe as soon
//!   as the rate allows, even if the screen is static.
//! - `refresh_after` without any encode after motion: one high-quality
//!   refresh of the last frame, so static text ends up sharp (screen
//!   content only).
//! - A keyframe interval, if set: a new frame encoded when the last
//!   keyframe is older than that is encoded as a keyframe.
//! - An output budget: what the encoder produced drains at the target
//!   bitrate, and while more than [`BURST`] of it is waiting the next
//!   encode waits too. Content the codec cannot squeeze into the bitrate
//!   (full-motion noise at a congestion-control step of 500 kbit/s) then
//!   runs at fewer frames per second instead of flooding the link, where
//!   losses would leave the viewer frozen; a keyframe's burst is absorbed.

use crate::encoder::EncoderParams;
use crate::frame::SharedFrame;
use std::time::{Duration, Instant};

/// A frame from the flip path.
#[derive(Debug, Clone)]
pub struct FrameUpdate {
    pub frame: SharedFrame,
    /// Did anything change since the previous update?
    pub damaged: bool,
    /// When the guest flipped it.
    pub captured: Instant,
}

/// What to do now.
#[derive(Debug, Clone)]
pub enum Decision {
    Encode {
        frame: SharedFrame,
        /// Capture time of a new frame; `None` for re-encodes of the last one.
        captured: Option<Instant>,
        keyframe: bool,
        refresh: bool,
    },
    /// Nothing to do until this instant (or until a new frame or request if
    /// `None`).
    Wait(Option<Instant>),
}

/// What [`Pacer::offer`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    Pending,
    /// Became pending, replacing an older pending frame that is now dropped.
    ReplacedPending,
    /// No damage: not encoded.
    Unchanged,
}

/// How much encoded output, in time at the target bitrate, may be waiting
/// before the next encode is held back: a keyframe or a scene change fits.
pub const BURST: Duration = Duration::from_millis(250);

/// Encoded bits not yet drained at the target bitrate (a leaky bucket).
#[derive(Debug, Clone, Copy)]
struct OutputBudget {
    queued_bits: f64,
    at: Instant,
    bitrate_bps: f64,
}

impl OutputBudget {
    fn queued_at(&self, now: Instant) -> f64 {
        let drained = now.saturating_duration_since(self.at).as_secs_f64() * self.bitrate_bps;
        (self.queued_bits - drained).max(0.0)
    }

    /// When the queue is down to [`BURST`] again.
    fn ready_at(&self) -> Instant {
        let excess = self.queued_bits - BURST.as_secs_f64() * self.bitrate_bps;
        if excess <= 0.0 {
            return self.at;
        }
        self.at + Duration::from_secs_f64((excess / self.bitrate_bps).min(10.0))
    }
}

pub struct Pacer {
    interval: Duration,
    budget: Option<OutputBudget>,
    /// `None`: no refresh frames (motion content).
    refresh_after: Option<Duration>,
    keyframe_interval: Option<Duration>,
    last_encode: Option<Instant>,
    /// When the last keyframe (or refresh, which is one) was encoded; the
    /// first encode of a stream is always a keyframe.
    last_keyframe: Option<Instant>,
    pending: Option<FrameUpdate>,
    last: Option<SharedFrame>,
    keyframe_wanted: bool,
    refresh_due: Option<Instant>,
}

impl Pacer {
    pub fn new(interval: Duration, refresh_after: Duration) -> Pacer {
        Pacer {
            interval,
            budget: None,
            refresh_after: Some(refresh_after),
            keyframe_interval: None,
            last_encode: None,
            last_keyframe: None,
            pending: None,
            last: None,
            keyframe_wanted: false,
            refresh_due: None,
        }
    }

    /// The pacer for an encoder with these parameters.
    pub fn for_params(params: &EncoderParams) -> Pacer {
        let mut p = Pacer::new(params.frame_interval(), params.refresh_after);
        p.refresh_after = params.refresh();
        p.keyframe_interval = params.keyframe_interval;
        p
    }

    pub fn offer(&mut self, update: FrameUpdate) -> Offered {
        if !update.damaged {
            if self.last.is_none() && self.pending.is_none() {
                self.last = Some(update.frame);
            }
            return Offered::Unchanged;
        }
        match self.pending.replace(update) {
            Some(_) => Offered::ReplacedPending,
            None => Offered::Pending,
        }
    }

    pub fn request_keyframe(&mut self) {
        self.keyframe_wanted = true;
    }

    /// The encoder produced `bytes` at `now` for a target of `bitrate_bps`.
    pub fn spent(&mut self, now: Instant, bytes: usize, bitrate_bps: u32) {
        if bitrate_bps == 0 {
            return;
        }
        let queued = self.budget.map_or(0.0, |b| b.queued_at(now));
        self.budget = Some(OutputBudget {
            queued_bits: queued + bytes as f64 * 8.0,
            at: now,
            bitrate_bps: f64::from(bitrate_bps),
        });
    }

    pub fn poll(&mut self, now: Instant) -> Decision {
        let by_rate = self.last_encode.map(|t| t + self.interval);
        let by_budget = self.budget.map(|b| b.ready_at());
        let next_allowed = by_rate.max(by_budget);
        let rate_ok = next_allowed.is_none_or(|t| now >= t);
        let keyframe_possible =
            self.keyframe_wanted && (self.pending.is_some() || self.last.is_some());
        if self.pending.is_some() || keyframe_possible {
            if !rate_ok {
                return Decision::Wait(next_allowed);
            }
            let (frame, captured) = match self.pending.take() {
                Some(u) => (u.frame, Some(u.captured)),
                None => match &self.last {
                    Some(f) => (f.clone(), None),
                    None => return Decision::Wait(None),
                },
            };
            self.last = Some(frame.clone());
            self.last_encode = Some(now);
            self.refresh_due = self.refresh_after.map(|after| now + after);
            let overdue = match (self.keyframe_interval, self.last_keyframe) {
                (Some(every), Some(last)) => now.saturating_duration_since(last) >= every,
                _ => false,
            };
            let keyframe = std::mem::take(&mut self.keyframe_wanted) || overdue;
            if keyframe || self.last_keyframe.is_none() {
                self.last_keyframe = Some(now);
            }
            return Decision::Encode {
                frame,
                captured,
                keyframe,
                refresh: false,
            };
        }
        match (self.refresh_due, &self.last) {
            (Some(due), Some(last)) if now >= due => {
                self.refresh_due = None;
                self.last_encode = Some(now);
                // Both encoders make the refresh a keyframe.
                self.last_keyframe = Some(now);
                Decision::Encode {
                    frame: last.clone(),
                    captured: None,
                    keyframe: false,
                    refresh: true,
                }
            }
            (Some(due), Some(_)) => Decision::Wait(Some(due)),
            _ => Decision::Wait(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;
    use std::sync::Arc;

    fn update(n: u32, damaged: bool, at: Instant) -> FrameUpdate {
        let mut f = Frame::new(4, 4).unwrap();
        f.set_pixel(0, 0, n);
        FrameUpdate {
            frame: Arc::new(f),
            damaged,
            captured: at,
        }
    }

    fn encoded(d: Decision) -> Option<(u32, bool, bool)> {
        match d {
            Decision::Encode {
                frame,
                keyframe,
                refresh,
                ..
            } => Some((frame.pixel(0, 0).unwrap(), keyframe, refresh)),
            Decision::Wait(_) => None,
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn unchanged_frames_are_not_encoded() {
        let t0 = Instant::now();
        let mut p = Pacer::new(33 * MS, 300 * MS);
        assert_eq!(p.offer(update(1, true, t0)), Offered::Pending);
        assert_eq!(encoded(p.poll(t0)), Some((1, false, false)));
        let mut outputs = Vec::new();
        for i in 1..30 {
            assert_eq!(
                p.offer(update(1, false, t0 + i * 40 * MS)),
                Offered::Unchanged
            );
            outputs.extend(encoded(p.poll(t0 + i * 40 * MS)));
        }
        // Only the single refresh of the motion frame, nothing per update.
        assert_eq!(outputs, vec![(1, false, true)]);
    }

    #[test]
    fn rate_limit_keeps_newest_and_refresh_follows_once() {
        let t0 = Instant::now();
        let mut p = Pacer::new(33 * MS, 300 * MS);
        p.offer(update(1, true, t0));
        assert!(encoded(p.poll(t0)).is_some());
        p.offer(update(2, true, t0 + 5 * MS));
        assert_eq!(
            p.offer(update(3, true, t0 + 10 * MS)),
            Offered::ReplacedPending
        );
        match p.poll(t0 + 10 * MS) {
            Decision::Wait(Some(t)) => assert_eq!(t, t0 + 33 * MS),
            other => panic!("{other:?}"),
        }
        assert_eq!(encoded(p.poll(t0 + 33 * MS)), Some((3, false, false)));
        // No refresh before 300 ms of quiet.
        assert!(encoded(p.poll(t0 + 300 * MS)).is_none());
        assert_eq!(encoded(p.poll(t0 + 333 * MS)), Some((3, false, true)));
        // Only one.
        assert!(matches!(p.poll(t0 + 2000 * MS), Decision::Wait(None)));
    }

    #[test]
    fn output_over_the_bitrate_lowers_the_frame_rate_and_a_keyframe_burst_does_not() {
        let t0 = Instant::now();
        let mut p = Pacer::new(33 * MS, 300 * MS);
        // 500 kbit/s; each encoded frame is 25 kB = 200 kbit, 0.4 s of
        // output: after the burst allowance the pacer waits for the rest.
        let mut encoded_at = Vec::new();
        for i in 0..120u32 {
            let now = t0 + i * 33 * MS;
            p.offer(update(i, true, now));
            if encoded(p.poll(now)).is_some() {
                encoded_at.push(now);
                p.spent(now, 25_000, 500_000);
            }
        }
        // ≈4 s: 2.5 frames/s fit the budget (plus the first), not 30.
        let n = encoded_at.len();
        assert!((9..=13).contains(&n), "{n} frames encoded in 4 s");
        // Frames that fit the bitrate run at the full rate, even right
        // after a keyframe four times their size.
        let mut p = Pacer::new(33 * MS, 300 * MS);
        let mut count = 0;
        for i in 0..60u32 {
            let now = t0 + i * 34 * MS;
            p.offer(update(i, true, now));
            if encoded(p.poll(now)).is_some() {
                let bytes = if i == 0 { 8_000 } else { 2_000 };
                p.spent(now, bytes, 500_000);
                count += 1;
            }
        }
        assert_eq!(count, 60);
    }

    #[test]
    fn a_keyframe_interval_forces_keyframes_during_motion_only() {
        let t0 = Instant::now();
        let mut params = EncoderParams::new(crate::Codec::H264, 1_000_000);
        params.max_fps = 25;
        params.keyframe_interval = Some(Duration::from_secs(1));
        let mut p = Pacer::for_params(&params);
        let mut keyframes = Vec::new();
        // 3 s of motion at 25 fps, then 5 s static, then motion again.
        for i in 0..200u32 {
            let now = t0 + i * 40 * MS;
            let moving = !(75..190).contains(&i);
            p.offer(update(i, moving, now));
            if let Some((_, true, _)) = encoded(p.poll(now)) {
                keyframes.push(i);
            }
        }
        // Frame 0 is the stream's first keyframe (encoders start with one),
        // then one per second of motion (frames 25 and 50). The static
        // screen forces nothing; the refresh at 3.28 s counts as a
        // keyframe, and the first frame after the pause, 4 s later, is one.
        assert_eq!(keyframes, vec![25, 50, 190], "{keyframes:?}");
    }

    #[test]
    fn motion_content_gets_no_refresh() {
        let t0 = Instant::now();
        let mut params = EncoderParams::new(crate::Codec::Vp8, 1_000_000);
        params.content = crate::Content::Motion;
        let mut p = Pacer::for_params(&params);
        p.offer(update(1, true, t0));
        assert_eq!(encoded(p.poll(t0)), Some((1, false, false)));
        assert!(matches!(p.poll(t0 + 5000 * MS), Decision::Wait(None)));
    }

    #[test]
    fn keyframe_request_reencodes_static_picture() {
        let t0 = Instant::now();
        let mut p = Pacer::new(33 * MS, 300 * MS);
        p.offer(update(7, false, t0));
        assert!(matches!(p.poll(t0), Decision::Wait(None)));
        p.request_keyframe();
        assert_eq!(encoded(p.poll(t0)), Some((7, true, false)));
        assert!(encoded(p.poll(t0 + 10 * MS)).is_none());
    }
}

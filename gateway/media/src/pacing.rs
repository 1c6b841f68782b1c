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
//!   refresh of the last frame, so static text ends up sharp.

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

pub struct Pacer {
    interval: Duration,
    refresh_after: Duration,
    last_encode: Option<Instant>,
    pending: Option<FrameUpdate>,
    last: Option<SharedFrame>,
    keyframe_wanted: bool,
    refresh_due: Option<Instant>,
}

impl Pacer {
    pub fn new(interval: Duration, refresh_after: Duration) -> Pacer {
        Pacer {
            interval,
            refresh_after,
            last_encode: None,
            pending: None,
            last: None,
            keyframe_wanted: false,
            refresh_due: None,
        }
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

    pub fn poll(&mut self, now: Instant) -> Decision {
        let next_allowed = self.last_encode.map(|t| t + self.interval);
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
            self.refresh_due = Some(now + self.refresh_after);
            return Decision::Encode {
                frame,
                captured,
                keyframe: std::mem::take(&mut self.keyframe_wanted),
                refresh: false,
            };
        }
        match (self.refresh_due, &self.last) {
            (Some(due), Some(last)) if now >= due => {
                self.refresh_due = None;
                self.last_encode = Some(now);
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

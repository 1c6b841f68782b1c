//! Fan-out of one stream's encoded Opus frames to every viewer that wants
//! them (one encoder, many subscribers).
//!
//! A tokio broadcast channel: the producer never waits; a subscriber that
//! falls more than the channel's capacity behind loses the oldest frames
//! (counted) and carries on from the newest. For audio that is the right
//! trade: a late frame is worth nothing, and Opus conceals a gap (unlike
//! video, no keyframe is needed to continue).
//!
//! A viewer's subscriber is *live* ([`AudioSubscriber::live`]): audio
//! waiting for it is latency the viewer hears (a WebRTC receiver's jitter
//! buffer fills with whatever burst it is sent and drains it only slowly),
//! so it joins at the newest frame rather than replaying what was published
//! while its connection was being set up, and after a stall it skips
//! frames beyond [`LIVE_MAX_QUEUED`] instead of sending them late.
//!
//! The shapes follow the video hub in `pvgate-media` (`Arc` frames with
//! `data` and `pts`, `recv().await -> Option`), so that the session code
//! treats both tracks alike. `try_recv` returns an `Option` (the sndif
//! backend's tests already use it that way).

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// One encoded Opus frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    /// The Opus packet.
    pub data: Vec<u8>,
    /// Stream time of the first sample, in 48 kHz samples since the
    /// pipeline began (the RTP timestamp, less its random offset).
    pub timestamp: u64,
    /// The same as a duration since the pipeline began.
    pub pts: Duration,
    /// Samples per channel (480 or 960).
    pub samples: u32,
    /// Sequence number, 0, 1, 2, ... per pipeline.
    pub sequence: u64,
}

impl AudioFrame {
    /// Length in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        u64::from(self.samples) * 1_000_000_000 / 48_000
    }
}

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub struct AudioHub {
    tx: broadcast::Sender<Arc<AudioFrame>>,
}

/// Frames a subscriber may fall behind by before losing some: 50 frames,
/// 0.5 to 1 s of audio.
pub const DEFAULT_HUB_CAPACITY: usize = 50;

/// Most audio a live subscriber leaves waiting behind the frame it takes:
/// more than this is skipped (counted as lost). A few frames, so that a
/// briefly late task loses nothing, while a backlog cannot become latency.
pub const LIVE_MAX_QUEUED: Duration = Duration::from_millis(100);

impl Default for AudioHub {
    fn default() -> Self {
        Self::new(DEFAULT_HUB_CAPACITY)
    }
}

impl AudioHub {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    /// Publishes a frame; returns how many subscribers will see it. Never
    /// blocks, also with no subscribers.
    pub fn publish(&self, frame: AudioFrame) -> usize {
        self.tx.send(Arc::new(frame)).unwrap_or(0)
    }

    pub fn subscribe(&self) -> AudioSubscriber {
        AudioSubscriber {
            rx: self.tx.subscribe(),
            lost: 0,
            closed: false,
            max_queued_ns: None,
            joined: false,
        }
    }

    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// One viewer's receiving side.
#[derive(Debug)]
pub struct AudioSubscriber {
    rx: broadcast::Receiver<Arc<AudioFrame>>,
    lost: u64,
    closed: bool,
    /// Live: the most audio left queued behind a frame taken.
    max_queued_ns: Option<u64>,
    /// Whether a frame was taken yet (a live subscriber joins at the newest).
    joined: bool,
}

impl AudioSubscriber {
    /// Makes this a live subscriber (a viewer's): the first frame taken is
    /// the newest one queued, and later a frame with more than `max_queued`
    /// of audio queued behind it is skipped, so at most that much waits.
    pub fn live(mut self, max_queued: Duration) -> Self {
        self.max_queued_ns = Some(u64::try_from(max_queued.as_nanos()).unwrap_or(u64::MAX));
        self
    }

    /// Audio waiting to be taken, counting `frame` as its length.
    fn queued_ns(&self, frame: &AudioFrame) -> u64 {
        (self.rx.len() as u64).saturating_mul(frame.duration_ns())
    }

    /// Whether `frame` (just taken) is to be skipped as stale.
    fn stale(&mut self, frame: &AudioFrame) -> bool {
        let Some(max) = self.max_queued_ns else {
            return false;
        };
        let limit = if self.joined { max } else { 0 };
        if self.queued_ns(frame) > limit {
            self.lost += 1;
            return true;
        }
        self.joined = true;
        false
    }

    /// The next frame, skipping over frames lost to lag (and, when live,
    /// stale ones); None once the stream is gone.
    pub async fn recv(&mut self) -> Option<Arc<AudioFrame>> {
        loop {
            match self.rx.recv().await {
                Ok(f) if self.stale(&f) => {}
                Ok(f) => return Some(f),
                Err(broadcast::error::RecvError::Lagged(n)) => self.lost += n,
                Err(broadcast::error::RecvError::Closed) => {
                    self.closed = true;
                    return None;
                }
            }
        }
    }

    /// Like [`Self::recv`] without waiting: None when no frame is ready or
    /// the stream is gone ([`Self::is_closed`] tells which).
    pub fn try_recv(&mut self) -> Option<Arc<AudioFrame>> {
        loop {
            match self.rx.try_recv() {
                Ok(f) if self.stale(&f) => {}
                Ok(f) => return Some(f),
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.lost += n,
                Err(broadcast::error::TryRecvError::Empty) => return None,
                Err(broadcast::error::TryRecvError::Closed) => {
                    self.closed = true;
                    return None;
                }
            }
        }
    }

    /// Whether the producer is gone (seen by the last receive).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Frames this subscriber missed because it fell behind (or, when
    /// live, skipped as stale).
    pub fn lost_frames(&self) -> u64 {
        self.lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(sequence: u64) -> AudioFrame {
        AudioFrame {
            data: vec![sequence as u8],
            timestamp: sequence * 960,
            pts: Duration::from_millis(sequence * 20),
            samples: 960,
            sequence,
        }
    }

    #[test]
    fn slow_subscriber_loses_oldest_and_producer_never_blocks() {
        let hub = AudioHub::new(4);
        let mut fast = hub.subscribe();
        let mut slow = hub.subscribe();
        for i in 0..10 {
            assert_eq!(hub.publish(frame(i)), 2);
            assert_eq!(fast.try_recv().unwrap().sequence, i);
            assert_eq!(fast.try_recv(), None);
        }
        // The slow one gets the newest 4 and knows it lost 6.
        let got: Vec<u64> = std::iter::from_fn(|| slow.try_recv())
            .map(|f| f.sequence)
            .collect();
        assert_eq!(got, vec![6, 7, 8, 9]);
        assert_eq!(slow.lost_frames(), 6);
        assert_eq!(fast.lost_frames(), 0);
        drop(slow);
        assert_eq!(hub.subscriber_count(), 1);
        assert_eq!(frame(0).duration_ns(), 20_000_000);
    }

    /// A viewer that subscribes while its connection is set up must not be
    /// sent what was published meanwhile: that burst would become its
    /// latency. Afterwards it never has more than LIVE_MAX_QUEUED waiting.
    #[test]
    fn a_live_subscriber_joins_at_the_newest_frame_and_never_queues_more_than_its_limit() {
        let hub = AudioHub::default();
        let mut live = hub.subscribe().live(LIVE_MAX_QUEUED);
        let mut all = hub.subscribe();
        // 40 frames (0.8 s) published before the viewer reads anything.
        for i in 0..40 {
            hub.publish(frame(i));
        }
        assert_eq!(live.try_recv().unwrap().sequence, 39, "joins at the newest");
        assert_eq!(live.lost_frames(), 39);
        assert_eq!(
            all.try_recv().unwrap().sequence,
            0,
            "a plain subscriber gets all"
        );
        // Later a stall: 20 frames (400 ms) pile up.
        for i in 40..60 {
            hub.publish(frame(i));
        }
        let limit = (LIVE_MAX_QUEUED.as_nanos() / 20_000_000) as u64; // 20 ms frames
        let got: Vec<u64> = std::iter::from_fn(|| live.try_recv())
            .map(|f| f.sequence)
            .collect();
        assert_eq!(got.first(), Some(&(59 - limit)), "{got:?}");
        assert_eq!(got.last(), Some(&59));
        assert_eq!(
            got.len() as u64,
            limit + 1,
            "at most {LIVE_MAX_QUEUED:?} waited behind the first"
        );
        // Steady flow: nothing is skipped.
        let lost = live.lost_frames();
        for i in 60..70 {
            hub.publish(frame(i));
            assert_eq!(live.try_recv().unwrap().sequence, i);
        }
        assert_eq!(live.lost_frames(), lost);
    }

    #[test]
    fn publish_without_subscribers_is_fine() {
        let hub = AudioHub::default();
        assert_eq!(hub.publish(frame(0)), 0);
        let mut late = hub.subscribe();
        // A late joiner starts at the next frame.
        assert_eq!(late.try_recv(), None);
        assert!(!late.is_closed());
        drop(hub);
        assert_eq!(late.try_recv(), None);
        assert!(late.is_closed());
    }
}

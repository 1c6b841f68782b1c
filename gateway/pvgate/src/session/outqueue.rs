//! What waits to be written to one viewer's WebSocket. Bounded: when the
//! socket falls behind, queued video is dropped and the stream skips to
//! the next keyframe (a decoder cannot continue after a gap), and the
//! oldest audio goes first (late sound is worse than a short gap). Sans-IO;
//! [`super::websocket`] wraps it in a lock and a wake-up.

use std::collections::VecDeque;

/// Video frames queued before the queue gives up on them (≈ 0.2 s at 30 fps).
pub const MAX_VIDEO_FRAMES: usize = 6;
/// Queued video bytes before the same (a few keyframes' worth at 1080p).
pub const MAX_VIDEO_BYTES: usize = 4 << 20;
/// Opus packets queued (≈ 0.2 s of 20 ms packets).
pub const MAX_AUDIO_PACKETS: usize = 10;
/// Text messages queued; past that, pongs and stats answers are dropped.
pub const MAX_TEXT: usize = 64;

/// One thing to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Text(String),
    Binary(Vec<u8>),
}

/// What [`OutQueue::push_video`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoPush {
    Queued,
    /// Dropped while waiting for a keyframe.
    Skipped,
    /// The queue was full: everything queued was dropped, and this frame
    /// too unless it is a keyframe. Ask the encoder for a keyframe.
    Overflow,
}

#[derive(Debug, Default)]
pub struct OutQueue {
    text: VecDeque<String>,
    audio: VecDeque<Vec<u8>>,
    video: VecDeque<Vec<u8>>,
    video_bytes: usize,
    awaiting_keyframe: bool,
    pub dropped_video: u64,
    pub dropped_audio: u64,
    pub dropped_text: u64,
    pub sent_bytes: u64,
}

impl OutQueue {
    #[cfg(test)]
    pub fn new() -> OutQueue {
        OutQueue::default()
    }

    /// A control message. `droppable` ones (pongs) go when the queue is
    /// full; others (errors, resolution changes) are always kept, and are
    /// rare because only the gateway decides to send them.
    pub fn push_text(&mut self, text: String, droppable: bool) -> bool {
        if droppable && self.text.len() >= MAX_TEXT {
            self.dropped_text += 1;
            return false;
        }
        self.text.push_back(text);
        true
    }

    pub fn push_audio(&mut self, frame: Vec<u8>) {
        while self.audio.len() >= MAX_AUDIO_PACKETS {
            self.audio.pop_front();
            self.dropped_audio += 1;
        }
        self.audio.push_back(frame);
    }

    pub fn push_video(&mut self, frame: Vec<u8>, keyframe: bool) -> VideoPush {
        if keyframe {
            self.awaiting_keyframe = false;
        } else if self.awaiting_keyframe {
            self.dropped_video += 1;
            return VideoPush::Skipped;
        }
        if self.video.len() >= MAX_VIDEO_FRAMES || self.video_bytes + frame.len() > MAX_VIDEO_BYTES
        {
            self.dropped_video += self.video.len() as u64;
            self.video.clear();
            self.video_bytes = 0;
            if !keyframe {
                self.dropped_video += 1;
                self.awaiting_keyframe = true;
                return VideoPush::Overflow;
            }
            self.video_bytes = frame.len();
            self.video.push_back(frame);
            return VideoPush::Overflow;
        }
        self.video_bytes += frame.len();
        self.video.push_back(frame);
        VideoPush::Queued
    }

    /// The next thing to write: control first (small, and the client's
    /// state depends on it), then audio (small, latency-sensitive), then video.
    pub fn pop(&mut self) -> Option<Outgoing> {
        let out = if let Some(t) = self.text.pop_front() {
            Outgoing::Text(t)
        } else if let Some(a) = self.audio.pop_front() {
            Outgoing::Binary(a)
        } else if let Some(v) = self.video.pop_front() {
            self.video_bytes -= v.len();
            Outgoing::Binary(v)
        } else {
            return None;
        };
        self.sent_bytes += match &out {
            Outgoing::Text(t) => t.len(),
            Outgoing::Binary(b) => b.len(),
        } as u64;
        Some(out)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.audio.is_empty() && self.video.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_socket_drops_video_until_the_next_keyframe() {
        let mut q = OutQueue::new();
        assert_eq!(q.push_video(vec![1; 10], true), VideoPush::Queued);
        for _ in 1..MAX_VIDEO_FRAMES {
            assert_eq!(q.push_video(vec![2; 10], false), VideoPush::Queued);
        }
        // Nobody wrote anything: the next frame overflows.
        assert_eq!(q.push_video(vec![3; 10], false), VideoPush::Overflow);
        assert!(q.pop().is_none(), "everything queued was dropped");
        assert_eq!(q.push_video(vec![4; 10], false), VideoPush::Skipped);
        assert_eq!(q.push_video(vec![5; 10], true), VideoPush::Queued);
        assert_eq!(q.pop(), Some(Outgoing::Binary(vec![5; 10])));
        assert_eq!(q.dropped_video, (MAX_VIDEO_FRAMES + 2) as u64);
    }

    #[test]
    fn a_keyframe_arriving_on_a_full_queue_replaces_it() {
        let mut q = OutQueue::new();
        q.push_video(vec![0; MAX_VIDEO_BYTES - 10], true);
        assert_eq!(q.push_video(vec![9; 20], true), VideoPush::Overflow);
        assert_eq!(q.pop(), Some(Outgoing::Binary(vec![9; 20])));
        assert!(q.is_empty());
    }

    #[test]
    fn old_audio_goes_first_and_control_comes_before_media() {
        let mut q = OutQueue::new();
        q.push_video(vec![7], true);
        for i in 0..(MAX_AUDIO_PACKETS as u8 + 3) {
            q.push_audio(vec![i]);
        }
        q.push_text("pong".into(), true);
        assert_eq!(q.pop(), Some(Outgoing::Text("pong".into())));
        assert_eq!(
            q.pop(),
            Some(Outgoing::Binary(vec![3])),
            "0..3 were dropped"
        );
        assert_eq!(q.dropped_audio, 3);
        for _ in 1..MAX_AUDIO_PACKETS {
            assert!(matches!(q.pop(), Some(Outgoing::Binary(_))));
        }
        assert_eq!(q.pop(), Some(Outgoing::Binary(vec![7])));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn droppable_text_is_bounded() {
        let mut q = OutQueue::new();
        for _ in 0..MAX_TEXT {
            assert!(q.push_text("pong".into(), true));
        }
        assert!(!q.push_text("pong".into(), true));
        assert!(q.push_text("error".into(), false), "errors are kept");
        assert_eq!(q.dropped_text, 1);
    }
}

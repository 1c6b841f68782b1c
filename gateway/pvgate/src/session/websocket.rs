//! The WebSocket transport: the same encoded video and Opus as WebRTC, as
//! binary frames on the session socket (PROTOCOL.md "Binary frames"); the
//! microphone comes back as kind 3.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pvgate_audio::AudioSubscriber;
use pvgate_backends::sound::StreamOutput;
use pvgate_media::Subscription;
use tokio::sync::Notify;

use super::frames::{self, Kind, FLAG_KEYFRAME, MAX_OPUS_PACKET};
use super::outbox::Outbox;
use super::outqueue::VideoPush;
use super::protocol::ServerMessage;

/// Called with the encoded size whenever it changes (the first frame too).
pub type OnResolution = Box<dyn Fn(u32, u32) + Send + Sync>;

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

/// Video from the shared encoder into the outbox until the stream ends.
/// `keyframe` is notified when the client asks for one.
pub async fn video_pump(
    mut sub: Subscription,
    outbox: Arc<Outbox>,
    keyframe: Arc<Notify>,
    on_resolution: OnResolution,
) {
    let mut size = None;
    loop {
        tokio::select! {
            frame = sub.recv() => {
                let Some(frame) = frame else {
                    outbox.send(&ServerMessage::error(
                        "the guest's display went away (the guest stopped or restarted); reconnect to watch it again",
                        true,
                    ));
                    outbox.close();
                    return;
                };
                if size != Some((frame.width, frame.height)) {
                    size = Some((frame.width, frame.height));
                    on_resolution(frame.width, frame.height);
                }
                let flags = if frame.keyframe { FLAG_KEYFRAME } else { 0 };
                let data = frames::encode(Kind::Video, flags, micros(frame.pts), &frame.data);
                if outbox.push_video(data, frame.keyframe) == VideoPush::Overflow {
                    // The socket fell behind: what is queued was dropped;
                    // the decoder needs a fresh start.
                    sub.request_keyframe();
                }
            }
            _ = keyframe.notified() => sub.request_keyframe(),
        }
    }
}

/// The guest's sound into the outbox until the stream ends.
pub async fn audio_pump(mut sub: AudioSubscriber, outbox: Arc<Outbox>) {
    while let Some(frame) = sub.recv().await {
        outbox.push_audio(frames::encode(
            Kind::Audio,
            0,
            micros(frame.pts),
            &frame.data,
        ));
    }
}

/// Where a viewer's microphone packets go (kind-3 frames or the WebRTC
/// audio track), with the checks both transports share.
pub struct Microphone {
    /// `None`: not allowed (role view, not asked, or no capture stream).
    pub capture: Option<Arc<StreamOutput>>,
    /// Set when the tenant's policy withdrew control mid-session: every
    /// packet is dropped from then on.
    revoked: AtomicBool,
    pub accepted: AtomicU64,
    pub dropped: AtomicU64,
}

impl Microphone {
    pub fn new(capture: Option<Arc<StreamOutput>>) -> Microphone {
        Microphone {
            capture,
            revoked: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Stop passing packets to the guest (for good: a microphone is only
    /// set up at the start of a session).
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Relaxed);
    }

    /// One Opus packet from the viewer. False if it was dropped.
    pub fn packet(&self, opus: &[u8]) -> bool {
        let ok = match &self.capture {
            _ if self.revoked.load(Ordering::Relaxed) => false,
            Some(c) if !opus.is_empty() && opus.len() <= MAX_OPUS_PACKET => {
                c.inject_capture(opus.to_vec())
            }
            _ => false,
        };
        let counter = if ok { &self.accepted } else { &self.dropped };
        counter.fetch_add(1, Ordering::Relaxed);
        ok
    }
}

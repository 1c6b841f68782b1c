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
    /// Set while the tenant's policy has withdrawn control mid-session:
    /// every packet is dropped until control comes back.
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

    /// Stop passing packets to the guest.
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Relaxed);
    }

    /// Pass packets again after [`Self::revoke`]. True when that brings
    /// the microphone back; false when this session never had one (it is
    /// only set up, and negotiated, at the start of a session).
    pub fn restore(&self) -> bool {
        self.revoked.store(false, Ordering::Relaxed);
        self.capture.is_some()
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

#[cfg(test)]
mod tests {
    use super::*;
    use pvgate_backends::sound::StreamKey;
    use pvgate_protocol::keys::StreamType;
    use pvgate_protocol::sndif_config::{PcmHw, StreamConfig};

    fn capture_output() -> Arc<StreamOutput> {
        StreamOutput::unregistered(
            StreamKey {
                domid: 1,
                devid: 0,
                stream: 0,
            },
            StreamConfig {
                index: 0,
                card_index: 0,
                path: "/test".into(),
                kind: StreamType::Capture,
                unique_id: None,
                pcm_hw: PcmHw::linux_default(),
            },
        )
    }

    /// Control withdrawn and given back mid-session: the microphone the
    /// session set up is silenced, then works again; a session without one
    /// is told so (reconnect), not promised a microphone.
    #[test]
    fn control_given_back_restores_the_sessions_microphone() {
        let mic = Microphone::new(Some(capture_output()));
        mic.revoke();
        assert!(!mic.packet(&[1, 2, 3]));
        assert!(mic.revoked.load(Ordering::Relaxed));
        assert!(mic.restore());
        assert!(!mic.revoked.load(Ordering::Relaxed));

        let none = Microphone::new(None);
        none.revoke();
        assert!(!none.restore());
        assert!(!none.packet(&[1, 2, 3]));
        assert_eq!(none.dropped.load(Ordering::Relaxed), 1);
    }
}

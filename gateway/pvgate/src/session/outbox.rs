//! The send side of one session's WebSocket: every task of the session
//! pushes into one bounded [`OutQueue`]; one writer task drains it into the
//! socket, so a slow socket slows nothing but that writer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::stream::SplitSink;
use futures::SinkExt;
use tokio::sync::Notify;

use super::outqueue::{OutQueue, Outgoing, VideoPush};
use super::protocol::ServerMessage;

/// A write that takes longer than this means the viewer is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Default)]
pub struct Outbox {
    queue: Mutex<OutQueue>,
    wake: Notify,
    closing: AtomicBool,
    /// Set by the writer when the socket is gone.
    broken: AtomicBool,
}

impl Outbox {
    pub fn new() -> Arc<Outbox> {
        Arc::new(Outbox::default())
    }

    fn queue(&self) -> MutexGuard<'_, OutQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn send(&self, msg: &ServerMessage) {
        self.queue().push_text(msg.to_json(), false);
        self.wake.notify_one();
    }

    /// A reply the client provoked (pong): dropped if the client does not
    /// read its socket, so it cannot make us queue without bound.
    pub fn send_droppable(&self, msg: &ServerMessage) {
        self.queue().push_text(msg.to_json(), true);
        self.wake.notify_one();
    }

    pub fn push_video(&self, frame: Vec<u8>, keyframe: bool) -> VideoPush {
        let r = self.queue().push_video(frame, keyframe);
        self.wake.notify_one();
        r
    }

    pub fn push_audio(&self, frame: Vec<u8>) {
        self.queue().push_audio(frame);
        self.wake.notify_one();
    }

    /// Video frames dropped so far because the socket fell behind.
    pub fn dropped_video(&self) -> u64 {
        self.queue().dropped_video
    }

    /// Bytes written so far (for the send-rate figure).
    pub fn sent_bytes(&self) -> u64 {
        self.queue().sent_bytes
    }

    /// Send what is queued (errors included), then close the socket.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// The writer task: until closed (and drained) or the socket fails.
    pub async fn write_loop(self: Arc<Self>, mut sink: SplitSink<WebSocket, Message>) {
        loop {
            let next = self.queue().pop();
            match next {
                Some(out) => {
                    let msg = match out {
                        Outgoing::Text(t) => Message::Text(t.into()),
                        Outgoing::Binary(b) => Message::Binary(b.into()),
                    };
                    match tokio::time::timeout(WRITE_TIMEOUT, sink.send(msg)).await {
                        Ok(Ok(())) => {}
                        _ => break,
                    }
                }
                None if self.closing.load(Ordering::Acquire) => {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        sink.send(Message::Close(Some(CloseFrame {
                            code: axum::extract::ws::close_code::NORMAL,
                            reason: "".into(),
                        }))),
                    )
                    .await;
                    break;
                }
                None => self.wake.notified().await,
            }
        }
        self.broken.store(true, Ordering::Release);
        let _ = sink.close().await;
    }
}

//! Shared encoders: one per (connector, parameter set), fanned out to every
//! subscriber that wants those parameters.
//!
//! Each encoder runs on its own OS thread (encoding is CPU work measured in
//! milliseconds; it must not sit on the async runtime) and reads frames from
//! a latest-wins [`LatestSlot`], so the flip path never waits for it. Output
//! goes through a tokio broadcast channel: a subscriber that falls behind
//! loses frames instead of holding the encoder back, and then asks for a
//! keyframe and skips to it (a decoder cannot continue after a gap). A new
//! subscriber asks for a keyframe on joining. The encoder stops when its last
//! subscriber leaves.

use crate::encoder::{new_encoder, EncodeError, EncodedFrame, EncoderParams, VideoEncoder};
pub use crate::pacing::FrameUpdate;
use crate::pacing::{Decision, Offered, Pacer};
use crate::slot::{LatestSlot, Take};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Which guest screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectorId {
    pub domid: u32,
    pub device: u32,
    pub connector: u32,
}

/// How many encoded frames a subscriber may fall behind before it loses
/// some (about a second at 30 fps).
const BROADCAST_CAPACITY: usize = 32;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct Counters {
    unchanged: AtomicU64,
    paced_out: AtomicU64,
    encoded: AtomicU64,
    keyframes: AtomicU64,
    refreshes: AtomicU64,
    bytes: AtomicU64,
    encode_us_total: AtomicU64,
    encode_us_max: AtomicU64,
    errors: AtomicU64,
    lagged_subscribers: AtomicU64,
}

/// A snapshot of one shared encoder's counters (for /metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderStats {
    pub connector: ConnectorId,
    pub params: EncoderParams,
    pub subscribers: usize,
    /// Updates published to this encoder.
    pub frames_in: u64,
    /// Updates without damage (never encoded).
    pub unchanged: u64,
    /// Frames replaced by newer ones before they were encoded (slot and
    /// frame-rate limit together).
    pub dropped: u64,
    pub encoded: u64,
    pub keyframes: u64,
    pub refreshes: u64,
    pub bytes: u64,
    pub encode_time_total: Duration,
    pub encode_time_max: Duration,
    pub errors: u64,
    /// Times a subscriber fell behind and lost frames.
    pub lagged_subscribers: u64,
}

struct SharedEncoder {
    connector: ConnectorId,
    params: EncoderParams,
    input: LatestSlot<FrameUpdate>,
    keyframe_wanted: AtomicBool,
    /// Taken (dropped) when the encoder thread ends, so that subscribers'
    /// receivers see the end of the stream even while they keep this struct
    /// alive.
    output: Mutex<Option<broadcast::Sender<Arc<EncodedFrame>>>>,
    counters: Counters,
    /// Guarded by the connector's encoder list lock.
    subscribers: AtomicU64,
}

impl SharedEncoder {
    fn request_keyframe(&self) {
        self.keyframe_wanted.store(true, Ordering::Release);
        self.input.wake();
    }

    fn stats(&self) -> EncoderStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EncoderStats {
            connector: self.connector,
            params: self.params.clone(),
            subscribers: get(&self.subscribers) as usize,
            frames_in: self.input.published(),
            unchanged: get(&c.unchanged),
            dropped: self.input.dropped() + get(&c.paced_out),
            encoded: get(&c.encoded),
            keyframes: get(&c.keyframes),
            refreshes: get(&c.refreshes),
            bytes: get(&c.bytes),
            encode_time_total: Duration::from_micros(get(&c.encode_us_total)),
            encode_time_max: Duration::from_micros(get(&c.encode_us_max)),
            errors: get(&c.errors),
            lagged_subscribers: get(&c.lagged_subscribers),
        }
    }
}

#[derive(Default)]
struct Connector {
    latest: Mutex<Option<FrameUpdate>>,
    encoders: Mutex<Vec<Arc<SharedEncoder>>>,
}

/// The flip path's handle for one connector: publishing never blocks on an
/// encoder.
#[derive(Clone)]
pub struct ConnectorFeed {
    connector: Arc<Connector>,
}

impl ConnectorFeed {
    /// Hand a new frame to every encoder of this connector.
    pub fn publish(&self, update: FrameUpdate) {
        let encoders: Vec<Arc<SharedEncoder>> = lock(&self.connector.encoders).clone();
        for enc in &encoders {
            enc.input.publish(update.clone());
        }
        *lock(&self.connector.latest) = Some(update);
    }
}

/// All shared encoders of the gateway.
#[derive(Clone, Default)]
pub struct EncoderHub {
    connectors: Arc<Mutex<HashMap<ConnectorId, Arc<Connector>>>>,
}

impl EncoderHub {
    pub fn new() -> EncoderHub {
        EncoderHub::default()
    }

    fn connector(&self, id: ConnectorId) -> Arc<Connector> {
        lock(&self.connectors).entry(id).or_default().clone()
    }

    /// The flip path's publishing handle for `id`.
    pub fn feed(&self, id: ConnectorId) -> ConnectorFeed {
        ConnectorFeed {
            connector: self.connector(id),
        }
    }

    /// Shorthand for `feed(id).publish(update)`.
    pub fn publish(&self, id: ConnectorId, update: FrameUpdate) {
        self.feed(id).publish(update);
    }

    /// Subscribe to `id`'s video with `params`, sharing an encoder with
    /// everyone who asked for the same parameters. The first frame received
    /// is a keyframe.
    pub fn subscribe(
        &self,
        id: ConnectorId,
        params: EncoderParams,
    ) -> Result<Subscription, EncodeError> {
        let connector = self.connector(id);
        let mut encoders = lock(&connector.encoders);
        let shared = match encoders.iter().find(|e| e.params == params) {
            Some(e) => e.clone(),
            None => {
                let encoder = new_encoder(params.clone())?;
                let shared = Arc::new(SharedEncoder {
                    connector: id,
                    params,
                    input: LatestSlot::new(),
                    keyframe_wanted: AtomicBool::new(false),
                    output: Mutex::new(Some(broadcast::channel(BROADCAST_CAPACITY).0)),
                    counters: Counters::default(),
                    subscribers: AtomicU64::new(0),
                });
                // Start from the current picture so a static screen is seen.
                if let Some(latest) = lock(&connector.latest).clone() {
                    shared.input.publish(FrameUpdate {
                        damaged: true,
                        ..latest
                    });
                }
                spawn_encoder_thread(shared.clone(), encoder)?;
                encoders.push(shared.clone());
                shared
            }
        };
        // Subscribe before asking for the keyframe so it cannot be missed.
        let rx = match lock(&shared.output).as_ref() {
            Some(tx) => tx.subscribe(),
            None => {
                return Err(EncodeError::Codec {
                    codec: shared.params.codec,
                    what: "subscribing",
                    detail: "the encoder has stopped".into(),
                })
            }
        };
        shared.subscribers.fetch_add(1, Ordering::Relaxed);
        drop(encoders);
        shared.request_keyframe();
        Ok(Subscription {
            rx,
            shared,
            connector,
            awaiting_keyframe: true,
        })
    }

    /// Counters of every running encoder.
    pub fn stats(&self) -> Vec<EncoderStats> {
        let connectors: Vec<Arc<Connector>> = lock(&self.connectors).values().cloned().collect();
        let mut out: Vec<EncoderStats> = connectors
            .iter()
            .flat_map(|c| {
                lock(&c.encoders)
                    .iter()
                    .map(|e| e.stats())
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by_key(|s| s.connector);
        out
    }

    /// Number of running encoders.
    pub fn encoder_count(&self) -> usize {
        let connectors: Vec<Arc<Connector>> = lock(&self.connectors).values().cloned().collect();
        connectors.iter().map(|c| lock(&c.encoders).len()).sum()
    }

    /// Forget a connector (its guest went away): its encoders stop once
    /// their subscribers see the end of the stream.
    pub fn remove_connector(&self, id: ConnectorId) {
        if let Some(c) = lock(&self.connectors).remove(&id) {
            for e in lock(&c.encoders).drain(..) {
                e.input.close();
            }
        }
    }
}

fn spawn_encoder_thread(
    shared: Arc<SharedEncoder>,
    encoder: Box<dyn VideoEncoder>,
) -> Result<(), EncodeError> {
    let name = format!(
        "enc-{}.{}.{}-{}",
        shared.connector.domid,
        shared.connector.device,
        shared.connector.connector,
        shared.params.codec
    );
    let codec = shared.params.codec;
    std::thread::Builder::new()
        .name(name)
        .spawn(move || run_encoder(shared, encoder))
        .map(|_| ())
        .map_err(|e| EncodeError::Codec {
            codec,
            what: "spawning the encoder thread",
            detail: e.to_string(),
        })
}

/// Drives one encoder: takes frames from the slot, asks the pacer what to
/// do, encodes, broadcasts. Returns when the slot is closed.
pub struct EncodeLoop {
    encoder: Box<dyn VideoEncoder>,
    pacer: Pacer,
    start: Option<Instant>,
    last_pts: Option<Duration>,
}

impl EncodeLoop {
    pub fn new(encoder: Box<dyn VideoEncoder>) -> EncodeLoop {
        let params = encoder.params().clone();
        EncodeLoop {
            pacer: Pacer::for_params(&params),
            encoder,
            start: None,
            last_pts: None,
        }
    }

    pub fn offer(&mut self, update: FrameUpdate) -> Offered {
        self.start.get_or_insert(update.captured);
        self.pacer.offer(update)
    }

    pub fn request_keyframe(&mut self) {
        self.pacer.request_keyframe();
    }

    /// Encode if it is time. Returns what was encoded (if anything) and
    /// when to call again at the latest.
    pub fn poll(
        &mut self,
        now: Instant,
    ) -> (Option<Result<EncodedFrame, EncodeError>>, Option<Instant>) {
        match self.pacer.poll(now) {
            Decision::Wait(until) => (None, until),
            Decision::Encode {
                frame,
                captured,
                keyframe,
                refresh,
            } => {
                let start = *self.start.get_or_insert(now);
                let at = captured.unwrap_or(now).saturating_duration_since(start);
                // Keep timestamps increasing by at least a frame interval so
                // the encoder's own rate check never drops a paced frame.
                let pts = match self.last_pts {
                    Some(last) => at.max(last + self.encoder.params().frame_interval()),
                    None => at,
                };
                self.last_pts = Some(pts);
                let result = if refresh {
                    self.encoder.encode_refresh(&frame, pts)
                } else {
                    self.encoder.encode(&frame, pts, keyframe)
                };
                if let Ok(Some(out)) = &result {
                    let bitrate = self.encoder.params().bitrate_bps;
                    self.pacer.spent(now, out.data.len(), bitrate);
                }
                (result.transpose(), Some(now))
            }
        }
    }
}

/// Ends the stream for subscribers when the encoder thread exits, however
/// it exits (a panic included).
struct CloseOutputOnExit(Arc<SharedEncoder>);

impl Drop for CloseOutputOnExit {
    fn drop(&mut self) {
        lock(&self.0.output).take();
        self.0.input.close();
    }
}

fn run_encoder(shared: Arc<SharedEncoder>, encoder: Box<dyn VideoEncoder>) {
    let _close = CloseOutputOnExit(shared.clone());
    let Some(output) = lock(&shared.output).clone() else {
        return;
    };
    let mut lp = EncodeLoop::new(encoder);
    let c = &shared.counters;
    loop {
        if shared.keyframe_wanted.swap(false, Ordering::AcqRel) {
            lp.request_keyframe();
        }
        let (out, deadline) = lp.poll(Instant::now());
        if let Some(result) = out {
            match result {
                Ok(frame) => {
                    c.encoded.fetch_add(1, Ordering::Relaxed);
                    c.keyframes
                        .fetch_add(frame.keyframe as u64, Ordering::Relaxed);
                    c.refreshes
                        .fetch_add(frame.refresh as u64, Ordering::Relaxed);
                    c.bytes
                        .fetch_add(frame.data.len() as u64, Ordering::Relaxed);
                    let us = frame.encode_time.as_micros().min(u64::MAX as u128) as u64;
                    c.encode_us_total.fetch_add(us, Ordering::Relaxed);
                    c.encode_us_max.fetch_max(us, Ordering::Relaxed);
                    // No receivers is fine: the last one may be leaving.
                    let _ = output.send(Arc::new(frame));
                }
                Err(e) => {
                    c.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        connector = ?shared.connector,
                        codec = %shared.params.codec,
                        error = %e,
                        "encoding a frame failed"
                    );
                }
            }
            continue;
        }
        match shared.input.take_blocking(deadline) {
            Take::Value(update) => match lp.offer(update) {
                Offered::Unchanged => {
                    c.unchanged.fetch_add(1, Ordering::Relaxed);
                }
                Offered::ReplacedPending => {
                    c.paced_out.fetch_add(1, Ordering::Relaxed);
                }
                Offered::Pending => {}
            },
            Take::TimedOut | Take::Woken => {}
            Take::Closed => break,
        }
    }
    tracing::debug!(connector = ?shared.connector, codec = %shared.params.codec, "encoder stopped");
    // `output` and then the guard drop here: the last sender goes away.
}

/// One viewer's stream from a shared encoder. Dropping it unsubscribes.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<EncodedFrame>>,
    shared: Arc<SharedEncoder>,
    connector: Arc<Connector>,
    /// Skip frames until a keyframe: set on joining and after losing frames.
    awaiting_keyframe: bool,
}

/// Why [`Subscription::try_recv`] returned nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum RecvError {
    Empty,
    Closed,
}

impl Subscription {
    pub fn params(&self) -> &EncoderParams {
        &self.shared.params
    }

    /// Ask the shared encoder for a keyframe (e.g. on a viewer's PLI).
    pub fn request_keyframe(&self) {
        self.shared.request_keyframe();
    }

    /// Counters of the encoder this subscription reads.
    pub fn stats(&self) -> EncoderStats {
        self.shared.stats()
    }

    /// Whether two subscriptions read the same encoder.
    pub fn shares_encoder_with(&self, other: &Subscription) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    fn accept(
        &mut self,
        got: Result<Arc<EncodedFrame>, broadcast::error::RecvError>,
    ) -> Option<Result<Arc<EncodedFrame>, RecvError>> {
        match got {
            Ok(frame) => {
                if self.awaiting_keyframe && !frame.keyframe {
                    return None;
                }
                self.awaiting_keyframe = false;
                Some(Ok(frame))
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                self.shared
                    .counters
                    .lagged_subscribers
                    .fetch_add(1, Ordering::Relaxed);
                self.awaiting_keyframe = true;
                self.shared.request_keyframe();
                None
            }
            Err(broadcast::error::RecvError::Closed) => Some(Err(RecvError::Closed)),
        }
    }

    /// The next frame this viewer can decode; `None` when the stream ended.
    pub async fn recv(&mut self) -> Option<Arc<EncodedFrame>> {
        loop {
            let got = self.rx.recv().await;
            if let Some(r) = self.accept(got) {
                return r.ok();
            }
        }
    }

    /// Like [`Self::recv`] without waiting.
    pub fn try_recv(&mut self) -> Result<Arc<EncodedFrame>, RecvError> {
        loop {
            let got = match self.rx.try_recv() {
                Ok(f) => Ok(f),
                Err(broadcast::error::TryRecvError::Empty) => return Err(RecvError::Empty),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    Err(broadcast::error::RecvError::Lagged(n))
                }
                Err(broadcast::error::TryRecvError::Closed) => {
                    Err(broadcast::error::RecvError::Closed)
                }
            };
            if let Some(r) = self.accept(got) {
                return r;
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut encoders = lock(&self.connector.encoders);
        if self.shared.subscribers.fetch_sub(1, Ordering::Relaxed) == 1 {
            encoders.retain(|e| !Arc::ptr_eq(e, &self.shared));
            // The encoder thread sees the closed slot and exits.
            self.shared.input.close();
        }
    }
}

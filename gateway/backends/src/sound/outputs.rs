//! What the sound backend offers the browser layer: per stream, the Opus
//! fan-out to attach a track to, an injector for a viewer's microphone,
//! and counters. Registered when a device connects, removed when it
//! disconnects. Also keeps the per-guest budgets (streams, mapped pages),
//! since it is the one thing every device of a guest shares.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pvgate_audio::{AudioHub, AudioStats, AudioSubscriber, SharedAudioStats};
use pvgate_platform::DomId;
use pvgate_protocol::keys::StreamType;
use pvgate_protocol::sndif::PcmFormat;
use pvgate_protocol::sndif_config::StreamConfig;
use tokio::sync::{mpsc, watch};

/// (guest, vsnd devid, card-wide stream index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamKey {
    pub domid: DomId,
    pub devid: u32,
    pub stream: u32,
}

impl std::fmt::Display for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dom{} vsnd/{} stream {}",
            self.domid, self.devid, self.stream
        )
    }
}

/// What the guest opened the stream with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenInfo {
    pub format: PcmFormat,
    pub rate: u32,
    pub channels: u32,
    pub buffer_sz: u32,
    pub period_sz: u32,
}

/// Opus packets a viewer's microphone may queue before the stream takes
/// them (about a second of 20 ms packets); beyond that they are dropped.
const CAPTURE_QUEUE: usize = 50;

/// One stream, as the browser layer sees it.
#[derive(Debug)]
pub struct StreamOutput {
    pub key: StreamKey,
    pub direction: StreamType,
    /// The stream's xenstore configuration (unique-id, ranges).
    pub config: StreamConfig,
    hub: AudioHub,
    capture_tx: mpsc::Sender<Vec<u8>>,
    stats: SharedAudioStats,
    open: Mutex<Option<OpenInfo>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StreamOutput {
    /// Opus frames of a playback stream for a viewer: live (joins at the
    /// newest frame, never leaves more than [`pvgate_audio::hub::LIVE_MAX_QUEUED`]
    /// waiting; see [`AudioSubscriber::live`]). Survives CLOSE/OPEN; ends
    /// when the device disconnects.
    pub fn subscribe(&self) -> AudioSubscriber {
        self.hub
            .subscribe()
            .live(pvgate_audio::hub::LIVE_MAX_QUEUED)
    }

    /// Every Opus frame from the next one published, however late it is
    /// taken (for tests and tools that decode the whole stream).
    pub fn subscribe_all(&self) -> AudioSubscriber {
        self.hub.subscribe()
    }

    /// A viewer's microphone: one Opus packet for a capture stream. False
    /// if it was dropped (not a capture stream, queue full, stream gone).
    pub fn inject_capture(&self, packet: Vec<u8>) -> bool {
        self.direction == StreamType::Capture && self.capture_tx.try_send(packet).is_ok()
    }

    /// Counters: underruns, CUR_POS lag, frames encoded, capture silence.
    pub fn stats(&self) -> AudioStats {
        self.stats.load()
    }

    /// The parameters of the current OPEN, if the stream is open.
    pub fn open_info(&self) -> Option<OpenInfo> {
        *lock(&self.open)
    }

    /// An output that no registry knows of, for driving a
    /// [`super::stream::StreamCore`] without a device (benches, tools).
    pub fn unregistered(key: StreamKey, config: StreamConfig) -> Arc<StreamOutput> {
        let (capture_tx, _) = mpsc::channel(1);
        Arc::new(StreamOutput {
            key,
            direction: config.kind,
            config,
            hub: AudioHub::default(),
            capture_tx,
            stats: SharedAudioStats::new(),
            open: Mutex::new(None),
        })
    }

    pub(crate) fn hub(&self) -> &AudioHub {
        &self.hub
    }

    pub(crate) fn shared_stats(&self) -> &SharedAudioStats {
        &self.stats
    }

    pub(crate) fn set_open(&self, info: Option<OpenInfo>) {
        *lock(&self.open) = info;
    }
}

#[derive(Default)]
struct Inner {
    streams: BTreeMap<StreamKey, Arc<StreamOutput>>,
    pages: HashMap<DomId, usize>,
}

/// The registry, shared by every sound device of the gateway.
#[derive(Clone)]
pub struct SoundOutputs {
    inner: Arc<Mutex<Inner>>,
    /// Bumped on every registration change, for waiters.
    generation: Arc<watch::Sender<u64>>,
}

impl Default for SoundOutputs {
    fn default() -> Self {
        SoundOutputs {
            inner: Arc::default(),
            generation: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl std::fmt::Debug for SoundOutputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoundOutputs")
            .field(
                "streams",
                &lock(&self.inner).streams.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A per-guest cap was reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("guest {domid}: {what} would exceed its limit ({in_use} in use + {asked} > {limit})")]
pub struct BudgetExceeded {
    pub domid: DomId,
    pub what: &'static str,
    pub in_use: usize,
    pub asked: usize,
    pub limit: usize,
}

/// Buffer pages held against a guest's budget; given back on drop.
#[derive(Debug)]
pub struct PageReservation {
    outputs: SoundOutputs,
    domid: DomId,
    pages: usize,
}

impl Drop for PageReservation {
    fn drop(&mut self) {
        let mut inner = lock(&self.outputs.inner);
        if let Some(n) = inner.pages.get_mut(&self.domid) {
            *n = n.saturating_sub(self.pages);
        }
    }
}

/// The capture side of a registered stream, for its serving task.
pub(crate) struct Registered {
    pub output: Arc<StreamOutput>,
    pub capture_rx: mpsc::Receiver<Vec<u8>>,
}

impl SoundOutputs {
    pub fn new() -> SoundOutputs {
        SoundOutputs::default()
    }

    pub fn get(&self, key: StreamKey) -> Option<Arc<StreamOutput>> {
        lock(&self.inner).streams.get(&key).cloned()
    }

    /// Every registered stream, in key order.
    pub fn list(&self) -> Vec<Arc<StreamOutput>> {
        lock(&self.inner).streams.values().cloned().collect()
    }

    /// Waits until `key` is registered (e.g. a viewer arriving before the
    /// guest's driver connects).
    pub async fn wait_for(&self, key: StreamKey, timeout: Duration) -> Option<Arc<StreamOutput>> {
        let mut rx = self.generation.subscribe();
        tokio::time::timeout(timeout, async {
            loop {
                if let Some(o) = self.get(key) {
                    return Some(o);
                }
                rx.changed().await.ok()?;
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Registers the streams of one device at once, or none if the guest
    /// would exceed `max_streams`.
    pub(crate) fn register(
        &self,
        streams: Vec<(StreamKey, StreamConfig)>,
        max_streams: usize,
    ) -> Result<Vec<Registered>, BudgetExceeded> {
        let mut inner = lock(&self.inner);
        let Some(domid) = streams.first().map(|(k, _)| k.domid) else {
            return Ok(Vec::new());
        };
        let in_use = inner.streams.keys().filter(|k| k.domid == domid).count();
        if in_use + streams.len() > max_streams {
            return Err(BudgetExceeded {
                domid,
                what: "sound streams",
                in_use,
                asked: streams.len(),
                limit: max_streams,
            });
        }
        let mut out = Vec::new();
        for (key, config) in streams {
            let (capture_tx, capture_rx) = mpsc::channel(CAPTURE_QUEUE);
            let output = Arc::new(StreamOutput {
                key,
                direction: config.kind,
                config,
                hub: AudioHub::default(),
                capture_tx,
                stats: SharedAudioStats::new(),
                open: Mutex::new(None),
            });
            inner.streams.insert(key, output.clone());
            out.push(Registered { output, capture_rx });
        }
        drop(inner);
        self.generation.send_modify(|g| *g += 1);
        Ok(out)
    }

    /// Removes every stream of a device.
    pub(crate) fn remove_device(&self, domid: DomId, devid: u32) {
        lock(&self.inner)
            .streams
            .retain(|k, _| !(k.domid == domid && k.devid == devid));
        self.generation.send_modify(|g| *g += 1);
    }

    /// Reserves `pages` buffer pages for `domid`, within `limit`.
    pub(crate) fn reserve_pages(
        &self,
        domid: DomId,
        pages: usize,
        limit: usize,
    ) -> Result<PageReservation, BudgetExceeded> {
        let mut inner = lock(&self.inner);
        let in_use = inner.pages.get(&domid).copied().unwrap_or(0);
        if in_use.saturating_add(pages) > limit {
            return Err(BudgetExceeded {
                domid,
                what: "mapped sound buffer pages",
                in_use,
                asked: pages,
                limit,
            });
        }
        inner.pages.insert(domid, in_use + pages);
        Ok(PageReservation {
            outputs: self.clone(),
            domid,
            pages,
        })
    }

    /// Buffer pages `domid` has mapped now.
    pub fn pages_in_use(&self, domid: DomId) -> usize {
        lock(&self.inner).pages.get(&domid).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvgate_protocol::sndif_config::PcmHw;

    fn cfg(kind: StreamType) -> StreamConfig {
        StreamConfig {
            index: 0,
            card_index: 0,
            path: "/x".into(),
            kind,
            unique_id: None,
            pcm_hw: PcmHw::linux_default(),
        }
    }

    fn key(domid: DomId, devid: u32, stream: u32) -> StreamKey {
        StreamKey {
            domid,
            devid,
            stream,
        }
    }

    #[test]
    fn streams_per_guest_are_capped_across_devices() {
        let o = SoundOutputs::new();
        o.register(vec![(key(1, 0, 0), cfg(StreamType::Playback))], 2)
            .unwrap();
        let e = o
            .register(
                vec![
                    (key(1, 1, 0), cfg(StreamType::Playback)),
                    (key(1, 1, 1), cfg(StreamType::Capture)),
                ],
                2,
            )
            .err()
            .unwrap();
        assert_eq!((e.in_use, e.asked, e.limit), (1, 2, 2));
        assert!(o.get(key(1, 1, 0)).is_none(), "all or nothing");
        // Another guest is not affected.
        o.register(vec![(key(2, 0, 0), cfg(StreamType::Playback))], 2)
            .unwrap();
        o.remove_device(1, 0);
        assert!(o.get(key(1, 0, 0)).is_none());
        assert!(o.get(key(2, 0, 0)).is_some());
    }

    #[test]
    fn pages_are_given_back_on_drop() {
        let o = SoundOutputs::new();
        let a = o.reserve_pages(3, 10, 16).unwrap();
        assert!(o.reserve_pages(3, 7, 16).is_err());
        assert!(o.reserve_pages(4, 16, 16).is_ok(), "per guest");
        drop(a);
        assert_eq!(o.pages_in_use(3), 0);
        assert!(o.reserve_pages(3, 16, 16).is_ok());
    }

    #[test]
    fn only_capture_streams_take_microphone_packets() {
        let o = SoundOutputs::new();
        let mut r = o
            .register(
                vec![
                    (key(1, 0, 0), cfg(StreamType::Playback)),
                    (key(1, 0, 1), cfg(StreamType::Capture)),
                ],
                8,
            )
            .unwrap();
        assert!(!o.get(key(1, 0, 0)).unwrap().inject_capture(vec![1]));
        assert!(o.get(key(1, 0, 1)).unwrap().inject_capture(vec![2]));
        assert_eq!(r[1].capture_rx.try_recv().unwrap(), vec![2]);
    }
}

//! What the HTTP layer sees of every guest screen: one entry per connector
//! of every connected display device, shared by all display backends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use pvgate_media::hub::ConnectorId;
use pvgate_media::SharedFrame;
use pvgate_platform::DomId;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// (guest, device, connector).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutputKey {
    pub domid: DomId,
    pub devid: u32,
    pub connector: u32,
}

impl OutputKey {
    /// The encoder hub's name for the same connector.
    pub fn hub_id(&self) -> ConnectorId {
        ConnectorId {
            domid: u32::from(self.domid),
            device: self.devid,
            connector: self.connector,
        }
    }
}

/// Counters of one connector's flip path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlipStats {
    /// PG_FLIPs answered.
    pub flips: u64,
    /// Flips copied into the gateway's frame.
    pub copies: u64,
    /// Copies that found nothing changed.
    pub unchanged: u64,
    pub copy_time_last: Duration,
    pub copy_time_max: Duration,
    pub copy_time_total: Duration,
    /// Bytes written into the gateway's frames by all copies: changed tiles,
    /// the tiles a recycled frame caught up on, whole frames when none was
    /// free. Proportional to damage, not to flips × screen size.
    pub bytes_copied: u64,
    /// The same, for the last copy only.
    pub bytes_copied_last: u64,
    /// EVT_PG_FLIPs dropped because the guest's event page was full (it
    /// stopped reading events); the flips themselves were answered.
    pub events_dropped: u64,
    /// When the guest last flipped.
    pub last_flip: Option<SystemTime>,
}

/// One guest screen.
pub struct ConnectorOutput {
    pub key: OutputKey,
    /// From the connector's `resolution` key.
    pub resolution: (u32, u32),
    enabled: AtomicBool,
    latest: Mutex<Option<SharedFrame>>,
    flips: AtomicU64,
    copies: AtomicU64,
    unchanged: AtomicU64,
    copy_us_last: AtomicU64,
    copy_us_max: AtomicU64,
    copy_us_total: AtomicU64,
    bytes_copied: AtomicU64,
    bytes_copied_last: AtomicU64,
    events_dropped: AtomicU64,
    last_flip_us: AtomicU64,
}

impl ConnectorOutput {
    pub fn new(key: OutputKey, resolution: (u32, u32)) -> ConnectorOutput {
        ConnectorOutput {
            key,
            resolution,
            enabled: AtomicBool::new(false),
            latest: Mutex::new(None),
            flips: AtomicU64::new(0),
            copies: AtomicU64::new(0),
            unchanged: AtomicU64::new(0),
            copy_us_last: AtomicU64::new(0),
            copy_us_max: AtomicU64::new(0),
            copy_us_total: AtomicU64::new(0),
            bytes_copied: AtomicU64::new(0),
            bytes_copied_last: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
            last_flip_us: AtomicU64::new(0),
        }
    }

    /// The encoder hub's id: subscribe there to watch this screen.
    pub fn hub_id(&self) -> ConnectorId {
        self.key.hub_id()
    }

    /// Whether the guest has the display switched on (SET_CONFIG).
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// The gateway's copy of the last flipped picture (for snapshots).
    pub fn latest_frame(&self) -> Option<SharedFrame> {
        lock(&self.latest).clone()
    }

    pub fn stats(&self) -> FlipStats {
        let us = |a: &AtomicU64| Duration::from_micros(a.load(Ordering::Relaxed));
        let last = self.last_flip_us.load(Ordering::Relaxed);
        FlipStats {
            flips: self.flips.load(Ordering::Relaxed),
            copies: self.copies.load(Ordering::Relaxed),
            unchanged: self.unchanged.load(Ordering::Relaxed),
            copy_time_last: us(&self.copy_us_last),
            copy_time_max: us(&self.copy_us_max),
            copy_time_total: us(&self.copy_us_total),
            bytes_copied: self.bytes_copied.load(Ordering::Relaxed),
            bytes_copied_last: self.bytes_copied_last.load(Ordering::Relaxed),
            events_dropped: self.events_dropped.load(Ordering::Relaxed),
            last_flip: (last != 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_micros(last)),
        }
    }

    pub(crate) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub(crate) fn record_flip(&self) {
        self.flips.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        self.last_flip_us.store(now.max(1), Ordering::Relaxed);
    }

    pub(crate) fn record_copy(
        &self,
        frame: SharedFrame,
        took: Duration,
        changed: bool,
        bytes_copied: u64,
    ) {
        *lock(&self.latest) = Some(frame);
        self.record_copied_bytes(bytes_copied);
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        self.copies.fetch_add(1, Ordering::Relaxed);
        if !changed {
            self.unchanged.fetch_add(1, Ordering::Relaxed);
        }
        self.copy_us_last.store(us, Ordering::Relaxed);
        self.copy_us_max.fetch_max(us, Ordering::Relaxed);
        self.copy_us_total.fetch_add(us, Ordering::Relaxed);
    }

    pub(crate) fn record_event_dropped(&self) {
        self.events_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes a copy wrote into frames (also when it failed half-way).
    pub(crate) fn record_copied_bytes(&self, bytes: u64) {
        self.bytes_copied.fetch_add(bytes, Ordering::Relaxed);
        self.bytes_copied_last.store(bytes, Ordering::Relaxed);
    }
}

/// Every connected guest screen, keyed by (domid, devid, connector).
#[derive(Clone, Default)]
pub struct DisplayOutputs {
    inner: Arc<Mutex<BTreeMap<OutputKey, Arc<ConnectorOutput>>>>,
}

impl DisplayOutputs {
    pub fn new() -> DisplayOutputs {
        DisplayOutputs::default()
    }

    pub fn get(&self, key: OutputKey) -> Option<Arc<ConnectorOutput>> {
        lock(&self.inner).get(&key).cloned()
    }

    /// Every screen, in key order.
    pub fn list(&self) -> Vec<Arc<ConnectorOutput>> {
        lock(&self.inner).values().cloned().collect()
    }

    /// The screens of one guest.
    pub fn of_guest(&self, domid: DomId) -> Vec<Arc<ConnectorOutput>> {
        lock(&self.inner)
            .values()
            .filter(|o| o.key.domid == domid)
            .cloned()
            .collect()
    }

    pub(crate) fn insert(&self, output: Arc<ConnectorOutput>) {
        lock(&self.inner).insert(output.key, output);
    }

    pub(crate) fn remove_device(&self, domid: DomId, devid: u32) {
        lock(&self.inner).retain(|k, _| !(k.domid == domid && k.devid == devid));
    }
}

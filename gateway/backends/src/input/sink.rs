//! [`InputSink`]: how the session layer puts input into one connected
//! guest device. `send` never blocks on the guest: it writes straight into
//! the shared page, or drops the batch and counts it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use pvgate_platform::{DomId, EventChannel, Mapping};
use pvgate_protocol::abi::kbdif::xenkbd_page;

use super::events::{encode_batch, GuestInput, InputError, InputSpace, PointerMode, PointerTrack};
use super::limits::{InputLimits, RateBudget};
use super::ring::{InRingProducer, Placement, RING_LEN};

const IN_CONS: usize = core::mem::offset_of!(xenkbd_page, in_cons);
const IN_PROD: usize = core::mem::offset_of!(xenkbd_page, in_prod);

/// Counters of one device since it connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InputStats {
    /// kbdif events put on the ring.
    pub events: u64,
    /// Events dropped because the guest was not consuming (ring full).
    pub dropped_full: u64,
    /// Events dropped by the rate limit.
    pub dropped_rate: u64,
    /// Batches refused for bad codes or contacts.
    pub refused: u64,
    /// Coordinates or wheel steps clamped into range.
    pub clamped: u64,
}

#[derive(Default)]
struct Counters {
    events: AtomicU64,
    dropped_full: AtomicU64,
    dropped_rate: AtomicU64,
    refused: AtomicU64,
    clamped: AtomicU64,
}

/// The mapped page while the device is connected.
struct Ring {
    page: Mapping,
    producer: InRingProducer,
    channel: Arc<dyn EventChannel>,
    budget: RateBudget,
    track: PointerTrack,
}

/// Called once when the guest breaks the ring; closes the device.
pub type FailFn = Box<dyn Fn(String) + Send + Sync>;

/// One connected device, shared by its sinks and its backend.
pub(crate) struct DeviceIo {
    pub domid: DomId,
    pub devid: u32,
    /// `dom5 vkbd/0`, for log lines.
    pub name: String,
    space: InputSpace,
    mode: PointerMode,
    limits: InputLimits,
    epoch: Instant,
    ring: Mutex<Option<Ring>>,
    counters: Counters,
    fail: FailFn,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why the device must close.
struct Broken(String);

impl DeviceIo {
    /// Take over a mapped kbdif page: our producer continues from the
    /// `in_prod` it holds, after checking the guest's `in_cons` against it.
    #[allow(clippy::too_many_arguments)]
    pub fn attach(
        domid: DomId,
        devid: u32,
        name: String,
        page: Mapping,
        channel: Arc<dyn EventChannel>,
        space: InputSpace,
        mode: PointerMode,
        limits: InputLimits,
        fail: FailFn,
    ) -> Result<Arc<DeviceIo>, String> {
        let prod = page
            .load_u32_acquire(IN_PROD)
            .map_err(|e| format!("kbdif page: {e}"))?;
        let producer = InRingProducer::new(prod);
        let cons = page
            .load_u32_acquire(IN_CONS)
            .map_err(|e| format!("kbdif page: {e}"))?;
        producer.unconsumed(cons).map_err(|e| e.to_string())?;
        let epoch = Instant::now();
        Ok(Arc::new(DeviceIo {
            domid,
            devid,
            name,
            space,
            mode,
            ring: Mutex::new(Some(Ring {
                page,
                producer,
                channel,
                budget: RateBudget::new(limits.events_per_sec, limits.burst, 0),
                track: PointerTrack::default(),
            })),
            limits,
            epoch,
            counters: Counters::default(),
            fail,
        }))
    }

    /// Let go of the page (the guest may free it) and refuse further input.
    pub fn close(&self) {
        lock(&self.ring).take();
    }

    /// The guest notified us (it consumed): check what it wrote.
    pub fn check_consumer(&self) {
        let mut guard = lock(&self.ring);
        let Some(ring) = guard.as_mut() else { return };
        let result = ring
            .page
            .load_u32_acquire(IN_CONS)
            .map_err(|e| Broken(format!("kbdif page: {e}")))
            .and_then(|cons| {
                ring.producer
                    .unconsumed(cons)
                    .map_err(|e| Broken(e.to_string()))
            });
        if let Err(b) = result {
            self.broken(&mut guard, b);
        }
    }

    fn broken(&self, guard: &mut MutexGuard<'_, Option<Ring>>, Broken(reason): Broken) {
        guard.take();
        tracing::warn!(guest = self.domid, device = %self.name, %reason, "guest broke its input ring; closing the device");
        (self.fail)(reason);
    }

    fn send(&self, batch: &[GuestInput]) -> Result<(), InputError> {
        let mut guard = lock(&self.ring);
        let Some(ring) = guard.as_mut() else {
            return Err(InputError::Disconnected);
        };
        let mut track = ring.track;
        let encoded = encode_batch(
            batch,
            &self.space,
            self.mode,
            self.limits.max_wheel_notches,
            &mut track,
        )
        .inspect_err(|_| {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
        })?;
        self.counters
            .clamped
            .fetch_add(u64::from(encoded.clamped), Ordering::Relaxed);
        let n = encoded.events.len();
        if n == 0 {
            return Ok(());
        }
        if n > RING_LEN as usize {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return Err(InputError::BatchTooLarge {
                events: n,
                capacity: RING_LEN,
            });
        }
        let now = self.epoch.elapsed().as_nanos() as u64;
        if !ring.budget.take(n as u64, now) {
            self.counters
                .dropped_rate
                .fetch_add(n as u64, Ordering::Relaxed);
            return Err(InputError::RateLimited { dropped: n });
        }
        match write_batch(ring, &encoded.events) {
            Ok(true) => {
                ring.track = track;
                self.counters.events.fetch_add(n as u64, Ordering::Relaxed);
                Ok(())
            }
            Ok(false) => {
                ring.budget.refund(n as u64);
                self.counters
                    .dropped_full
                    .fetch_add(n as u64, Ordering::Relaxed);
                Err(InputError::RingFull { dropped: n })
            }
            Err(b) => {
                self.broken(&mut guard, b);
                Err(InputError::Disconnected)
            }
        }
    }

    fn stats(&self) -> InputStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        InputStats {
            events: l(&c.events),
            dropped_full: l(&c.dropped_full),
            dropped_rate: l(&c.dropped_rate),
            refused: l(&c.refused),
            clamped: l(&c.clamped),
        }
    }
}

/// Copy the events into their slots, then publish `in_prod` (release: the
/// guest that sees the index sees the slots), then notify. `Ok(false)`: no
/// room, nothing written.
fn write_batch(
    ring: &mut Ring,
    events: &[pvgate_protocol::kbdif::KbdInEvent],
) -> Result<bool, Broken> {
    let cons = ring
        .page
        .load_u32_acquire(IN_CONS)
        .map_err(|e| Broken(format!("kbdif page: {e}")))?;
    let placement = ring
        .producer
        .place(cons, events.len())
        .map_err(|e| Broken(e.to_string()))?;
    let Placement::Write { offsets, new_prod } = placement else {
        return Ok(false);
    };
    for (offset, event) in offsets.into_iter().zip(events) {
        ring.page
            .write(offset, &event.encode())
            .map_err(|e| Broken(format!("kbdif page: {e}")))?;
    }
    ring.page
        .store_u32_release(IN_PROD, new_prod)
        .map_err(|e| Broken(format!("kbdif page: {e}")))?;
    // A guest whose channel is gone will not read the ring again; the
    // XenBus lifecycle notices it leaving.
    let _ = ring.channel.notify();
    Ok(true)
}

/// Input into one connected guest device. Clones share the device; once
/// it disconnects every clone's `send` says so.
#[derive(Clone)]
pub struct InputSink {
    pub(crate) io: Arc<DeviceIo>,
}

impl InputSink {
    /// The spaces positions are given in.
    pub fn space(&self) -> InputSpace {
        self.io.space
    }

    /// Non-blocking; validates (codes <= KEY_MAX 0x2ff, positions inside
    /// the space, contact < contacts), emits a multi-touch SYN after a
    /// batch with touch events. A batch is delivered whole or not at all.
    pub fn send(&self, batch: &[GuestInput]) -> Result<(), InputError> {
        self.io.send(batch)
    }

    /// Events dropped because the guest did not consume or the rate limit
    /// was reached.
    pub fn dropped(&self) -> u64 {
        let s = self.io.stats();
        s.dropped_full + s.dropped_rate
    }

    pub fn stats(&self) -> InputStats {
        self.io.stats()
    }

    /// (guest, device).
    pub fn device(&self) -> (DomId, u32) {
        (self.io.domid, self.io.devid)
    }

    /// False once the device disconnected.
    pub fn is_connected(&self) -> bool {
        lock(&self.io.ring).is_some()
    }
}

//! One-way event rings indexed modulo their length: the displif/sndif event
//! page and the two rings of the kbdif shared page.
//!
//! Unlike ring.h rings these have no event-index hold-off and their length
//! is not a power of two (63 for displif/sndif, 51 and 25 for kbdif), so the
//! slot is `index % len` exactly as the headers' `*_IN_RING_REF(page, idx)`
//! macros compute it on a `uint32_t` index. Because 2^32 is not a multiple
//! of the length, slots do not advance evenly across `u32::MAX → 0`; the
//! producer therefore refuses to write into a slot that still holds an
//! unconsumed entry, instead of overwriting it.
//!
//! Neither side trusts the other's index: a producer index claiming more
//! than `len` unconsumed entries, or a consumer index that is not between
//! what we produced and `len` before it, is a typed error.

use crate::abi::displif::{
    xendispl_event_page, xendispl_evt, XENDISPL_IN_RING_LEN, XENDISPL_IN_RING_OFFS,
};
use crate::abi::kbdif::{
    xenkbd_in_event, xenkbd_out_event, xenkbd_page, XENKBD_IN_RING_LEN, XENKBD_IN_RING_OFFS,
    XENKBD_OUT_RING_LEN, XENKBD_OUT_RING_OFFS,
};
use crate::abi::sndif::{xensnd_event_page, xensnd_evt, XENSND_IN_RING_LEN, XENSND_IN_RING_OFFS};
use crate::memory::SharedMemory;
use core::mem::{offset_of, size_of};

/// Where a one-way ring lives in its page. `N` is the slot size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRingLayout<const N: usize> {
    pub cons_offset: usize,
    pub prod_offset: usize,
    pub ring_offset: usize,
    pub len: u32,
}

/// Size of a displif/sndif event.
pub const EVENT_SIZE: usize = 64;
/// Size of a kbdif event.
pub const KBD_EVENT_SIZE: usize = 40;

const _: () = assert!(size_of::<xendispl_evt>() == EVENT_SIZE);
const _: () = assert!(size_of::<xensnd_evt>() == EVENT_SIZE);
const _: () = assert!(size_of::<xenkbd_in_event>() == KBD_EVENT_SIZE);
const _: () = assert!(size_of::<xenkbd_out_event>() == KBD_EVENT_SIZE);

impl EventRingLayout<EVENT_SIZE> {
    /// displif event page: backend → frontend.
    pub const DISPLIF: Self = EventRingLayout {
        cons_offset: offset_of!(xendispl_event_page, in_cons),
        prod_offset: offset_of!(xendispl_event_page, in_prod),
        ring_offset: XENDISPL_IN_RING_OFFS,
        len: XENDISPL_IN_RING_LEN as u32,
    };
    /// sndif event page: backend → frontend.
    pub const SNDIF: Self = EventRingLayout {
        cons_offset: offset_of!(xensnd_event_page, in_cons),
        prod_offset: offset_of!(xensnd_event_page, in_prod),
        ring_offset: XENSND_IN_RING_OFFS,
        len: XENSND_IN_RING_LEN as u32,
    };
}

impl EventRingLayout<KBD_EVENT_SIZE> {
    /// kbdif "in" ring: backend → frontend (input events).
    pub const KBDIF_IN: Self = EventRingLayout {
        cons_offset: offset_of!(xenkbd_page, in_cons),
        prod_offset: offset_of!(xenkbd_page, in_prod),
        ring_offset: XENKBD_IN_RING_OFFS,
        len: XENKBD_IN_RING_LEN as u32,
    };
    /// kbdif "out" ring: frontend → backend (no events defined yet).
    pub const KBDIF_OUT: Self = EventRingLayout {
        cons_offset: offset_of!(xenkbd_page, out_cons),
        prod_offset: offset_of!(xenkbd_page, out_prod),
        ring_offset: XENKBD_OUT_RING_OFFS,
        len: XENKBD_OUT_RING_LEN as u32,
    };
}

impl<const N: usize> EventRingLayout<N> {
    /// The slot index `idx` lands in: `idx % len`, as the C macros do.
    pub const fn slot(&self, idx: u32) -> u32 {
        if self.len == 0 {
            0
        } else {
            idx % self.len
        }
    }

    /// Byte offset of the slot for ring index `idx`.
    pub const fn slot_offset(&self, idx: u32) -> usize {
        self.ring_offset + self.slot(idx) as usize * N
    }
}

/// What went wrong on an event ring. `E` is the shared memory's error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventRingError<E: std::error::Error + 'static> {
    #[error("event page memory access failed: {0}")]
    Memory(#[source] E),
    /// Consumer side: the producer's index claims more unconsumed events
    /// than the ring holds.
    #[error("producer index {prod} is {claimed} ahead of consumer index {cons}; the ring holds only {len}")]
    ProducerOverflow {
        prod: u32,
        cons: u32,
        claimed: u32,
        len: u32,
    },
    /// Producer side: the consumer's index is not within the `len` entries
    /// before what we produced (it ran ahead of us or is garbage).
    #[error("consumer index {cons} is not within {len} entries before our producer index {prod}")]
    ConsumerIndexInvalid { cons: u32, prod: u32, len: u32 },
    /// Producer side: no free slot until the consumer catches up.
    #[error("event ring full: {unconsumed} events not yet consumed")]
    Full { unconsumed: u32 },
}

fn mem<E: std::error::Error + 'static>(e: E) -> EventRingError<E> {
    EventRingError::Memory(e)
}

/// Producer half (the backend for displif/sndif/kbdif-in events).
#[derive(Debug)]
pub struct EventProducer<M, const N: usize> {
    mem: M,
    layout: EventRingLayout<N>,
    prod: u32,
}

impl<M: SharedMemory, const N: usize> EventProducer<M, N> {
    /// Starts producing at index `start`. A frontend hands over a zeroed
    /// page, so 0 is the normal start; both indices are written so the page
    /// is consistent whatever it held before.
    pub fn init(
        mem_: M,
        layout: EventRingLayout<N>,
        start: u32,
    ) -> Result<Self, EventRingError<M::Error>> {
        mem_.store_u32_release(layout.cons_offset, start)
            .map_err(mem)?;
        mem_.store_u32_release(layout.prod_offset, start)
            .map_err(mem)?;
        Ok(EventProducer {
            mem: mem_,
            layout,
            prod: start,
        })
    }

    /// Continues from whatever producer index the page holds (e.g. after a
    /// backend restart with the frontend still attached). The consumer index
    /// is validated on the next push.
    pub fn attach(mem_: M, layout: EventRingLayout<N>) -> Result<Self, EventRingError<M::Error>> {
        let prod = mem_.load_u32_acquire(layout.prod_offset).map_err(mem)?;
        Ok(EventProducer {
            mem: mem_,
            layout,
            prod,
        })
    }

    pub fn prod(&self) -> u32 {
        self.prod
    }

    pub fn layout(&self) -> EventRingLayout<N> {
        self.layout
    }

    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Events written but not yet consumed, after validating the consumer's
    /// index.
    pub fn unconsumed(&self) -> Result<u32, EventRingError<M::Error>> {
        let cons = self
            .mem
            .load_u32_acquire(self.layout.cons_offset)
            .map_err(mem)?;
        let unconsumed = self.prod.wrapping_sub(cons);
        if unconsumed > self.layout.len {
            return Err(EventRingError::ConsumerIndexInvalid {
                cons,
                prod: self.prod,
                len: self.layout.len,
            });
        }
        Ok(unconsumed)
    }

    /// Writes one event and publishes the new producer index. The caller
    /// then notifies the frontend's event channel.
    pub fn push(&mut self, event: &[u8; N]) -> Result<(), EventRingError<M::Error>> {
        let unconsumed = self.unconsumed()?;
        if unconsumed >= self.layout.len || self.slot_is_busy(unconsumed) {
            return Err(EventRingError::Full { unconsumed });
        }
        self.mem
            .write(self.layout.slot_offset(self.prod), event)
            .map_err(mem)?;
        self.prod = self.prod.wrapping_add(1);
        self.mem
            .store_u32_release(self.layout.prod_offset, self.prod)
            .map_err(mem)?;
        Ok(())
    }

    /// True if the slot for `prod` still holds one of the `unconsumed`
    /// entries before it, which happens only where `idx % len` jumps at the
    /// u32 wrap.
    fn slot_is_busy(&self, unconsumed: u32) -> bool {
        let target = self.layout.slot(self.prod);
        (1..=unconsumed).any(|back| self.layout.slot(self.prod.wrapping_sub(back)) == target)
    }
}

/// Consumer half (the frontend for displif/sndif/kbdif-in events; the
/// backend for kbdif-out).
#[derive(Debug)]
pub struct EventConsumer<M, const N: usize> {
    mem: M,
    layout: EventRingLayout<N>,
    cons: u32,
}

impl<M: SharedMemory, const N: usize> EventConsumer<M, N> {
    /// Starts consuming at the page's current consumer index.
    pub fn attach(mem_: M, layout: EventRingLayout<N>) -> Result<Self, EventRingError<M::Error>> {
        let cons = mem_.load_u32_acquire(layout.cons_offset).map_err(mem)?;
        Ok(EventConsumer {
            mem: mem_,
            layout,
            cons,
        })
    }

    pub fn cons(&self) -> u32 {
        self.cons
    }

    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Events published and not yet taken, after validating the producer's
    /// index.
    pub fn pending(&self) -> Result<u32, EventRingError<M::Error>> {
        let prod = self
            .mem
            .load_u32_acquire(self.layout.prod_offset)
            .map_err(mem)?;
        let claimed = prod.wrapping_sub(self.cons);
        if claimed > self.layout.len {
            return Err(EventRingError::ProducerOverflow {
                prod,
                cons: self.cons,
                claimed,
                len: self.layout.len,
            });
        }
        Ok(claimed)
    }

    /// Copies out the next event (once) and publishes the consumer index.
    pub fn next_event(&mut self) -> Result<Option<[u8; N]>, EventRingError<M::Error>> {
        if self.pending()? == 0 {
            return Ok(None);
        }
        let mut event = [0u8; N];
        self.mem
            .read(self.layout.slot_offset(self.cons), &mut event)
            .map_err(mem)?;
        self.cons = self.cons.wrapping_add(1);
        self.mem
            .store_u32_release(self.layout.cons_offset, self.cons)
            .map_err(mem)?;
        Ok(Some(event))
    }
}

//! ring.h shared request/response rings, both halves.
//!
//! A shared ring is one 4096-byte page: a 64-byte header (`req_prod`,
//! `req_event`, `rsp_prod`, `rsp_event`, padding) followed by slots that hold
//! a request or its response. The frontend produces requests and consumes
//! responses ([`FrontRing`]); the backend does the opposite ([`BackRing`]).
//! Indices are free-running `u32`s; a slot is `index & (nr_ents - 1)`, and
//! every distance between indices is a wrapping subtraction, which is what
//! keeps the arithmetic right across `u32::MAX → 0`.
//!
//! The peer is not trusted: an index it publishes that claims more entries
//! than can exist is reported as [`RingError::ProducerOverflow`] (the caller
//! closes the device), and every slot is copied out exactly once, into a
//! `[u8; 64]` that the codecs then decode.

use crate::abi::ring::{const_ring_size, xen_displif_sring, xen_displif_sring_entry};
use crate::abi::ring::{xen_sndif_sring, xen_sndif_sring_entry, XEN_PAGE_SIZE};
use crate::memory::SharedMemory;
use core::mem::{offset_of, size_of};

/// Size of one ring slot in bytes (displif and sndif both use 64).
pub const SLOT_SIZE: usize = 64;

/// One request or response, copied out of (or into) a ring slot.
pub type Slot = [u8; SLOT_SIZE];

// Both protocols instantiate the same DEFINE_RING_TYPES header; the offsets
// are taken from one of them and must agree with the other.
const REQ_PROD: usize = offset_of!(xen_displif_sring, req_prod);
const REQ_EVENT: usize = offset_of!(xen_displif_sring, req_event);
const RSP_PROD: usize = offset_of!(xen_displif_sring, rsp_prod);
const RSP_EVENT: usize = offset_of!(xen_displif_sring, rsp_event);
const _: () = assert!(offset_of!(xen_sndif_sring, req_prod) == REQ_PROD);
const _: () = assert!(offset_of!(xen_sndif_sring, rsp_event) == RSP_EVENT);
const _: () = assert!(size_of::<xen_displif_sring_entry>() == SLOT_SIZE);
const _: () = assert!(size_of::<xen_sndif_sring_entry>() == SLOT_SIZE);

/// Where the slots start in the ring page and how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    ring_offset: usize,
    nr_ents: u32,
}

impl RingLayout {
    /// `xen_displif` ring in one 4096-byte page.
    pub const DISPLIF: RingLayout = RingLayout::new(
        offset_of!(xen_displif_sring, ring),
        size_of::<xen_displif_sring_entry>(),
        XEN_PAGE_SIZE,
    );
    /// `xen_sndif` ring in one 4096-byte page.
    pub const SNDIF: RingLayout = RingLayout::new(
        offset_of!(xen_sndif_sring, ring),
        size_of::<xen_sndif_sring_entry>(),
        XEN_PAGE_SIZE,
    );

    /// `__RING_SIZE` semantics: entries that fit in `area` after the header,
    /// rounded down to a power of two.
    pub const fn new(ring_offset: usize, entry_size: usize, area: usize) -> RingLayout {
        RingLayout {
            ring_offset,
            nr_ents: const_ring_size(ring_offset, entry_size, area),
        }
    }

    /// `RING_SIZE`: the number of slots.
    pub const fn nr_ents(&self) -> u32 {
        self.nr_ents
    }

    /// Byte offset of the slot that ring index `idx` lands in
    /// (`RING_GET_REQUEST`/`RING_GET_RESPONSE`).
    pub const fn slot_offset(&self, idx: u32) -> usize {
        self.ring_offset + ((idx & self.nr_ents.wrapping_sub(1)) as usize) * SLOT_SIZE
    }
}

/// What went wrong on a ring. `E` is the shared memory's error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RingError<E: std::error::Error + 'static> {
    #[error("shared ring memory access failed: {0}")]
    Memory(#[source] E),
    /// The peer published a producer index claiming more entries than the
    /// ring can hold: a broken or hostile peer. Close the device.
    #[error("peer's {which} = {prod} claims {claimed} entries past our index {ours}, but only {limit} can exist")]
    ProducerOverflow {
        which: &'static str,
        prod: u32,
        ours: u32,
        claimed: u32,
        limit: u32,
    },
    /// Frontend: every slot holds a request without a response yet.
    #[error("ring full: {outstanding} requests are awaiting responses")]
    Full { outstanding: u32 },
    /// Backend: a response was pushed for a request that was never taken
    /// off the ring (a bug in our code, not the peer's).
    #[error("no consumed request is waiting for a response (rsp_prod_pvt {rsp_prod_pvt} == req_cons {req_cons})")]
    NoRequestToAnswer { rsp_prod_pvt: u32, req_cons: u32 },
}

fn mem<E: std::error::Error + 'static>(e: E) -> RingError<E> {
    RingError::Memory(e)
}

/// ring.h's notification test: notify if the peer's event index lies in
/// `(old, new]`, i.e. `new - event < new - old` in wrapping arithmetic.
pub fn need_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// `RING_REQUEST_PROD_OVERFLOW`: can the frontend really have published up
/// to `prod` when we have answered up to `rsp_prod_pvt`? It cannot have more
/// than `nr_ents` requests unanswered.
pub fn request_prod_overflow(prod: u32, rsp_prod_pvt: u32, nr_ents: u32) -> bool {
    prod.wrapping_sub(rsp_prod_pvt) > nr_ents
}

/// `SHARED_RING_INIT` at a chosen start index (ring.h uses 0): producer
/// indices at `start`, event indices one past it, padding zeroed.
pub fn shared_ring_init<M: SharedMemory>(mem_: &M, start: u32) -> Result<(), RingError<M::Error>> {
    mem_.store_u32_release(REQ_PROD, start).map_err(mem)?;
    mem_.store_u32_release(RSP_PROD, start).map_err(mem)?;
    mem_.store_u32_release(REQ_EVENT, start.wrapping_add(1))
        .map_err(mem)?;
    mem_.store_u32_release(RSP_EVENT, start.wrapping_add(1))
        .map_err(mem)?;
    let pad_start = RSP_EVENT + 4;
    let pad_len = offset_of!(xen_displif_sring, ring) - pad_start;
    mem_.write(pad_start, &vec![0u8; pad_len]).map_err(mem)?;
    Ok(())
}

/// The backend half: takes requests, puts responses.
#[derive(Debug)]
pub struct BackRing<M> {
    mem: M,
    layout: RingLayout,
    /// `rsp_prod_pvt`: responses written, not necessarily published.
    rsp_prod_pvt: u32,
    /// `req_cons`: requests taken off the ring.
    req_cons: u32,
    /// The `rsp_prod` we last published. Kept privately rather than re-read
    /// from the page, so the peer cannot skew our notify decision.
    rsp_prod_published: u32,
}

impl<M: SharedMemory> BackRing<M> {
    /// `BACK_RING_ATTACH`: indices start at `start` (0 for a fresh ring,
    /// which is what the frontend's `XEN_FRONT_RING_INIT` sets up).
    pub fn attach(mem_: M, layout: RingLayout, start: u32) -> BackRing<M> {
        BackRing {
            mem: mem_,
            layout,
            rsp_prod_pvt: start,
            req_cons: start,
            rsp_prod_published: start,
        }
    }

    pub fn layout(&self) -> RingLayout {
        self.layout
    }

    pub fn req_cons(&self) -> u32 {
        self.req_cons
    }

    pub fn rsp_prod_pvt(&self) -> u32 {
        self.rsp_prod_pvt
    }

    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Reads `req_prod` and applies `RING_REQUEST_PROD_OVERFLOW`: the
    /// frontend can have at most `nr_ents` requests not yet answered.
    fn load_req_prod(&self) -> Result<u32, RingError<M::Error>> {
        let prod = self.mem.load_u32_acquire(REQ_PROD).map_err(mem)?;
        if request_prod_overflow(prod, self.rsp_prod_pvt, self.layout.nr_ents) {
            return Err(RingError::ProducerOverflow {
                which: "req_prod",
                prod,
                ours: self.rsp_prod_pvt,
                claimed: prod.wrapping_sub(self.rsp_prod_pvt),
                limit: self.layout.nr_ents,
            });
        }
        Ok(prod)
    }

    /// `RING_HAS_UNCONSUMED_REQUESTS`: requests published but not taken,
    /// limited (as ring.h does) by the slots not holding unsent responses.
    pub fn unconsumed_requests(&self) -> Result<u32, RingError<M::Error>> {
        let prod = self.load_req_prod()?;
        let req = prod.wrapping_sub(self.req_cons);
        let rsp = self
            .layout
            .nr_ents
            .wrapping_sub(self.req_cons.wrapping_sub(self.rsp_prod_pvt));
        Ok(req.min(rsp))
    }

    /// Takes the next request off the ring: the slot is copied once, and
    /// the copy is all the caller ever sees.
    pub fn next_request(&mut self) -> Result<Option<Slot>, RingError<M::Error>> {
        if self.unconsumed_requests()? == 0 {
            return Ok(None);
        }
        let mut slot = [0u8; SLOT_SIZE];
        self.mem
            .read(self.layout.slot_offset(self.req_cons), &mut slot)
            .map_err(mem)?;
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(slot))
    }

    /// Writes a response into the next response slot (not yet published).
    pub fn put_response(&mut self, rsp: &Slot) -> Result<(), RingError<M::Error>> {
        if self.rsp_prod_pvt == self.req_cons {
            return Err(RingError::NoRequestToAnswer {
                rsp_prod_pvt: self.rsp_prod_pvt,
                req_cons: self.req_cons,
            });
        }
        self.mem
            .write(self.layout.slot_offset(self.rsp_prod_pvt), rsp)
            .map_err(mem)?;
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`: publishes `rsp_prod` and says
    /// whether the frontend asked (via `rsp_event`) to be notified.
    pub fn push_responses_and_check_notify(&mut self) -> Result<bool, RingError<M::Error>> {
        let old = self.rsp_prod_published;
        let new = self.rsp_prod_pvt;
        self.mem.store_u32_release(RSP_PROD, new).map_err(mem)?;
        self.rsp_prod_published = new;
        self.mem.full_barrier();
        let event = self.mem.load_u32_acquire(RSP_EVENT).map_err(mem)?;
        Ok(need_notify(old, new, event))
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: before sleeping, ask for a
    /// notification on the next request and look once more, so a request
    /// published in between is not missed.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError<M::Error>> {
        if self.unconsumed_requests()? > 0 {
            return Ok(true);
        }
        self.mem
            .store_u32_release(REQ_EVENT, self.req_cons.wrapping_add(1))
            .map_err(mem)?;
        self.mem.full_barrier();
        Ok(self.unconsumed_requests()? > 0)
    }
}

/// The frontend half: puts requests, takes responses. Used by the guest
/// simulator.
#[derive(Debug)]
pub struct FrontRing<M> {
    mem: M,
    layout: RingLayout,
    req_prod_pvt: u32,
    rsp_cons: u32,
    req_prod_published: u32,
}

impl<M: SharedMemory> FrontRing<M> {
    /// `XEN_FRONT_RING_INIT` with indices starting at `start` (0 in Linux).
    pub fn init(
        mem_: M,
        layout: RingLayout,
        start: u32,
    ) -> Result<FrontRing<M>, RingError<M::Error>> {
        shared_ring_init(&mem_, start)?;
        Ok(FrontRing::attach(mem_, layout, start))
    }

    /// `FRONT_RING_ATTACH`: take over an initialised ring at `start`.
    pub fn attach(mem_: M, layout: RingLayout, start: u32) -> FrontRing<M> {
        FrontRing {
            mem: mem_,
            layout,
            req_prod_pvt: start,
            rsp_cons: start,
            req_prod_published: start,
        }
    }

    pub fn layout(&self) -> RingLayout {
        self.layout
    }

    pub fn req_prod_pvt(&self) -> u32 {
        self.req_prod_pvt
    }

    pub fn rsp_cons(&self) -> u32 {
        self.rsp_cons
    }

    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// `RING_FREE_REQUESTS`
    pub fn free_requests(&self) -> u32 {
        self.layout
            .nr_ents
            .wrapping_sub(self.req_prod_pvt.wrapping_sub(self.rsp_cons))
    }

    /// `RING_FULL`
    pub fn is_full(&self) -> bool {
        self.free_requests() == 0
    }

    /// Writes a request into the next slot (not yet published).
    pub fn put_request(&mut self, req: &Slot) -> Result<(), RingError<M::Error>> {
        if self.is_full() {
            return Err(RingError::Full {
                outstanding: self.req_prod_pvt.wrapping_sub(self.rsp_cons),
            });
        }
        self.mem
            .write(self.layout.slot_offset(self.req_prod_pvt), req)
            .map_err(mem)?;
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`
    pub fn push_requests_and_check_notify(&mut self) -> Result<bool, RingError<M::Error>> {
        let old = self.req_prod_published;
        let new = self.req_prod_pvt;
        self.mem.store_u32_release(REQ_PROD, new).map_err(mem)?;
        self.req_prod_published = new;
        self.mem.full_barrier();
        let event = self.mem.load_u32_acquire(REQ_EVENT).map_err(mem)?;
        Ok(need_notify(old, new, event))
    }

    /// Reads `rsp_prod`. `RING_RESPONSE_PROD_OVERFLOW` allows up to a ring's
    /// worth; we are stricter: no more responses than requests we published.
    fn load_rsp_prod(&self) -> Result<u32, RingError<M::Error>> {
        let prod = self.mem.load_u32_acquire(RSP_PROD).map_err(mem)?;
        let claimed = prod.wrapping_sub(self.rsp_cons);
        let limit = self.req_prod_published.wrapping_sub(self.rsp_cons);
        if claimed > limit {
            return Err(RingError::ProducerOverflow {
                which: "rsp_prod",
                prod,
                ours: self.rsp_cons,
                claimed,
                limit,
            });
        }
        Ok(prod)
    }

    /// `RING_HAS_UNCONSUMED_RESPONSES`
    pub fn unconsumed_responses(&self) -> Result<u32, RingError<M::Error>> {
        Ok(self.load_rsp_prod()?.wrapping_sub(self.rsp_cons))
    }

    /// Takes the next response off the ring (copied once).
    pub fn next_response(&mut self) -> Result<Option<Slot>, RingError<M::Error>> {
        if self.unconsumed_responses()? == 0 {
            return Ok(None);
        }
        let mut slot = [0u8; SLOT_SIZE];
        self.mem
            .read(self.layout.slot_offset(self.rsp_cons), &mut slot)
            .map_err(mem)?;
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(slot))
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError<M::Error>> {
        if self.unconsumed_responses()? > 0 {
            return Ok(true);
        }
        self.mem
            .store_u32_release(RSP_EVENT, self.rsp_cons.wrapping_add(1))
            .map_err(mem)?;
        self.mem.full_barrier();
        Ok(self.unconsumed_responses()? > 0)
    }
}

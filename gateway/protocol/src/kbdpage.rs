//! The kbdif shared page (`struct xenkbd_page`): an "in" ring of 40-byte
//! input events at offset 1024 (backend → frontend, 51 slots) and an "out"
//! ring at 3072 (frontend → backend, 25 slots, no events defined yet).
//!
//! Both rings are [`crate::evtpage`] rings with the kbdif layouts; this module
//! pairs them up for each side and speaks [`KbdInEvent`] instead of bytes.

use crate::evtpage::{
    EventConsumer, EventProducer, EventRingError, EventRingLayout, KBD_EVENT_SIZE,
};
use crate::kbdif::{KbdDecodeError, KbdInEvent};
use crate::memory::SharedMemory;

/// What went wrong on the kbdif page.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KbdPageError<E: std::error::Error + 'static> {
    #[error("kbdif {ring} ring: {source}")]
    Ring {
        ring: &'static str,
        #[source]
        source: EventRingError<E>,
    },
    #[error("kbdif event: {0}")]
    Decode(#[from] KbdDecodeError),
}

/// The backend's view: produces input events, consumes out events.
#[derive(Debug)]
pub struct KbdBackendPage<M> {
    input: EventProducer<M, KBD_EVENT_SIZE>,
    output: EventConsumer<M, KBD_EVENT_SIZE>,
}

impl<M: SharedMemory + Clone> KbdBackendPage<M> {
    /// Attaches to a page the frontend granted (zeroed by it, so both rings
    /// start where the page's indices say).
    pub fn attach(mem: M) -> Result<Self, KbdPageError<M::Error>> {
        let input = EventProducer::attach(mem.clone(), EventRingLayout::KBDIF_IN)
            .map_err(|source| KbdPageError::Ring { ring: "in", source })?;
        let output = EventConsumer::attach(mem, EventRingLayout::KBDIF_OUT).map_err(|source| {
            KbdPageError::Ring {
                ring: "out",
                source,
            }
        })?;
        Ok(KbdBackendPage { input, output })
    }

    /// Queues one input event; the caller then notifies the event channel.
    pub fn push(&mut self, event: &KbdInEvent) -> Result<(), KbdPageError<M::Error>> {
        self.input
            .push(&event.encode())
            .map_err(|source| KbdPageError::Ring { ring: "in", source })
    }

    /// Input events the frontend has not consumed yet.
    pub fn unconsumed(&self) -> Result<u32, KbdPageError<M::Error>> {
        self.input
            .unconsumed()
            .map_err(|source| KbdPageError::Ring { ring: "in", source })
    }

    /// Checks the out ring. kbdif defines no out events, so any event there
    /// is an error (the header: "receipt of an unknown out event is an
    /// error"); an empty ring is `Ok(())`.
    pub fn check_out_ring(&mut self) -> Result<(), KbdPageError<M::Error>> {
        match self
            .output
            .next_event()
            .map_err(|source| KbdPageError::Ring {
                ring: "out",
                source,
            })? {
            None => Ok(()),
            Some(raw) => Err(KbdPageError::Decode(KbdDecodeError::UnexpectedOutEvent {
                event_type: raw[0],
            })),
        }
    }
}

/// The frontend's view (the guest simulator): consumes input events.
#[derive(Debug)]
pub struct KbdFrontendPage<M> {
    input: EventConsumer<M, KBD_EVENT_SIZE>,
}

impl<M: SharedMemory> KbdFrontendPage<M> {
    pub fn attach(mem: M) -> Result<Self, KbdPageError<M::Error>> {
        let input = EventConsumer::attach(mem, EventRingLayout::KBDIF_IN)
            .map_err(|source| KbdPageError::Ring { ring: "in", source })?;
        Ok(KbdFrontendPage { input })
    }

    /// The next raw event, if any. Frontends must ignore unknown event
    /// types, so decoding is left to the caller ([`KbdInEvent::decode`]).
    pub fn next_raw(&mut self) -> Result<Option<[u8; KBD_EVENT_SIZE]>, KbdPageError<M::Error>> {
        self.input
            .next_event()
            .map_err(|source| KbdPageError::Ring { ring: "in", source })
    }
}

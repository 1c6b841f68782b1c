//! Turning a request slot into a typed request, and a refusal into the
//! status snd-xen-front passes up to ALSA.
//!
//! sndif answers with `-XEN_Exx`; for the codes used here Xen's numbers
//! (xen/errno.h) equal Linux's, and snd-xen-front hands the status to ALSA
//! unchanged, so the guest's application sees a normal errno.

use pvgate_protocol::ring::Slot;
use pvgate_protocol::sndif::{SndOp, SndRequest, SndResponse};

/// `-XEN_EINVAL`: a request that does not fit the stream or the protocol.
pub const EINVAL: i32 = -22;
/// `-XEN_EBUSY`: OPEN on a stream that is already open.
pub const EBUSY: i32 = -16;
/// `-XEN_ENOMEM`: a per-guest cap would be exceeded.
pub const ENOMEM: i32 = -12;
/// `-XEN_EIO`: the gateway failed (an encoder error), not the guest.
pub const EIO: i32 = -5;
/// `-XEN_EFAULT`: the buffer's grants or directory could not be mapped.
pub const EFAULT: i32 = -14;

/// Why a request was refused, for the status and the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: i32,
    pub reason: String,
}

impl Refusal {
    pub fn new(status: i32, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
        }
    }

    pub fn invalid(reason: impl Into<String>) -> Refusal {
        Refusal::new(EINVAL, reason)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (status {})", self.reason, self.status)
    }
}

/// A slot the frontend put on the ring: a request to handle, or one that
/// is refused before it reaches a stream, with the answer already built.
#[derive(Debug)]
pub enum Incoming {
    Request(SndRequest),
    Refused {
        /// What to put on the ring.
        response: Slot,
        /// The operation byte as sent (may be garbage).
        operation: u8,
        refusal: Refusal,
    },
}

/// Offsets of `id` and `operation`, shared by requests and responses
/// (sndif.h: every packet starts id:u16, operation:u8).
const ID_OFFSET: usize = 0;
const OPERATION_OFFSET: usize = 2;

/// Decodes a slot copied off the ring. Anything [`SndRequest::decode`]
/// refuses (unknown operation or format, zero sizes, overflowing ranges)
/// gets `-EINVAL` with the decoder's reason.
pub fn decode(slot: &Slot) -> Incoming {
    match SndRequest::decode(slot) {
        Ok(req) => Incoming::Request(req),
        Err(e) => {
            let id = u16::from_le_bytes([slot[ID_OFFSET], slot[ID_OFFSET + 1]]);
            let operation = slot[OPERATION_OFFSET];
            let refusal = Refusal::invalid(e.to_string());
            Incoming::Refused {
                response: raw_status_response(id, operation, refusal.status),
                operation,
                refusal,
            }
        }
    }
}

/// A status-only response echoing whatever operation byte came in: the
/// frontend matches answers by id, and an unknown operation has no typed
/// response.
pub fn raw_status_response(id: u16, operation: u8, status: i32) -> Slot {
    let known = SndOp::from_u8(operation).unwrap_or(SndOp::Close);
    let mut slot = SndResponse {
        id,
        status,
        body: pvgate_protocol::sndif::SndResponseBody::Status(known),
    }
    .encode();
    slot[OPERATION_OFFSET] = operation;
    slot
}

/// The name of an operation byte for log lines.
pub fn op_name(operation: u8) -> String {
    SndOp::from_u8(operation)
        .map(|op| op.name().to_string())
        .unwrap_or_else(|| format!("operation {operation}"))
}

/// Sustained request rate plus burst, per stream: a token bucket, sans-IO
/// (the caller passes the time).
#[derive(Debug, Clone)]
pub struct RequestBudget {
    per_sec: u32,
    burst: u32,
    tokens: f64,
    last_ns: u64,
}

impl RequestBudget {
    pub fn new(per_sec: u32, burst: u32, now_ns: u64) -> RequestBudget {
        RequestBudget {
            per_sec,
            burst: burst.max(1),
            tokens: f64::from(burst.max(1)),
            last_ns: now_ns,
        }
    }

    /// Takes one request's token; false once the guest is over budget.
    pub fn take(&mut self, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        self.tokens = (self.tokens + elapsed as f64 * f64::from(self.per_sec) / 1e9)
            .min(f64::from(self.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvgate_protocol::sndif::{RwRange, SndRequestOp, SndResponseBody};

    #[test]
    fn garbage_gets_einval_with_its_id_and_operation_echoed() {
        let mut slot = [0u8; 64];
        slot[0..2].copy_from_slice(&0x1234u16.to_le_bytes());
        slot[2] = 0xfe;
        let Incoming::Refused {
            response,
            operation,
            refusal,
        } = decode(&slot)
        else {
            panic!("garbage accepted")
        };
        assert_eq!(operation, 0xfe);
        assert_eq!(refusal.status, EINVAL);
        assert!(refusal.reason.contains("254"), "{}", refusal.reason);
        assert_eq!(u16::from_le_bytes([response[0], response[1]]), 0x1234);
        assert_eq!(response[2], 0xfe);
        assert_eq!(
            i32::from_le_bytes([response[4], response[5], response[6], response[7]]),
            EINVAL
        );
    }

    #[test]
    fn an_overflowing_write_is_refused_as_einval() {
        let slot = SndRequest {
            id: 7,
            op: SndRequestOp::Write(RwRange {
                offset: 0,
                length: 4,
            }),
        }
        .encode();
        let mut bad = slot;
        bad[8..12].copy_from_slice(&(u32::MAX - 1).to_le_bytes());
        match decode(&bad) {
            Incoming::Refused { response, .. } => {
                let r = SndResponse::decode(&response).unwrap();
                assert_eq!((r.id, r.status), (7, EINVAL));
                assert_eq!(r.body, SndResponseBody::Status(SndOp::Write));
            }
            other => panic!("accepted: {other:?}"),
        }
        assert!(matches!(decode(&slot), Incoming::Request(_)));
    }

    #[test]
    fn budget_allows_the_burst_then_the_rate() {
        let mut b = RequestBudget::new(1000, 10, 0);
        assert!((0..10).all(|_| b.take(0)));
        assert!(!b.take(0));
        // 5 ms later: 5 more.
        assert_eq!((0..10).filter(|_| b.take(5_000_000)).count(), 5);
        // A long pause refills only up to the burst.
        assert_eq!((0..100).filter(|_| b.take(60_000_000_000)).count(), 10);
    }
}

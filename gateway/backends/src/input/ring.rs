//! The producer side of the kbdif in-ring, sans-IO: given the guest's
//! `in_cons` (read once by the caller), decide where a batch of events goes
//! and what `in_prod` becomes. The caller copies the slots in, publishes
//! `in_prod` after them (release), and notifies.
//!
//! The ring has 51 slots and is indexed `idx % 51` on a `u32` (the
//! header's `XENKBD_IN_RING_REF`). 2^32 is not a multiple of 51, so at the
//! `u32` wrap two consecutive indices land in the same slot; a slot is only
//! handed out when none of the still-unconsumed entries occupies it.

use pvgate_protocol::abi::kbdif::{XENKBD_IN_EVENT_SIZE, XENKBD_IN_RING_LEN, XENKBD_IN_RING_OFFS};

/// Slots in the in-ring.
pub const RING_LEN: u32 = XENKBD_IN_RING_LEN as u32;

/// The guest's `in_cons` cannot be a consumer index of this ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("in_cons {cons} is not within the {len} entries before our in_prod {prod}: the guest claims to have consumed events never produced")]
pub struct BadConsumer {
    pub cons: u32,
    pub prod: u32,
    pub len: u32,
}

/// Where each event of a batch goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Byte offsets in the shared page, one per event in order; publish
    /// `new_prod` after writing them all.
    Write { offsets: Vec<usize>, new_prod: u32 },
    /// Not enough free slots for the whole batch: nothing is written (a
    /// batch is all or nothing, so a key release is never split from its
    /// press).
    Full { free: u32 },
}

/// Our side of the in-ring. `prod` is our own copy: the shared `in_prod`
/// is never read back once attached.
#[derive(Debug, Clone)]
pub struct InRingProducer {
    prod: u32,
}

impl InRingProducer {
    /// Continue from the `in_prod` found on the page (0 on a freshly
    /// zeroed page; the old value after a gateway restart, which the
    /// frontend's consumer is still in step with).
    pub fn new(prod: u32) -> InRingProducer {
        InRingProducer { prod }
    }

    pub fn prod(&self) -> u32 {
        self.prod
    }

    /// Events the guest has not consumed yet, given its `in_cons`.
    pub fn unconsumed(&self, cons: u32) -> Result<u32, BadConsumer> {
        let unconsumed = self.prod.wrapping_sub(cons);
        if unconsumed > RING_LEN {
            return Err(BadConsumer {
                cons,
                prod: self.prod,
                len: RING_LEN,
            });
        }
        Ok(unconsumed)
    }

    /// Place `count` events. On `Write`, our producer index has advanced:
    /// the caller must write the slots and publish `new_prod`.
    pub fn place(&mut self, cons: u32, count: usize) -> Result<Placement, BadConsumer> {
        let unconsumed = self.unconsumed(cons)?;
        let mut offsets = Vec::with_capacity(count.min(RING_LEN as usize));
        let mut prod = self.prod;
        // `busy`: entries before `prod` the guest has not consumed yet.
        for busy in (unconsumed..).take(count) {
            if busy >= RING_LEN || slot_taken(prod, busy) {
                return Ok(Placement::Full {
                    free: offsets.len() as u32,
                });
            }
            offsets.push(slot_offset(prod));
            prod = prod.wrapping_add(1);
        }
        self.prod = prod;
        Ok(Placement::Write {
            offsets,
            new_prod: prod,
        })
    }
}

fn slot(idx: u32) -> u32 {
    idx % RING_LEN
}

/// Byte offset in the page of ring index `idx`.
pub fn slot_offset(idx: u32) -> usize {
    XENKBD_IN_RING_OFFS + slot(idx) as usize * XENKBD_IN_EVENT_SIZE
}

/// True if one of the `busy` indices before `prod` uses `prod`'s slot
/// (only possible across the `u32` wrap).
fn slot_taken(prod: u32, busy: u32) -> bool {
    let target = slot(prod);
    (1..=busy).any(|back| slot(prod.wrapping_sub(back)) == target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(p: Placement) -> (Vec<usize>, u32) {
        match p {
            Placement::Write { offsets, new_prod } => (offsets, new_prod),
            Placement::Full { free } => panic!("full ({free} free)"),
        }
    }

    #[test]
    fn places_in_order_and_wraps_modulo_the_ring() {
        let mut r = InRingProducer::new(0);
        let (offs, prod) = written(r.place(0, 3).unwrap());
        assert_eq!(offs, vec![1024, 1064, 1104]);
        assert_eq!(prod, 3);
        // The guest consumed everything; the next batch crosses slot 50 → 0.
        let mut r = InRingProducer::new(50);
        let (offs, prod) = written(r.place(50, 2).unwrap());
        assert_eq!(offs, vec![1024 + 50 * 40, 1024]);
        assert_eq!(prod, 52);
        assert_eq!(r.prod(), 52);
    }

    #[test]
    fn a_full_ring_takes_nothing_and_keeps_our_index() {
        let mut r = InRingProducer::new(0);
        written(r.place(0, 50).unwrap());
        // One slot left: a batch of two does not fit, nothing is placed.
        assert_eq!(r.place(0, 2).unwrap(), Placement::Full { free: 1 });
        assert_eq!(r.prod(), 50);
        written(r.place(0, 1).unwrap());
        assert_eq!(r.place(0, 1).unwrap(), Placement::Full { free: 0 });
        // The guest catches up: room again.
        written(r.place(51, 51).unwrap());
        assert_eq!(r.prod(), 102);
    }

    #[test]
    fn a_consumer_index_ahead_of_us_or_garbage_is_refused() {
        let mut r = InRingProducer::new(10);
        assert_eq!(
            r.place(11, 1),
            Err(BadConsumer {
                cons: 11,
                prod: 10,
                len: RING_LEN
            })
        );
        assert!(r.place(0xdead_beef, 1).is_err());
        // Exactly one ring's worth behind is the most it may claim.
        assert!(r.unconsumed(10u32.wrapping_sub(RING_LEN)).is_ok());
        assert!(r.unconsumed(10u32.wrapping_sub(RING_LEN + 1)).is_err());
        assert_eq!(r.prod(), 10, "a refused placement changes nothing");
    }

    #[test]
    fn the_u32_wrap_never_overwrites_an_unconsumed_slot() {
        // u32::MAX and 0 share slot 0 (2^32 % 51 == 1).
        assert_eq!(slot(u32::MAX), slot(0));
        let mut r = InRingProducer::new(u32::MAX - 1);
        // Two fit: MAX-1 (slot 50) and MAX (slot 0); index 0 would reuse
        // slot 0 while MAX is unconsumed.
        assert_eq!(
            r.place(u32::MAX - 1, 3).unwrap(),
            Placement::Full { free: 2 }
        );
        let (offs, prod) = written(r.place(u32::MAX - 1, 2).unwrap());
        assert_eq!(offs, vec![1024 + 50 * 40, 1024]);
        assert_eq!(prod, 0);
        assert_eq!(
            r.place(u32::MAX - 1, 1).unwrap(),
            Placement::Full { free: 0 }
        );
        // Once MAX is consumed, index 0 may take slot 0.
        let (offs, _) = written(r.place(0, 1).unwrap());
        assert_eq!(offs, vec![1024]);
    }

    #[test]
    fn every_offset_is_a_whole_slot_inside_the_ring() {
        let mut r = InRingProducer::new(u32::MAX - 200);
        let mut cons = r.prod();
        for _ in 0..400 {
            if let Placement::Write { offsets, new_prod } = r.place(cons, 7).unwrap() {
                for o in offsets {
                    assert!(o >= 1024 && o + 40 <= 1024 + 2048);
                    assert_eq!((o - 1024) % 40, 0);
                }
                cons = new_prod;
            } else {
                cons = r.prod();
            }
        }
    }
}

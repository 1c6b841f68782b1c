//! ring.h rings, event pages and the kbdif page over local memory.

use proptest::prelude::*;
use pvgate_protocol::evtpage::{EventConsumer, EventProducer, EventRingError, EventRingLayout};
use pvgate_protocol::kbdif::{KbdDecodeError, KbdInEvent, MtEvent};
use pvgate_protocol::kbdpage::{KbdBackendPage, KbdFrontendPage, KbdPageError};
use pvgate_protocol::ring::{BackRing, FrontRing, RingError, RingLayout};
use pvgate_protocol::{LocalMemory, SharedMemory};

fn slot(tag: u32) -> [u8; 64] {
    let mut s = [0u8; 64];
    for (i, b) in s.iter_mut().enumerate() {
        *b = (tag as u8).wrapping_mul(31).wrapping_add(i as u8);
    }
    s[..4].copy_from_slice(&tag.to_le_bytes());
    s
}

// Offsets of the shared ring header (ring.h): req_prod, req_event, rsp_prod, rsp_event.
const REQ_PROD: usize = 0;
const REQ_EVENT: usize = 4;
const RSP_PROD: usize = 8;
const RSP_EVENT: usize = 12;

#[test]
fn ring_size_is_32_slots_of_64_bytes_in_a_page() {
    assert_eq!(RingLayout::DISPLIF.nr_ents(), 32);
    assert_eq!(RingLayout::SNDIF.nr_ents(), 32);
    assert_eq!(RingLayout::DISPLIF.slot_offset(0), 64);
    assert_eq!(RingLayout::DISPLIF.slot_offset(31), 64 + 31 * 64);
    assert_eq!(RingLayout::DISPLIF.slot_offset(32), 64);
    // __RD32 rounding: 62 slots' worth of space still gives 32.
    assert_eq!(RingLayout::new(64, 64, 64 + 62 * 64).nr_ents(), 32);
    assert_eq!(RingLayout::new(64, 64, 64 + 64 * 64).nr_ents(), 64);
}

#[test]
fn request_and_response_travel_and_notify_like_ring_h() {
    let mem = LocalMemory::page();
    let mut front = FrontRing::init(&mem, RingLayout::DISPLIF, 0).unwrap();
    let mut back = BackRing::attach(&mem, RingLayout::DISPLIF, 0);
    assert_eq!(
        mem.load_u32_acquire(REQ_EVENT).unwrap(),
        1,
        "SHARED_RING_INIT sets req_event = 1"
    );

    front.put_request(&slot(1)).unwrap();
    assert!(
        front.push_requests_and_check_notify().unwrap(),
        "first request crosses req_event"
    );
    assert_eq!(mem.load_u32_acquire(REQ_PROD).unwrap(), 1);

    assert_eq!(back.next_request().unwrap(), Some(slot(1)));
    assert_eq!(back.next_request().unwrap(), None);
    back.put_response(&slot(101)).unwrap();
    assert!(back.push_responses_and_check_notify().unwrap());
    assert_eq!(mem.load_u32_acquire(RSP_PROD).unwrap(), 1);
    assert_eq!(front.next_response().unwrap(), Some(slot(101)));
    assert_eq!(front.next_response().unwrap(), None);

    // Hold-off: without a final check the backend did not move req_event,
    // so the frontend's second request does not need a notification...
    front.put_request(&slot(2)).unwrap();
    assert!(!front.push_requests_and_check_notify().unwrap());
    // ...and the final check sees the request without sleeping.
    assert!(back.final_check_for_requests().unwrap());
    assert_eq!(back.next_request().unwrap(), Some(slot(2)));
    // Now the ring is empty: the final check re-arms req_event = req_cons + 1.
    assert!(!back.final_check_for_requests().unwrap());
    assert_eq!(mem.load_u32_acquire(REQ_EVENT).unwrap(), 3);
    front.put_request(&slot(3)).unwrap();
    assert!(front.push_requests_and_check_notify().unwrap());
}

#[test]
fn frontend_final_check_rearms_rsp_event() {
    let mem = LocalMemory::page();
    let mut front = FrontRing::init(&mem, RingLayout::SNDIF, 0).unwrap();
    let mut back = BackRing::attach(&mem, RingLayout::SNDIF, 0);
    for i in 0..3 {
        front.put_request(&slot(i)).unwrap();
    }
    front.push_requests_and_check_notify().unwrap();
    for _ in 0..3 {
        back.next_request().unwrap().unwrap();
    }
    back.put_response(&slot(10)).unwrap();
    assert!(back.push_responses_and_check_notify().unwrap());
    assert_eq!(front.next_response().unwrap(), Some(slot(10)));
    assert!(!front.final_check_for_responses().unwrap());
    assert_eq!(mem.load_u32_acquire(RSP_EVENT).unwrap(), 2);
    back.put_response(&slot(11)).unwrap();
    back.put_response(&slot(12)).unwrap();
    assert!(back.push_responses_and_check_notify().unwrap());
    assert!(front.final_check_for_responses().unwrap());
}

#[test]
fn frontend_ring_is_full_after_32_outstanding_requests() {
    let mem = LocalMemory::page();
    let mut front = FrontRing::init(&mem, RingLayout::DISPLIF, 0).unwrap();
    for i in 0..32 {
        front.put_request(&slot(i)).unwrap();
    }
    assert!(front.is_full());
    assert_eq!(
        front.put_request(&slot(99)),
        Err(RingError::Full { outstanding: 32 })
    );
}

#[test]
fn backend_refuses_a_producer_index_claiming_more_than_a_ring() {
    let mem = LocalMemory::page();
    let _front = FrontRing::init(&mem, RingLayout::DISPLIF, 0).unwrap();
    let mut back = BackRing::attach(&mem, RingLayout::DISPLIF, 0);
    mem.store_u32_release(REQ_PROD, 32).unwrap();
    assert_eq!(
        back.unconsumed_requests().unwrap(),
        32,
        "a full ring is legal"
    );
    mem.store_u32_release(REQ_PROD, 33).unwrap();
    assert!(matches!(
        back.next_request(),
        Err(RingError::ProducerOverflow {
            which: "req_prod",
            prod: 33,
            claimed: 33,
            limit: 32,
            ..
        })
    ));
    // A producer index "behind" us is the same as a huge claim.
    mem.store_u32_release(REQ_PROD, u32::MAX).unwrap();
    assert!(matches!(
        back.final_check_for_requests(),
        Err(RingError::ProducerOverflow { .. })
    ));
}

#[test]
fn backend_consumes_no_more_than_unanswered_slots_allow() {
    let mem = LocalMemory::page();
    let mut front = FrontRing::init(&mem, RingLayout::DISPLIF, 0).unwrap();
    let mut back = BackRing::attach(&mem, RingLayout::DISPLIF, 0);
    for i in 0..32 {
        front.put_request(&slot(i)).unwrap();
    }
    front.push_requests_and_check_notify().unwrap();
    for i in 0..32 {
        assert_eq!(back.next_request().unwrap(), Some(slot(i)));
    }
    assert_eq!(back.next_request().unwrap(), None);
    assert_eq!(back.put_response(&slot(0)), Ok(()));
}

#[test]
fn frontend_refuses_responses_to_requests_never_sent() {
    let mem = LocalMemory::page();
    let mut front = FrontRing::init(&mem, RingLayout::SNDIF, 0).unwrap();
    front.put_request(&slot(1)).unwrap();
    front.push_requests_and_check_notify().unwrap();
    mem.store_u32_release(RSP_PROD, 2).unwrap();
    assert!(matches!(
        front.next_response(),
        Err(RingError::ProducerOverflow {
            which: "rsp_prod",
            claimed: 2,
            limit: 1,
            ..
        })
    ));
}

#[test]
fn backend_cannot_answer_a_request_it_did_not_take() {
    let mem = LocalMemory::page();
    let mut back = BackRing::attach(&mem, RingLayout::DISPLIF, 7);
    assert_eq!(
        back.put_response(&slot(0)),
        Err(RingError::NoRequestToAnswer {
            rsp_prod_pvt: 7,
            req_cons: 7
        })
    );
}

#[test]
fn ring_indices_survive_u32_wrap() {
    let mem = LocalMemory::page();
    let start = u32::MAX - 5;
    let mut front = FrontRing::init(&mem, RingLayout::DISPLIF, start).unwrap();
    let mut back = BackRing::attach(&mem, RingLayout::DISPLIF, start);
    for round in 0..5u32 {
        for i in 0..20 {
            front.put_request(&slot(round * 100 + i)).unwrap();
        }
        front.push_requests_and_check_notify().unwrap();
        assert_eq!(back.unconsumed_requests().unwrap(), 20);
        for i in 0..20 {
            assert_eq!(back.next_request().unwrap(), Some(slot(round * 100 + i)));
            back.put_response(&slot(round * 100 + i + 50)).unwrap();
        }
        back.push_responses_and_check_notify().unwrap();
        for i in 0..20 {
            assert_eq!(
                front.next_response().unwrap(),
                Some(slot(round * 100 + i + 50))
            );
        }
    }
    assert_eq!(back.req_cons(), start.wrapping_add(100));
    assert!(back.req_cons() < start, "the indices really wrapped");
}

proptest! {
    /// Any batch pattern, starting anywhere (including just below u32::MAX):
    /// every request arrives once, in order, and every response comes back.
    #[test]
    fn ring_batches_across_wrap(start in prop_oneof![Just(u32::MAX - 40), Just(u32::MAX), any::<u32>()],
                                batches in proptest::collection::vec(1u32..=32, 1..12)) {
        let mem = LocalMemory::page();
        let mut front = FrontRing::init(&mem, RingLayout::SNDIF, start).unwrap();
        let mut back = BackRing::attach(&mem, RingLayout::SNDIF, start);
        let mut tag = 0u32;
        for n in batches {
            for k in 0..n {
                front.put_request(&slot(tag + k)).unwrap();
            }
            front.push_requests_and_check_notify().unwrap();
            for k in 0..n {
                prop_assert_eq!(back.next_request().unwrap(), Some(slot(tag + k)));
                back.put_response(&slot(!(tag + k))).unwrap();
            }
            prop_assert_eq!(back.next_request().unwrap(), None);
            back.push_responses_and_check_notify().unwrap();
            for k in 0..n {
                prop_assert_eq!(front.next_response().unwrap(), Some(slot(!(tag + k))));
            }
            prop_assert_eq!(front.next_response().unwrap(), None);
            tag += n;
        }
        prop_assert_eq!(front.req_prod_pvt(), start.wrapping_add(tag));
        prop_assert_eq!(mem.load_u32_acquire(8).unwrap(), start.wrapping_add(tag));
    }

    /// The producer-overflow rule at any position of the indices.
    #[test]
    fn overflow_rule_anywhere(start in any::<u32>(), claim in 0u32..200) {
        let mem = LocalMemory::page();
        let _front = FrontRing::init(&mem, RingLayout::DISPLIF, start).unwrap();
        let back = BackRing::attach(&mem, RingLayout::DISPLIF, start);
        mem.store_u32_release(0, start.wrapping_add(claim)).unwrap();
        let r = back.unconsumed_requests();
        if claim <= 32 {
            prop_assert_eq!(r.unwrap(), claim);
        } else {
            let is_overflow = matches!(r, Err(RingError::ProducerOverflow { .. }));
            prop_assert!(is_overflow);
        }
    }
}

fn event(tag: u32) -> [u8; 64] {
    slot(tag ^ 0x5a5a_0000)
}

#[test]
fn event_page_has_63_slots_after_a_64_byte_header() {
    for layout in [EventRingLayout::DISPLIF, EventRingLayout::SNDIF] {
        assert_eq!(layout.len, 63);
        assert_eq!(layout.ring_offset, 64);
        assert_eq!((layout.cons_offset, layout.prod_offset), (0, 4));
        assert_eq!(layout.slot_offset(62), 64 + 62 * 64);
        assert_eq!(layout.slot_offset(63), 64, "index modulo 63");
        assert_eq!(layout.slot_offset(64), 128);
    }
}

#[test]
fn event_page_producer_and_consumer() {
    let mem = LocalMemory::page();
    let mut prod = EventProducer::init(&mem, EventRingLayout::DISPLIF, 0).unwrap();
    let mut cons = EventConsumer::attach(&mem, EventRingLayout::DISPLIF).unwrap();
    for i in 0..63 {
        prod.push(&event(i)).unwrap();
    }
    assert_eq!(
        prod.push(&event(63)),
        Err(EventRingError::Full { unconsumed: 63 })
    );
    assert_eq!(mem.load_u32_acquire(4).unwrap(), 63, "in_prod published");
    // Event 62 sits in the last slot of the page.
    let mut raw = [0u8; 64];
    mem.read(64 + 62 * 64, &mut raw).unwrap();
    assert_eq!(raw, event(62));
    for i in 0..63 {
        assert_eq!(cons.next_event().unwrap(), Some(event(i)));
    }
    assert_eq!(cons.next_event().unwrap(), None);
    assert_eq!(mem.load_u32_acquire(0).unwrap(), 63, "in_cons published");
    // Index 63 wraps to slot 0.
    prod.push(&event(63)).unwrap();
    mem.read(64, &mut raw).unwrap();
    assert_eq!(raw, event(63));
    assert_eq!(cons.next_event().unwrap(), Some(event(63)));
}

#[test]
fn event_page_wraps_u32_without_overwriting_unconsumed_events() {
    // 2^32 ≡ 4 (mod 63): index 2^32-4 is slot 0 and so is index 0 after the
    // wrap. The C macro maps them the same way; the producer must not
    // overwrite the unconsumed one.
    let layout = EventRingLayout::SNDIF;
    let start = u32::MAX - 3;
    assert_eq!(layout.slot(start), 0);
    assert_eq!(layout.slot(0), 0);
    let mem = LocalMemory::page();
    let mut prod = EventProducer::init(&mem, layout, start).unwrap();
    let mut cons = EventConsumer::attach(&mem, layout).unwrap();
    for i in 0..4 {
        prod.push(&event(i)).unwrap();
    }
    assert_eq!(prod.prod(), 0);
    assert_eq!(
        prod.push(&event(4)),
        Err(EventRingError::Full { unconsumed: 4 })
    );
    assert_eq!(cons.next_event().unwrap(), Some(event(0)));
    prod.push(&event(4)).unwrap();
    for i in 1..5 {
        assert_eq!(cons.next_event().unwrap(), Some(event(i)));
    }
    assert_eq!(cons.cons(), 1);
    assert_eq!(cons.next_event().unwrap(), None);
}

#[test]
fn event_consumer_refuses_a_producer_index_too_far_ahead() {
    let mem = LocalMemory::page();
    let mut cons = EventConsumer::attach(&mem, EventRingLayout::DISPLIF).unwrap();
    mem.store_u32_release(4, 63).unwrap();
    assert_eq!(cons.pending().unwrap(), 63);
    mem.store_u32_release(4, 64).unwrap();
    assert_eq!(
        cons.next_event(),
        Err(EventRingError::ProducerOverflow {
            prod: 64,
            cons: 0,
            claimed: 64,
            len: 63
        })
    );
}

#[test]
fn event_producer_refuses_a_consumer_index_that_ran_ahead() {
    let mem = LocalMemory::page();
    let mut prod = EventProducer::init(&mem, EventRingLayout::DISPLIF, 10).unwrap();
    prod.push(&event(0)).unwrap();
    mem.store_u32_release(0, 12).unwrap();
    assert_eq!(
        prod.push(&event(1)),
        Err(EventRingError::ConsumerIndexInvalid {
            cons: 12,
            prod: 11,
            len: 63
        })
    );
}

proptest! {
    /// Interleaved pushes and pops from any start index deliver every event
    /// once and in order, never more than 63 outstanding.
    #[test]
    fn event_ring_any_start(start in prop_oneof![Just(u32::MAX - 70), Just(u32::MAX - 3), any::<u32>()],
                            steps in proptest::collection::vec((0u32..70, 0u32..70), 1..20)) {
        let mem = LocalMemory::page();
        let mut prod = EventProducer::init(&mem, EventRingLayout::DISPLIF, start).unwrap();
        let mut cons = EventConsumer::attach(&mem, EventRingLayout::DISPLIF).unwrap();
        let (mut sent, mut got) = (0u32, 0u32);
        for (pushes, pops) in steps {
            for _ in 0..pushes {
                match prod.push(&event(sent)) {
                    Ok(()) => sent += 1,
                    Err(EventRingError::Full { unconsumed }) => { prop_assert!(unconsumed <= 63); break; }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
            for _ in 0..pops {
                match cons.next_event().unwrap() {
                    Some(e) => { prop_assert_eq!(e, event(got)); got += 1; }
                    None => break,
                }
            }
        }
        while let Some(e) = cons.next_event().unwrap() {
            prop_assert_eq!(e, event(got));
            got += 1;
        }
        prop_assert_eq!(sent, got);
    }
}

#[test]
fn kbdif_page_layout() {
    let l = EventRingLayout::KBDIF_IN;
    assert_eq!(
        (l.cons_offset, l.prod_offset, l.ring_offset, l.len),
        (0, 4, 1024, 51)
    );
    assert_eq!(l.slot_offset(50), 1024 + 50 * 40);
    assert_eq!(l.slot_offset(51), 1024);
    let o = EventRingLayout::KBDIF_OUT;
    assert_eq!(
        (o.cons_offset, o.prod_offset, o.ring_offset, o.len),
        (8, 12, 3072, 25)
    );
}

#[test]
fn kbdif_page_carries_input_events() {
    let mem = LocalMemory::page();
    let mut back = KbdBackendPage::attach(&mem).unwrap();
    let mut front = KbdFrontendPage::attach(&mem).unwrap();
    let events = [
        KbdInEvent::Key {
            pressed: true,
            keycode: 30,
        },
        KbdInEvent::Position {
            abs_x: 100,
            abs_y: 200,
            rel_z: -1,
        },
        KbdInEvent::MultiTouch {
            contact_id: 3,
            event: MtEvent::Down { abs_x: 5, abs_y: 6 },
        },
    ];
    for e in &events {
        back.push(e).unwrap();
    }
    // The second event is at 1024 + 40 in the page, type byte first.
    let mut raw = [0u8; 40];
    mem.read(1024 + 40, &mut raw).unwrap();
    assert_eq!(raw[0], 4, "XENKBD_TYPE_POS");
    assert_eq!(mem.load_u32_acquire(4).unwrap(), 3, "in_prod");
    for e in &events {
        let raw = front.next_raw().unwrap().unwrap();
        assert_eq!(KbdInEvent::decode(&raw).unwrap(), *e);
    }
    assert_eq!(front.next_raw().unwrap(), None);
    assert_eq!(mem.load_u32_acquire(0).unwrap(), 3, "in_cons");
    assert_eq!(back.unconsumed().unwrap(), 0);
}

#[test]
fn kbdif_in_ring_is_full_at_51() {
    let mem = LocalMemory::page();
    let mut back = KbdBackendPage::attach(&mem).unwrap();
    for i in 0..51 {
        back.push(&KbdInEvent::Key {
            pressed: i % 2 == 0,
            keycode: i,
        })
        .unwrap();
    }
    assert!(matches!(
        back.push(&KbdInEvent::Key {
            pressed: true,
            keycode: 1
        }),
        Err(KbdPageError::Ring {
            ring: "in",
            source: EventRingError::Full { unconsumed: 51 }
        })
    ));
}

#[test]
fn kbdif_out_events_are_errors() {
    let mem = LocalMemory::page();
    let mut back = KbdBackendPage::attach(&mem).unwrap();
    assert_eq!(back.check_out_ring(), Ok(()));
    // The frontend writes an out event of type 7 and bumps out_prod.
    let mut ev = [0u8; 40];
    ev[0] = 7;
    mem.write(3072, &ev).unwrap();
    mem.store_u32_release(12, 1).unwrap();
    assert_eq!(
        back.check_out_ring(),
        Err(KbdPageError::Decode(KbdDecodeError::UnexpectedOutEvent {
            event_type: 7
        }))
    );
    // A frontend claiming 26 out events (the ring holds 25) is refused.
    mem.store_u32_release(12, 27).unwrap();
    assert!(matches!(
        back.check_out_ring(),
        Err(KbdPageError::Ring {
            ring: "out",
            source: EventRingError::ProducerOverflow { .. }
        })
    ));
}

#[test]
fn local_memory_checks_bounds_and_alignment() {
    use pvgate_protocol::memory::LocalMemoryError;
    let mem = LocalMemory::page();
    let mut buf = [0u8; 8];
    assert!(mem.read(4088, &mut buf).is_ok());
    assert_eq!(
        mem.read(4089, &mut buf),
        Err(LocalMemoryError::OutOfBounds {
            offset: 4089,
            len: 8,
            size: 4096
        })
    );
    assert!(mem.read(usize::MAX - 2, &mut buf).is_err());
    assert_eq!(
        mem.load_u32_acquire(2),
        Err(LocalMemoryError::Misaligned(2))
    );
    mem.store_u32_release(8, 0xdead_beef).unwrap();
    assert_eq!(mem.load_u32_acquire(8), Ok(0xdead_beef));
    assert_eq!(&mem.snapshot()[8..12], &0xdead_beefu32.to_le_bytes());
    // A ring on too small a memory reports the memory error, not a panic.
    let tiny = LocalMemory::new(16);
    let mut back = BackRing::attach(&tiny, RingLayout::DISPLIF, 0);
    tiny.store_u32_release(0, 1).unwrap();
    assert!(matches!(
        back.next_request(),
        Err(RingError::Memory(LocalMemoryError::OutOfBounds { .. }))
    ));
}

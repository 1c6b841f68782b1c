//! Bad guests: an `in_cons` that runs ahead of what we produced, or is
//! garbage, closes that guest's device (logged with guest, device and
//! reason) while another guest keeps receiving input; a guest that never
//! consumes has its input dropped and counted, and the gateway never waits.

mod input_common;

use std::time::{Duration, Instant};

use input_common::*;
use pvgate_backends::input::{GuestInput, InputError, InputKind, InputSink};
use pvgate_guest_sim::guest::GuestSim;
use pvgate_guest_sim::xenbus::XenbusState as GuestState;
use pvgate_protocol::kbdif::KbdInEvent;
use pvgate_protocol::xenbus::XenbusState;
use pvgate_protocol::SharedMemory;

const KEY_A: u16 = 30;

fn tap(code: u16) -> [GuestInput; 2] {
    [
        GuestInput::Key {
            code,
            pressed: true,
        },
        GuestInput::Key {
            code,
            pressed: false,
        },
    ]
}

/// A well-behaved guest next to the bad one.
async fn good_guest(h: &Harness, domid: u16) -> (GuestSim, Backend, InputSink) {
    let config = guest_config(domid, &[], &[""]);
    h.create(&config).await;
    let be = h.input_backend(domid, 0, InputKind::Vkbd).await;
    let guest = h.start_guest(config).await;
    guest.inputs[0]
        .device
        .wait_state(GuestState::Connected, WAIT)
        .await
        .expect("connected");
    let sink = h.sink(domid).await;
    (guest, be, sink)
}

/// Runs on one thread so the captured subscriber sees every task's logs.
fn with_captured_logs<F: std::future::Future<Output = ()>>(test: impl FnOnce(LogCapture) -> F) {
    let logs = LogCapture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(test(logs));
}

#[test]
fn in_cons_ahead_of_our_events_closes_only_that_device() {
    with_captured_logs(|logs| async move {
        let h = Harness::start().await;
        let (good, good_be, good_sink) = good_guest(&h, 41).await;

        let bad_config = guest_config(42, &[], &[""]);
        h.create(&bad_config).await;
        let bad_be = h.input_backend(42, 0, InputKind::Vkbd).await;
        let raw = RawGuest::publish(&h, 42, 0).await;
        let bad_sink = h.sink(42).await;
        bad_sink.send(&tap(KEY_A)).expect("delivered");
        assert_eq!(raw.prod(), 2);
        // The guest claims to have consumed far more than was produced.
        raw.set_cons(raw.prod().wrapping_add(1000));
        assert_eq!(bad_sink.send(&tap(KEY_A)), Err(InputError::Disconnected));
        assert_eq!(raw.prod(), 2, "nothing written past a bad index");
        h.wait_backend_state(42, 0, InputKind::Vkbd, |s| s == XenbusState::Closing)
            .await;
        assert!(h.inputs.get(42).is_none());
        assert_eq!(bad_sink.send(&tap(KEY_A)), Err(InputError::Disconnected));

        // The other guest is untouched.
        assert_eq!(
            h.backend_state(41, 0, InputKind::Vkbd).await,
            XenbusState::Connected
        );
        good_sink.send(&tap(KEY_A)).expect("delivered");
        wait_input(&good.inputs[0], |s| s.text == "a").await;

        let text = logs.text();
        let line = text
            .lines()
            .find(|l| l.contains("in_cons") && l.contains("dom42 vkbd/0"))
            .unwrap_or_else(|| panic!("no log line names the guest, device and reason:\n{text}"));
        assert!(line.contains("WARN"), "{line}");
        assert!(!text.contains("dom41 vkbd/0: in_cons"));
        drop(raw);
        good.shutdown().await;
        good_be.stop().await;
        bad_be.stop().await;
    });
}

#[test]
fn garbage_in_cons_is_caught_when_the_guest_notifies() {
    with_captured_logs(|logs| async move {
        let h = Harness::start().await;
        let config = guest_config(43, &[], &[""]);
        h.create(&config).await;
        let be = h.input_backend(43, 0, InputKind::Vkbd).await;
        let raw = RawGuest::publish(&h, 43, 0).await;
        let sink = h.sink(43).await;
        // No input is being sent: the notification alone triggers the check.
        raw.set_cons(0xdead_beef);
        raw.page.evtchn.notify().expect("notify");
        h.wait_backend_state(43, 0, InputKind::Vkbd, |s| s == XenbusState::Closing)
            .await;
        assert!(!sink.is_connected());
        assert!(
            logs.text()
                .lines()
                .any(|l| l.contains("dom43 vkbd/0") && l.contains("3735928559")),
            "{}",
            logs.text()
        );
        drop(raw);
        be.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_never_consumes_loses_input_without_stalling_anyone() {
    let h = Harness::start().await;
    let (good, good_be, good_sink) = good_guest(&h, 44).await;
    let config = guest_config(45, &[], &[""]);
    h.create(&config).await;
    let be = h.input_backend(45, 0, InputKind::Vkbd).await;
    let raw = RawGuest::publish(&h, 45, 0).await;
    let sink = h.sink(45).await;

    // 51 slots: 25 taps fill 50, the 26th does not fit whole.
    for _ in 0..25 {
        sink.send(&tap(KEY_A)).expect("room");
    }
    assert_eq!(raw.prod(), 50);
    assert_eq!(
        sink.send(&tap(KEY_A)),
        Err(InputError::RingFull { dropped: 2 })
    );
    assert_eq!(raw.prod(), 50, "a batch is written whole or not at all");
    // The slots hold the events in order, as the guest will read them.
    for i in 0..50u32 {
        let mut slot = [0u8; 40];
        raw.page
            .shm
            .read(1024 + i as usize * 40, &mut slot)
            .expect("slot");
        assert_eq!(
            KbdInEvent::decode(&slot).expect("event"),
            KbdInEvent::Key {
                pressed: i % 2 == 0,
                keycode: u32::from(KEY_A)
            }
        );
    }

    // Hammering a stuck guest returns at once every time.
    let started = Instant::now();
    for _ in 0..500 {
        assert!(matches!(
            sink.send(&[GuestInput::Pointer { x: 1, y: 1 }]),
            Ok(()) | Err(InputError::RingFull { .. })
        ));
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "sends waited: {took:?}");
    assert_eq!(raw.prod(), 51, "one more single event fitted");
    assert_eq!(sink.dropped(), 2 + 499);
    assert_eq!(sink.stats().dropped_full, 501);
    assert_eq!(
        h.backend_state(45, 0, InputKind::Vkbd).await,
        XenbusState::Connected,
        "a slow guest is not a bad guest"
    );
    good_sink
        .send(&tap(KEY_A))
        .expect("the other guest is served");
    wait_input(&good.inputs[0], |s| s.text == "a").await;

    // The guest catches up: input flows again.
    raw.set_cons(raw.prod());
    sink.send(&tap(KEY_A)).expect("room again");
    assert_eq!(raw.prod(), 53);
    drop(raw);
    good.shutdown().await;
    good_be.stop().await;
    be.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_cut_by_the_rate_limit() {
    let h = Harness::start().await;
    let config = guest_config(46, &[], &[""]);
    h.create(&config).await;
    let limits = pvgate_backends::input::InputLimits {
        events_per_sec: 10,
        burst: 20,
        ..Default::default()
    };
    let be = h.input_backend_with(46, 0, InputKind::Vkbd, limits).await;
    let guest = h.start_guest(config).await;
    guest.inputs[0]
        .device
        .wait_state(GuestState::Connected, WAIT)
        .await
        .expect("connected");
    let sink = h.sink(46).await;
    let mut limited = 0;
    for _ in 0..100 {
        if let Err(e) = sink.send(&tap(KEY_A)) {
            assert_eq!(e, InputError::RateLimited { dropped: 2 });
            limited += 1;
        }
    }
    assert!(limited >= 85, "only {limited} of 100 taps were limited");
    assert_eq!(sink.stats().dropped_rate, 2 * limited);
    guest.shutdown().await;
    be.stop().await;
}

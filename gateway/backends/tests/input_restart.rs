//! Restarts: the guest's driver coming back (a new probe) and the gateway
//! restarting under a connected xen-kbdfront. Input works afterwards.

mod input_common;

use input_common::*;
use pvgate_backends::input::{GuestInput, InputKind};
use pvgate_guest_sim::xenbus::XenbusState as GuestState;
use pvgate_protocol::xenbus::XenbusState;

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

const KEY_A: u16 = 30;
const KEY_B: u16 = 48;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frontend_restart_reconnects_and_input_flows_again() {
    let h = Harness::start().await;
    let config = guest_config(51, &["connectors=640x480"], &[""]);
    h.create(&config).await;
    let be = h.input_backend(51, 0, InputKind::Vkbd).await;
    let guest = h.start_guest(config.clone()).await;
    guest.inputs[0]
        .device
        .wait_state(GuestState::Connected, WAIT)
        .await
        .expect("connected");
    let old_sink = h.sink(51).await;
    old_sink.send(&tap(KEY_A)).expect("delivered");
    wait_input(&guest.inputs[0], |s| s.text == "a").await;

    // The driver goes away (Closing, Closed) and probes again.
    let platform = guest.platform.clone();
    guest.shutdown().await;
    h.wait_backend_state(51, 0, InputKind::Vkbd, |s| s == XenbusState::Closed)
        .await;
    assert!(
        old_sink.send(&tap(KEY_A)).is_err(),
        "the old page is let go"
    );
    let guest = pvgate_guest_sim::GuestSim::start(config, platform, Default::default())
        .await
        .expect("guest again");
    guest.inputs[0]
        .device
        .wait_state(GuestState::Connected, WAIT)
        .await
        .expect("reconnected");
    h.wait_backend_state(51, 0, InputKind::Vkbd, |s| s == XenbusState::Connected)
        .await;
    let f = guest.inputs[0].features().expect("probed again");
    assert_eq!((f.width, f.height), (640, 480));
    let sink = h.sink(51).await;
    sink.send(&tap(KEY_B)).expect("delivered");
    wait_input(&guest.inputs[0], |s| s.text == "b").await;
    guest.shutdown().await;
    be.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_restart_under_a_connected_guest_serves_it_again() {
    let h = Harness::start().await;
    let config = guest_config(52, &["connectors=640x480"], &[""]);
    h.create(&config).await;
    let be = h.input_backend(52, 0, InputKind::Vkbd).await;
    let guest = h.start_guest(config).await;
    let input = &guest.inputs[0];
    input
        .device
        .wait_state(GuestState::Connected, WAIT)
        .await
        .expect("connected");
    let sink = h.sink(52).await;
    // Enough batches that our producer index is well past 0, so a new
    // backend must continue from the page's in_prod.
    for i in 1..=40 {
        sink.send(&tap(KEY_A)).expect("delivered");
        wait_input(input, |s| s.text.len() == i && s.held.is_empty()).await;
    }

    // The gateway stops without a word, and a new one starts.
    be.stop().await;
    assert!(h.inputs.get(52).is_none());
    assert!(sink.send(&tap(KEY_A)).is_err());
    let be = h.input_backend(52, 0, InputKind::Vkbd).await;
    h.wait_backend_state(52, 0, InputKind::Vkbd, |s| s == XenbusState::Connected)
        .await;
    // xen-kbdfront does not probe again: it keeps the space it read, and
    // we keep offering the same one.
    let sink = h.sink(52).await;
    assert_eq!(sink.space().pointer, (640, 480));
    sink.send(&[
        GuestInput::Key {
            code: 28, // KEY_ENTER clears the line
            pressed: true,
        },
        GuestInput::Key {
            code: 28,
            pressed: false,
        },
    ])
    .expect("delivered");
    sink.send(&tap(KEY_B)).expect("delivered");
    wait_input(input, |s| s.text == "b").await;
    assert_eq!(input.device.state(), GuestState::Connected);
    guest.shutdown().await;
    be.stop().await;
}

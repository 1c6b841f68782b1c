//! The kbdif handshake: the backend's features are in place before the
//! guest probes (the guest's driver read them), both ends reach Connected,
//! and the sink's space is what the guest was told. vinput is served too.

mod input_common;

use input_common::*;
use pvgate_backends::input::{InputKind, InputSpace};
use pvgate_guest_sim::input::InputFeatures;
use pvgate_guest_sim::xenbus::XenbusState as GuestState;
use pvgate_protocol::xenbus::XenbusState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_reads_our_features_at_probe_and_connects() {
    let h = Harness::start().await;
    let config = guest_config(31, &["connectors=640x360;800x600"], &[""]);
    h.create(&config).await;
    let be = h.input_backend(31, 0, InputKind::Vkbd).await;
    let guest = h.start_guest(config).await;
    let input = &guest.inputs[0];
    input
        .device
        .wait_state(GuestState::Connected, WAIT)
        .await
        .expect("frontend Connected");
    h.wait_backend_state(31, 0, InputKind::Vkbd, |s| s == XenbusState::Connected)
        .await;
    assert_eq!(
        input.features(),
        Some(InputFeatures {
            keyboard: true,
            pointer: true,
            abs_pointer: true,
            multi_touch: true,
            // The guest's first display connector.
            width: 640,
            height: 360,
            mt_contacts: 10,
            mt_width: 640,
            mt_height: 360,
        }),
        "what xen-kbdfront read from our directory at probe"
    );
    let sink = h.sink(31).await;
    assert_eq!(
        sink.space(),
        InputSpace {
            pointer: (640, 360),
            touch: (640, 360),
            contacts: 10
        }
    );
    assert_eq!(sink.device(), (31, 0));
    assert!(sink.is_connected());
    assert_eq!(h.inputs.list().len(), 1);
    guest.shutdown().await;
    h.wait_backend_state(31, 0, InputKind::Vkbd, |s| s == XenbusState::Closed)
        .await;
    assert!(h.inputs.get(31).is_none(), "a closed device is not listed");
    assert!(!sink.is_connected());
    be.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vinput_without_a_display_gets_the_fallback_space_over_the_toolstacks() {
    let h = Harness::start().await;
    // backend-type=linux: backend/vinput, frontend still device/vkbd. The
    // toolstack wrote its own width/height; ours replace them.
    let config = guest_config(
        32,
        &[],
        &["backend-type=linux, feature-abs-pointer=1, width=999, height=111"],
    );
    h.create(&config).await;
    let be = h.input_backend(32, 0, InputKind::Vinput).await;
    let guest = h.start_guest(config).await;
    guest.inputs[0]
        .device
        .wait_state(GuestState::Connected, WAIT)
        .await
        .expect("frontend Connected");
    let f = guest.inputs[0].features().expect("probed");
    assert_eq!((f.width, f.height), (1280, 720));
    assert_eq!((f.mt_width, f.mt_height, f.mt_contacts), (1280, 720, 10));
    assert!(f.abs_pointer && f.multi_touch);
    let sink = h.sink(32).await;
    assert_eq!(sink.space().pointer, (1280, 720));
    h.wait_backend_state(32, 0, InputKind::Vinput, |s| s == XenbusState::Connected)
        .await;
    guest.shutdown().await;
    be.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_probed_before_the_gateway_keeps_the_space_it_read() {
    let h = Harness::start().await;
    let config = guest_config(37, &["connectors=640x360"], &[""]);
    h.create(&config).await;
    // xen-kbdfront probes with no backend running: it reads no width or
    // height and takes its 800×600 default, and never reads them again.
    let guest = h.start_guest(config).await;
    let input = &guest.inputs[0];
    input
        .device
        .wait_state(GuestState::Initialised, WAIT)
        .await
        .expect("published");
    let f = input.features().expect("probed");
    assert_eq!((f.width, f.height, f.abs_pointer), (800, 600, false));
    let be = h.input_backend(37, 0, InputKind::Vkbd).await;
    input
        .device
        .wait_state(GuestState::Connected, WAIT)
        .await
        .expect("connected");
    let sink = h.sink(37).await;
    // Not the display's 640×360: positions are in the space the guest has.
    assert_eq!(sink.space().pointer, (800, 600));
    // It asked for neither absolute pointer nor touch: relative motion.
    assert_eq!(sink.space().contacts, 0);
    sink.send(&[pvgate_backends::input::GuestInput::Pointer { x: 400, y: 300 }])
        .expect("delivered");
    // Starting from the middle of its 640×360 screen, +400/+300 relative
    // clamps at the corner.
    wait_input(input, |s| s.pointer == (639, 359)).await;
    guest.shutdown().await;
    be.stop().await;
}

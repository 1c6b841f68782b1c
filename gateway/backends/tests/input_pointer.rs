//! Pointer, buttons, wheel and multi-touch reach the guest as kbdif events;
//! with a display, the cursor the guest draws where the pointer went is in
//! the gateway's copy of its screen.

mod input_common;

use input_common::*;
use pvgate_backends::display::OutputKey;
use pvgate_backends::input::{GuestInput, InputError, InputKind, TouchPhase};
use pvgate_guest_sim::content::{
    find_cursor, pixfmt, read_buttons, ImageView, PixelLayout, Renderer, Scene,
};
use pvgate_guest_sim::xenbus::XenbusState as GuestState;
use pvgate_protocol::displif::PixelFormat;
use pvgate_protocol::kbdif::{KbdInEvent, MtEvent};

const BTN_LEFT: u16 = 0x110;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_puts_the_guests_cursor_there_and_the_gateway_sees_it() {
    let h = Harness::start().await;
    let config = guest_config(34, &["connectors=320x240"], &[""]);
    h.create(&config).await;
    let input_be = h.input_backend(34, 0, InputKind::Vkbd).await;
    let display_be = h.display_backend(34);
    let guest = h.start_guest(config).await;
    let input = &guest.inputs[0];
    input
        .device
        .wait_state(GuestState::Connected, WAIT)
        .await
        .expect("input connected");
    let session = guest.displays[0]
        .connected(WAIT)
        .await
        .expect("display connected");
    let sink = h.sink(34).await;
    assert_eq!(sink.space().pointer, (320, 240));

    sink.send(&[
        GuestInput::Pointer { x: 200, y: 150 },
        GuestInput::Key {
            code: BTN_LEFT,
            pressed: true,
        },
    ])
    .expect("delivered");
    let state = wait_input(input, |s| s.pointer == (200, 150) && s.buttons.left).await;

    // The guest draws its screen with the cursor and flips it.
    let (w, h_) = (320, 240);
    let format = PixelFormat::Xrgb8888;
    let dbuf = session
        .create_dbuf(w, h_, format.bpp())
        .await
        .expect("DBUF_CREATE");
    let fb = session.fb_attach(&dbuf, format).await.expect("FB_ATTACH");
    let picture = Renderer::new(Scene::Desktop, w, h_).render(1, 1_000_000, Some(&state));
    let pitch = pixfmt::min_pitch(format, w);
    let bytes = pixfmt::encode_to_vec(&picture, format, pitch).expect("encode");
    dbuf.write(0, &bytes).expect("write buffer");
    session
        .set_config(0, Some((fb, w, h_, format.bpp())))
        .await
        .expect("SET_CONFIG");
    session.page_flip(0, fb).await.expect("PG_FLIP");

    let key = OutputKey {
        domid: 34,
        devid: 0,
        connector: 0,
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let frame = loop {
        if let Some(f) = h.displays.get(key).and_then(|o| o.latest_frame()) {
            break f;
        }
        assert!(tokio::time::Instant::now() < deadline, "no frame copied");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    let view = ImageView::new(
        frame.data(),
        frame.width(),
        frame.height(),
        frame.stride(),
        PixelLayout::Bgra,
    )
    .expect("view");
    assert_eq!(
        find_cursor(&view),
        Some((200, 150)),
        "the cursor is at the clicked pixel of the gateway's frame"
    );
    assert!(
        read_buttons(&view).left,
        "and the left button shows pressed"
    );
    drop(dbuf);
    guest.shutdown().await;
    display_be.stop().await;
    input_be.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_scale_to_a_guest_screen_of_another_size() {
    let h = Harness::start().await;
    // No display: we offer 1280×720, the guest's screen is its default
    // 800×600, and it scales as the input core does.
    let (be, guest, sink) = h.connected_vkbd(guest_config(35, &[], &[""])).await;
    let input = &guest.inputs[0];
    let mut rx = input.subscribe();
    sink.send(&[GuestInput::Pointer { x: 640, y: 360 }])
        .expect("delivered");
    assert_eq!(
        recv_events(&mut rx, 1).await,
        vec![KbdInEvent::Position {
            abs_x: 640,
            abs_y: 360,
            rel_z: 0
        }]
    );
    wait_input(input, |s| s.pointer == (400, 300)).await;
    // Outside the space: clamped to its last pixel, and counted.
    sink.send(&[GuestInput::Pointer { x: 5000, y: 719 }])
        .expect("delivered");
    wait_input(input, |s| s.pointer == (799, 599)).await;
    assert_eq!(sink.stats().clamped, 1);
    guest.shutdown().await;
    be.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wheel_and_two_finger_touch_arrive_as_kbdif_events() {
    let h = Harness::start().await;
    let (be, guest, sink) = h
        .connected_vkbd(guest_config(36, &["connectors=640x480"], &[""]))
        .await;
    let input = &guest.inputs[0];
    let mut rx = input.subscribe();

    sink.send(&[GuestInput::Wheel { notches: 3 }])
        .expect("delivered");
    assert_eq!(
        recv_events(&mut rx, 1).await,
        vec![KbdInEvent::Motion {
            rel_x: 0,
            rel_y: 0,
            rel_z: 3
        }]
    );
    // Positive = down: the guest's REL_WHEEL is the negation.
    wait_input(input, |s| s.wheel.1 == -3).await;

    let touch = |contact, phase, x, y| GuestInput::Touch {
        contact,
        phase,
        x,
        y,
    };
    sink.send(&[
        touch(0, TouchPhase::Down, 100, 100),
        touch(1, TouchPhase::Down, 300, 200),
    ])
    .expect("delivered");
    let mt = |contact_id, event| KbdInEvent::MultiTouch { contact_id, event };
    assert_eq!(
        recv_events(&mut rx, 3).await,
        vec![
            mt(
                0,
                MtEvent::Down {
                    abs_x: 100,
                    abs_y: 100
                }
            ),
            mt(
                1,
                MtEvent::Down {
                    abs_x: 300,
                    abs_y: 200
                }
            ),
            mt(1, MtEvent::Syn),
        ]
    );
    wait_input(input, |s| {
        s.touches.get(&0) == Some(&(100, 100)) && s.touches.get(&1) == Some(&(300, 200))
    })
    .await;
    sink.send(&[
        touch(0, TouchPhase::Move, 110, 120),
        touch(1, TouchPhase::Move, 310, 220),
    ])
    .expect("delivered");
    assert_eq!(
        recv_events(&mut rx, 3).await,
        vec![
            mt(
                0,
                MtEvent::Motion {
                    abs_x: 110,
                    abs_y: 120
                }
            ),
            mt(
                1,
                MtEvent::Motion {
                    abs_x: 310,
                    abs_y: 220
                }
            ),
            mt(1, MtEvent::Syn),
        ]
    );
    sink.send(&[touch(0, TouchPhase::Up, 0, 0)])
        .expect("delivered");
    assert_eq!(
        recv_events(&mut rx, 2).await,
        vec![mt(0, MtEvent::Up), mt(0, MtEvent::Syn)]
    );
    wait_input(input, |s| {
        s.touches.len() == 1 && s.touches.get(&1) == Some(&(310, 220))
    })
    .await;
    sink.send(&[touch(1, TouchPhase::Up, 0, 0)])
        .expect("delivered");
    wait_input(input, |s| s.touches.is_empty()).await;
    // Contacts beyond what we offered are refused.
    assert_eq!(
        sink.send(&[touch(10, TouchPhase::Down, 1, 1)]),
        Err(InputError::BadContact {
            contact: 10,
            contacts: 10
        })
    );
    guest.shutdown().await;
    be.stop().await;
}

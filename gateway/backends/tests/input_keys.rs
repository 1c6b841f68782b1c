//! Keys: a batch of presses and releases reaches the guest in order, and
//! its text line shows what was typed.

mod input_common;

use input_common::*;
use pvgate_backends::input::{GuestInput, InputError};
use pvgate_guest_sim::content::{events_for_text, InputEvent};
use pvgate_protocol::kbdif::KbdInEvent;

fn keys_for(text: &str) -> Vec<GuestInput> {
    events_for_text(text)
        .into_iter()
        .filter_map(|e| match e {
            InputEvent::Key { code, pressed } => Some(GuestInput::Key { code, pressed }),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_text_arrives_in_order() {
    let h = Harness::start().await;
    let (be, guest, sink) = h.connected_vkbd(guest_config(33, &[], &[""])).await;
    let input = &guest.inputs[0];
    let mut rx = input.subscribe();

    let batch = keys_for("Hello, World!");
    assert!(batch.len() > 26, "shifted characters add events");
    sink.send(&batch).expect("delivered");
    let got = recv_events(&mut rx, batch.len()).await;
    let want: Vec<KbdInEvent> = batch
        .iter()
        .map(|g| match *g {
            GuestInput::Key { code, pressed } => KbdInEvent::Key {
                pressed,
                keycode: u32::from(code),
            },
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(got, want, "every press and release, in order");
    let s = wait_input(input, |s| s.text == "Hello, World!").await;
    assert!(s.held.is_empty(), "every key released: {:?}", s.held);

    // Several batches keep their order too, and the ring wraps.
    for word in ["abc", " def", " ghi", " jkl", " mno", " pqr"] {
        sink.send(&keys_for(word)).expect("delivered");
    }
    wait_input(input, |s| s.text == "Hello, World!abc def ghi jkl mno pqr").await;

    // A bad code refuses the whole batch: nothing of it arrives.
    let mut bad = keys_for("x");
    bad.push(GuestInput::Key {
        code: 0x300,
        pressed: true,
    });
    assert_eq!(sink.send(&bad), Err(InputError::BadKeyCode(0x300)));
    sink.send(&keys_for("!")).expect("delivered");
    wait_input(input, |s| s.text.ends_with("pqr!")).await;
    assert_eq!(sink.stats().refused, 1);
    assert_eq!(sink.dropped(), 0);
    guest.shutdown().await;
    be.stop().await;
}

//! The frontends recover when the backend goes away and comes back, each the
//! way its Linux driver does: displif through Reconfiguring → Initialising
//! and a fresh publish; sndif straight back to Initialising and a fresh
//! publish on InitWait; kbdif to Closed, then Connected again with the same
//! page and event channel. (In-process guest; the backend is test code.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use pvgate_guest_sim::config::{DisplayConfig, GuestConfig, InputConfig, SoundCardConfig};
use pvgate_guest_sim::guest::{GuestSim, StartOptions};
use pvgate_guest_sim::io::channel::CallError;
use pvgate_guest_sim::io::shm::Shm;
use pvgate_guest_sim::sim::{connect_guest, connect_toolstack, XsRegistry};
use pvgate_guest_sim::toolstack::Toolstack;
use pvgate_guest_sim::xenbus::XenbusState;
use pvgate_protocol::kbdif::KbdInEvent;
use pvgate_protocol::kbdpage::KbdBackendPage;
use pvgate_protocol::sndif::{
    HwParams, Interval, SndRequest, SndRequestOp, SndResponse, SndResponseBody,
};

const DOMID: u16 = 9;
/// displif.h: the EDID buffer is at least XENDISPL_EDID_MAX_SIZE (256 blocks of 128).
const EDID_BUF: u32 = 256 * 128;

/// HW_PARAM_QUERY from the guest, answered with `answer`.
async fn query_round_trip(
    stream: Arc<pvgate_guest_sim::sound::SoundStream>,
    req: &mut RingEnd,
    answer: HwParams,
) {
    let guest = tokio::spawn(async move { stream.hw_param_query(HwParams::default()).await });
    let request = SndRequest::decode(&req.next().await).expect("request");
    assert!(matches!(request.op, SndRequestOp::HwParamQuery(_)));
    req.respond(
        &SndResponse {
            id: request.id,
            status: 0,
            body: SndResponseBody::HwParamQuery(answer),
        }
        .encode(),
    );
    assert_eq!(guest.await.expect("join").expect("query"), answer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frontends_recover_when_the_backend_restarts() {
    let sim = Sim::start().await;
    let dom0 = sim.dom0().await;
    let store = dom0.store.clone();
    let config = GuestConfig {
        domid: DOMID,
        name: "restart".into(),
        displays: vec![DisplayConfig::parse("connectors=640x480").expect("vdispl")],
        sound_cards: vec![
            SoundCardConfig::parse("card, sample-rates=44100 | stream, type=p").expect("vsnd"),
        ],
        inputs: vec![InputConfig::parse("feature-abs-pointer=1").expect("vkb")],
    };
    let ts = connect_toolstack(sim.path()).await.expect("toolstack");
    Toolstack::new(&ts, &XsRegistry(&ts))
        .create_domain(&config)
        .await
        .expect("create domain");
    let guest = connect_guest(sim.path(), DOMID).await.expect("guest");
    let sim_guest = GuestSim::start(
        config,
        guest.platform.clone(),
        StartOptions {
            report: None,
            frame_lookup: Some(guest.frame_lookup()),
        },
    )
    .await
    .expect("guest sim");
    let display = sim_guest.displays[0].clone();
    let sound = sim_guest.sounds[0].clone();
    let input = sim_guest.inputs[0].clone();

    let be_displ = format!("/local/domain/0/backend/vdispl/{DOMID}/0");
    let be_snd = format!("/local/domain/0/backend/vsnd/{DOMID}/0");
    let be_kbd = format!("/local/domain/0/backend/vkbd/{DOMID}/0");
    let fe_kbd = format!("/local/domain/{DOMID}/device/vkbd/0");

    // First connection.
    let (mut dreq, devt) = connect_display(&dom0, DOMID, &be_displ).await;
    let first = display.connected(WAIT).await.expect("display connected");
    edid_round_trip(
        &dom0,
        DOMID,
        first.clone(),
        &mut dreq,
        &[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00],
    )
    .await;
    let (mut sreq, sevt) = connect_sound(&dom0, DOMID, &be_snd).await;
    let first_snd = sound.connected(WAIT).await.expect("sound connected");
    let answer = HwParams {
        formats: 1 << 3,
        rates: Interval {
            min: 44100,
            max: 44100,
        },
        channels: Interval { min: 2, max: 2 },
        buffer: Interval {
            min: 64,
            max: 16384,
        },
        period: Interval { min: 32, max: 8192 },
    };
    query_round_trip(first_snd.stream(0).expect("stream"), &mut sreq, answer).await;
    let kbd_gref = wait_node(&*store, &format!("{fe_kbd}/page-gref"), |v| v.is_some())
        .await
        .expect("gref");
    let kbd_port = read(&*store, &format!("{fe_kbd}/event-channel")).await;
    let kbd = backend_handshake(&dom0, &be_kbd, &["3", "4"], |_fe| async {
        let shm = Shm::new(
            dom0.grants
                .map(DOMID, &[kbd_gref.parse().expect("gref")], true)
                .expect("map"),
        );
        let ev = dom0
            .events
            .bind_interdomain(DOMID, kbd_port.parse().expect("port"))
            .await
            .expect("bind");
        (KbdBackendPage::attach(shm).expect("page"), ev)
    })
    .await;
    input
        .device
        .wait_state(XenbusState::Connected, WAIT)
        .await
        .expect("kbd connected");

    // The backend dies: its mappings and bindings go, and a restarted
    // backend announces itself with Closed, then InitWait.
    drop((dreq, devt, sreq, sevt, kbd));
    for be in [&be_displ, &be_snd] {
        store
            .write(&format!("{be}/state"), "6")
            .await
            .expect("Closed");
    }
    store
        .write(&format!("{be_kbd}/state"), "5")
        .await
        .expect("Closing");
    // xen-drm-front: Reconfiguring, tear down, back to Initialising.
    display
        .wait_state(XenbusState::Initialising, WAIT)
        .await
        .expect("display back to Initialising");
    assert!(display.current().is_none());
    let err = first
        .get_edid(0, EDID_BUF)
        .await
        .expect_err("old session must be dead");
    assert!(
        matches!(
            err,
            pvgate_guest_sim::display::DisplayError::Call {
                source: CallError::Disconnected,
                ..
            }
        ),
        "{err}"
    );
    sound
        .wait_state(XenbusState::Initialising, WAIT)
        .await
        .expect("sound back to Initialising");
    // xen-kbdfront: Closed.
    input
        .device
        .wait_state(XenbusState::Closed, WAIT)
        .await
        .expect("kbd Closed");

    // The backend is back: the full handshake again, on fresh rings.
    let (mut dreq, _devt) = connect_display(&dom0, DOMID, &be_displ).await;
    let second = display
        .connected_after(Some(&first), WAIT)
        .await
        .expect("display reconnected");
    assert!(!Arc::ptr_eq(&first, &second));
    edid_round_trip(
        &dom0,
        DOMID,
        second,
        &mut dreq,
        &[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x12],
    )
    .await;
    let (mut sreq, _sevt) = connect_sound(&dom0, DOMID, &be_snd).await;
    let second_snd = sound
        .connected_after(Some(&first_snd), WAIT)
        .await
        .expect("sound reconnected");
    query_round_trip(second_snd.stream(0).expect("stream"), &mut sreq, answer).await;

    // kbdif keeps its page and port: the new backend maps and binds them again.
    assert_eq!(
        read(&*store, &format!("{fe_kbd}/page-gref")).await,
        kbd_gref
    );
    let mut events = input.subscribe();
    let mut kbd = backend_handshake(&dom0, &be_kbd, &["6", "4"], |_fe| async {
        let shm = Shm::new(
            dom0.grants
                .map(DOMID, &[kbd_gref.parse().expect("gref")], true)
                .expect("map"),
        );
        let ev = dom0
            .events
            .bind_interdomain(DOMID, kbd_port.parse().expect("port"))
            .await
            .expect("rebind");
        (KbdBackendPage::attach(shm).expect("page"), ev)
    })
    .await;
    kbd.0
        .push(&KbdInEvent::Key {
            pressed: true,
            keycode: 30,
        })
        .expect("push");
    kbd.1.notify().expect("notify");
    let ev = tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("key arrives")
        .expect("event");
    assert_eq!(
        ev,
        KbdInEvent::Key {
            pressed: true,
            keycode: 30
        }
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(input.snapshot().text, "a");

    sim_guest.shutdown().await;
}

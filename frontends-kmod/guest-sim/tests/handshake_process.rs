//! A `pvgate-guest-sim` PROCESS and gateway-side test code (platform traits +
//! protocol crate, acting as dom0's backend) complete the XenBus handshake
//! for vdispl, vsnd and vkbd over the simulated Xen, and move requests,
//! responses and events over each ring; both sides' bytes are checked.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use pvgate_guest_sim::content::tone::ToneGenerator;
use pvgate_guest_sim::io::shm::Shm;
use pvgate_platform::sim::hypervisor::SimDomainMemory;
use pvgate_platform::{Perm, PermAccess, Platform};
use pvgate_protocol::displif::{
    DisplEvent, DisplEventKind, DisplOp, DisplRequest, DisplRequestOp, DisplResponse, PixelFormat,
};
use pvgate_protocol::evtpage::EventRingLayout;
use pvgate_protocol::kbdif::KbdInEvent;
use pvgate_protocol::kbdpage::KbdBackendPage;
use pvgate_protocol::pagedir::{self, DirPage, DirectoryWalker};
use pvgate_protocol::ring::RingLayout;
use pvgate_protocol::sndif::{
    mask_of, PcmFormat, SndEvent, SndEventKind, SndRequest, SndRequestOp, SndResponse,
    SndResponseBody, TriggerType,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

const DOMID: u16 = 7;

/// The guest process's stdout, line by line.
struct Lines(mpsc::UnboundedReceiver<String>);

impl Lines {
    async fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let fut = async {
            while let Some(line) = self.0.recv().await {
                if pred(&line) {
                    return Some(line);
                }
            }
            None
        };
        match tokio::time::timeout(WAIT, fut).await {
            Ok(Some(l)) => l,
            _ => panic!("the guest never printed {what}"),
        }
    }
}

fn map_directory(dom0: &Platform, gref: u32, buffer_sz: u32) -> Vec<u32> {
    let data_refs = pagedir::grant_count(buffer_sz);
    let mut walker = DirectoryWalker::new(gref, data_refs).expect("directory");
    while let Some(next) = walker.next_page_ref() {
        let m = dom0
            .grants
            .map(DOMID, &[next], false)
            .expect("map directory page");
        let mut page: DirPage = [0u8; pagedir::PAGE_SIZE];
        m.read(0, &mut page).expect("read directory");
        walker.feed(&page).expect("walk directory");
    }
    walker.finish().expect("directory complete")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_process_handshakes_and_moves_requests_and_events_on_every_ring() {
    let sim = Sim::start().await;
    let dom0 = sim.dom0().await;
    let store = dom0.store.clone();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pvgate-guest-sim"))
        .args(["--sim-dir", sim.path().to_str().expect("utf-8 path")])
        .args(["--domid", &DOMID.to_string(), "--name", "handshake"])
        .args(["--vdispl", "backend=0,be-alloc=0,connectors=main:320x240"])
        .args([
            "--vsnd",
            "[ 'card, short-name=Sim, sample-rates=48000, sample-formats=s16_le', 'pcm, name=dev0', 'stream, unique-id=pb0, type=p, channels-max=2' ]",
        ])
        .args(["--vkb", "feature-abs-pointer=1,width=320,height=240"])
        .args(["--fps", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn pvgate-guest-sim");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let _ = tx.send(l);
        }
    });
    let mut out = Lines(rx);

    // --- The toolstack's nodes, as libxl writes them. ---
    let be_displ = format!("/local/domain/0/backend/vdispl/{DOMID}/0");
    let fe_displ = format!("/local/domain/{DOMID}/device/vdispl/0");
    wait_node(&*store, &format!("{be_displ}/state"), |v| v.is_some()).await;
    assert_eq!(
        read(&*store, &format!("/local/domain/{DOMID}/name")).await,
        "handshake"
    );
    assert_eq!(
        read(&*store, &format!("{fe_displ}/backend")).await,
        be_displ
    );
    assert_eq!(read(&*store, &format!("{fe_displ}/backend-id")).await, "0");
    assert_eq!(
        read(&*store, &format!("{be_displ}/frontend-id")).await,
        DOMID.to_string()
    );
    assert_eq!(read(&*store, &format!("{be_displ}/online")).await, "1");
    assert_eq!(
        read(&*store, &format!("{fe_displ}/0/resolution")).await,
        "320x240"
    );
    assert_eq!(
        read(&*store, &format!("{fe_displ}/0/unique-id")).await,
        "main"
    );
    let n = |d| Perm {
        domid: d,
        access: PermAccess::None,
    };
    let r = |d| Perm {
        domid: d,
        access: PermAccess::Read,
    };
    assert_eq!(
        store.get_perms(&fe_displ).await.expect("perms"),
        vec![n(DOMID), r(0)]
    );
    assert_eq!(
        store.get_perms(&be_displ).await.expect("perms"),
        vec![n(0), r(DOMID)]
    );
    assert_eq!(
        store
            .get_perms(&format!("{fe_displ}/0/resolution"))
            .await
            .expect("perms"),
        vec![n(0), r(DOMID)]
    );

    // --- vdispl: handshake. ---
    let (mut req, mut evt) = backend_handshake(&dom0, &be_displ, &["3"], |fe| {
        let dom0 = dom0.clone();
        async move {
            let s = &*dom0.store;
            let rref: u32 = read(s, &format!("{fe}/0/req-ring-ref"))
                .await
                .parse()
                .expect("gref");
            let rport: u32 = read(s, &format!("{fe}/0/req-event-channel"))
                .await
                .parse()
                .expect("port");
            let eref: u32 = read(s, &format!("{fe}/0/evt-ring-ref"))
                .await
                .parse()
                .expect("gref");
            let eport: u32 = read(s, &format!("{fe}/0/evt-event-channel"))
                .await
                .parse()
                .expect("port");
            (
                RingEnd::connect(&dom0, DOMID, rref, rport, RingLayout::DISPLIF).await,
                EventEnd::connect(&dom0, DOMID, eref, eport, EventRingLayout::DISPLIF).await,
            )
        }
    })
    .await;
    out.expect("vdispl Connected", |l| l == "state vdispl/0 Connected")
        .await;

    // The render loop: DBUF_CREATE ×2, FB_ATTACH ×2, SET_CONFIG, PG_FLIP.
    let guest_mem = SimDomainMemory::open(sim.path(), DOMID).expect("guest memory");
    let mut dbufs = Vec::new();
    let mut fbs = Vec::new();
    let flip_cookie = loop {
        let slot = req.next().await;
        let request = DisplRequest::decode(&slot).expect("a valid displif request");
        match request.op {
            DisplRequestOp::DbufCreate(c) => {
                assert_eq!((c.width, c.height, c.bpp), (320, 240, 32));
                assert_eq!(c.buffer_sz, 320 * 240 * 4);
                assert!(!c.be_alloc);
                let refs = map_directory(&dom0, c.gref_directory, c.buffer_sz);
                assert_eq!(refs.len() as u32, pagedir::grant_count(c.buffer_sz));
                // The guest's pages are scattered, never one contiguous run.
                let frames: Vec<u32> = refs
                    .iter()
                    .map(|g| guest_mem.grant_entry(*g).expect("grant entry").frame)
                    .collect();
                assert!(
                    frames.windows(2).any(|w| w[1] != w[0] + 1),
                    "buffer pages are contiguous: {frames:?}"
                );
                let mapping = Shm::new(dom0.grants.map(DOMID, &refs, false).expect("map buffer"));
                dbufs.push((c.dbuf_cookie, mapping));
            }
            DisplRequestOp::FbAttach(a) => {
                assert_eq!(a.pixel_format, PixelFormat::Xrgb8888);
                assert!(
                    dbufs.iter().any(|(c, _)| *c == a.dbuf_cookie),
                    "FB_ATTACH of an unknown dbuf"
                );
                fbs.push((a.fb_cookie, a.dbuf_cookie));
            }
            DisplRequestOp::SetConfig(_) => {}
            DisplRequestOp::PgFlip { fb_cookie } => {
                req.respond(&DisplResponse::for_request(&request, 0).encode());
                break fb_cookie;
            }
            other => panic!("unexpected request {other:?}"),
        }
        let rsp = DisplResponse::for_request(&request, 0);
        assert_eq!(rsp.op(), request.op.op());
        req.respond(&rsp.encode());
    };
    assert_eq!(dbufs.len(), 2);
    assert_eq!(fbs.len(), 2);
    // The flipped buffer holds the guest's picture: frame 1's counter strip.
    let (_, dbuf_cookie) = fbs
        .iter()
        .find(|(fb, _)| *fb == flip_cookie)
        .expect("flip of an attached fb");
    let (_, pixels) = dbufs.iter().find(|(c, _)| c == dbuf_cookie).expect("dbuf");
    let mut bytes = vec![0u8; 320 * 240 * 4];
    pixels.0.read(0, &mut bytes).expect("read pixels");
    let view = pvgate_guest_sim::content::ImageView::new(
        &bytes,
        320,
        240,
        320 * 4,
        pvgate_guest_sim::content::PixelLayout::Bgra,
    )
    .expect("view");
    let strip = pvgate_guest_sim::content::decode_strip(&view).expect("frame strip readable");
    assert_eq!(strip.frame, 1);
    // EVT_PG_FLIP: the guest consumes it and reports the flip done.
    evt.push(
        &DisplEvent {
            id: 0,
            kind: DisplEventKind::PgFlip {
                fb_cookie: flip_cookie,
            },
        }
        .encode(),
    );
    let line = out
        .expect("flip done", |l| l.starts_with("flip vdispl/0/0 frame=1"))
        .await;
    assert_eq!(
        line,
        format!(
            "flip vdispl/0/0 frame=1 fb={:#x} outcome=Done",
            flip_cookie.get()
        )
    );
    evt.wait_consumed(1).await;
    // And, its vsync having come, it flips again.
    let next = DisplRequest::decode(&req.next().await).expect("request");
    assert_eq!(next.op.op(), DisplOp::PgFlip);

    // --- vsnd: handshake. ---
    let be_snd = format!("/local/domain/0/backend/vsnd/{DOMID}/0");
    let (mut sreq, mut sevt) = backend_handshake(&dom0, &be_snd, &["3"], |fe| {
        let dom0 = dom0.clone();
        async move {
            let s = &*dom0.store;
            let st = format!("{fe}/0/0");
            assert_eq!(read(s, &format!("{st}/unique-id")).await, "pb0");
            let rref: u32 = read(s, &format!("{st}/ring-ref"))
                .await
                .parse()
                .expect("gref");
            let rport: u32 = read(s, &format!("{st}/event-channel"))
                .await
                .parse()
                .expect("port");
            let eref: u32 = read(s, &format!("{st}/evt-ring-ref"))
                .await
                .parse()
                .expect("gref");
            let eport: u32 = read(s, &format!("{st}/evt-event-channel"))
                .await
                .parse()
                .expect("port");
            (
                RingEnd::connect(&dom0, DOMID, rref, rport, RingLayout::SNDIF).await,
                EventEnd::connect(&dom0, DOMID, eref, eport, EventRingLayout::SNDIF).await,
            )
        }
    })
    .await;
    out.expect("vsnd Connected", |l| l == "state vsnd/0 Connected")
        .await;
    // HW_PARAM_QUERY several times, then OPEN.
    let mut queries = 0;
    let (buffer, open) = loop {
        let slot = sreq.next().await;
        let request = SndRequest::decode(&slot).expect("a valid sndif request");
        match request.op {
            SndRequestOp::HwParamQuery(q) => {
                queries += 1;
                assert!(
                    q.formats & mask_of([PcmFormat::S16Le]) != 0,
                    "query without S16_LE: {q:?}"
                );
                assert!(
                    q.rates.min <= 48000 && 48000 <= q.rates.max,
                    "query rates {:?}",
                    q.rates
                );
                let mut answer = q;
                answer.formats = mask_of([PcmFormat::S16Le]);
                answer.rates.min = 48000;
                answer.rates.max = 48000;
                let rsp = SndResponse {
                    id: request.id,
                    status: 0,
                    body: SndResponseBody::HwParamQuery(answer),
                };
                sreq.respond(&rsp.encode());
            }
            SndRequestOp::Open(o) => {
                sreq.respond(&SndResponse::for_request(&request, 0).encode());
                let refs = map_directory(&dom0, o.gref_directory, o.buffer_sz);
                let m = Shm::new(
                    dom0.grants
                        .map(DOMID, &refs, false)
                        .expect("map pcm buffer"),
                );
                break (m, o);
            }
            other => panic!("unexpected request before OPEN: {other:?}"),
        }
    };
    assert!(
        queries >= 5,
        "snd-xen-front queries repeatedly before OPEN; got {queries}"
    );
    assert_eq!(open.pcm_rate, 48000);
    assert_eq!(open.pcm_format, PcmFormat::S16Le);
    assert_eq!(open.pcm_channels, 2);
    assert_eq!(open.period_sz, 480 * 4);
    assert_eq!(open.buffer_sz, 4 * open.period_sz);
    // The buffer is filled period by period, then TRIGGER start.
    let mut writes = 0;
    loop {
        let request = SndRequest::decode(&sreq.next().await).expect("request");
        sreq.respond(&SndResponse::for_request(&request, 0).encode());
        match request.op {
            SndRequestOp::Write(w) => {
                assert_eq!(w.offset, writes * open.period_sz);
                assert_eq!(w.length, open.period_sz);
                writes += 1;
            }
            SndRequestOp::Trigger(TriggerType::Start) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(writes, 4);
    // The samples are the content's 440 Hz / 660 Hz tone at -6 dBFS, from
    // its first frame on.
    let mut first = vec![0u8; open.buffer_sz as usize];
    buffer.0.read(0, &mut first).expect("read pcm");
    let expected = ToneGenerator::new(48000, 2, -6.0)
        .next_bytes((open.buffer_sz / 4) as usize, PcmFormat::S16Le)
        .expect("tone");
    assert_eq!(first, expected);
    // CUR_POS: one period played. The guest consumes it and refills it.
    sevt.push(
        &SndEvent {
            id: 0,
            kind: SndEventKind::CurPos {
                position: u64::from(open.period_sz),
            },
        }
        .encode(),
    );
    sevt.wait_consumed(1).await;
    let refill = SndRequest::decode(&sreq.next().await).expect("request");
    match refill.op {
        SndRequestOp::Write(w) => assert_eq!((w.offset, w.length), (0, open.period_sz)),
        other => panic!("expected the refill WRITE, got {other:?}"),
    }
    sreq.respond(&SndResponse::for_request(&refill, 0).encode());

    // --- vkbd: handshake (the frontend publishes before InitWait and goes
    // Connected on InitWait). ---
    let be_kbd = format!("/local/domain/0/backend/vkbd/{DOMID}/0");
    let mut kbd = backend_handshake(&dom0, &be_kbd, &["3", "4"], |fe| {
        let dom0 = dom0.clone();
        let guest_mem = guest_mem.clone();
        async move {
            let s = &*dom0.store;
            assert_eq!(read(s, &format!("{fe}/request-abs-pointer")).await, "1");
            let gref: u32 = read(s, &format!("{fe}/page-gref"))
                .await
                .parse()
                .expect("gref");
            let frame: u64 = read(s, &format!("{fe}/page-ref"))
                .await
                .parse()
                .expect("frame");
            assert_eq!(
                Some(frame),
                guest_mem.grant_entry(gref).map(|e| u64::from(e.frame))
            );
            let port: u32 = read(s, &format!("{fe}/event-channel"))
                .await
                .parse()
                .expect("port");
            let shm = Shm::new(dom0.grants.map(DOMID, &[gref], true).expect("map kbd page"));
            let evtchn = dom0
                .events
                .bind_interdomain(DOMID, port)
                .await
                .expect("bind kbd");
            (KbdBackendPage::attach(shm).expect("kbd page"), evtchn)
        }
    })
    .await;
    out.expect("vkbd Connected", |l| l == "state vkbd/0 Connected")
        .await;
    kbd.0
        .push(&KbdInEvent::Key {
            pressed: true,
            keycode: 30,
        })
        .expect("push key");
    kbd.1.notify().expect("notify");
    out.expect("the key event", |l| {
        l == "input vkbd/0 key keycode=30 pressed=1"
    })
    .await;
    let fut = async {
        while kbd.0.unconsumed().expect("in ring") != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("key event consumed");
    // xen-kbdfront notifies after consuming a batch.
    tokio::time::timeout(WAIT, kbd.1.wait())
        .await
        .expect("kbdfront notifies")
        .expect("wait");

    child.kill().await.expect("kill guest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_process_that_vanishes_mid_stream_leaves_its_device_connected() {
    const D: u16 = 8;
    let sim = Sim::start().await;
    let dom0 = sim.dom0().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pvgate-guest-sim"))
        .args(["--sim-dir", sim.path().to_str().expect("utf-8 path")])
        .args(["--domid", &D.to_string(), "--vdispl", "connectors=64x64"])
        .args([
            "--fps",
            "100",
            "--misbehave",
            "vanish",
            "--misbehave-after-ms",
            "300",
        ])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn pvgate-guest-sim");
    let be = format!("/local/domain/0/backend/vdispl/{D}/0");
    let (mut req, mut evt) = common::connect_display(&dom0, D, &be).await;
    // Serve it (every flip gets its event) until it is gone.
    let mut flips = 0u16;
    let serve = async {
        while let Some(slot) = req.try_next().await {
            let request = DisplRequest::decode(&slot).expect("request");
            req.ring
                .put_response(&DisplResponse::for_request(&request, 0).encode())
                .expect("respond");
            if req.ring.push_responses_and_check_notify().expect("push") {
                let _ = req.evtchn.notify();
            }
            if let DisplRequestOp::PgFlip { fb_cookie } = request.op {
                let ev = DisplEvent {
                    id: flips,
                    kind: DisplEventKind::PgFlip { fb_cookie },
                };
                evt.producer.push(&ev.encode()).expect("push event");
                let _ = evt.evtchn.notify();
                flips += 1;
            }
        }
        // The guest is gone; wait for the process to be reaped.
        std::future::pending::<()>().await;
    };
    let status = tokio::select! {
        s = child.wait() => s.expect("wait"),
        _ = serve => unreachable!(),
    };
    assert!(status.success());
    assert!(flips > 0, "it streamed before vanishing");
    // No goodbye: its state still says Connected...
    let fe = format!("/local/domain/{D}/device/vdispl/0");
    assert_eq!(read(&*dom0.store, &format!("{fe}/state")).await, "4");
    // ...but its end of the event channels is gone with the process.
    let gone = async {
        while evt.evtchn.notify().is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, gone)
        .await
        .expect("notify to a vanished guest fails");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_process_that_hangs_keeps_its_rings_but_stops_consuming() {
    const D: u16 = 6;
    let sim = Sim::start().await;
    let dom0 = sim.dom0().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pvgate-guest-sim"))
        .args(["--sim-dir", sim.path().to_str().expect("utf-8 path")])
        .args(["--domid", &D.to_string(), "--vdispl", "connectors=64x64"])
        .args([
            "--fps",
            "100",
            "--misbehave",
            "hang",
            "--misbehave-after-ms",
            "300",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn pvgate-guest-sim");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let _ = tx.send(l);
        }
    });
    let mut out = Lines(rx);
    let be = format!("/local/domain/0/backend/vdispl/{D}/0");
    let (mut req, mut evt) = common::connect_display(&dom0, D, &be).await;
    let mut flips = 0u16;
    let serve = async {
        while let Some(slot) = req.try_next().await {
            let request = DisplRequest::decode(&slot).expect("request");
            req.ring
                .put_response(&DisplResponse::for_request(&request, 0).encode())
                .expect("respond");
            if req.ring.push_responses_and_check_notify().expect("push") {
                let _ = req.evtchn.notify();
            }
            if let DisplRequestOp::PgFlip { fb_cookie } = request.op {
                let ev = DisplEvent {
                    id: flips,
                    kind: DisplEventKind::PgFlip { fb_cookie },
                };
                evt.producer.push(&ev.encode()).expect("push event");
                let _ = evt.evtchn.notify();
                flips += 1;
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = out.expect("the hang", |l| l == "misbehave hang now") => {}
        _ = serve => unreachable!(),
    }
    assert!(flips > 0, "it streamed before hanging");
    // Let what was in flight settle, then: an event is no longer consumed,
    // but the guest's event channel is still there.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = evt.in_cons();
    evt.push(
        &DisplEvent {
            id: flips,
            kind: DisplEventKind::PgFlip {
                fb_cookie: std::num::NonZeroU64::MIN,
            },
        }
        .encode(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        evt.in_cons(),
        before,
        "a hung guest does not consume events"
    );
    assert!(
        evt.evtchn.notify().is_ok(),
        "a hung guest keeps its event channel"
    );
    assert_eq!(
        read(
            &*dom0.store,
            &format!("/local/domain/{D}/device/vdispl/0/state")
        )
        .await,
        "4"
    );
    child.kill().await.expect("kill");
}

//! The frontends' request sequences, seen from a test backend: be-alloc
//! buffers, every pixel format, playback paced by CUR_POS, capture, and
//! what each misbehaviour mode puts on the ring.

mod common;

use std::time::Duration;

use common::*;
use pvgate_guest_sim::config::{DisplayConfig, GuestConfig, SoundCardConfig};
use pvgate_guest_sim::content::tone::{self, ToneGenerator};
use pvgate_guest_sim::content::Scene;
use pvgate_guest_sim::content::{decode_strip, pixfmt, Frame};
use pvgate_guest_sim::display::render::{render_loop, RenderOptions};
use pvgate_guest_sim::misbehave::{self, Mode};
use pvgate_protocol::displif::{
    DisplDecodeError, DisplEvent, DisplEventKind, DisplRequest, DisplRequestOp, DisplResponse,
    PixelFormat,
};
use pvgate_protocol::pagedir;
use pvgate_protocol::ring::RingError;
use pvgate_protocol::sndif::{
    PcmFormat, SndEvent, SndEventKind, SndRequest, SndRequestOp, SndResponse,
};
use pvgate_protocol::SharedMemory;
use tokio::sync::watch;

fn display_guest(domid: u16, spec: &str) -> GuestConfig {
    GuestConfig {
        domid,
        name: format!("d{domid}"),
        displays: vec![DisplayConfig::parse(spec).expect("vdispl")],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn be_alloc_buffers_are_mapped_from_the_backends_grants() {
    const D: u16 = 11;
    let sim = Sim::start().await;
    let dom0 = sim.dom0().await;
    let guest = start_guest(&sim, display_guest(D, "be-alloc=1,connectors=64x32")).await;
    let (mut req, _evt) =
        connect_display(&dom0, D, &format!("/local/domain/0/backend/vdispl/{D}/0")).await;
    let session = guest.displays[0].connected(WAIT).await.expect("connected");
    assert!(session.be_alloc);

    let s = session.clone();
    let creating = tokio::spawn(async move { s.create_dbuf(64, 32, 32).await });
    let request = DisplRequest::decode(&req.next().await).expect("request");
    let DisplRequestOp::DbufCreate(c) = request.op else {
        panic!("expected DBUF_CREATE")
    };
    assert!(c.be_alloc, "XENDISPL_DBUF_FLG_REQ_ALLOC");
    assert_eq!(c.buffer_sz, 64 * 32 * 4);
    // The backend allocates, shares to the guest and fills the directory the
    // guest granted (writable).
    let pages = dom0
        .grants
        .share(D, pagedir::grant_count(c.buffer_sz) as usize, true)
        .expect("share");
    let dir = dom0
        .grants
        .map(D, &[c.gref_directory], true)
        .expect("map directory writable");
    let mut next = [0u8; 4];
    dir.read(pagedir::NEXT_OFFSET, &mut next)
        .expect("read link");
    assert_eq!(
        u32::from_le_bytes(next),
        0,
        "a one-page directory ends its chain"
    );
    dir.write(pagedir::REFS_OFFSET, &pagedir::encode_refs(&pages.refs))
        .expect("fill directory");
    req.respond(&DisplResponse::for_request(&request, 0).encode());
    let dbuf = creating.await.expect("join").expect("DBUF_CREATE");
    // What the guest writes lands in the backend's pages.
    let pattern: Vec<u8> = (0..c.buffer_sz).map(|i| (i % 251) as u8).collect();
    dbuf.write(0, &pattern).expect("guest writes");
    let mut seen = vec![0u8; pattern.len()];
    pages.mapping.read(0, &mut seen).expect("backend reads");
    assert_eq!(seen, pattern);

    // DBUF_DESTROY: for be-alloc the guest unmaps before asking.
    let s = session.clone();
    let destroying = tokio::spawn(async move { s.destroy_dbuf(dbuf).await });
    let request = DisplRequest::decode(&req.next().await).expect("request");
    assert!(
        matches!(request.op, DisplRequestOp::DbufDestroy { dbuf_cookie } if dbuf_cookie == c.dbuf_cookie)
    );
    req.respond(&DisplResponse::for_request(&request, 0).encode());
    destroying.await.expect("join").expect("DBUF_DESTROY");
    guest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pixel_format_is_attached_and_drawn() {
    const D: u16 = 12;
    let (w, h) = (320u32, 240u32);
    let sim = Sim::start().await;
    let dom0 = sim.dom0().await;
    let guest = start_guest(&sim, display_guest(D, "connectors=320x240")).await;
    let (mut req, mut evt) =
        connect_display(&dom0, D, &format!("/local/domain/0/backend/vdispl/{D}/0")).await;
    let session = guest.displays[0].connected(WAIT).await.expect("connected");
    let mut events = 0u16;
    for format in PixelFormat::ALL {
        let (_stop_tx, stop) = watch::channel(false);
        let opts = RenderOptions {
            connector: 0,
            format,
            fps: 1000,
            scene: Scene::Pattern,
            frames: Some(1),
        };
        let s = session.clone();
        let looping = tokio::spawn(async move { render_loop(s, opts, None, None, stop).await });
        let mut buffers = Vec::new();
        let mut attached = Vec::new();
        // DBUF_CREATE ×2, FB_ATTACH ×2, SET_CONFIG, PG_FLIP, SET_CONFIG
        // (off), FB_DETACH ×2, DBUF_DESTROY ×2.
        for _ in 0..11 {
            let request = DisplRequest::decode(&req.next().await).expect("request");
            req.respond(&DisplResponse::for_request(&request, 0).encode());
            match request.op {
                DisplRequestOp::DbufCreate(c) => {
                    assert_eq!(c.bpp, format.bpp(), "{}", format.name());
                    assert_eq!(
                        u64::from(c.buffer_sz),
                        pvgate_protocol::displif::dumb_size(w, h, c.bpp).expect("size")
                    );
                    buffers.push((
                        c.dbuf_cookie,
                        map_directory(&dom0, D, c.gref_directory, c.buffer_sz, false).1,
                    ));
                }
                DisplRequestOp::FbAttach(a) => {
                    assert_eq!(a.pixel_format, format);
                    attached.push((a.fb_cookie, a.dbuf_cookie));
                }
                DisplRequestOp::PgFlip { fb_cookie } => {
                    let (_, dbuf) = attached
                        .iter()
                        .find(|(fb, _)| *fb == fb_cookie)
                        .expect("attached fb");
                    let (_, shm) = buffers.iter().find(|(c, _)| c == dbuf).expect("dbuf");
                    let pitch = pvgate_protocol::displif::dumb_pitch(w, format.bpp())
                        .expect("pitch") as usize;
                    let mut bytes = vec![0u8; pitch * h as usize];
                    shm.0.read(0, &mut bytes).expect("read");
                    let frame: Frame = pixfmt::decode(&bytes, w, h, pitch, format).expect("decode");
                    let strip = decode_strip(&frame.view())
                        .unwrap_or_else(|| panic!("strip in {}", format.name()));
                    assert_eq!(strip.frame, 1, "{}", format.name());
                    evt.push(
                        &DisplEvent {
                            id: events,
                            kind: DisplEventKind::PgFlip { fb_cookie },
                        }
                        .encode(),
                    );
                    events += 1;
                }
                _ => {}
            }
        }
        let stats = looping.await.expect("join").expect("render loop");
        assert_eq!(stats.flips, 1);
        assert_eq!(stats.frame_done_timeouts, 0);
    }
    guest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_misbehaviours_put_what_they_say_on_the_ring() {
    const D: u16 = 13;
    let sim = Sim::start().await;
    let dom0 = sim.dom0().await;
    let guest = start_guest(&sim, display_guest(D, "connectors=64x64")).await;
    let (mut req, _evt) =
        connect_display(&dom0, D, &format!("/local/domain/0/backend/vdispl/{D}/0")).await;
    let session = guest.displays[0].connected(WAIT).await.expect("connected");
    let wait = Duration::from_secs(2);

    // Invalid grant: the directory reference maps nothing.
    let s = session.clone();
    let job = tokio::spawn(async move { misbehave::on_display(Mode::InvalidGref, &s, wait).await });
    let request = DisplRequest::decode(&req.next().await).expect("decodes");
    let DisplRequestOp::DbufCreate(c) = request.op else {
        panic!("expected DBUF_CREATE")
    };
    assert!(dom0.grants.map(D, &[c.gref_directory], false).is_err());
    req.respond(&DisplResponse::for_request(&request, -22).encode());
    assert_eq!(
        job.await.expect("join").expect("outcome").statuses,
        vec![-22]
    );

    // Foreign grant: real pages, granted to somebody else.
    let s = session.clone();
    let job = tokio::spawn(async move { misbehave::on_display(Mode::ForeignGref, &s, wait).await });
    let request = DisplRequest::decode(&req.next().await).expect("decodes");
    let DisplRequestOp::DbufCreate(c) = request.op else {
        panic!("expected DBUF_CREATE")
    };
    let refused = dom0
        .grants
        .map(D, &[c.gref_directory], false)
        .expect_err("foreign grant must not map");
    assert!(
        refused.to_string().contains(&c.gref_directory.to_string()),
        "{refused}"
    );
    req.respond(&DisplResponse::for_request(&request, -22).encode());
    assert_eq!(
        job.await.expect("join").expect("outcome").statuses,
        vec![-22]
    );

    // Overflowing sizes: the decoder refuses them.
    let s = session.clone();
    let job = tokio::spawn(async move { misbehave::on_display(Mode::Overflow, &s, wait).await });
    let slot = req.next().await;
    assert!(matches!(
        DisplRequest::decode(&slot),
        Err(DisplDecodeError::Overflow { .. } | DisplDecodeError::BufferTooSmall { .. })
    ));
    let mut rsp = [0u8; 64];
    rsp[..2].copy_from_slice(&slot[..2]);
    rsp[2] = slot[2];
    rsp[4..8].copy_from_slice(&(-22i32).to_le_bytes());
    req.respond(&rsp);
    assert_eq!(
        job.await.expect("join").expect("outcome").statuses,
        vec![-22]
    );

    // Garbage opcodes.
    let s = session.clone();
    let job =
        tokio::spawn(async move { misbehave::on_display(Mode::GarbageOpcodes, &s, wait).await });
    for _ in 0..8 {
        let slot = req.next().await;
        assert!(
            matches!(DisplRequest::decode(&slot), Err(DisplDecodeError::UnknownOperation(op)) if op >= 0xe0)
        );
    }
    let o = job.await.expect("join").expect("outcome");
    assert_eq!(o.sent, 8);
    assert!(o.silent, "nobody answered");

    // Flood: the ring fills without the guest waiting for answers.
    let s = session.clone();
    let job = tokio::spawn(async move {
        misbehave::on_display(Mode::Flood, &s, Duration::from_millis(50)).await
    });
    let o = job.await.expect("join").expect("outcome");
    assert!(o.sent >= 24, "flood sent only {}", o.sent);
    assert_eq!(
        req.ring.unconsumed_requests().expect("within a ring"),
        32 - 8
    );

    // Ring ahead: req_prod claims a million requests.
    let o = misbehave::on_display(Mode::RingAhead, &session, Duration::from_millis(10))
        .await
        .expect("outcome");
    assert_eq!(o.sent, 0);
    assert!(matches!(
        req.ring.unconsumed_requests(),
        Err(RingError::ProducerOverflow { .. })
    ));
    let prod = req.shm.load_u32_acquire(0).expect("req_prod");
    assert!(prod >= 1_000_000);
    guest.vanish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playback_is_paced_by_cur_pos_and_capture_reads_what_the_backend_wrote() {
    const D: u16 = 14;
    let sim = Sim::start().await;
    let dom0 = sim.dom0().await;
    let config = GuestConfig {
        domid: D,
        name: "snd".into(),
        sound_cards: vec![SoundCardConfig::parse(
            "card, sample-rates=8000, sample-formats=s16_le;float_le | stream, unique-id=out, type=p | stream, unique-id=in, type=c, channels-max=1",
        )
        .expect("vsnd")],
        ..Default::default()
    };
    let guest = start_guest(&sim, config).await;
    let be = format!("/local/domain/0/backend/vsnd/{D}/0");
    // Two streams: connect both rings by hand.
    let (mut rings, mut events) = backend_handshake(&dom0, &be, &["3"], |fe| {
        let dom0 = dom0.clone();
        async move {
            let s = &*dom0.store;
            let mut rings = Vec::new();
            let mut events = Vec::new();
            for st in [format!("{fe}/0/0"), format!("{fe}/0/1")] {
                let num =
                    |k: String| async move { read(s, &k).await.parse::<u32>().expect("number") };
                let (r, p) = (
                    num(format!("{st}/ring-ref")).await,
                    num(format!("{st}/event-channel")).await,
                );
                let (er, ep) = (
                    num(format!("{st}/evt-ring-ref")).await,
                    num(format!("{st}/evt-event-channel")).await,
                );
                rings.push(
                    RingEnd::connect(&dom0, D, r, p, pvgate_protocol::ring::RingLayout::SNDIF)
                        .await,
                );
                events.push(
                    EventEnd::connect(
                        &dom0,
                        D,
                        er,
                        ep,
                        pvgate_protocol::evtpage::EventRingLayout::SNDIF,
                    )
                    .await,
                );
            }
            (rings, events)
        }
    })
    .await;
    let session = guest.sounds[0].connected(WAIT).await.expect("connected");
    let out = session.stream_by_id("out").expect("playback stream");
    let input = session.stream_by_id("in").expect("capture stream");

    // Playback of 4 periods of 80 frames (10 ms), buffer of 2 periods, F32.
    let period = 80 * 2 * 4;
    let total = 4 * period as u64;
    let o = out.clone();
    let playing = tokio::spawn(async move {
        o.open(PcmFormat::F32Le, 8000, 2, 2 * period, period)
            .await?;
        let mut tone = ToneGenerator::new(8000, 2, -6.0);
        o.play_tone(&mut tone, total).await
    });
    let ring = &mut rings[0];
    let buffer = loop {
        let request = SndRequest::decode(&ring.next().await).expect("request");
        ring.respond(&SndResponse::for_request(&request, 0).encode());
        if let SndRequestOp::Open(op) = request.op {
            assert_eq!(
                (op.pcm_format, op.pcm_rate, op.pcm_channels),
                (PcmFormat::F32Le, 8000, 2)
            );
            break map_directory(&dom0, D, op.gref_directory, op.buffer_sz, false).1;
        }
    };
    let mut played = Vec::new();
    let mut position = 0u64;
    let mut event_id = 0u16;
    let mut writes_before_start = 0;
    let mut started = false;
    while played.len() < total as usize {
        let request = SndRequest::decode(&rings[0].next().await).expect("request");
        match request.op {
            SndRequestOp::Write(w) => {
                let mut chunk = vec![0u8; w.length as usize];
                buffer.0.read(w.offset as usize, &mut chunk).expect("read");
                played.extend_from_slice(&chunk);
                if !started {
                    writes_before_start += 1;
                }
                // No more than a buffer ahead of what was played.
                assert!(
                    played.len() as u64 <= position + 2 * u64::from(period),
                    "wrote ahead of CUR_POS"
                );
                rings[0].respond(&SndResponse::for_request(&request, 0).encode());
            }
            SndRequestOp::Trigger(_) => {
                started = true;
                rings[0].respond(&SndResponse::for_request(&request, 0).encode());
            }
            other => panic!("unexpected {other:?}"),
        }
        if started && (played.len() as u64) > position {
            position += u64::from(period);
            events[0].push(
                &SndEvent {
                    id: event_id,
                    kind: SndEventKind::CurPos { position },
                }
                .encode(),
            );
            event_id += 1;
        }
    }
    assert_eq!(
        writes_before_start, 2,
        "the buffer is filled before TRIGGER start"
    );
    // Drain: answer the rest (TRIGGER stop), and keep positions coming.
    loop {
        tokio::select! {
            r = &mut Box::pin(async { SndRequest::decode(&rings[0].next().await) }) => {
                let request = r.expect("request");
                rings[0].respond(&SndResponse::for_request(&request, 0).encode());
            }
            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                position += u64::from(period);
                events[0].push(&SndEvent { id: event_id, kind: SndEventKind::CurPos { position } }.encode());
                event_id += 1;
            }
        }
        if playing.is_finished() {
            break;
        }
    }
    let stats = playing.await.expect("join").expect("playback");
    assert_eq!(stats.bytes, total);
    let expected = ToneGenerator::new(8000, 2, -6.0)
        .next_bytes(320, PcmFormat::F32Le)
        .expect("tone");
    assert_eq!(
        played, expected,
        "the guest played exactly the content's tone"
    );

    // Capture: the backend serves a 1 kHz tone on READ.
    let period = 800u32 * 2; // 100 ms of mono S16
    let i = input.clone();
    let capturing = tokio::spawn(async move {
        i.open(PcmFormat::S16Le, 8000, 1, 4 * period, period)
            .await?;
        i.capture_samples(u64::from(8 * period)).await
    });
    let mut source = ToneGenerator::with_frequencies(8000, vec![1000.0], -3.0);
    let mut position = 0u64;
    let mut event_id = 0u16;
    let capture_buffer = loop {
        let request = SndRequest::decode(&rings[1].next().await).expect("request");
        rings[1].respond(&SndResponse::for_request(&request, 0).encode());
        if let SndRequestOp::Open(op) = request.op {
            break map_directory(&dom0, D, op.gref_directory, op.buffer_sz, true).1;
        }
    };
    loop {
        let request = SndRequest::decode(&rings[1].next().await).expect("request");
        match request.op {
            SndRequestOp::Trigger(_) => {
                rings[1].respond(&SndResponse::for_request(&request, 0).encode());
                if capturing.is_finished() || position > 0 {
                    break;
                }
                position += u64::from(period);
                events[1].push(
                    &SndEvent {
                        id: event_id,
                        kind: SndEventKind::CurPos { position },
                    }
                    .encode(),
                );
                event_id += 1;
            }
            SndRequestOp::Read(r) => {
                let bytes = source
                    .next_bytes((r.length / 2) as usize, PcmFormat::S16Le)
                    .expect("tone");
                capture_buffer
                    .0
                    .write(r.offset as usize, &bytes)
                    .expect("fill");
                rings[1].respond(&SndResponse::for_request(&request, 0).encode());
                position += u64::from(period);
                events[1].push(
                    &SndEvent {
                        id: event_id,
                        kind: SndEventKind::CurPos { position },
                    }
                    .encode(),
                );
                event_id += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let (samples, stats) = capturing.await.expect("join").expect("capture");
    assert_eq!(stats.bytes, u64::from(8 * period));
    let m = tone::measure_tone(&samples, 8000).expect("a tone");
    assert!(
        (m.frequency_hz - 1000.0).abs() < 2.0,
        "measured {} Hz",
        m.frequency_hz
    );
    assert!(
        (m.level_dbfs + 3.0).abs() < 1.0,
        "measured {} dBFS",
        m.level_dbfs
    );
    guest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_time_out_after_three_seconds_and_flips_after_frame_done_timeout() {
    const D: u16 = 15;
    let sim = Sim::start().await;
    let dom0 = sim.dom0().await;
    let guest = start_guest(&sim, display_guest(D, "connectors=64x64")).await;
    let (mut req, _evt) =
        connect_display(&dom0, D, &format!("/local/domain/0/backend/vdispl/{D}/0")).await;
    let session = guest.displays[0].connected(WAIT).await.expect("connected");

    // No answer at all: the request fails with a timeout (-ETIMEDOUT).
    let s = session.clone();
    let job = tokio::spawn(async move { s.set_config(0, None).await });
    let _ = req.next().await;
    let err = job.await.expect("join").expect_err("no answer");
    assert!(
        matches!(
            err,
            pvgate_guest_sim::display::DisplayError::Call {
                source: pvgate_guest_sim::io::channel::CallError::Timeout(t),
                ..
            } if t == Duration::from_millis(3000)
        ),
        "{err}"
    );

    // PG_FLIP answered but no EVT_PG_FLIP: the driver releases the frame
    // after FRAME_DONE_TO_MS and goes on.
    let s = session.clone();
    let job = tokio::spawn(async move { s.page_flip(0, 0x1234_0000).await });
    let request = DisplRequest::decode(&req.next().await).expect("request");
    req.respond(&DisplResponse::for_request(&request, 0).encode());
    let outcome = job.await.expect("join").expect("flip answered");
    assert_eq!(
        outcome,
        pvgate_guest_sim::display::FlipOutcome::FrameDoneTimedOut
    );
    guest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toolstack_destroy_removes_the_nodes_and_releases_the_domain() {
    use pvgate_guest_sim::sim::{connect_toolstack, XsRegistry};
    use pvgate_guest_sim::toolstack::{plan_devices, Toolstack};
    const D: u16 = 16;
    let sim = Sim::start().await;
    let ts = connect_toolstack(sim.path()).await.expect("toolstack");
    let config = GuestConfig {
        domid: D,
        name: "gone".into(),
        displays: vec![DisplayConfig::parse("connectors=64x64").expect("vdispl")],
        sound_cards: vec![SoundCardConfig::parse("stream, type=p").expect("vsnd")],
        inputs: vec![
            pvgate_guest_sim::config::InputConfig::parse("backend-type=linux").expect("vkb"),
        ],
    };
    let registry = XsRegistry(&ts);
    let toolstack = Toolstack::new(&ts, &registry);
    let plans = toolstack.create_domain(&config).await.expect("create");
    assert!(ts.is_domain_introduced(D).await.expect("introduced?"));
    let dom0 = sim.dom0().await;
    for p in &plans {
        assert_eq!(
            read(&*dom0.store, &format!("{}/state", p.backend_path)).await,
            "1"
        );
        assert_eq!(
            read(&*dom0.store, &format!("{}/state", p.frontend_path)).await,
            "1"
        );
    }
    assert!(plans
        .iter()
        .any(|p| p.backend_path == format!("/local/domain/0/backend/vinput/{D}/0")));
    assert_eq!(plans, plan_devices(&config));
    toolstack.destroy_domain(D, &plans).await.expect("destroy");
    for p in &plans {
        assert_eq!(
            dom0.store.read_opt(&p.backend_path).await.expect("read"),
            None
        );
        assert_eq!(
            dom0.store.read_opt(&p.frontend_path).await.expect("read"),
            None
        );
    }
    assert!(!ts.is_domain_introduced(D).await.expect("introduced?"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sound_misbehaviours_put_what_they_say_on_the_ring() {
    use pvgate_protocol::sndif::SndDecodeError;
    const D: u16 = 17;
    let sim = Sim::start().await;
    let dom0 = sim.dom0().await;
    let config = GuestConfig {
        domid: D,
        name: "badsnd".into(),
        sound_cards: vec![SoundCardConfig::parse("stream, type=p").expect("vsnd")],
        ..Default::default()
    };
    let guest = start_guest(&sim, config).await;
    let (mut req, _evt) =
        connect_sound(&dom0, D, &format!("/local/domain/0/backend/vsnd/{D}/0")).await;
    let session = guest.sounds[0].connected(WAIT).await.expect("connected");
    let stream = session.stream(0).expect("stream");
    let wait = Duration::from_millis(300);

    // WRITE whose offset + length wraps around u32.
    let s = stream.clone();
    let job = tokio::spawn(async move { misbehave::on_sound(Mode::Overflow, &s, wait).await });
    let slot = req.next().await;
    match SndRequest::decode(&slot) {
        Ok(SndRequest {
            op: SndRequestOp::Write(w),
            ..
        }) => assert!(w.offset.checked_add(w.length).is_none()),
        Err(SndDecodeError::RangeOverflow { .. }) => {}
        other => panic!("expected an overflowing WRITE, got {other:?}"),
    }
    assert!(job.await.expect("join").expect("outcome").silent);

    // An opcode sndif does not have.
    let s = stream.clone();
    let job =
        tokio::spawn(async move { misbehave::on_sound(Mode::GarbageOpcodes, &s, wait).await });
    assert!(matches!(
        SndRequest::decode(&req.next().await),
        Err(SndDecodeError::UnknownOperation(0xfe))
    ));
    assert_eq!(job.await.expect("join").expect("outcome").sent, 1);

    // Flood: what fits of 32 WRITEs, unanswered (2 are still outstanding).
    let o = misbehave::on_sound(Mode::Flood, &stream, wait)
        .await
        .expect("outcome");
    assert_eq!(o.sent, 30);
    assert_eq!(req.ring.unconsumed_requests().expect("ring"), 30);

    // Ring ahead.
    misbehave::on_sound(Mode::RingAhead, &stream, Duration::from_millis(10))
        .await
        .expect("outcome");
    assert!(matches!(
        req.ring.unconsumed_requests(),
        Err(RingError::ProducerOverflow { .. })
    ));
    guest.vanish();
}

//! The displif backend against the simulated xen-drm-front: every request
//! kind, every pixel format, several connectors, be-alloc, PRIME imports,
//! SET_CONFIG off and on, EDID, event ids, and the flip answered before the
//! copy.

mod display_common;

use std::num::NonZeroU64;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use display_common::*;
use pvgate_backends::display::{FlipHook, FlipStage, OutputKey};
use pvgate_guest_sim::content::Scene;
use pvgate_guest_sim::display::{Dbuf, DisplayError, FlipOutcome};
use pvgate_protocol::displif::{
    DbufCreate, DisplEventKind, DisplRequest, DisplRequestOp, DisplResponse, PixelFormat,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pixel_format_reaches_the_gateway_frame() {
    let h = Harness::start().await;
    let guest = h.add_guest(11, &["connectors=96x64"]).await;
    let be = h.backend(11, 0);
    let session = guest.displays[0].connected(WAIT).await.expect("connected");
    let out = key(11, 0, 0);
    let mut copies = 0;
    for format in PixelFormat::ALL {
        let mut screen = Screen::new(session.clone(), 0, format, Scene::Pattern).await;
        // SET_CONFIG shows (and copies) the first buffer.
        copies += 1;
        h.wait_copies(out, copies).await;
        let got = h.outputs.get(out).unwrap().latest_frame().unwrap();
        assert!(
            max_channel_diff(&got, &screen.as_seen(0)) <= 3,
            "{}",
            format.name()
        );
        for _ in 0..2 {
            let (n, outcome) = screen.flip_next().await;
            assert_eq!(outcome, FlipOutcome::Done, "{}", format.name());
            copies += 1;
            h.wait_copies(out, copies).await;
            let got = h.outputs.get(out).unwrap().latest_frame().unwrap();
            // The gateway's conversion and the guest simulator's reading of
            // the same bytes are independent; 16-bit formats expand their
            // channels with rounding that may differ by one step, YUYV by
            // the BT.601 matrix's rounding.
            let tolerance = match format {
                PixelFormat::Yuyv => 3,
                PixelFormat::Xrgb8888 | PixelFormat::Argb8888 | PixelFormat::Rgb888 => 0,
                _ => 1,
            };
            let diff = max_channel_diff(&got, &screen.as_seen(n));
            assert!(
                diff <= tolerance,
                "{}: frame {n} differs by {diff}",
                format.name()
            );
        }
        session.set_config(0, None).await.expect("display off");
        for fb in screen.fbs.clone() {
            session.fb_detach(fb).await.expect("FB_DETACH");
        }
        for b in screen.bufs.drain(..) {
            session.destroy_dbuf(b).await.expect("DBUF_DESTROY");
        }
    }
    drop(guest);
    be.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_connectors_are_separate_screens() {
    let h = Harness::start().await;
    let guest = h
        .add_guest(12, &["connectors=a:128x64;b:64x128;c:64x64;d:32x32"])
        .await;
    let be = h.backend(12, 0);
    let session = guest.displays[0].connected(WAIT).await.expect("connected");
    assert_eq!(h.outputs.of_guest(12).len(), 4);
    let mut screens = Vec::new();
    for (conn, scene) in [Scene::Pattern, Scene::Desktop, Scene::Noise, Scene::Pattern]
        .into_iter()
        .enumerate()
    {
        screens.push(Screen::new(session.clone(), conn, PixelFormat::Xrgb8888, scene).await);
    }
    for round in 1..=3u64 {
        for s in screens.iter_mut() {
            assert_eq!(s.flip_next().await.1, FlipOutcome::Done);
        }
        for (conn, s) in screens.iter().enumerate() {
            let k = key(12, 0, conn as u32);
            h.wait_copies(k, round + 1).await;
            let out = h.outputs.get(k).unwrap();
            assert_eq!(out.resolution, (s.width, s.height));
            let got = out.latest_frame().unwrap();
            assert_eq!(
                max_channel_diff(&got, &s.as_seen(s.next - 1)),
                0,
                "connector {conn}"
            );
        }
    }
    drop(guest);
    be.stop().await;
    assert!(
        h.outputs.of_guest(12).is_empty(),
        "outputs removed on disconnect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_allocated_buffers() {
    let h = Harness::start().await;
    let guest = h.add_guest(13, &["be-alloc=1,connectors=200x100"]).await;
    let be = h.backend(13, 0);
    let session = guest.displays[0].connected(WAIT).await.expect("connected");
    assert!(session.be_alloc);
    let mut screen = Screen::new(session.clone(), 0, PixelFormat::Rgb565, Scene::Desktop).await;
    for b in &screen.bufs {
        assert!(matches!(
            b.storage,
            pvgate_guest_sim::display::DbufStorage::Backend { .. }
        ));
    }
    for i in 1..=3 {
        let (n, outcome) = screen.flip_next().await;
        assert_eq!(outcome, FlipOutcome::Done);
        h.wait_copies(key(13, 0, 0), i + 1).await;
        let got = h
            .outputs
            .get(key(13, 0, 0))
            .unwrap()
            .latest_frame()
            .unwrap();
        assert!(max_channel_diff(&got, &screen.as_seen(n)) <= 1);
    }
    drop(guest);
    be.stop().await;
}

/// A PRIME import: DBUF_CREATE with width = height = bpp = 0 and a data
/// offset, geometry only at FB_ATTACH (as xen_drm_front_gem_import_sg_table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prime_imported_buffers_get_their_geometry_at_attach() {
    let h = Harness::start().await;
    let guest = h.add_guest(14, &["connectors=64x48"]).await;
    let be = h.backend(14, 0);
    let session = guest.displays[0].connected(WAIT).await.expect("connected");
    let (w, hgt) = (64u32, 48u32);
    let data_ofs = 256u32;
    let size = w * hgt * 4 + data_ofs;
    let mut buf = Dbuf::allocate(
        &session.platform(),
        session.backend(),
        session.new_cookie(),
        (0, 0, 0),
        size,
        false,
    )
    .expect("allocate");
    let ch = session.request_channel(0).unwrap();
    let create = |id, data_ofs| {
        DisplRequest {
            id,
            op: DisplRequestOp::DbufCreate(DbufCreate {
                dbuf_cookie: NonZeroU64::new(buf.cookie).unwrap(),
                width: 0,
                height: 0,
                bpp: 0,
                buffer_sz: size,
                be_alloc: false,
                gref_directory: buf.gref_directory,
                data_ofs,
            }),
        }
        .encode()
    };
    // data_ofs beyond the buffer is refused…
    let rsp = DisplResponse::decode(&ch.call(|id| create(id, size + 4)).await.unwrap()).unwrap();
    assert_eq!(rsp.status, -22);
    // …inside it is accepted.
    let rsp = DisplResponse::decode(&ch.call(|id| create(id, data_ofs)).await.unwrap()).unwrap();
    assert_eq!(rsp.status, 0);
    // The same cookie twice is an error.
    let rsp = DisplResponse::decode(&ch.call(|id| create(id, data_ofs)).await.unwrap()).unwrap();
    assert_eq!(rsp.status, -17);
    buf.width = w;
    buf.height = hgt;
    buf.bpp = 32;
    let fb = session
        .fb_attach(&buf, PixelFormat::Xrgb8888)
        .await
        .expect("FB_ATTACH");
    let picture = Screen::new_renderer_picture(w, hgt, 5);
    let bytes = pvgate_guest_sim::content::pixfmt::encode_to_vec(
        &picture,
        PixelFormat::Xrgb8888,
        (w * 4) as usize,
    )
    .unwrap();
    buf.write(data_ofs as usize, &bytes).unwrap();
    session
        .set_config(0, Some((fb, w, hgt, 32)))
        .await
        .expect("SET_CONFIG");
    assert_eq!(session.page_flip(0, fb).await.unwrap(), FlipOutcome::Done);
    h.wait_copies(key(14, 0, 0), 2).await;
    let got = h
        .outputs
        .get(key(14, 0, 0))
        .unwrap()
        .latest_frame()
        .unwrap();
    assert_eq!(max_channel_diff(&got, &to_media(&picture)), 0);
    // An attachment bigger than the buffer is refused.
    buf.width = w * 2;
    let err = session
        .fb_attach(&buf, PixelFormat::Xrgb8888)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DisplayError::Status { status: -22, .. }),
        "{err}"
    );
    drop(guest);
    be.stop().await;
}

impl Screen {
    fn new_renderer_picture(w: u32, h: u32, n: u32) -> pvgate_guest_sim::content::Frame {
        pvgate_guest_sim::content::Renderer::new(Scene::Pattern, w, h).render(n, timestamp(n), None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_config_off_stops_copying_and_on_resumes() {
    let h = Harness::start().await;
    let guest = h.add_guest(15, &["connectors=64x64"]).await;
    let be = h.backend(15, 0);
    let session = guest.displays[0].connected(WAIT).await.expect("connected");
    let k = key(15, 0, 0);
    let mut screen = Screen::new(session.clone(), 0, PixelFormat::Xrgb8888, Scene::Pattern).await;
    let out = h.outputs.get(k).unwrap();
    assert!(out.is_enabled());
    h.wait_copies(k, 1).await;
    assert_eq!(
        max_channel_diff(&out.latest_frame().unwrap(), &screen.as_seen(0)),
        0
    );
    screen.flip_next().await;
    h.wait_copies(k, 2).await;
    session.set_config(0, None).await.expect("off");
    assert!(!out.is_enabled());
    // Flips still complete (the guest's vsync) but nothing is copied.
    let (off_frame, outcome) = screen.flip_next().await;
    assert_eq!(outcome, FlipOutcome::Done);
    assert_eq!(out.stats().flips, 2);
    assert_eq!(out.stats().copies, 2);
    session
        .set_config(0, Some((screen.fbs[0], 64, 64, 32)))
        .await
        .expect("on");
    assert!(out.is_enabled());
    let (n, _) = screen.flip_next().await;
    h.wait_copies(k, 4).await;
    assert!(n > off_frame);
    assert_eq!(
        max_channel_diff(&out.latest_frame().unwrap(), &screen.as_seen(n)),
        0
    );
    // A mode larger than the connector is refused.
    let err = session
        .set_config(0, Some((screen.fbs[0], 65, 64, 32)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DisplayError::Status { status: -22, .. }),
        "{err}"
    );
    drop(guest);
    be.stop().await;
}

/// An EDID base block parsed by this test's own reader (not the code that
/// wrote it): header, checksum, version, preferred detailed timing.
fn parse_edid(e: &[u8]) -> Result<(u32, u32, u32), String> {
    if e.len() < 128 {
        return Err(format!("{} bytes", e.len()));
    }
    if e[..8] != [0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0] {
        return Err("bad header".into());
    }
    if e[..128].iter().map(|b| u32::from(*b)).sum::<u32>() % 256 != 0 {
        return Err("bad checksum".into());
    }
    if (e[18], e[19]) != (1, 4) {
        return Err(format!("version {}.{}", e[18], e[19]));
    }
    if e[24] & 0x02 == 0 {
        return Err("first timing not marked preferred/native".into());
    }
    let d = &e[54..72];
    let clock_khz = u32::from(u16::from_le_bytes([d[0], d[1]])) * 10;
    if clock_khz == 0 {
        return Err("first descriptor is not a detailed timing".into());
    }
    let h_active = u32::from(d[2]) | (u32::from(d[4] & 0xf0) << 4);
    let h_blank = u32::from(d[3]) | (u32::from(d[4] & 0x0f) << 8);
    let v_active = u32::from(d[5]) | (u32::from(d[7] & 0xf0) << 4);
    let v_blank = u32::from(d[6]) | (u32::from(d[7] & 0x0f) << 8);
    let refresh =
        clock_khz as f64 * 1000.0 / f64::from((h_active + h_blank) * (v_active + v_blank));
    Ok((h_active, v_active, refresh.round() as u32))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_edid_describes_each_connector() {
    let h = Harness::start().await;
    let guest = h.add_guest(16, &["connectors=1920x1080;1280x720"]).await;
    let be = h.backend(16, 0);
    let session = guest.displays[0].connected(WAIT).await.expect("connected");
    for (conn, want) in [(0, (1920, 1080)), (1, (1280, 720))] {
        let edid = session
            .get_edid(conn, pvgate_guest_sim::display::EDID_MAX_SIZE)
            .await
            .expect("GET_EDID");
        assert_eq!(edid.len(), 128);
        let (w, hh, refresh) = parse_edid(&edid).expect("valid EDID");
        assert_eq!((w, hh), want);
        assert!((55..=61).contains(&refresh), "refresh {refresh}");
    }
    drop(guest);
    be.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flip_events_carry_ids_in_sequence() {
    let h = Harness::start().await;
    let guest = h.add_guest(17, &["connectors=64x64;32x32"]).await;
    let be = h.backend(17, 0);
    let session = guest.displays[0].connected(WAIT).await.expect("connected");
    let mut a = Screen::new(session.clone(), 0, PixelFormat::Xrgb8888, Scene::Pattern).await;
    let b = Screen::new(session.clone(), 1, PixelFormat::Xrgb8888, Scene::Pattern).await;
    // Flip through the raw ring so the events can be read one by one.
    let ch = [
        session.request_channel(0).unwrap(),
        session.request_channel(1).unwrap(),
    ];
    let fbs = [a.fbs.clone(), b.fbs.clone()];
    for i in 0..6usize {
        for conn in 0..2 {
            let fb = fbs[conn][i % 2];
            let slot = ch[conn]
                .call(|id| {
                    DisplRequest {
                        id,
                        op: DisplRequestOp::PgFlip {
                            fb_cookie: NonZeroU64::new(fb).unwrap(),
                        },
                    }
                    .encode()
                })
                .await
                .unwrap();
            assert_eq!(DisplResponse::decode(&slot).unwrap().status, 0);
            let ev = session.next_event(conn, WAIT).await.expect("EVT_PG_FLIP");
            assert_eq!(ev.id as usize, i, "connector {conn}: event ids run 0,1,2…");
            assert_eq!(
                ev.kind,
                DisplEventKind::PgFlip {
                    fb_cookie: NonZeroU64::new(fb).unwrap()
                }
            );
        }
    }
    // The typed path keeps working after (the guest expects id 6 next).
    assert_eq!(a.flip_next().await.1, FlipOutcome::Done);
    drop(guest);
    be.stop().await;
}

/// A gate the copy worker waits at for one chosen flip.
#[derive(Default)]
struct Gate {
    log: Mutex<Vec<FlipStage>>,
    closed_for: Mutex<Option<u64>>,
    opened: Condvar,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flip_is_answered_before_the_copy_and_the_next_waits_for_it() {
    let h = Harness::start().await;
    let guest = h.add_guest(18, &["connectors=64x64"]).await;
    let gate = Arc::new(Gate::default());
    let hook: FlipHook = {
        let gate = gate.clone();
        Arc::new(move |_k: OutputKey, stage: FlipStage| {
            gate.log.lock().unwrap().push(stage);
            if let FlipStage::CopyStarted { seq } = stage {
                let mut closed = gate.closed_for.lock().unwrap();
                while *closed == Some(seq) {
                    closed = gate.opened.wait(closed).unwrap();
                }
            }
        })
    };
    let be = h.backend_with(18, 0, Default::default(), Some(hook));
    let session = guest.displays[0].connected(WAIT).await.expect("connected");
    let mut screen = Screen::new(session.clone(), 0, PixelFormat::Xrgb8888, Scene::Pattern).await;
    // Copy 1 is SET_CONFIG's, 2 the first flip's.
    screen.flip_next().await;
    h.wait_copies(key(18, 0, 0), 2).await;
    // Hold the copy of the second flip.
    *gate.closed_for.lock().unwrap() = Some(3);
    let (_, outcome) = screen.flip_next().await;
    assert_eq!(
        outcome,
        FlipOutcome::Done,
        "answered while its copy is held"
    );
    // The third flip may not be answered until that copy is done.
    let third = {
        let session = session.clone();
        let fb = screen.fbs[0];
        tokio::spawn(async move { session.page_flip(0, fb).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !third.is_finished(),
        "the next flip waits for the previous copy"
    );
    *gate.closed_for.lock().unwrap() = None;
    gate.opened.notify_all();
    assert_eq!(third.await.unwrap().unwrap(), FlipOutcome::Done);
    h.wait_copies(key(18, 0, 0), 4).await;
    let log = gate.log.lock().unwrap().clone();
    for seq in 2..=4 {
        let at = |s: FlipStage| {
            log.iter()
                .position(|x| *x == s)
                .unwrap_or_else(|| panic!("{s:?} in {log:?}"))
        };
        assert!(at(FlipStage::Answered { seq }) < at(FlipStage::CopyStarted { seq }));
        assert!(at(FlipStage::CopyStarted { seq }) < at(FlipStage::CopyDone { seq }));
        assert!(at(FlipStage::CopyDone { seq: seq - 1 }) < at(FlipStage::Answered { seq }));
    }
    drop(guest);
    be.stop().await;
}

/// Damage tracking only pays if a flip that changes one tile costs about one
/// tile: the published frame is always still held (by the snapshot slot, and
/// by encoders, which keep up to three frames each: input slot, pending,
/// last encoded), so writing the next picture into it in place is
/// impossible, and cloning it would copy the whole screen on every flip.
/// Here the test holds the three frames before the newest, as an encoder
/// may (a real encoder's timing would make the bound depend on the load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flip_that_changes_one_tile_copies_about_one_tile() {
    const TILE_BYTES: u64 = 64 * 64 * 4;
    let (w, h_px) = (1280u32, 720u32);
    let frame_bytes = u64::from(w * h_px) * 4;
    let h = Harness::start().await;
    let guest = h.add_guest(19, &["connectors=1280x720"]).await;
    let be = h.backend(19, 0);
    let session = guest.displays[0].connected(WAIT).await.expect("connected");
    let k = key(19, 0, 0);
    let mut held = std::collections::VecDeque::new();
    let screen = Screen::new(session.clone(), 0, PixelFormat::Xrgb8888, Scene::Desktop).await;
    h.wait_copies(k, 1).await;
    let pitch = (w * 4) as usize;
    let mut picture = vec![0u8; pitch * h_px as usize];
    screen.bufs[0]
        .read(0, &mut picture)
        .expect("read front buffer");
    let mut front = 0;
    let mut copies = 1;
    for i in 0..24u32 {
        // One pixel in a different tile each time, written over the whole
        // previous picture into the back buffer, as a compositor repainting
        // a blinking cursor does.
        let (x, y) = ((i * 211) % w, (i * 97) % h_px);
        let o = y as usize * pitch + x as usize * 4;
        picture[o..o + 4].copy_from_slice(&(0x0040_0000 + i * 0x0101).to_le_bytes());
        let back = 1 - front;
        screen.bufs[back]
            .write(0, &picture)
            .expect("write back buffer");
        let outcome = session
            .page_flip(0, screen.fbs[back])
            .await
            .expect("PG_FLIP");
        assert_eq!(outcome, FlipOutcome::Done);
        front = back;
        copies += 1;
        h.wait_copies(k, copies).await;
        let out = h.outputs.get(k).expect("output");
        let stats = out.stats();
        // The chain starts with no spare frames, so early flips clone a whole
        // one; after that a flip copies its tile plus the tiles the recycled
        // frame missed while it was held (four flips' worth here).
        if i >= 8 {
            assert!(
                stats.bytes_copied_last <= 8 * TILE_BYTES,
                "flip {i}: {} bytes copied for a one-tile change (a tile is {TILE_BYTES}, the frame {frame_bytes})",
                stats.bytes_copied_last
            );
        }
        let latest = out.latest_frame().expect("a frame");
        held.push_back(latest.clone());
        if held.len() > 4 {
            held.pop_front();
        }
        assert_eq!(
            latest.pixel(x, y).map(|p| p & 0xFF_FFFF),
            Some(0x0040_0000 + i * 0x0101),
            "flip {i} reached the frame"
        );
    }
    // Over the whole run: far less than one frame per flip (the old path
    // copied 24 whole frames here).
    let total = h.outputs.get(k).unwrap().stats().bytes_copied;
    assert!(
        total < 8 * frame_bytes,
        "{total} bytes copied for 24 one-tile flips (a frame is {frame_bytes})"
    );
    drop(guest);
    be.stop().await;
}

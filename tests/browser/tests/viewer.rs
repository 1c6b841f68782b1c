//! The viewer page in headless Chromium against a simulated host: video
//! over WebRTC and over the WebSocket fallback, sound, input, microphone,
//! roles and tenants, reconnection.
//!
//! Each test starts its own host (sim Xen, gateway, guests) and browser.
//! They run one at a time: two browsers and their encoders on a 2-core
//! machine would measure the machine, not the product.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use pvgate_browser_tests::browser::{Browser, BrowserOptions};
use pvgate_browser_tests::host::{GuestSpec, Host, Tenant};
use pvgate_browser_tests::netns::NetNs;
use pvgate_browser_tests::page::Viewer;
use pvgate_browser_tests::wait_for;
use pvgate_guest_sim::content::scene::Renderer;
use pvgate_guest_sim::content::{
    decode_strip, find_cursor, psnr, read_text_line, ImageView, PixelLayout, Scene,
};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

const W: u32 = 1280;
const H: u32 = 720;

/// A host with tenant "acme" owning guest 1 (display, sound, input) and
/// tenant "other" owning guest 2.
fn host_with_guest(spec: GuestSpec) -> anyhow::Result<Host> {
    let mut host = Host::start(vec![Tenant::new("acme", &[1]), Tenant::new("other", &[2])])?;
    host.add_guest(spec)?;
    Ok(host)
}

fn rgba_view(img: &image::RgbaImage) -> ImageView<'_> {
    let (w, h) = img.dimensions();
    ImageView::new(img.as_raw(), w, h, w as usize * 4, PixelLayout::Rgba).unwrap()
}

/// The page shows the guest's desktop: the strip reads a frame number, and
/// the picture matches the guest's own rendering of that frame.
fn assert_shows_the_desktop(viewer: &Viewer) -> anyhow::Result<u32> {
    let img = viewer.grab_frame()?;
    assert_eq!(
        img.dimensions(),
        (W, H),
        "the page's frame is not at guest size"
    );
    let view = rgba_view(&img);
    let strip = decode_strip(&view).context("no frame-counter strip in the browser's picture")?;
    let expected =
        Renderer::new(Scene::Desktop, W, H).render(strip.frame, strip.timestamp_us, None);
    let db = psnr(&view, &expected.view()).context("psnr")?;
    assert!(
        db >= 30.0,
        "the browser's picture of frame {} differs from the guest's: PSNR {db:.1} dB",
        strip.frame
    );
    Ok(strip.frame)
}

fn video_test(transport: &str) -> anyhow::Result<()> {
    let _one = serial();
    let mut spec = GuestSpec::full(1, W, H);
    spec.vkb = None; // no cursor or text line over the picture
                     // The desktop scene: what a guest's screen mostly is, and with edges
                     // that 4:2:0 chroma keeps (the colour bars lose 3 dB to it alone).
    spec.scene = "desktop";
    let host = host_with_guest(spec)?;
    let browser = Browser::start(&BrowserOptions::default())?;
    let token = host.tenants[0].token("view").to_string();
    let viewer = Viewer::open(
        &browser,
        &host.viewer_url(1, &token, &format!("transport={transport}")),
    )?;
    viewer.wait_playing(10, Duration::from_secs(60))?;
    assert_eq!(
        viewer.eval("window.pvgate.transport")?,
        transport,
        "{}",
        viewer.debug_state()
    );
    let first = assert_shows_the_desktop(&viewer)?;
    // And it moves: a later frame, also right.
    let later = wait_for("a later frame", Duration::from_secs(20), || {
        let f = assert_shows_the_desktop(&viewer)?;
        Ok((f > first).then_some(f))
    })?;
    assert!(later > first);
    Ok(())
}

#[test]
fn webrtc_viewer_shows_the_guests_screen() -> anyhow::Result<()> {
    video_test("webrtc")
}

#[test]
fn websocket_viewer_shows_the_guests_screen() -> anyhow::Result<()> {
    video_test("websocket")
}

fn audio_test(transport: &str) -> anyhow::Result<()> {
    let _one = serial();
    let host = host_with_guest(GuestSpec::full(1, W, H))?;
    let browser = Browser::start(&BrowserOptions::default())?;
    let token = host.tenants[0].token("view").to_string();
    let viewer = Viewer::open(
        &browser,
        &host.viewer_url(1, &token, &format!("transport={transport}")),
    )?;
    viewer.wait_playing(5, Duration::from_secs(60))?;
    // The guest plays 440 Hz left and 660 Hz right.
    for (lo, hi, want) in [(300.0, 550.0, 440.0), (550.0, 800.0, 660.0)] {
        let (freq, db) = wait_for(
            "the tone in the page's audio",
            Duration::from_secs(20),
            || {
                let (f, db) = viewer.audio_peak(lo, hi)?;
                Ok(((f - want).abs() < 15.0 && db > -60.0).then_some((f, db)))
            },
        )
        .with_context(|| format!("page: {}", viewer.debug_state()))?;
        eprintln!("{transport}: peak {freq:.1} Hz at {db:.1} dB (want {want} Hz)");
    }
    Ok(())
}

#[test]
fn webrtc_viewer_hears_the_guests_tones() -> anyhow::Result<()> {
    audio_test("webrtc")
}

#[test]
fn websocket_viewer_hears_the_guests_tones() -> anyhow::Result<()> {
    audio_test("websocket")
}

/// A click at a point of the video puts the guest's cursor at that guest
/// pixel (seen in the browser's video and in the gateway's snapshot); typed
/// keys appear in the guest's text line; a view-only viewer moves nothing.
#[test]
fn clicks_and_keys_reach_the_guest() -> anyhow::Result<()> {
    let _one = serial();
    let host = host_with_guest(GuestSpec::full(1, W, H))?;
    let browser = Browser::start(&BrowserOptions::default())?;
    let control = host.tenants[0].token("control").to_string();
    let viewer = Viewer::open(&browser, &host.viewer_url(1, &control, ""))?;
    viewer.wait_playing(5, Duration::from_secs(60))?;
    assert_eq!(viewer.eval("window.pvgate.role")?, "control");

    let (x, y) = (400, 300);
    viewer.click_at(x, y)?;
    let guest = host.guest(1);
    guest.wait_line("the click at the guest", Duration::from_secs(10), |l| {
        l.contains("input vkbd/0") && l.contains("keycode=272") && l.contains("pressed=1")
    })?;
    let near = |p: (u32, u32)| p.0.abs_diff(x) <= 3 && p.1.abs_diff(y) <= 3;
    let input_lines = || -> Vec<String> {
        guest
            .lines()
            .into_iter()
            .filter(|l| l.starts_with("input "))
            .collect()
    };
    // The gateway's own picture first (no video codec in between), then the
    // page's.
    let mut in_snapshot = None;
    wait_for("the cursor in the snapshot", Duration::from_secs(10), || {
        let (status, png) = host.get("/api/guests/1/displays/0/snapshot.png", Some(&control))?;
        anyhow::ensure!(status == 200, "snapshot: HTTP {status}");
        let snap = image::load_from_memory(&png)?.to_rgba8();
        in_snapshot = find_cursor(&rgba_view(&snap));
        Ok(in_snapshot.filter(|p| near(*p)))
    })
    .with_context(|| {
        format!("clicked guest pixel {x},{y}; the snapshot's cursor is at {in_snapshot:?}; the guest got {:?}", input_lines())
    })?;
    let mut in_video = None;
    wait_for("the cursor in the video", Duration::from_secs(10), || {
        in_video = find_cursor(&rgba_view(&viewer.grab_frame()?));
        Ok(in_video.filter(|p| near(*p)))
    })
    .with_context(|| {
        format!("clicked guest pixel {x},{y}; the video's cursor is at {in_video:?}, the snapshot's at {in_snapshot:?}")
    })?;

    viewer.type_text("hello pv")?;
    wait_for(
        "the typed text in the guest's text line",
        Duration::from_secs(10),
        || {
            let img = viewer.grab_frame()?;
            Ok(read_text_line(&rgba_view(&img))
                .contains("hello pv")
                .then_some(()))
        },
    )?;

    // A view-only viewer of the same guest: its click changes nothing.
    let view_only = host.tenants[0].token("view").to_string();
    let before = guest.lines().len();
    let browser2 = Browser::start(&BrowserOptions::default())?;
    let viewer2 = Viewer::open(&browser2, &host.viewer_url(1, &view_only, ""))?;
    viewer2.wait_playing(5, Duration::from_secs(60))?;
    assert_eq!(viewer2.eval("window.pvgate.role")?, "view");
    viewer2
        .eval("window.pvgate.send({type: 'button', button: 'left', down: true, x: 10, y: 10})")?;
    viewer2.click_at(900, 500)?;
    std::thread::sleep(Duration::from_secs(1));
    let after: Vec<String> = guest.lines()[before..].to_vec();
    assert!(
        !after.iter().any(|l| l.starts_with("input ")),
        "a view-only viewer's input reached the guest: {after:?}"
    );
    Ok(())
}

/// Two fingers on the video become two multi-touch contacts in the guest.
#[test]
fn touch_becomes_multi_touch() -> anyhow::Result<()> {
    let _one = serial();
    let host = host_with_guest(GuestSpec::full(1, W, H))?;
    let browser = Browser::start(&BrowserOptions::default())?;
    let control = host.tenants[0].token("control").to_string();
    let viewer = Viewer::open(&browser, &host.viewer_url(1, &control, ""))?;
    viewer.wait_playing(5, Duration::from_secs(60))?;
    viewer.touch_two((300, 300), (700, 400), (40, 20))?;
    let guest = host.guest(1);
    guest.wait_line(
        "a second contact going down",
        Duration::from_secs(10),
        |l| l.contains("input vkbd/0 mtouch contact=1 Down"),
    )?;
    guest.wait_line("a contact coming up", Duration::from_secs(10), |l| {
        l.contains("input vkbd/0 mtouch") && l.contains(" Up")
    })?;
    Ok(())
}

/// Chromium's fake microphone plays a 1 kHz tone file; the guest measures
/// that tone on its capture stream.
#[test]
fn the_microphone_reaches_the_guests_capture_stream() -> anyhow::Result<()> {
    let _one = serial();
    let dir = tempfile::tempdir()?;
    let wav = dir.path().join("tone-1k.wav");
    write_tone_wav(&wav, 1000.0, 48_000, 5.0)?;
    let host = host_with_guest(GuestSpec::full(1, W, H))?;
    let browser = Browser::start(&BrowserOptions {
        fake_microphone: Some(wav),
        ..Default::default()
    })?;
    let control = host.tenants[0].token("control").to_string();
    let viewer = Viewer::open(&browser, &host.viewer_url(1, &control, "mic=1"))?;
    viewer.wait_playing(5, Duration::from_secs(60))?;
    let guest = host.guest(1);
    let line = guest.wait_line(
        "the guest to capture the 1 kHz tone",
        Duration::from_secs(30),
        |l| {
            l.starts_with("capture ")
                && l.split_whitespace()
                    .find_map(|w| w.strip_prefix("hz="))
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|hz| (hz - 1000.0).abs() < 5.0)
        },
    )?;
    eprintln!("guest: {line}");
    Ok(())
}

/// Tenants and origins: another tenant's token gets 403 for the guest and
/// does not see it in the list; a foreign Origin cannot open a session.
#[test]
fn tenants_and_origins_are_enforced() -> anyhow::Result<()> {
    let _one = serial();
    let host = host_with_guest(GuestSpec::full(1, W, H))?;
    let other = host.tenants[1].token("control").to_string();
    let own = host.tenants[0].token("view").to_string();
    let (status, _) = host.get("/api/guests/1", Some(&other))?;
    assert_eq!(status, 403);
    let (status, body) = host.get("/api/guests", Some(&other))?;
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_slice(&body)?;
    assert!(list.as_array().is_some_and(|l| l.is_empty()), "{list}");
    let (status, _) = host.get("/api/guests/1", None)?;
    assert_eq!(status, 401);
    let (status, _) = host.get("/api/guests/1", Some("not-a-token"))?;
    assert_eq!(status, 401);
    let (status, _) = host.get("/api/guests/1", Some(&own))?;
    assert_eq!(status, 200);

    // The session WebSocket from a page on another origin.
    let browser = Browser::start(&BrowserOptions::default())?;
    browser
        .session
        .goto("data:text/html,<title>elsewhere</title>")?;
    let url = format!(
        "{}/api/guests/1/session?token={own}",
        host.base_url.replace("http://", "ws://")
    );
    let outcome = browser.session.execute_async(
        "const done = arguments[arguments.length - 1];\
         const ws = new WebSocket(arguments[0]);\
         ws.onopen = () => done('open'); ws.onerror = () => done('refused');\
         setTimeout(() => done('timeout'), 10000);",
        serde_json::json!([url]),
    )?;
    assert_eq!(outcome, "refused", "a foreign origin opened a session");
    Ok(())
}

/// Two viewers of one guest with the same parameters share one encoder.
#[test]
fn two_viewers_share_one_encoder() -> anyhow::Result<()> {
    let _one = serial();
    let host = host_with_guest(GuestSpec::full(1, W, H))?;
    let token = host.tenants[0].token("view").to_string();
    let b1 = Browser::start(&BrowserOptions::default())?;
    let v1 = Viewer::open(&b1, &host.viewer_url(1, &token, "transport=websocket"))?;
    v1.wait_playing(5, Duration::from_secs(60))?;
    let b2 = Browser::start(&BrowserOptions::default())?;
    let v2 = Viewer::open(&b2, &host.viewer_url(1, &token, "transport=websocket"))?;
    v2.wait_playing(5, Duration::from_secs(60))?;
    let (status, body) = host.get("/api/guests/1", Some(&token))?;
    assert_eq!(status, 200);
    let guest: serde_json::Value = serde_json::from_slice(&body)?;
    assert_eq!(guest["viewers"], 2, "{guest}");
    // One series per running encoder; its value is the viewers sharing it.
    let metrics = metrics_of(&host, &token)?;
    let encoders = metric_samples(&metrics, "pvgate_encoder_subscribers");
    assert_eq!(encoders, vec![2.0], "encoders: {metrics}");
    Ok(())
}

/// Kill the viewer's connection: the page reconnects and video resumes.
#[test]
fn the_page_reconnects_when_its_connection_dies() -> anyhow::Result<()> {
    let _one = serial();
    let host = host_with_guest(GuestSpec::full(1, W, H))?;
    let browser = Browser::start(&BrowserOptions::default())?;
    let token = host.tenants[0].token("view").to_string();
    let viewer = Viewer::open(&browser, &host.viewer_url(1, &token, ""))?;
    viewer.wait_playing(5, Duration::from_secs(60))?;
    let before = decode_strip(&rgba_view(&viewer.grab_frame()?)).context("strip")?;
    viewer.eval("window.pvgate.disconnect()")?;
    wait_for("the page to notice", Duration::from_secs(10), || {
        Ok((viewer.state()? != "connected").then_some(()))
    })?;
    wait_for("video after reconnecting", Duration::from_secs(30), || {
        if viewer.state()? != "connected" {
            return Ok(None);
        }
        let s = decode_strip(&rgba_view(&viewer.grab_frame()?));
        Ok(s.filter(|s| s.frame > before.frame + 15).map(|_| ()))
    })
    .with_context(|| viewer.debug_state())?;
    Ok(())
}

/// A viewer behind a link slower than its stream: congestion control moves
/// it to a lower bitrate step (a smaller shared encoder), and it keeps
/// playing.
///
/// Not in CI yet: in about one run in three the page stops receiving video
/// after the step down to the 300 kbit/s floor, while the gateway keeps
/// encoding — every frame a keyframe, so the browser keeps sending PLIs for
/// a picture that never arrives (`pvgate_encoder_keyframes_total` equals
/// `pvgate_encoder_frames_total`, the page's inbound bitrate is 0). Run it
/// with `cargo test -p pvgate-browser-tests --test viewer -- --ignored
/// congestion` (as root: it makes a network namespace).
#[test]
#[ignore = "flaky: video sometimes stalls after the step down; see the doc comment"]
fn congestion_moves_a_webrtc_viewer_to_a_lower_bitrate_step() -> anyhow::Result<()> {
    let _one = serial();
    let ns = std::sync::Arc::new(NetNs::create()?);
    let mut host = Host::start_in(
        vec![Tenant::new("acme", &[1]), Tenant::new("other", &[2])],
        Some(ns.clone()),
    )?;
    // Noise: the encoder spends all the bitrate it is given. Small, so that
    // a frame fits the shaped link's queue: with no RTP pacer in the webrtc
    // crate a frame leaves in one burst, and one larger than the bottleneck's
    // queue is lost whole, again and again.
    let mut spec = GuestSpec::full(1, 320, 180);
    spec.scene = "noise";
    spec.vsnd = None;
    spec.vkb = None;
    host.add_guest(spec)?;
    let browser = Browser::start(&BrowserOptions::default())?;
    let token = host.tenants[0].token("view").to_string();
    let viewer = Viewer::open(&browser, &host.viewer_url(1, &token, "transport=webrtc"))?;
    viewer.wait_playing(10, Duration::from_secs(60))?;
    let step = || -> anyhow::Result<f64> {
        metric_samples(
            &metrics_of(&host, &token)?,
            "pvgate_viewer_encoder_bitrate_bps",
        )
        .first()
        .copied()
        .context("no pvgate_viewer_encoder_bitrate_bps in /metrics")
    };
    // Unshaped, the estimate climbs well above the link we are about to
    // impose (GCC starts low and ramps up; the configured start is 4 Mbit/s).
    const LINK_BPS: f64 = 1_000_000.0;
    let before = wait_for(
        "the viewer's step to rise above 1.5 Mbit/s on the unshaped link",
        Duration::from_secs(30),
        || Ok(step().ok().filter(|&s| s >= 1.5 * LINK_BPS)),
    )
    .with_context(|| format!("step {:?} bit/s", step().ok()))?;

    // The link to the browser drops to 1 Mbit/s.
    ns.limit_egress(1000, 400)?;
    let after = wait_for(
        "the viewer's step to fit the 1 Mbit/s link",
        Duration::from_secs(45),
        || Ok(step().ok().filter(|&s| s <= LINK_BPS)),
    )
    .with_context(|| {
        format!(
            "step {:?} bit/s; page: {}",
            step().ok(),
            viewer.debug_state()
        )
    })?;
    assert!(after < before);
    // Still playing, on the smaller encoder.
    let frames = |v: &Viewer| -> anyhow::Result<u64> {
        Ok(v.eval("window.pvgate.framesDecoded")?.as_u64().unwrap_or(0))
    };
    let seen = frames(&viewer)?;
    // Noise at a low step runs at a few frames per second (the encoder's
    // output budget), but it runs.
    wait_for("video after the step down", Duration::from_secs(20), || {
        Ok((frames(&viewer)? >= seen + 5).then_some(()))
    })
    .with_context(|| {
        let encoders: Vec<String> = metrics_of(&host, &token)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("pvgate_encoder") || l.starts_with("pvgate_viewer"))
            .map(str::to_string)
            .collect();
        format!("page: {}; gateway: {encoders:#?}", viewer.debug_state())
    })?;
    let log = host.gateway_log();
    assert!(
        log.iter()
            .any(|l| l.contains("viewer moved to another bitrate step")),
        "the gateway did not log the step change"
    );
    Ok(())
}

fn metrics_of(host: &Host, token: &str) -> anyhow::Result<String> {
    let (status, body) = host.get("/metrics", Some(token))?;
    anyhow::ensure!(status == 200, "/metrics: HTTP {status}");
    Ok(String::from_utf8(body)?)
}

/// The values of every series of `name` (any labels).
fn metric_samples(text: &str, name: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key.split('{').next()? == name).then(|| value.parse::<f64>().ok())?
        })
        .collect()
}

/// A mono 16-bit WAV of a sine tone (Chromium's fake microphone loops it).
fn write_tone_wav(path: &std::path::Path, hz: f64, rate: u32, seconds: f64) -> anyhow::Result<()> {
    let n = (f64::from(rate) * seconds) as u32;
    let mut data = Vec::with_capacity(44 + 2 * n as usize);
    let chunk = |d: &mut Vec<u8>, id: &[u8], len: u32| {
        d.extend_from_slice(id);
        d.extend_from_slice(&len.to_le_bytes());
    };
    chunk(&mut data, b"RIFF", 36 + 2 * n);
    data.extend_from_slice(b"WAVE");
    chunk(&mut data, b"fmt ", 16);
    data.extend_from_slice(&1u16.to_le_bytes()); // PCM
    data.extend_from_slice(&1u16.to_le_bytes()); // mono
    data.extend_from_slice(&rate.to_le_bytes());
    data.extend_from_slice(&(rate * 2).to_le_bytes());
    data.extend_from_slice(&2u16.to_le_bytes());
    data.extend_from_slice(&16u16.to_le_bytes());
    chunk(&mut data, b"data", 2 * n);
    for i in 0..n {
        let v = (2.0 * std::f64::consts::PI * hz * f64::from(i) / f64::from(rate)).sin() * 0.5;
        data.extend_from_slice(&((v * 32767.0) as i16).to_le_bytes());
    }
    std::fs::write(path, data)?;
    Ok(())
}

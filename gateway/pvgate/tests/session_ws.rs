//! The WebSocket transport end to end: a real gateway on the simulated Xen,
//! a simulated guest, and a WebSocket client that does what the browser's
//! fallback does (PROTOCOL.md): hello, welcome, binary media, input, mic.

mod session_common;

use std::time::{Duration, Instant};

use pvgate_media::decode::new_decoder;
use pvgate_media::Codec;
use serde_json::json;
use session_common::{strip, Host, In, DOMID, HEIGHT, WIDTH};

fn header(b: &[u8]) -> (u8, u8, u64) {
    assert!(b.len() >= 12, "binary frame of {} bytes", b.len());
    assert_eq!(&b[2..4], &[0, 0], "reserved bytes");
    (b[0], b[1], u64::from_be_bytes(b[4..12].try_into().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_transport_streams_the_guest_and_takes_input() {
    let host = Host::start();
    let mut ws = host.connect().await;
    ws.send(json!({"type":"hello","transport":"websocket","display":0,
                   "codecs":["h264","vp8"],"audio":true,"mic":true}))
        .await;
    let welcome = ws.next_text("welcome").await;
    assert_eq!(welcome["transport"], "websocket");
    assert_eq!(welcome["video"]["codec"], "h264");
    assert_eq!(welcome["role"], "control");
    assert_eq!(welcome["display"]["width"], WIDTH);
    assert_eq!(welcome["display"]["height"], HEIGHT);
    assert_eq!(welcome["guest"]["domid"], DOMID);
    assert_eq!(welcome["audio"]["codec"], "opus");
    assert_eq!(welcome["mic"], true, "{welcome}");
    assert!(welcome["session"].as_str().is_some_and(|s| !s.is_empty()));
    // The session shows in the API's viewer count.
    let guest: serde_json::Value = serde_json::from_slice(
        &session_common::http_get(&format!("{}/api/guests/{DOMID}", host.base)).unwrap(),
    )
    .unwrap();
    assert_eq!(guest["viewers"], 1, "{guest}");

    // Media: the first video frame is a keyframe; decoded frames carry the
    // guest's advancing frame counter; audio decodes as Opus.
    let mut decoder = new_decoder(Codec::H264).unwrap();
    let mut opus = opus::Decoder::new(48_000, opus::Channels::Stereo).unwrap();
    let mut first_video = true;
    let mut strips = Vec::new();
    let mut audio_frames = 0;
    let mut last_video_ts = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while strips.len() < 5 || audio_frames < 10 {
        assert!(
            Instant::now() < deadline,
            "not enough media: {} strips, {audio_frames} audio frames",
            strips.len()
        );
        let In::Binary(b) = ws.next().await else {
            continue;
        };
        let (kind, flags, ts) = header(&b);
        match kind {
            1 => {
                if first_video {
                    assert_eq!(flags & 1, 1, "the first video frame is a keyframe");
                    first_video = false;
                }
                if let Some(last) = last_video_ts {
                    assert!(ts > last, "video timestamps increase");
                }
                last_video_ts = Some(ts);
                let frame = decoder
                    .decode(&b[12..])
                    .unwrap()
                    .expect("every access unit gives a picture");
                assert_eq!((frame.width(), frame.height()), (WIDTH, HEIGHT));
                if let Some(s) = strip(&frame) {
                    strips.push(s);
                }
            }
            2 => {
                let mut pcm = vec![0f32; 960 * 2];
                let n = opus.decode_float(&b[12..], &mut pcm, false).unwrap();
                assert!(n == 480 || n == 960, "{n} samples per channel");
                audio_frames += 1;
            }
            k => panic!("unexpected binary frame kind {k}"),
        }
    }
    assert!(
        strips.windows(2).all(|w| w[1].frame > w[0].frame),
        "the frame counter advances: {strips:?}"
    );

    // Ping is answered with the same t; a keyframe request gets one.
    ws.send(json!({"type":"ping","t":1234.5})).await;
    assert_eq!(ws.next_text("pong").await["t"], 1234.5);
    ws.send(json!({"type":"keyframe"})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no keyframe after asking");
        if let In::Binary(b) = ws.next().await {
            if b[0] == 1 && b[1] & 1 == 1 {
                break;
            }
        }
    }

    // Unknown and malformed messages get an error, and the session goes on.
    ws.send(json!({"type":"launch"})).await;
    let err = ws.next_text("error").await;
    assert_eq!(err["fatal"], false);
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("unknown message type"));
    ws.send(json!({"type":"key","code":99999,"down":true}))
        .await;
    let err = ws.next_text("error").await;
    assert!(err["message"].as_str().unwrap().contains("code"), "{err}");

    // Microphone: an Opus packet as kind 3 is taken without complaint.
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Voip).unwrap();
    let packet = enc.encode_vec_float(&vec![0.0f32; 960 * 2], 1500).unwrap();
    let mut frame = vec![3u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    frame.extend_from_slice(&packet);
    ws.send_binary(frame).await;

    // A key press reaches the guest (KEY_A = 30) once its keyboard is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !host.guest_saw("key keycode=30 pressed=1") {
        assert!(
            Instant::now() < deadline,
            "the guest never saw KEY_A: {:?}",
            host.guest_lines.lock().unwrap()
        );
        ws.send(json!({"type":"key","code":30,"down":true})).await;
        ws.send(json!({"type":"key","code":30,"down":false})).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ws.send(json!({"type":"ping","t":1})).await;
    // Still alive after all that.
    ws.next_text("pong").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_hello_or_with_a_bad_display_is_closed_with_a_reason() {
    let host = Host::start();
    let mut ws = host.connect().await;
    ws.send(json!({"type":"key","code":30,"down":true})).await;
    let err = ws.next_text("error").await;
    assert_eq!(err["fatal"], true);
    assert!(err["message"].as_str().unwrap().contains("hello"));

    let mut ws = host.connect().await;
    ws.send(json!({"type":"hello","transport":"websocket","display":3}))
        .await;
    let err = ws.next_text("error").await;
    assert_eq!(err["fatal"], true);
    assert!(
        err["message"].as_str().unwrap().contains("no display 3"),
        "{err}"
    );

    // A bad Origin is refused before the upgrade.
    let url = format!("ws://127.0.0.1:{}/api/guests/{DOMID}/session", host.port);
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(rsp)) => {
            assert_eq!(rsp.status(), 403);
            let body = String::from_utf8_lossy(rsp.body().as_deref().unwrap_or_default());
            assert!(body.contains("\"error\""), "{body}");
        }
        other => panic!("a bad origin was not refused: {:?}", other.map(|_| ())),
    }
}

/// The viewer's microphone as kind-3 Opus frames reaches the guest's
/// capture stream: the guest measures the tone we send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microphone_frames_reach_the_guests_capture_stream() {
    let host = Host::start();
    let mut ws = host.connect().await;
    ws.send(json!({"type":"hello","transport":"websocket","codecs":["vp8"],"mic":true}))
        .await;
    let welcome = ws.next_text("welcome").await;
    assert_eq!(welcome["mic"], true, "{welcome}");
    assert_eq!(welcome["video"]["codec"], "vp8");
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio).unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut phase = 0f32;
    let step = 2.0 * std::f32::consts::PI * 1000.0 / 48_000.0;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0u64;
    let heard = loop {
        tick.tick().await;
        let mut pcm = Vec::with_capacity(960 * 2);
        for _ in 0..960 {
            let v = 0.3 * phase.sin();
            pcm.extend_from_slice(&[v, v]);
            phase = (phase + step) % (2.0 * std::f32::consts::PI);
        }
        let packet = enc.encode_vec_float(&pcm, 1500).unwrap();
        let mut frame = vec![3u8, 0, 0, 0];
        frame.extend_from_slice(&(sent * 20_000).to_be_bytes());
        frame.extend_from_slice(&packet);
        ws.send_binary(frame).await;
        sent += 1;
        let lines = host.guest_lines.lock().unwrap().clone();
        let tone = lines.iter().find_map(|l| {
            let hz: f64 = l
                .strip_prefix("capture vsnd/")?
                .split_whitespace()
                .find_map(|w| w.strip_prefix("hz="))?
                .parse()
                .ok()?;
            (hz - 1000.0).abs().lt(&30.0).then_some(hz)
        });
        if let Some(hz) = tone {
            break hz;
        }
        assert!(
            Instant::now() < deadline,
            "the guest never heard the 1 kHz tone: {:?}",
            lines
                .iter()
                .filter(|l| l.starts_with("capture"))
                .collect::<Vec<_>>()
        );
    };
    assert!((heard - 1000.0).abs() < 30.0);
}

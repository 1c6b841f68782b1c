//! In-process session tests: the real router on loopback, real access
//! rules from a configuration, a fake guest whose display feeds a real
//! encoder hub, and a recorder in place of its keyboard.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use pvgate_backends::input::{GuestInput, InputError, InputSpace};
use pvgate_media::{
    ConnectorId, EncodeError, EncoderHub, EncoderParams, Frame, FrameUpdate, SharedFrame,
    Subscription,
};
use pvgate_platform::DomId;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::input::InputTarget;
use crate::access::Access;
use crate::config::{sha256_hex, Config, StreamingConfig};
use crate::http::{AppState, DisplayInfo, GatewayView, GuestInfo};
use crate::session::Sessions;

const DOMID: DomId = 5;
const W: u32 = 320;
const H: u32 = 240;

#[derive(Default)]
struct Recorder(Mutex<Vec<GuestInput>>);

impl InputTarget for Recorder {
    fn space(&self) -> InputSpace {
        InputSpace {
            pointer: (W, H),
            touch: (W, H),
            contacts: 4,
        }
    }
    fn send(&self, batch: &[GuestInput]) -> Result<(), InputError> {
        self.0.lock().unwrap().extend_from_slice(batch);
        Ok(())
    }
}

struct FakeGuest {
    hub: EncoderHub,
    keyboard: Arc<Recorder>,
}

const CONNECTOR: ConnectorId = ConnectorId {
    domid: DOMID as u32,
    device: 0,
    connector: 0,
};

impl GatewayView for FakeGuest {
    fn guests(&self) -> Vec<GuestInfo> {
        vec![GuestInfo {
            domid: DOMID,
            name: "fake".into(),
            displays: vec![DisplayInfo {
                index: 0,
                device: 0,
                connector: 0,
                width: W,
                height: H,
            }],
            ..Default::default()
        }]
    }
    fn display_frame(&self, _domid: DomId, _index: usize) -> Option<SharedFrame> {
        None
    }
    fn subscribe_video(
        &self,
        domid: DomId,
        index: usize,
        params: EncoderParams,
    ) -> Option<Result<Subscription, EncodeError>> {
        (domid == DOMID && index == 0).then(|| self.hub.subscribe(CONNECTOR, params))
    }
    fn input_target(&self, domid: DomId) -> Option<Arc<dyn InputTarget>> {
        (domid == DOMID).then(|| self.keyboard.clone() as Arc<dyn InputTarget>)
    }
}

struct Server {
    port: u16,
    /// The guest's screen size from the next flip on (width, height).
    size: Arc<Mutex<(u32, u32)>>,
    hub: EncoderHub,
    keyboard: Arc<Recorder>,
    sessions: Arc<Sessions>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn server() -> Server {
    server_with(StreamingConfig::default()).await
}

async fn server_with(streaming: StreamingConfig) -> Server {
    server_painting(streaming, paint_square).await
}

/// A 16×16 square moving over a plain background: small P-frames.
fn paint_square(f: &mut Frame, n: u32) {
    let (w, h) = (f.width(), f.height());
    f.fill_rect(0, 0, w, h, 0x0020_4060);
    f.fill_rect((n * 4) % (w - 16), 8, 16, 16, 0x00ff_ffff);
}

/// Fresh noise every frame: the encoder spends its whole bitrate.
fn paint_noise(f: &mut Frame, n: u32) {
    let mut x = n.wrapping_mul(0x9e37_79b9) | 1;
    for b in f.data_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
}

async fn server_painting(streaming: StreamingConfig, paint: fn(&mut Frame, u32)) -> Server {
    let config = Config::parse(
        &format!(
            r#"
[[tenant]]
name = "t"
guests = [5]
[[tenant.token]]
user = "ctl"
role = "control"
sha256 = "{}"
[[tenant.token]]
user = "watcher"
role = "view"
sha256 = "{}"
[[tenant]]
name = "other"
guests = [6]
[[tenant.token]]
user = "o"
role = "control"
sha256 = "{}"
"#,
            sha256_hex("ctl-token"),
            sha256_hex("view-token"),
            sha256_hex("other-token")
        ),
        "test.toml",
    )
    .unwrap();
    let hub = EncoderHub::new();
    let keyboard = Arc::new(Recorder::default());
    let sessions = Arc::new(Sessions::default());
    let state = AppState {
        view: Arc::new(FakeGuest {
            hub: hub.clone(),
            keyboard: keyboard.clone(),
        }),
        access: Arc::new(Access::from_config(&config)),
        sessions: sessions.clone(),
        streaming: Arc::new(streaming),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serve = tokio::spawn(async move {
        let _ = crate::http::serve(listener, state).await;
    });
    // The guest: a changing picture at 30 fps.
    let feed = hub.feed(CONNECTOR);
    let size = Arc::new(Mutex::new((W, H)));
    let flip_size = size.clone();
    let flips = tokio::spawn(async move {
        let mut n = 0u32;
        loop {
            let (w, h) = *flip_size.lock().unwrap();
            let mut f = Frame::new(w, h).unwrap();
            paint(&mut f, n);
            feed.publish(FrameUpdate {
                frame: Arc::new(f),
                damaged: true,
                captured: Instant::now(),
            });
            n += 1;
            tokio::time::sleep(Duration::from_millis(33)).await;
        }
    });
    Server {
        port,
        size,
        hub,
        keyboard,
        sessions,
        tasks: vec![serve, flips],
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(port: u16, token: Option<&str>, domid: DomId) -> Result<Ws, (u16, String)> {
    let q = token.map(|t| format!("?token={t}")).unwrap_or_default();
    let mut req = format!("ws://127.0.0.1:{port}/api/guests/{domid}/session{q}")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "origin",
        format!("http://127.0.0.1:{port}").parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(rsp)) => Err((
            rsp.status().as_u16(),
            String::from_utf8_lossy(rsp.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(e) => panic!("{e}"),
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next text message of `kind` (skipping media).
async fn text(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("nothing for 20 s")
            .expect("closed")
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == kind {
                return v;
            }
        }
    }
}

/// The next video frame's (flags) byte.
async fn video(ws: &mut Ws) -> u8 {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("no video for 20 s")
            .expect("closed")
            .unwrap();
        if let Message::Binary(b) = m {
            if b[0] == 1 {
                return b[1];
            }
        }
    }
}

async fn hello(ws: &mut Ws) -> Value {
    send(
        ws,
        json!({"type":"hello","transport":"websocket","codecs":["h264"]}),
    )
    .await;
    text(ws, "welcome").await
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_viewers_with_equal_parameters_share_one_encoder() {
    let s = server().await;
    let mut a = connect(s.port, Some("ctl-token"), DOMID).await.unwrap();
    let mut b = connect(s.port, Some("view-token"), DOMID).await.unwrap();
    hello(&mut a).await;
    hello(&mut b).await;
    assert_eq!(video(&mut a).await & 1, 1, "the first frame is a keyframe");
    assert_eq!(
        video(&mut b).await & 1,
        1,
        "the joiner's first frame is a keyframe"
    );
    assert_eq!(s.hub.encoder_count(), 1);
    assert_eq!(s.sessions.viewer_count(DOMID), 2);
    let stats = s.sessions.viewer_stats();
    assert!(stats
        .iter()
        .all(|v| v.transport == "websocket" && v.tenant == "t"));
    drop(a);
    drop(b);
    eventually("sessions are removed when their sockets close", || {
        s.sessions.viewer_count(DOMID) == 0
    })
    .await;
    eventually("the encoder stops with its last viewer", || {
        s.hub.encoder_count() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_only_input_is_dropped_and_control_input_reaches_the_guest() {
    let s = server().await;
    let mut viewer = connect(s.port, Some("view-token"), DOMID).await.unwrap();
    assert_eq!(hello(&mut viewer).await["role"], "view");
    send(&mut viewer, json!({"type":"key","code":30,"down":true})).await;
    let err = text(&mut viewer, "error").await;
    assert_eq!(err["fatal"], false);
    assert!(
        err["message"].as_str().unwrap().contains("only watch"),
        "{err}"
    );
    eventually("the drop is counted", || {
        s.sessions
            .viewer_stats()
            .iter()
            .any(|v| v.input_dropped >= 1)
    })
    .await;
    assert!(s.keyboard.0.lock().unwrap().is_empty());

    let mut ctl = connect(s.port, Some("ctl-token"), DOMID).await.unwrap();
    assert_eq!(hello(&mut ctl).await["role"], "control");
    send(&mut ctl, json!({"type":"key","code":30,"down":true})).await;
    send(
        &mut ctl,
        json!({"type":"button","button":"left","down":true,"x":319,"y":10}),
    )
    .await;
    send(&mut ctl, json!({"type":"ping","t":7})).await;
    text(&mut ctl, "pong").await;
    assert_eq!(
        s.keyboard.0.lock().unwrap().clone(),
        vec![
            GuestInput::Key {
                code: 30,
                pressed: true
            },
            GuestInput::Pointer { x: 319, y: 10 },
            GuestInput::Key {
                code: 0x110,
                pressed: true
            },
        ]
    );
    // Leaving releases what the session held down.
    drop(ctl);
    eventually("keys are released when the session ends", || {
        let ev = s.keyboard.0.lock().unwrap();
        ev.contains(&GuestInput::Key {
            code: 30,
            pressed: false,
        }) && ev.contains(&GuestInput::Key {
            code: 0x110,
            pressed: false,
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_before_the_upgrade_with_a_json_reason() {
    let s = server().await;
    let (status, body) = connect(s.port, None, DOMID).await.err().unwrap();
    assert_eq!(status, 401);
    assert!(body.contains("\"error\""), "{body}");
    let (status, _) = connect(s.port, Some("wrong"), DOMID).await.err().unwrap();
    assert_eq!(status, 401);
    let (status, body) = connect(s.port, Some("other-token"), DOMID)
        .await
        .err()
        .unwrap();
    assert_eq!(status, 403, "{body}");
    let (status, _) = connect(s.port, Some("ctl-token"), 99).await.err().unwrap();
    assert_eq!(status, 403, "a guest of no tenant is not revealed");
    assert_eq!(s.sessions.viewer_count(DOMID), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_disabled_in_the_configuration_means_the_websocket_transport() {
    let s = server_with(StreamingConfig {
        webrtc: false,
        codecs: vec![pvgate_media::Codec::Vp8],
        ..StreamingConfig::default()
    })
    .await;
    let mut ws = connect(s.port, Some("ctl-token"), DOMID).await.unwrap();
    send(
        &mut ws,
        json!({"type":"hello","transport":"webrtc","codecs":["h264","vp8"]}),
    )
    .await;
    let welcome = text(&mut ws, "welcome").await;
    assert_eq!(welcome["transport"], "websocket");
    assert_eq!(
        welcome["video"]["codec"], "vp8",
        "the configured codec wins"
    );
    assert_eq!(welcome["audio"], Value::Null, "this guest has no sound");
    assert_eq!(welcome["mic"], false);
    assert_eq!(video(&mut ws).await & 1, 1);
    // No offer is made, so an answer is refused (and the session goes on).
    send(&mut ws, json!({"type":"answer","sdp":"v=0"})).await;
    let err = text(&mut ws, "error").await;
    assert_eq!(err["fatal"], false);
    send(&mut ws, json!({"type":"ping","t":3})).await;
    assert_eq!(text(&mut ws, "pong").await["t"], 3);

    // A browser that decodes none of the configured codecs is told so.
    let mut ws = connect(s.port, Some("ctl-token"), DOMID).await.unwrap();
    send(&mut ws, json!({"type":"hello","codecs":["h264"]})).await;
    let err = text(&mut ws, "error").await;
    assert_eq!(err["fatal"], true);
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("no video codec in common"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resized_screen_is_announced_and_input_follows_the_new_size() {
    let s = server().await;
    let mut ws = connect(s.port, Some("ctl-token"), DOMID).await.unwrap();
    let welcome = hello(&mut ws).await;
    assert_eq!(welcome["display"]["width"], W);
    video(&mut ws).await;
    *s.size.lock().unwrap() = (160, 128);
    let r = text(&mut ws, "resolution").await;
    assert_eq!(
        (r["width"].as_u64(), r["height"].as_u64()),
        (Some(160), Some(128))
    );
    // x=200 was inside the old screen, not the new one.
    send(&mut ws, json!({"type":"move","x":200,"y":10})).await;
    let err = text(&mut ws, "error").await;
    assert!(
        err["message"].as_str().unwrap().contains("outside"),
        "{err}"
    );
    assert!(s.keyboard.0.lock().unwrap().is_empty());
}

/// The ports of the `candidate:` lines in the offer and the trickled
/// candidates, until the end-of-candidates message.
async fn offered_candidate_ports(ws: &mut Ws) -> Vec<u16> {
    fn port(candidate: &str) -> Option<u16> {
        // candidate:<foundation> <component> <proto> <prio> <ip> <port> typ ...
        candidate.split_whitespace().nth(5)?.parse().ok()
    }
    let offer = text(ws, "offer").await;
    let mut ports: Vec<u16> = offer["sdp"]
        .as_str()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("a="))
        .filter_map(port)
        .collect();
    loop {
        let ice = text(ws, "ice").await;
        match ice["candidate"].as_str() {
            Some(c) if !c.is_empty() => ports.extend(port(c)),
            _ => return ports,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_binds_the_configured_address_and_a_port_of_the_configured_range() {
    // A range of three ports on loopback that nobody holds now, below the
    // ephemeral range so other tests' sockets don't land in it.
    let range = (16_000..20_000u16)
        .step_by(131)
        .find(|&p| (p..p + 3).all(|q| std::net::UdpSocket::bind(("127.0.0.1", q)).is_ok()))
        .map(|p| p..=p + 2)
        .expect("a free loopback UDP range");
    let s = server_with(StreamingConfig {
        udp_addresses: vec![std::net::IpAddr::from([127, 0, 0, 1])],
        udp_ports: Some(range.clone()),
        ..StreamingConfig::default()
    })
    .await;
    let mut seen = Vec::new();
    let mut viewers = Vec::new();
    for _ in 0..2 {
        let mut ws = connect(s.port, Some("ctl-token"), DOMID).await.unwrap();
        send(
            &mut ws,
            json!({"type":"hello","transport":"webrtc","codecs":["h264"]}),
        )
        .await;
        assert_eq!(text(&mut ws, "welcome").await["transport"], "webrtc");
        let ports = offered_candidate_ports(&mut ws).await;
        assert!(!ports.is_empty(), "the gateway offered no candidate");
        assert!(
            ports.iter().all(|p| range.contains(p)),
            "candidate ports {ports:?} outside the configured {range:?}"
        );
        seen.extend(ports);
        viewers.push(ws);
    }
    let distinct: std::collections::BTreeSet<u16> = seen.iter().copied().collect();
    assert!(
        distinct.len() >= 2,
        "two live viewers share one UDP port: {seen:?}"
    );
}

/// Video frames (presentation time in µs, keyframe) read for `how_long`.
async fn read_video_for(ws: &mut Ws, how_long: Duration) -> Vec<(u64, bool)> {
    let mut frames = Vec::new();
    let end = Instant::now() + how_long;
    while let Ok(Some(m)) = tokio::time::timeout_at(end.into(), ws.next()).await {
        if let Message::Binary(b) = m.expect("socket") {
            if b[0] == 1 {
                let pts = u64::from_be_bytes(b[4..12].try_into().unwrap());
                frames.push((pts, b[1] & 1 == 1));
            }
        }
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_stops_reading_resumes_at_a_keyframe_instead_of_falling_behind() {
    let s = server_painting(StreamingConfig::default(), paint_noise).await;
    // A small receive window, so the stall reaches the gateway at once
    // rather than after the kernel has buffered megabytes.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(([127, 0, 0, 1], s.port).into()).await.unwrap();
    let mut req = format!(
        "ws://127.0.0.1:{}/api/guests/{DOMID}/session?token=ctl-token",
        s.port
    )
    .into_client_request()
    .unwrap();
    req.headers_mut().insert(
        "origin",
        format!("http://127.0.0.1:{}", s.port).parse().unwrap(),
    );
    let (mut ws, _) =
        tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
    hello(&mut ws).await;
    let mut frames = read_video_for(&mut ws, Duration::from_millis(500)).await;
    assert!(!frames.is_empty(), "no video before the stall");
    // The viewer stops reading (a frozen tab, a saturated link) ...
    tokio::time::sleep(Duration::from_secs(3)).await;
    // ... and reads again.
    frames.extend(read_video_for(&mut ws, Duration::from_secs(3)).await);

    // Frames come every 33 ms; the stall shows as a jump in presentation
    // time. What follows the jump must be a keyframe, or the browser's
    // decoder would be fed a P-frame whose references were dropped.
    let gaps: Vec<usize> = frames
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1].0.saturating_sub(w[0].0) > 1_000_000)
        .map(|(i, _)| i + 1)
        .collect();
    assert!(
        !gaps.is_empty(),
        "no frames were dropped during a 3 s stall: the backlog was queued, and the viewer is seconds behind"
    );
    for g in gaps {
        assert!(
            frames[g].1,
            "frame {g} after a {} ms gap is not a keyframe",
            (frames[g].0 - frames[g - 1].0) / 1000
        );
    }
    let dropped = s.sessions.viewer_stats()[0].video_dropped;
    assert!(dropped > 0, "/metrics does not count the dropped frames");
}

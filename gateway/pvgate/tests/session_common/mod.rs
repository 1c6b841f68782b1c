//! A whole host for session tests: `pvgate sim-xen`, `pvgate serve` on it
//! (no auth, loopback), and one `pvgate-guest-sim` guest with a display,
//! playback and capture streams and a keyboard; plus a WebSocket client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use pvgate_guest_sim::content::{decode_strip, ImageView, PixelLayout, StripData};
use pvgate_media::Frame;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub const PVGATE: &str = env!("CARGO_BIN_EXE_pvgate");
pub const DOMID: u32 = 7;
pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 480;

/// Kills (and reaps) a child process when dropped.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Host {
    pub base: String,
    pub port: u16,
    /// Lines the guest printed (`input vkbd/0 key keycode=30 pressed=1`, …).
    pub guest_lines: Arc<Mutex<Vec<String>>>,
    // Dropped in reverse order of start: guest, gateway, simulator.
    _guest: Reaped,
    _gateway: Reaped,
    _sim: Reaped,
    _dir: tempfile::TempDir,
}

fn guest_sim_path() -> PathBuf {
    let p = Path::new(PVGATE).with_file_name("pvgate-guest-sim");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p pvgate-guest-sim` first (tests/run.sh builds the workspace)",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Host {
    /// Start everything; returns once the guest's display and sound are
    /// in the API.
    pub fn start() -> Host {
        let dir = tempfile::Builder::new()
            .prefix("pvgate-session-")
            .tempdir_in("/tmp")
            .unwrap();
        let sim = Reaped(
            Command::new(PVGATE)
                .args(["sim-xen", "--dir"])
                .arg(dir.path())
                .stdout(Stdio::piped())
                .env("RUST_LOG", "warn")
                .spawn()
                .unwrap(),
        );
        let mut sim = sim;
        // It prints once it is listening.
        let mut out = BufReader::new(sim.0.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.contains("simulated Xen running"), "{line}");
        // Keep reading: a closed pipe would kill it at its next line.
        std::thread::spawn(move || for _ in out.lines() {});
        let port = free_port();
        let gateway = Reaped(
            Command::new(PVGATE)
                .args([
                    "serve",
                    "--platform",
                    "sim",
                    "--insecure-no-auth",
                    "--listen",
                ])
                .arg(format!("127.0.0.1:{port}"))
                .arg("--sim-dir")
                .arg(dir.path())
                .env("RUST_LOG", "warn")
                .spawn()
                .unwrap(),
        );
        let mut guest = Reaped(
            Command::new(guest_sim_path())
                .arg("--sim-dir")
                .arg(dir.path())
                .args(["--domid", &DOMID.to_string(), "--name", "session-test"])
                .args([
                    "--vdispl",
                    &format!("backend=0,be-alloc=0,connectors={WIDTH}x{HEIGHT}"),
                ])
                .args([
                    "--vsnd",
                    "card, sample-rates=48000, sample-formats=s16_le | pcm, name=dev0 | stream, type=p | stream, type=c",
                ])
                .args(["--vkb", "feature-abs-pointer=1,width=640,height=480"])
                .args(["--scene", "pattern", "--fps", "30"])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let guest_lines = Arc::new(Mutex::new(Vec::new()));
        {
            let out = BufReader::new(guest.0.stdout.take().unwrap());
            let lines = guest_lines.clone();
            std::thread::spawn(move || {
                for l in out.lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(l);
                }
            });
        }
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v: serde_json::Value = http_get(&format!("{base}/api/guests/{DOMID}"))
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let ready = v["displays"].as_array().is_some_and(|d| !d.is_empty())
                && v["sound"].as_array().is_some_and(|s| s.len() >= 2);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the guest did not appear with its display and sound: {v}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Host {
            base,
            port,
            guest_lines,
            _guest: guest,
            _gateway: gateway,
            _sim: sim,
            _dir: dir,
        }
    }

    pub fn guest_saw(&self, needle: &str) -> bool {
        self.guest_lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    /// Open the session WebSocket as a browser on the gateway's page would.
    pub async fn connect(&self) -> Ws {
        let mut req = format!("ws://127.0.0.1:{}/api/guests/{DOMID}/session", self.port)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "origin",
            format!("http://127.0.0.1:{}", self.port).parse().unwrap(),
        );
        let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        Ws { ws }
    }
}

pub struct Ws {
    pub ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

pub enum In {
    Text(serde_json::Value),
    Binary(Vec<u8>),
}

impl Ws {
    pub async fn send(&mut self, v: serde_json::Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_binary(&mut self, b: Vec<u8>) {
        self.ws.send(Message::Binary(b.into())).await.unwrap();
    }

    pub async fn next(&mut self) -> In {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(20), self.ws.next())
                .await
                .expect("nothing from the gateway for 20 s")
                .expect("the gateway closed the session")
                .unwrap();
            match m {
                Message::Text(t) => return In::Text(serde_json::from_str(t.as_str()).unwrap()),
                Message::Binary(b) => return In::Binary(b.to_vec()),
                Message::Close(c) => panic!("the gateway closed the session: {c:?}"),
                _ => {}
            }
        }
    }

    /// The next text message of `kind`, skipping media and other messages.
    pub async fn next_text(&mut self, kind: &str) -> serde_json::Value {
        loop {
            if let In::Text(v) = self.next().await {
                if v["type"] == kind {
                    return v;
                }
                assert_ne!(v["type"], "error", "unexpected error: {v}");
            }
        }
    }
}

/// The frame counter strip of a decoded frame.
pub fn strip(frame: &Frame) -> Option<StripData> {
    let data = frame.packed();
    let view = ImageView::new(
        &data,
        frame.width(),
        frame.height(),
        frame.width() as usize * 4,
        PixelLayout::Bgra,
    )
    .ok()?;
    decode_strip(&view)
}

/// A minimal HTTP/1.1 GET over loopback.
pub fn http_get(url: &str) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..split]);
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(buf[split + 4..].to_vec())
}

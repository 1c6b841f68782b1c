//! The `pvgate` binary as a user meets it.

use std::io::{BufRead, BufReader};

use pvgate_guest_sim::content::{decode_strip, ImageView, PixelLayout, StripData};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PVGATE: &str = env!("CARGO_BIN_EXE_pvgate");

#[test]
fn help_lists_the_subcommands() {
    let out = Command::new(PVGATE).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for sub in ["serve", "sim-xen", "demo", "bench", "hash-token"] {
        assert!(
            help.contains(sub),
            "`pvgate --help` does not list {sub}:\n{help}"
        );
    }
}

#[test]
fn serve_without_xen_says_what_is_missing_and_suggests_the_demo() {
    let out = Command::new(PVGATE)
        .args(["serve", "--listen", "127.0.0.1:0", "--insecure-no-auth"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot start the xen platform"), "{stderr}");
    assert!(stderr.contains("/dev/xen/gntdev"), "{stderr}");
    assert!(stderr.contains("pvgate demo"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn serve_against_a_missing_simulator_names_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(PVGATE)
        .args([
            "serve",
            "--platform",
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--insecure-no-auth",
            "--sim-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&dir.path().display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("pvgate sim-xen"), "{stderr}");
}

#[test]
fn serve_without_a_config_says_to_pass_one() {
    let out = Command::new(PVGATE)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--config FILE"), "{stderr}");
    assert!(stderr.contains("--insecure-no-auth"), "{stderr}");
    // Without authentication only on loopback.
    let out = Command::new(PVGATE)
        .args(["serve", "--listen", "0.0.0.0:0", "--insecure-no-auth"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("loopback"), "{stderr}");
}

#[test]
fn serve_names_the_line_of_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(
        &path,
        "[[tenant]]\nname = \"acme\"\n[[tenant.token]]\nuser = \"a\"\nrole = \"admin\"\nsha256 = \"00\"\n",
    )
    .unwrap();
    let out = Command::new(PVGATE)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:5:8: unknown role \"admin\"", path.display())),
        "{stderr}"
    );
    // The example configuration is accepted (it then stops at the missing Xen).
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/pvgate.example.toml"
    );
    let out = Command::new(PVGATE)
        .args(["serve", "--listen", "127.0.0.1:0", "--config", example])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot start the xen platform"), "{stderr}");
}

#[test]
fn hash_token_hashes_stdin_or_generates() {
    use std::io::Write;
    let mut child = Command::new(PVGATE)
        .args(["hash-token", "--user", "alice", "--role", "control"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct-horse-battery-staple\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    // sha256("correct-horse-battery-staple")
    let hash = "87cbebfeebc05f7c54ac9336c4b4bbec831227a641951a4bde7edd56020f8590";
    assert!(stdout.contains(&format!("sha256 = \"{hash}\"")), "{stdout}");
    assert!(
        stdout.contains("user = \"alice\"") && stdout.contains("role = \"control\""),
        "{stdout}"
    );
    assert!(
        !stdout.contains("correct-horse"),
        "the token itself is not printed back"
    );

    let out = Command::new(PVGATE)
        .args(["hash-token", "--generate"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("token  "))
        .expect("a generated token");
    assert_eq!(token.len(), 40, "{stdout}");

    let out = Command::new(PVGATE)
        .arg("hash-token")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--generate"));
}

/// The demo end to end: it prints a URL; the API there lists two guests;
/// their snapshots carry the frame-counter strip the guests drew, and it
/// advances (the guests keep flipping and the gateway keeps copying).
#[test]
fn the_demo_serves_two_guests_whose_screens_move() {
    let guest_sim = std::path::Path::new(PVGATE).with_file_name("pvgate-guest-sim");
    assert!(
        guest_sim.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (tests/run.sh does)",
        guest_sim.display()
    );
    let mut demo = Command::new(PVGATE)
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--token",
            "test-token",
            "--guest-sim",
        ])
        .arg(&guest_sim)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(demo.stdout.take().unwrap());
    let _demo = StopOnDrop(demo);
    let url = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.trim().strip_prefix("open ").map(str::to_string))
        .expect("the demo printed no URL");
    let (base, token) = url
        .split_once("/?token=")
        .expect("the demo's URL carries the token");
    assert_eq!(token, "test-token");
    let base = base.to_string();
    // Without the token the API refuses; with it, the demo tenant's guests.
    assert_eq!(http_status(&format!("{base}/api/guests")), Some(401));
    assert_eq!(
        http_status(&format!("{base}/api/guests?token=wrong")),
        Some(401)
    );
    assert_eq!(http_status(&format!("{base}/healthz")), Some(200));

    let deadline = Instant::now() + Duration::from_secs(60);
    let guests = loop {
        let body = http_get(&format!("{base}/api/guests?token={token}")).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let ready = v.as_array().is_some_and(|g| {
            g.len() == 2
                && g.iter().all(|g| {
                    g["displays"].as_array().is_some_and(|d| !d.is_empty()) && g["tenant"] == "demo"
                })
        });
        if ready {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the demo's guests did not appear: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for guest in guests.as_array().unwrap() {
        let domid = guest["domid"].as_u64().unwrap();
        let url = format!("{base}/api/guests/{domid}/displays/0/snapshot.png?token={token}");
        let first = strip_of(&url, deadline);
        let later = loop {
            std::thread::sleep(Duration::from_millis(300));
            let s = strip_of(&url, deadline);
            if s.frame > first.frame {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "guest {domid}'s screen stopped at frame {}",
                first.frame
            );
        };
        assert!(later.timestamp_us > first.timestamp_us);
    }
}

fn strip_of(url: &str, deadline: Instant) -> StripData {
    loop {
        if let Some(png) = http_get(url) {
            let img = image::load_from_memory(&png).unwrap().to_rgb8();
            let (w, h) = img.dimensions();
            let view =
                ImageView::new(img.as_raw(), w, h, w as usize * 3, PixelLayout::Rgb).unwrap();
            if let Some(s) = decode_strip(&view) {
                return s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no readable frame strip at {url}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The status code of a GET.
fn http_status(url: &str) -> Option<u16> {
    let (status, _) = http_request(url)?;
    Some(status)
}

/// The body of a GET that answered 200.
fn http_get(url: &str) -> Option<Vec<u8>> {
    match http_request(url)? {
        (200, body) => Some(body),
        _ => None,
    }
}

/// A minimal HTTP/1.1 GET over loopback (no client crate needed for tests).
fn http_request(url: &str) -> Option<(u16, Vec<u8>)> {
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
    let status = head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    Some((status, buf[split + 4..].to_vec()))
}

/// Stops the demo like a user would (Ctrl-C: it then stops its guests and
/// the simulator), and reaps it; kills it if it does not stop.
struct StopOnDrop(std::process::Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
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

//! Debian's Chromium, headless, under its chromedriver.
//!
//! Flags: the set this workplace's machines need (no sandbox as root, no
//! background networking on a closed network), plus what the tests need:
//! autoplay without a gesture (audio), a fake camera/microphone that plays
//! a WAV file we made, and real host candidates for WebRTC on loopback
//! (mDNS-obfuscated candidates cannot be resolved by the gateway).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use crate::webdriver::Session;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A running chromedriver and one browser session on it.
pub struct Browser {
    pub session: Session,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// What the browser is started with, beyond the fixed flags.
#[derive(Default, Clone)]
pub struct BrowserOptions {
    /// A WAV file the fake microphone plays (looped).
    pub fake_microphone: Option<PathBuf>,
    /// Window size (default 1280×800).
    pub window: Option<(u32, u32)>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Browser {
    pub fn start(opts: &BrowserOptions) -> anyhow::Result<Browser> {
        for (path, pkg) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            anyhow::ensure!(
                Path::new(path).exists(),
                "{path} is missing: install Debian's {pkg} (`apt-get install {pkg}`; tests/run.sh does)"
            );
        }
        let port = free_port()?;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start chromedriver")?;
        let mut driver = KillOnDrop(Some(driver));
        let url = format!("http://127.0.0.1:{port}");
        crate::wait_for("chromedriver to listen", Duration::from_secs(20), || {
            Ok(ureq::get(&format!("{url}/status")).call().ok().map(|_| ()))
        })?;
        let profile = tempfile::Builder::new()
            .prefix("pvgate-chromium-")
            .tempdir()?;
        let (w, h) = opts.window.unwrap_or((1280, 800));
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-quic".into(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={w},{h}"),
            "--autoplay-policy=no-user-gesture-required".into(),
            "--use-fake-ui-for-media-stream".into(),
            "--use-fake-device-for-media-stream".into(),
            "--disable-features=WebRtcHideLocalIpsWithMdns".into(),
        ];
        if let Some(wav) = &opts.fake_microphone {
            args.push(format!(
                "--use-file-for-fake-audio-capture={}",
                wav.display()
            ));
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let session = Session::new(&url, caps)?;
        session.set_script_timeout(Duration::from_secs(30))?;
        Ok(Browser {
            session,
            driver: driver.0.take().expect("driver"),
            _profile: profile,
        })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Close the browser through its driver before stopping the driver,
        // or Chromium outlives the test.
        self.session.quit();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

struct KillOnDrop(Option<Child>);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

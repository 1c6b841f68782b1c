//! The viewer page as the tests drive it, through `window.pvgate` (the
//! page's test surface, see web/static/main.js) and real input events.

use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use image::RgbaImage;
use serde_json::{json, Value};

use crate::browser::Browser;
use crate::wait_for;

/// The viewer page open in a browser.
pub struct Viewer<'b> {
    pub browser: &'b Browser,
}

/// A frame read back from the page.
pub struct GrabbedFrame {
    pub image: RgbaImage,
    /// When the page presented it: milliseconds since the Unix epoch.
    pub presented_at_ms: f64,
}

/// Where the guest's picture is on the page, in CSS pixels of the viewport.
#[derive(Debug, Clone, Copy)]
pub struct DisplayRect {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
    pub guest_width: u32,
    pub guest_height: u32,
}

impl DisplayRect {
    /// Viewport point of guest pixel (x, y) (its centre).
    pub fn point(&self, x: u32, y: u32) -> (i64, i64) {
        let px = self.left + (f64::from(x) + 0.5) * self.width / f64::from(self.guest_width);
        let py = self.top + (f64::from(y) + 0.5) * self.height / f64::from(self.guest_height);
        (px.round() as i64, py.round() as i64)
    }
}

impl<'b> Viewer<'b> {
    pub fn open(browser: &'b Browser, url: &str) -> anyhow::Result<Viewer<'b>> {
        browser.session.goto(url)?;
        Ok(Viewer { browser })
    }

    /// `window.pvgate[expr]` as JSON (null before the page set it up).
    pub fn eval(&self, expr: &str) -> anyhow::Result<Value> {
        self.browser.session.execute(
            &format!("return (window.pvgate === undefined) ? null : ({expr});"),
            json!([]),
        )
    }

    pub fn state(&self) -> anyhow::Result<String> {
        Ok(self
            .eval("window.pvgate.state")?
            .as_str()
            .unwrap_or("")
            .to_string())
    }

    /// Wait until the page is connected and has shown at least `frames` frames.
    pub fn wait_playing(&self, frames: u64, timeout: Duration) -> anyhow::Result<()> {
        wait_for("the viewer to play video", timeout, || {
            let v = self.eval("({state: window.pvgate.state, frames: window.pvgate.framesDecoded, errors: window.pvgate.errors})")?;
            Ok((v["state"] == "connected" && v["frames"].as_u64().unwrap_or(0) >= frames)
                .then_some(()))
        })
        .with_context(|| format!("page state: {}", self.debug_state()))
    }

    /// What the page says about itself, for failure messages.
    pub fn debug_state(&self) -> String {
        self.eval("JSON.stringify({state: window.pvgate.state, transport: window.pvgate.transport, role: window.pvgate.role, codec: window.pvgate.codec, frames: window.pvgate.framesDecoded, stats: window.pvgate.stats, errors: window.pvgate.errors})")
            .map(|v| v.as_str().unwrap_or("null").to_string())
            .unwrap_or_else(|e| format!("(cannot read window.pvgate: {e:#})"))
    }

    /// The current video frame at guest size, as the page decoded it.
    pub fn grab_frame(&self) -> anyhow::Result<RgbaImage> {
        Ok(self.grab_frame_timed()?.image)
    }

    /// The current frame and when the page presented it.
    pub fn grab_frame_timed(&self) -> anyhow::Result<GrabbedFrame> {
        let v = self
            .browser
            .session
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 Promise.resolve(window.pvgate.grabFrame()).then(done, e => done({error: String(e)}));",
                json!([]),
            )?;
        if let Some(e) = v.get("error") {
            bail!("grabFrame failed: {e}");
        }
        let w = v["width"].as_u64().context("grabFrame: no width")? as u32;
        let h = v["height"].as_u64().context("grabFrame: no height")? as u32;
        let data = base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().context("grabFrame: no data")?)?;
        let image = RgbaImage::from_raw(w, h, data)
            .context("grabFrame: data is not width×height×4 bytes")?;
        Ok(GrabbedFrame {
            image,
            presented_at_ms: v["presentedAt"].as_f64().unwrap_or(f64::NAN),
        })
    }

    /// Listen for `duration`: the wall-clock times (ms since the Unix epoch)
    /// at which sound started after silence, at the page's audio output.
    pub fn audio_onsets(&self, duration: Duration) -> anyhow::Result<Vec<f64>> {
        let v = self.browser.session.execute_async(
            "const done = arguments[arguments.length - 1];\
             Promise.resolve(window.pvgate.audioOnsets(arguments[0])).then(done, e => done({error: String(e)}));",
            json!([duration.as_millis() as u64]),
        )?;
        if let Some(e) = v.get("error") {
            bail!("audioOnsets failed: {e}");
        }
        Ok(v.as_array()
            .context("audioOnsets: not a list")?
            .iter()
            .filter_map(|t| t.as_f64())
            .collect())
    }

    /// The strongest frequency between `lo` and `hi` Hz in the received audio.
    pub fn audio_peak(&self, lo: f64, hi: f64) -> anyhow::Result<(f64, f64)> {
        let v = self.browser.session.execute_async(
            "const done = arguments[arguments.length - 1];\
             Promise.resolve(window.pvgate.audioPeak(arguments[0], arguments[1])).then(done, e => done({error: String(e)}));",
            json!([lo, hi]),
        )?;
        if let Some(e) = v.get("error") {
            bail!("audioPeak failed: {e}");
        }
        Ok((
            v["freq"].as_f64().context("audioPeak: no freq")?,
            v["db"].as_f64().context("audioPeak: no db")?,
        ))
    }

    /// Where the guest's picture is drawn: the visible `#video` (WebRTC) or
    /// `#canvas` (WebSocket) element, letterboxed (object-fit: contain).
    pub fn display_rect(&self) -> anyhow::Result<DisplayRect> {
        let v = self.eval(
            "(() => { const d = window.pvgate.welcome.display;\
               const el = window.pvgate.transport === 'webrtc' ? document.getElementById('video') : document.getElementById('canvas');\
               const r = el.getBoundingClientRect();\
               const s = Math.min(r.width / d.width, r.height / d.height);\
               return {left: r.left + (r.width - d.width * s) / 2, top: r.top + (r.height - d.height * s) / 2,\
                       width: d.width * s, height: d.height * s, guestWidth: d.width, guestHeight: d.height}; })()",
        )?;
        Ok(DisplayRect {
            left: v["left"].as_f64().context("displayRect: left")?,
            top: v["top"].as_f64().context("displayRect: top")?,
            width: v["width"].as_f64().context("displayRect: width")?,
            height: v["height"].as_f64().context("displayRect: height")?,
            guest_width: v["guestWidth"]
                .as_u64()
                .context("displayRect: guestWidth")? as u32,
            guest_height: v["guestHeight"]
                .as_u64()
                .context("displayRect: guestHeight")? as u32,
        })
    }

    /// A real left click (mouse move, down, up) at guest pixel (x, y).
    pub fn click_at(&self, x: u32, y: u32) -> anyhow::Result<()> {
        let (px, py) = self.display_rect()?.point(x, y);
        self.browser.session.actions(json!([{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [
                {"type": "pointerMove", "origin": "viewport", "x": px, "y": py, "duration": 0},
                {"type": "pointerDown", "button": 0},
                {"type": "pause", "duration": 50},
                {"type": "pointerUp", "button": 0}
            ]
        }]))
    }

    /// Type `text` with real key events (WebDriver key actions).
    pub fn type_text(&self, text: &str) -> anyhow::Result<()> {
        let mut actions = Vec::new();
        for c in text.chars() {
            actions.push(json!({"type": "keyDown", "value": c.to_string()}));
            actions.push(json!({"type": "keyUp", "value": c.to_string()}));
        }
        self.browser.session.actions(json!([{
            "type": "key", "id": "keyboard", "actions": actions
        }]))
    }

    /// Two-finger touch: both down at `a`/`b`, move by (dx, dy), up.
    pub fn touch_two(&self, a: (u32, u32), b: (u32, u32), d: (i64, i64)) -> anyhow::Result<()> {
        let r = self.display_rect()?;
        let finger = |id: &str, (x, y): (u32, u32)| {
            let (px, py) = r.point(x, y);
            json!({
                "type": "pointer", "id": id, "parameters": {"pointerType": "touch"},
                "actions": [
                    {"type": "pointerMove", "origin": "viewport", "x": px, "y": py, "duration": 0},
                    {"type": "pointerDown", "button": 0},
                    {"type": "pause", "duration": 100},
                    {"type": "pointerMove", "origin": "viewport", "x": px + d.0, "y": py + d.1, "duration": 200},
                    {"type": "pause", "duration": 100},
                    {"type": "pointerUp", "button": 0}
                ]
            })
        };
        self.browser
            .session
            .actions(json!([finger("finger1", a), finger("finger2", b)]))
    }
}

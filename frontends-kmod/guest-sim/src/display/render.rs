//! The guest's compositor: two dumb buffers per connector, draw the scene
//! into the back one, flip, wait for EVT_PG_FLIP, swap; at a target rate.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pvgate_protocol::displif::PixelFormat;
use tokio::sync::watch;

use super::session::{DisplayError, DisplaySession, FlipOutcome};
use crate::content::{pixfmt, Frame, InputState, Renderer, Scene};

/// What to show on one connector.
#[derive(Clone, Copy, Debug)]
pub struct RenderOptions {
    pub connector: usize,
    pub format: PixelFormat,
    pub fps: u32,
    pub scene: Scene,
    /// Stop after this many flips (None: until stopped).
    pub frames: Option<u64>,
}

/// What the loop did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderStats {
    pub flips: u64,
    pub frame_done_timeouts: u64,
}

/// The frame in `format`'s byte layout, pitch `ceil(width × bpp / 8)` (the
/// dumb buffer's).
pub fn encode_frame(frame: &Frame, format: PixelFormat) -> Result<Vec<u8>, String> {
    let pitch = pvgate_protocol::displif::dumb_pitch(frame.width, format.bpp())
        .ok_or_else(|| format!("{}x{} is too wide", frame.width, frame.height))?
        as usize;
    pixfmt::encode_to_vec(frame, format, pitch).map_err(|e| e.to_string())
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Told of each completed flip: (frame number, framebuffer cookie, outcome).
pub type FlipObserver = Arc<dyn Fn(u64, u64, FlipOutcome) + Send + Sync>;

/// Run the double-buffered loop on `session` until `stop` or `frames`.
pub async fn render_loop(
    session: Arc<DisplaySession>,
    opts: RenderOptions,
    input: Option<Arc<Mutex<InputState>>>,
    on_flip: Option<FlipObserver>,
    mut stop: watch::Receiver<bool>,
) -> Result<RenderStats, DisplayError> {
    let conn = session
        .connectors()
        .get(opts.connector)
        .copied()
        .ok_or(DisplayError::NoConnector(opts.connector))?;
    let (w, h) = (conn.width, conn.height);
    let bpp = opts.format.bpp();
    let bufs = [
        session.create_dbuf(w, h, bpp).await?,
        session.create_dbuf(w, h, bpp).await?,
    ];
    let fbs = [
        session.fb_attach(&bufs[0], opts.format).await?,
        session.fb_attach(&bufs[1], opts.format).await?,
    ];
    let renderer = Renderer::new(opts.scene, w, h);
    let mut frame = Frame::new(w, h);
    let draw = |frame: &mut Frame, n: u64| -> Result<Vec<u8>, DisplayError> {
        let guard = input
            .as_ref()
            .map(|i| i.lock().unwrap_or_else(|p| p.into_inner()).clone());
        renderer.render_into(frame, n as u32, now_us(), guard.as_ref());
        encode_frame(frame, opts.format).map_err(|reason| DisplayError::BadResponse {
            op: "render",
            reason,
        })
    };
    bufs[0].write(0, &draw(&mut frame, 0)?)?;
    session
        .set_config(opts.connector, Some((fbs[0], w, h, bpp)))
        .await?;
    let mut stats = RenderStats::default();
    let period = Duration::from_secs_f64(1.0 / f64::from(opts.fps.max(1)));
    let start = tokio::time::Instant::now();
    let mut front = 0usize;
    let mut n: u64 = 1;
    loop {
        if *stop.borrow() || opts.frames.is_some_and(|max| stats.flips >= max) {
            break;
        }
        let back = 1 - front;
        bufs[back].write(0, &draw(&mut frame, n)?)?;
        let outcome = session.page_flip(opts.connector, fbs[back]).await?;
        if outcome == FlipOutcome::FrameDoneTimedOut {
            stats.frame_done_timeouts += 1;
        }
        if let Some(f) = &on_flip {
            f(n, fbs[back], outcome);
        }
        stats.flips += 1;
        front = back;
        n += 1;
        let next = start + period.mul_f64(n as f64);
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => {}
        }
    }
    // display_disable, then release the framebuffers and buffers.
    session.set_config(opts.connector, None).await?;
    for fb in fbs {
        session.fb_detach(fb).await?;
    }
    let [a, b] = bufs;
    session.destroy_dbuf(a).await?;
    session.destroy_dbuf(b).await?;
    Ok(stats)
}

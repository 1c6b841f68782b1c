//! The pictures the simulated guest shows. Each is a pure function of (scene, size, frame
//! number, timestamp, input state), so a test can re-render the exact frame the guest
//! flipped and compare it with what came out of a decoder.
//!
//! - `Pattern`: colour bars and ramps (easy to judge by eye and by PSNR) with a moving box,
//!   so every frame differs.
//! - `Desktop`: a static desktop with one small window gliding a few pixels per frame, the
//!   typical "little changes" load for damage tracking.
//! - `Noise`: new pseudo-random pixels everywhere every frame, the worst case for encoders.
//!
//! All of them get the strip on top and, when given input state, the overlay.

use std::str::FromStr;

use super::font::draw_glyph;
use super::frame::{rgb, Frame, Rect};
use super::grid::{content_area, COLS, ROWS};
use super::input::InputState;
use super::overlay::draw_overlay;
use super::strip::{draw_strip, StripData};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scene {
    Pattern,
    Desktop,
    Noise,
}

impl Scene {
    pub const ALL: [Scene; 3] = [Scene::Pattern, Scene::Desktop, Scene::Noise];

    pub fn name(self) -> &'static str {
        match self {
            Scene::Pattern => "pattern",
            Scene::Desktop => "desktop",
            Scene::Noise => "noise",
        }
    }
}

impl FromStr for Scene {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Scene::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| format!("unknown scene {s:?}: expected pattern, desktop or noise"))
    }
}

impl std::fmt::Display for Scene {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Renders one scene at one size; keeps the static part so per-frame work is a copy plus
/// the moving bits (cheap enough for 1080p60 in release builds).
pub struct Renderer {
    scene: Scene,
    background: Frame,
}

/// Position along a back-and-forth path of length `range` after `distance` pixels of travel.
fn bounce(distance: u64, range: i64) -> i64 {
    if range <= 0 {
        return 0;
    }
    let period = 2 * range as u64;
    let p = (distance % period) as i64;
    if p > range {
        2 * range - p
    } else {
        p
    }
}

/// Per-frame travel in pixels for moving elements: a few pixels, scaled with the width.
fn step(width: u32) -> u64 {
    u64::from((width / 480).max(2))
}

impl Renderer {
    pub fn new(scene: Scene, width: u32, height: u32) -> Self {
        let mut background = Frame::new(width, height);
        match scene {
            Scene::Pattern => draw_pattern_background(&mut background),
            Scene::Desktop => draw_desktop_background(&mut background),
            Scene::Noise => {}
        }
        Renderer { scene, background }
    }

    pub fn scene(&self) -> Scene {
        self.scene
    }

    pub fn size(&self) -> (u32, u32) {
        (self.background.width, self.background.height)
    }

    /// A new frame; see [`Renderer::render_into`].
    pub fn render(&self, frame_no: u32, timestamp_us: u64, input: Option<&InputState>) -> Frame {
        let (w, h) = self.size();
        let mut f = Frame::new(w, h);
        self.render_into(&mut f, frame_no, timestamp_us, input);
        f
    }

    /// Draws frame `frame_no` into `out` (resized if needed), overwriting every pixel.
    pub fn render_into(
        &self,
        out: &mut Frame,
        frame_no: u32,
        timestamp_us: u64,
        input: Option<&InputState>,
    ) {
        let (w, h) = self.size();
        if out.width != w || out.height != h || out.pixels.len() != self.background.pixels.len() {
            *out = Frame::new(w, h);
        }
        match self.scene {
            Scene::Pattern => {
                out.pixels.copy_from_slice(&self.background.pixels);
                draw_pattern_motion(out, frame_no);
            }
            Scene::Desktop => {
                out.pixels.copy_from_slice(&self.background.pixels);
                draw_desktop_window(out, frame_no);
            }
            Scene::Noise => fill_noise(out, frame_no),
        }
        if let Some(state) = input {
            draw_overlay(out, state);
        }
        draw_strip(
            out,
            &StripData {
                frame: frame_no,
                timestamp_us,
            },
        );
    }
}

/// One-shot rendering for tests: `Renderer::new(..).render(..)`.
pub fn render(
    scene: Scene,
    width: u32,
    height: u32,
    frame_no: u32,
    timestamp_us: u64,
    input: Option<&InputState>,
) -> Frame {
    Renderer::new(scene, width, height).render(frame_no, timestamp_us, input)
}

// ---- pattern ------------------------------------------------------------------------------

/// Bars: no magenta among them, it is the cursor's colour.
const BARS: [u32; 8] = [
    rgb(255, 255, 255),
    rgb(255, 255, 0),
    rgb(0, 255, 255),
    rgb(0, 255, 0),
    rgb(255, 0, 0),
    rgb(0, 0, 255),
    rgb(128, 128, 128),
    rgb(0, 0, 0),
];

/// The upper part of the content area (bars, and where the box moves) and the lower (ramps).
/// Rounds down to even. Every edge between coloured areas sits on an even row and column,
/// so 4:2:0 encoders (2×2 chroma blocks) never average two different colours' chroma: the
/// scenes lose almost nothing to subsampling and PSNR tests measure the gateway, not us.
fn even(v: i64) -> i64 {
    v & !1
}

/// `fill_rect` with every edge rounded to even (see [`even`]).
fn fill_even(f: &mut Frame, x0: i64, y0: i64, x1: i64, y1: i64, colour: u32) {
    f.fill_rect(even(x0), even(y0), even(x1), even(y1), colour);
}

fn fill_even_rect(f: &mut Frame, r: Rect, colour: u32) {
    fill_even(f, r.x0, r.y0, r.x1, r.y1, colour);
}

/// The content area shrunk to even edges; the rows given up show the neutral background.
fn even_content(f: &Frame) -> Rect {
    let c = content_area(f.width, f.height);
    Rect {
        x0: 0,
        y0: even(c.y0 + 1),
        x1: even(c.x1),
        y1: even(c.y1),
    }
}

fn pattern_split(f: &Frame) -> (Rect, Rect) {
    let c = even_content(f);
    let mid = even(c.y0 + c.height() / 2);
    (Rect { y1: mid, ..c }, Rect { y0: mid, ..c })
}

fn draw_pattern_background(f: &mut Frame) {
    f.fill_rect(0, 0, f.width.into(), f.height.into(), rgb(32, 32, 32));
    let (bars, ramps) = pattern_split(f);
    let w = i64::from(f.width);
    for (i, &c) in BARS.iter().enumerate() {
        let i = i as i64;
        f.fill_rect(even(w * i / 8), bars.y0, even(w * (i + 1) / 8), bars.y1, c);
    }
    let band = even(ramps.height() / 4);
    let span = (w - 1).max(1);
    for x in 0..w {
        let v = (x * 255 / span) as u8;
        for (k, c) in [rgb(v, v, v), rgb(v, 0, 0), rgb(0, v, 0), rgb(0, 0, v)]
            .into_iter()
            .enumerate()
        {
            let y0 = ramps.y0 + band * k as i64;
            let y1 = if k == 3 { ramps.y1 } else { y0 + band };
            f.fill_rect(x, y0, x + 1, y1, c);
        }
    }
}

fn draw_pattern_motion(f: &mut Frame, frame_no: u32) {
    let (bars, _) = pattern_split(f);
    let side = even(bars.height() / 2).max(4);
    let x = even(bounce(
        u64::from(frame_no) * step(f.width) * 2,
        i64::from(f.width) - side,
    ));
    let y = even(bars.y0 + (bars.height() - side) / 2);
    let border = even(side / 8).max(2);
    f.fill_rect(x, y, x + side, y + side, rgb(0, 0, 0));
    f.fill_rect(
        x + border,
        y + border,
        x + side - border,
        y + side - border,
        rgb(255, 140, 0),
    );
    // The box pauses for a frame where it turns; this marker sweeps one way and wraps, so
    // consecutive frames always differ outside the strip too.
    let (_, ramps) = pattern_split(f);
    let w = i64::from(f.width).max(1);
    let mx = even((i64::from(frame_no) * 3 * step(f.width) as i64).rem_euclid(w));
    f.fill_rect(
        mx,
        ramps.y0,
        mx + even(w / 320).max(2),
        ramps.y1,
        rgb(255, 255, 255),
    );
}

// ---- desktop ------------------------------------------------------------------------------

/// Cell-sized units for laying out desktop furniture.
fn unit(f: &Frame) -> (i64, i64) {
    units(f.width, f.height)
}

fn units(width: u32, height: u32) -> (i64, i64) {
    (
        even(i64::from(width) / i64::from(COLS)).max(2),
        even(i64::from(height) / i64::from(ROWS)).max(2),
    )
}

/// Text in small glyphs (half a grid cell) — text-like detail for the encoder to keep.
fn draw_text(f: &mut Frame, x: i64, y: i64, text: &str, fg: u32, bg: u32) {
    let (cw, ch) = unit(f);
    let (gw, gh) = ((cw / 2).max(4), (ch / 2).max(4));
    for (i, c) in text.chars().enumerate() {
        let x0 = x + i as i64 * gw;
        draw_glyph(
            f,
            Rect {
                x0,
                y0: y,
                x1: x0 + gw,
                y1: y + gh,
            },
            c,
            fg,
            bg,
        );
    }
}

const DOCUMENT: [&str; 8] = [
    "pvgate guest simulator",
    "",
    "This desktop stays still while one small",
    "window moves a few pixels every frame.",
    "Damage tracking should copy only the",
    "tiles around it (and the strip above).",
    "",
    "0123456789 ABCDEFGHIJ abcdefghij !?#%&",
];

fn draw_desktop_background(f: &mut Frame) {
    let (cw, ch) = unit(f);
    let c = even_content(f);
    f.fill_rect(0, 0, f.width.into(), f.height.into(), rgb(20, 20, 20));
    // Wallpaper: a gentle vertical gradient.
    let span = c.height().max(1);
    for y in (c.y0..c.y1).step_by(2) {
        let t = (y - c.y0) * 60 / span;
        fill_even(
            f,
            c.x0,
            y,
            c.x1,
            y + 2,
            rgb(30 + t as u8 / 2, 80 + t as u8, 140),
        );
    }
    // Menu bar.
    fill_even(f, c.x0, c.y0, c.x1, c.y0 + ch, rgb(45, 45, 45));
    for (i, item) in ["Files", "Edit", "View", "Help"].iter().enumerate() {
        draw_text(
            f,
            cw / 2 + i as i64 * 4 * cw,
            c.y0 + ch / 4,
            item,
            rgb(230, 230, 230),
            rgb(45, 45, 45),
        );
    }
    // Icons down the left side with labels.
    let icons = [
        rgb(230, 190, 60),
        rgb(60, 120, 220),
        rgb(60, 180, 90),
        rgb(200, 60, 50),
        rgb(180, 180, 180),
    ];
    for (i, &colour) in icons.iter().enumerate() {
        let y = c.y0 + 2 * ch + i as i64 * 3 * ch;
        fill_even(f, cw, y, 3 * cw, y + 2 * ch, colour);
        fill_even(
            f,
            cw + cw / 2,
            y + ch / 2,
            2 * cw + cw / 2,
            y + ch,
            rgb(255, 255, 255),
        );
        draw_text(
            f,
            cw / 2,
            y + 2 * ch + ch / 8,
            &format!("item{i}"),
            rgb(255, 255, 255),
            rgb(30, 80, 140),
        );
    }
    // A large static document window.
    let win = Rect {
        x0: 6 * cw,
        y0: c.y0 + 2 * ch,
        x1: 34 * cw,
        y1: c.y0 + 12 * ch,
    };
    fill_even_rect(
        f,
        Rect {
            x0: win.x0 + cw / 4,
            y0: win.y0 + ch / 4,
            x1: win.x1 + cw / 4,
            y1: win.y1 + ch / 4,
        },
        rgb(15, 40, 70),
    );
    fill_even_rect(f, win, rgb(245, 245, 245));
    fill_even_rect(
        f,
        Rect {
            y1: win.y0 + ch,
            ..win
        },
        rgb(40, 60, 120),
    );
    draw_text(
        f,
        win.x0 + cw / 2,
        win.y0 + ch / 4,
        "notes.txt",
        rgb(255, 255, 255),
        rgb(40, 60, 120),
    );
    for (i, line) in DOCUMENT.iter().enumerate() {
        draw_text(
            f,
            win.x0 + cw / 2,
            win.y0 + ch + ch / 2 + i as i64 * (ch * 3 / 4 + 1),
            line,
            rgb(20, 20, 20),
            rgb(245, 245, 245),
        );
    }
}

/// The small moving window: its rectangle in frame `frame_no`.
pub fn desktop_window_rect(width: u32, height: u32, frame_no: u32) -> Rect {
    let c = content_area(width, height);
    let (cw, ch) = units(width, height);
    let (ww, wh) = (4 * cw, 3 * ch);
    let travel = u64::from(frame_no) * step(width);
    let x = even(c.x0 + 4 * cw + bounce(travel, c.width() - 8 * cw - ww));
    let y = even(c.y0 + 2 * ch + bounce(travel * 2 / 3, c.height() - 3 * ch - wh));
    Rect {
        x0: x,
        y0: y,
        x1: x + ww,
        y1: y + wh,
    }
}

fn draw_desktop_window(f: &mut Frame, frame_no: u32) {
    let (cw, ch) = unit(f);
    let r = desktop_window_rect(f.width, f.height, frame_no);
    fill_even_rect(f, r, rgb(250, 240, 200));
    fill_even_rect(
        f,
        Rect {
            y1: r.y0 + ch * 2 / 3,
            ..r
        },
        rgb(40, 140, 80),
    );
    for i in 0..3 {
        let y = r.y0 + ch + i * ch * 2 / 3;
        fill_even(
            f,
            r.x0 + cw / 3,
            y,
            r.x1 - cw / 3 - i * cw / 2,
            y + ch / 4,
            rgb(90, 90, 90),
        );
    }
}

// ---- noise --------------------------------------------------------------------------------

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Every pixel new every frame: xorshift64* per row, seeded from (frame, row).
fn fill_noise(f: &mut Frame, frame_no: u32) {
    let w = f.width as usize;
    if w == 0 {
        return;
    }
    for (y, row) in f.pixels.chunks_mut(w).enumerate() {
        let mut s = splitmix64((u64::from(frame_no) << 32) | y as u64) | 1;
        for pair in row.chunks_mut(2) {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let r = s.wrapping_mul(0x2545_f491_4f6c_dd1d);
            for (k, p) in pair.iter_mut().enumerate() {
                *p = ((r >> (32 * k)) as u32) & 0x00ff_ffff;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::overlay::find_cursor;
    use super::super::strip::decode_strip;
    use super::*;
    use crate::content::input::InputEvent;

    /// Fraction of 64×64 tiles that differ between two frames (what a damage tracker copies).
    fn changed_tile_fraction(a: &Frame, b: &Frame) -> f64 {
        let (w, h) = (a.width, a.height);
        let (tx, ty) = (w.div_ceil(64), h.div_ceil(64));
        let mut changed = 0;
        for j in 0..ty {
            for i in 0..tx {
                let differs = (j * 64..((j + 1) * 64).min(h))
                    .any(|y| (i * 64..((i + 1) * 64).min(w)).any(|x| a.get(x, y) != b.get(x, y)));
                changed += u32::from(differs);
            }
        }
        f64::from(changed) / f64::from(tx * ty)
    }

    fn ts(n: u32) -> u64 {
        1_795_000_000_000_000 + u64::from(n) * 16_667
    }

    #[test]
    fn scenes_are_deterministic_and_carry_the_strip() {
        for scene in Scene::ALL {
            for (w, h) in [(640, 360), (1280, 720)] {
                let a = render(scene, w, h, 17, ts(17), None);
                let b = Renderer::new(scene, w, h).render(17, ts(17), None);
                assert!(a == b, "{scene} {w}x{h} not deterministic");
                let d = decode_strip(&a.view()).expect("strip");
                assert_eq!((d.frame, d.timestamp_us), (17, ts(17)));
                assert!(
                    a != render(scene, w, h, 18, ts(18), None),
                    "{scene}: consecutive frames equal"
                );
            }
        }
    }

    #[test]
    fn desktop_changes_few_tiles() {
        for (w, h) in [(1280, 720), (1920, 1080)] {
            let r = Renderer::new(Scene::Desktop, w, h);
            let (mut total, mut window_only) = (0.0, 0.0);
            let frames = 8;
            for n in 100..100 + frames {
                let (a, b) = (r.render(n, ts(n), None), r.render(n + 1, ts(n + 1), None));
                total += changed_tile_fraction(&a, &b);
                // The same two frames with an identical strip: what the window alone changes.
                window_only += changed_tile_fraction(
                    &a,
                    &r.render(n + 1, ts(n), None).clone_with_strip_of(n, ts(n)),
                );
            }
            let (total, window_only) = (total / f64::from(frames), window_only / f64::from(frames));
            eprintln!(
                "desktop {w}x{h}: {:.1}% tiles change per frame ({:.1}% from the window)",
                total * 100.0,
                window_only * 100.0
            );
            assert!((0.02..=0.06).contains(&window_only), "window {window_only}");
            assert!(total <= 0.12, "total {total}");
        }
    }

    #[test]
    fn noise_changes_everything() {
        let (a, b) = (
            render(Scene::Noise, 640, 360, 5, 0, None),
            render(Scene::Noise, 640, 360, 6, 0, None),
        );
        assert_eq!(changed_tile_fraction(&a, &b), 1.0);
        // Below the strip (which changes only where bits do) practically every pixel is new.
        let top = super::super::grid::strip_bottom(360) as usize * 640;
        let same = a.pixels[top..]
            .iter()
            .zip(&b.pixels[top..])
            .filter(|(p, q)| p == q)
            .count();
        assert!(same < a.pixels.len() / 1000, "{same} pixels unchanged");
    }

    #[test]
    fn pattern_moves_every_frame_outside_the_strip() {
        let r = Renderer::new(Scene::Pattern, 640, 360);
        let top = super::super::grid::strip_bottom(360) as usize * 640;
        for n in 0..300 {
            let (a, b) = (r.render(n, 0, None), r.render(n + 1, 0, None));
            assert!(
                a.pixels[top..] != b.pixels[top..],
                "frame {n} equals frame {}",
                n + 1
            );
        }
    }

    #[test]
    fn scenes_have_no_cursor_lookalike_and_show_the_overlay() {
        for scene in Scene::ALL {
            let f = render(scene, 1280, 720, 3, 0, None);
            assert_eq!(find_cursor(&f.view()), None, "{scene}");
            let mut s = InputState::new(1280, 720);
            s.apply(InputEvent::Motion { x: 700, y: 400 });
            let f = render(scene, 1280, 720, 3, 0, Some(&s));
            assert_eq!(find_cursor(&f.view()), Some((700, 400)), "{scene}");
        }
    }

    impl Frame {
        /// Test helper: this frame with the strip redrawn for (frame, ts).
        fn clone_with_strip_of(mut self, frame: u32, timestamp_us: u64) -> Frame {
            draw_strip(
                &mut self,
                &StripData {
                    frame,
                    timestamp_us,
                },
            );
            self
        }
    }

    #[test]
    fn sizes_that_do_not_divide_evenly_and_tiny_sizes_render() {
        for (w, h) in [(1, 1), (7, 3), (41, 23), (333, 201), (1366, 768)] {
            for scene in Scene::ALL {
                let f = render(scene, w, h, 1, 1, Some(&InputState::new(w, h)));
                assert_eq!(f.pixels.len(), (w * h) as usize);
            }
        }
    }

    /// Chroma subsampling alone (what every encoder does first) must leave the pattern and
    /// desktop far above the 35 dB the video tests ask for, or those tests would measure our
    /// scene instead of the gateway.
    #[test]
    fn pattern_and_desktop_survive_chroma_subsampling() {
        for (w, h) in [(1280, 720), (1920, 1080), (1366, 768)] {
            let mut input = InputState::new(w, h);
            for e in crate::content::input::events_for_text("psnr") {
                input.apply(e);
            }
            for scene in [Scene::Pattern, Scene::Desktop] {
                let f = render(scene, w, h, 10, ts(10), Some(&input));
                let sub = super::super::degrade::chroma_420(&f);
                let p = super::super::view::psnr(&f.view(), &sub.view()).unwrap();
                eprintln!("{scene} {w}x{h}: 4:2:0 PSNR {p:.1} dB");
                assert!(p > 42.0, "{scene} {w}x{h}: {p:.1} dB");
            }
        }
    }

    #[test]
    fn scene_names_parse() {
        for s in Scene::ALL {
            assert_eq!(s.name().parse::<Scene>(), Ok(s));
        }
        assert!("bogus".parse::<Scene>().is_err());
    }

    /// Cost report, not a check: `cargo test --release -p pvgate-guest-sim report_render_cost
    /// -- --ignored --nocapture`. Speed is never asserted in tests.
    #[test]
    #[ignore]
    fn report_render_cost() {
        use super::super::pixfmt::{encode, min_pitch, PixelFormat};
        use std::time::Instant;
        let (w, h) = (1920, 1080);
        let mut input = InputState::new(w, h);
        for e in crate::content::input::events_for_text("typing something") {
            input.apply(e);
        }
        for scene in Scene::ALL {
            let r = Renderer::new(scene, w, h);
            let mut f = Frame::new(w, h);
            let t = Instant::now();
            for n in 0..120 {
                r.render_into(&mut f, n, ts(n), Some(&input));
            }
            eprintln!(
                "{scene} {w}x{h}: {:.2} ms/frame",
                t.elapsed().as_secs_f64() * 1e3 / 120.0
            );
        }
        let f = render(Scene::Pattern, w, h, 1, 1, None);
        for format in PixelFormat::ALL {
            let pitch = min_pitch(format, w);
            let mut out = vec![0u8; pitch * h as usize];
            let t = Instant::now();
            for _ in 0..30 {
                encode(&f, format, pitch, &mut out).unwrap();
            }
            eprintln!(
                "encode {}: {:.2} ms/frame",
                format.name(),
                t.elapsed().as_secs_f64() * 1e3 / 30.0
            );
        }
        let t = Instant::now();
        for _ in 0..30 {
            assert!(decode_strip(&f.view()).is_some());
        }
        eprintln!(
            "decode_strip: {:.2} ms",
            t.elapsed().as_secs_f64() * 1e3 / 30.0
        );
        let t = Instant::now();
        let _ = find_cursor(&f.view());
        eprintln!("find_cursor: {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
    }
}

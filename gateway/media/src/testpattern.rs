//! Deterministic synthetic screen content for benchmarks and tests.
//!
//! Three kinds, matching what a remote desktop sees:
//! - `Static`: the same desktop picture every frame;
//! - `Desktop`: the desktop with about 5 % of its 64×64 tiles redrawn each
//!   frame (typing, a clock, a small animation);
//! - `FullMotion`: every pixel changes every frame (video, scrolling a page).
//!
//! The desktop has what makes screen content hard and easy for codecs: flat
//! areas, sharp window edges and dense small "text".

use crate::frame::Frame;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Content {
    Static,
    Desktop,
    FullMotion,
}

impl Content {
    pub const ALL: [Content; 3] = [Content::Static, Content::Desktop, Content::FullMotion];

    pub fn name(self) -> &'static str {
        match self {
            Content::Static => "static",
            Content::Desktop => "desktop",
            Content::FullMotion => "full-motion",
        }
    }
}

/// A small, fast, deterministic hash (for "random" but repeatable choices).
fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

fn rgb(r: u32, g: u32, b: u32) -> u32 {
    0xFF00_0000 | (r.min(255) << 16) | (g.min(255) << 8) | b.min(255)
}

/// Draw a line of 6×8 block-letter "glyphs": each is made of strokes like
/// a real letter (left, middle or right vertical stroke; top, middle or
/// bottom bar), chosen by hash so lines differ but look like text rather
/// than noise.
fn draw_text(frame: &mut Frame, x: u32, y: u32, chars: u32, seed: u32, fg: u32) {
    for c in 0..chars {
        let bits = mix(seed.wrapping_add(c).wrapping_mul(2_654_435_761));
        if bits.is_multiple_of(7) {
            continue; // a space
        }
        let gx = x + c * 6;
        // Vertical strokes at columns 0, 2, 4; bars at rows 0, 3, 6; at
        // least one of each so no glyph is empty.
        let verticals = (bits & 0b111).max(1);
        let bars = ((bits >> 3) & 0b111).max(1);
        for (i, col) in [0u32, 2, 4].into_iter().enumerate() {
            if verticals & (1 << i) != 0 {
                frame.fill_rect(gx + col, y, 1, 7, fg);
            }
        }
        for (i, row) in [0u32, 3, 6].into_iter().enumerate() {
            if bars & (1 << i) != 0 {
                frame.fill_rect(gx, y + row, 5, 1, fg);
            }
        }
    }
}

/// The desktop picture every kind starts from.
pub fn desktop(width: u32, height: u32) -> Frame {
    let mut f = Frame::new(width.max(1), height.max(1)).unwrap_or_else(|_| {
        // Sizes come from our own callers; fall back to something valid.
        Frame::new(64, 64).expect("64x64 is a valid frame")
    });
    let (w, h) = (f.width(), f.height());
    // Smooth background gradient.
    for y in 0..h {
        for x in 0..w {
            f.set_pixel(
                x,
                y,
                rgb(
                    30 + 40 * x / w,
                    60 + 60 * y / h,
                    120 + 50 * (x + y) / (w + h),
                ),
            );
        }
    }
    // A task bar.
    f.fill_rect(
        0,
        h.saturating_sub(h / 20 + 4),
        w,
        h / 20 + 4,
        rgb(40, 40, 48),
    );
    // Windows with title bars and text.
    let windows = [
        (w / 20, h / 12, w / 2, h / 2),
        (w * 2 / 5, h / 3, w / 2, h / 2),
    ];
    for (i, &(x, y, ww, wh)) in windows.iter().enumerate() {
        f.fill_rect(x, y, ww, wh, rgb(245, 245, 240));
        f.fill_rect(
            x,
            y,
            ww,
            18,
            if i == 0 {
                rgb(60, 90, 160)
            } else {
                rgb(90, 90, 100)
            },
        );
        draw_text(
            &mut f,
            x + 6,
            y + 5,
            (ww / 6).saturating_sub(4),
            1000 + i as u32,
            rgb(255, 255, 255),
        );
        let mut ty = y + 26;
        let mut line = 0;
        while ty + 10 < y + wh {
            draw_text(
                &mut f,
                x + 8,
                ty,
                (ww / 6).saturating_sub(6),
                line * 31 + i as u32,
                rgb(20, 20, 20),
            );
            ty += 12;
            line += 1;
        }
    }
    f
}

/// Produces the frames of one content kind, in order.
pub struct PatternGenerator {
    kind: Content,
    frame: Frame,
    base: Frame,
    n: u32,
}

impl PatternGenerator {
    pub fn new(kind: Content, width: u32, height: u32) -> PatternGenerator {
        let base = desktop(width, height);
        PatternGenerator {
            kind,
            frame: base.clone(),
            base,
            n: 0,
        }
    }

    /// The next frame (the first call returns frame 0).
    pub fn next_frame(&mut self) -> &Frame {
        let n = self.n;
        self.n += 1;
        match self.kind {
            Content::Static => {}
            Content::Desktop => self.draw_desktop_changes(n),
            Content::FullMotion => self.draw_full_motion(n),
        }
        &self.frame
    }

    /// Redraw about 5 % of the tiles: a text line being typed in the first
    /// window, a clock in the task bar, and a small animation.
    fn draw_desktop_changes(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        let (w, h) = (self.frame.width(), self.frame.height());
        let tiles = w.div_ceil(64) * h.div_ceil(64);
        let target = (tiles / 20).max(1);
        for k in 0..target {
            let t = mix(n.wrapping_mul(977).wrapping_add(k)) % tiles;
            let (tx, ty) = (t % w.div_ceil(64), t / w.div_ceil(64));
            let (x, y) = (tx * 64, ty * 64);
            let bg = rgb(235, 235, 230 + (n + k) % 20);
            self.frame.fill_rect(x + 4, y + 4, 56, 56, bg);
            for line in 0..4 {
                draw_text(
                    &mut self.frame,
                    x + 6,
                    y + 8 + line * 12,
                    9,
                    n * 13 + k * 7 + line,
                    rgb(10, 10, 40),
                );
            }
        }
    }

    /// Everything moves: the desktop scrolls diagonally with a moving
    /// colour wash on top.
    fn draw_full_motion(&mut self, n: u32) {
        let (w, h) = (self.frame.width(), self.frame.height());
        let (dx, dy) = (n * 3, n * 2);
        for y in 0..h {
            let sy = (y + dy) % h;
            for x in 0..w {
                let sx = (x + dx) % w;
                let p = self.base.pixel(sx, sy).unwrap_or(0);
                let wash = (x + y + n * 5) % 64;
                let r = ((p >> 16) & 0xFF) * 3 / 4 + wash;
                let g = ((p >> 8) & 0xFF) * 3 / 4 + (64 - wash) / 2;
                let b = (p & 0xFF) * 3 / 4 + n % 32;
                self.frame.set_pixel(x, y, rgb(r, g, b));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::damage::{DamageTracker, SourceLayout};
    use crate::pixfmt::PixelFormat;

    fn damaged_fraction(kind: Content) -> f64 {
        let (w, h) = (640, 384);
        let mut g = PatternGenerator::new(kind, w, h);
        let mut t = DamageTracker::new(SourceLayout::dumb(w, h, PixelFormat::Xrgb8888, 0).unwrap())
            .unwrap();
        t.detect(&g.next_frame().packed().into_owned()).unwrap();
        let mut sum = 0.0;
        for _ in 0..5 {
            let d = t.detect(&g.next_frame().packed().into_owned()).unwrap();
            sum += d.tiles.len() as f64 / d.total_tiles() as f64;
        }
        sum / 5.0
    }

    #[test]
    fn content_kinds_change_the_intended_share_of_tiles() {
        assert_eq!(damaged_fraction(Content::Static), 0.0);
        let desk = damaged_fraction(Content::Desktop);
        assert!((0.02..=0.07).contains(&desk), "desktop changed {desk}");
        assert_eq!(damaged_fraction(Content::FullMotion), 1.0);
    }

    #[test]
    fn generator_is_deterministic() {
        let mut a = PatternGenerator::new(Content::Desktop, 200, 100);
        let mut b = PatternGenerator::new(Content::Desktop, 200, 100);
        for _ in 0..3 {
            assert!(a.next_frame() == b.next_frame());
        }
    }
}

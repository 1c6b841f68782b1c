//! Helpers shared by the integration tests.
#![allow(dead_code)]

use pvgate_guest_sim::content::{
    decode_strip, draw_strip, Frame as SimFrame, ImageView, StripData,
};
use pvgate_media::testpattern::{Content, PatternGenerator};
use pvgate_media::Frame;

/// Our frame → the guest simulator's (0x00RRGGBB words).
pub fn to_sim(f: &Frame) -> SimFrame {
    let mut s = SimFrame::new(f.width(), f.height());
    for y in 0..f.height() {
        for x in 0..f.width() {
            s.pixels[(y * f.width() + x) as usize] = f.pixel(x, y).unwrap_or(0) & 0x00FF_FFFF;
        }
    }
    s
}

/// The guest simulator's frame → ours.
pub fn from_sim(s: &SimFrame) -> Frame {
    let mut f = Frame::new(s.width, s.height).unwrap();
    for y in 0..s.height {
        for x in 0..s.width {
            f.set_pixel(x, y, 0xFF00_0000 | s.pixels[(y * s.width + x) as usize]);
        }
    }
    f
}

/// Desktop-like content with the guest simulator's frame-counter strip on
/// top, as a guest would show it.
pub struct Sequence {
    gen: PatternGenerator,
    n: u32,
}

impl Sequence {
    pub fn new(kind: Content, w: u32, h: u32) -> Sequence {
        Sequence {
            gen: PatternGenerator::new(kind, w, h),
            n: 0,
        }
    }

    pub fn next_frame(&mut self) -> Frame {
        let mut sim = to_sim(self.gen.next_frame());
        draw_strip(
            &mut sim,
            &StripData {
                frame: self.n,
                timestamp_us: 1_000_000 + self.n as u64 * 33_333,
            },
        );
        self.n += 1;
        from_sim(&sim)
    }
}

/// The frame number the strip in `f` shows, if readable.
pub fn read_counter(f: &Frame) -> Option<u32> {
    let sim = to_sim(f);
    decode_strip(&ImageView::from_xrgb(&sim.pixels, sim.width, sim.height)).map(|d| d.frame)
}

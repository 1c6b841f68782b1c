//! The simulator's own picture: 32-bit XRGB8888 pixels, one `u32` each.
//!
//! Scenes draw here; `pixfmt` turns it into whatever DRM format the guest's framebuffer uses.
//! Keeping one internal format means every scene and overlay is written once.

use super::view::ImageView;

/// Packs 8-bit channels into an XRGB8888 value (X = 0).
pub const fn rgb(r: u8, g: u8, b: u8) -> u32 {
    ((r as u32) << 16) | ((g as u32) << 8) | b as u32
}

/// Splits an XRGB8888 value into `[r, g, b]`; the X byte is ignored.
pub const fn channels(px: u32) -> [u8; 3] {
    [(px >> 16) as u8, (px >> 8) as u8, px as u8]
}

/// An XRGB8888 picture with no row padding (stride = width).
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    /// Row-major, `width * height` entries, `0x00RRGGBB`.
    pub pixels: Vec<u32>,
}

impl std::fmt::Debug for Frame {
    // The pixel vector is millions of entries; print the geometry only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({}x{})", self.width, self.height)
    }
}

impl Frame {
    /// A black frame. Sizes are the caller's own (not guest input), so they are trusted.
    pub fn new(width: u32, height: u32) -> Self {
        Frame {
            width,
            height,
            pixels: vec![0; width as usize * height as usize],
        }
    }

    pub fn get(&self, x: u32, y: u32) -> Option<u32> {
        if x >= self.width || y >= self.height {
            return None;
        }
        self.pixels
            .get(y as usize * self.width as usize + x as usize)
            .copied()
    }

    pub fn set(&mut self, x: i64, y: i64, px: u32) {
        if x < 0 || y < 0 || x >= i64::from(self.width) || y >= i64::from(self.height) {
            return;
        }
        let i = y as usize * self.width as usize + x as usize;
        if let Some(p) = self.pixels.get_mut(i) {
            *p = px;
        }
    }

    /// Fills the half-open rectangle `[x0, x1) × [y0, y1)`, clipped to the frame.
    pub fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, px: u32) {
        let (w, h) = (i64::from(self.width), i64::from(self.height));
        let (x0, x1) = (x0.clamp(0, w), x1.clamp(0, w));
        let (y0, y1) = (y0.clamp(0, h), y1.clamp(0, h));
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        let stride = self.width as usize;
        for y in y0 as usize..y1 as usize {
            let row = y * stride;
            if let Some(r) = self.pixels.get_mut(row + x0 as usize..row + x1 as usize) {
                r.fill(px);
            }
        }
    }

    /// Fills the rectangle `r`.
    pub fn fill(&mut self, r: Rect, px: u32) {
        self.fill_rect(r.x0, r.y0, r.x1, r.y1, px);
    }

    /// A read-only view for the analysis functions (strip, cursor, text, PSNR).
    pub fn view(&self) -> ImageView<'_> {
        ImageView::from_xrgb(&self.pixels, self.width, self.height)
    }
}

/// A half-open pixel rectangle `[x0, x1) × [y0, y1)`; may extend outside a frame (drawing clips).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x0: i64,
    pub y0: i64,
    pub x1: i64,
    pub y1: i64,
}

impl Rect {
    pub fn width(&self) -> i64 {
        self.x1 - self.x0
    }
    pub fn height(&self) -> i64 {
        self.y1 - self.y0
    }
    /// The middle part of the rectangle, `num/den` of each side removed on each edge. Used to
    /// sample block centres, away from edges that lossy coding and scaling smear.
    pub fn inset_frac(&self, num: i64, den: i64) -> Rect {
        let dx = self.width() * num / den;
        let dy = self.height() * num / den;
        Rect {
            x0: self.x0 + dx,
            y0: self.y0 + dy,
            x1: (self.x1 - dx).max(self.x0 + dx + 1),
            y1: (self.y1 - dy).max(self.y0 + dy + 1),
        }
    }
}

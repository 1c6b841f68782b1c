//! Drawing and reading 8×8 bitmap glyphs (the public-domain font8x8 set), scaled to fill
//! a grid cell, so the text line can be read back from a picture of any size.

use super::frame::{Frame, Rect};
use super::view::ImageView;

/// Printable ASCII: the characters the text line can show and the reader can return.
pub const PRINTABLE: std::ops::RangeInclusive<u8> = 0x20..=0x7e;

/// The 8 rows of a glyph; bit `i` of a row is column `i` (bit 0 leftmost). Characters
/// outside printable ASCII show as `?`.
pub fn glyph(c: char) -> [u8; 8] {
    let code = if c.is_ascii() && PRINTABLE.contains(&(c as u8)) {
        c as usize
    } else {
        b'?' as usize
    };
    font8x8::legacy::BASIC_LEGACY
        .get(code)
        .copied()
        .unwrap_or([0; 8])
}

/// The part of `cell` that font pixel (`col`, `row`) covers. Edges are fractions of the cell,
/// like the grid's, so drawing and reading agree at any scale.
fn font_pixel(cell: Rect, col: i64, row: i64) -> Rect {
    let x = |i: i64| cell.x0 + cell.width() * i / 8;
    let y = |j: i64| cell.y0 + cell.height() * j / 8;
    Rect {
        x0: x(col),
        y0: y(row),
        x1: x(col + 1),
        y1: y(row + 1),
    }
}

/// Draws `c` filling `cell`: `fg` on `bg`.
pub fn draw_glyph(frame: &mut Frame, cell: Rect, c: char, fg: u32, bg: u32) {
    frame.fill(cell, bg);
    for (j, bits) in glyph(c).iter().enumerate() {
        for i in 0..8 {
            if bits >> i & 1 == 1 {
                frame.fill(font_pixel(cell, i, j as i64), fg);
            }
        }
    }
}

/// Reads the glyph in `cell` of a picture: samples the middle of every font pixel, splits
/// at the midpoint of the darkest and brightest samples, and returns the printable
/// character with the fewest differing pixels. A cell without contrast reads as a space;
/// one that matches nothing well reads as `None`.
pub fn read_glyph(view: &ImageView<'_>, cell: Rect) -> Option<char> {
    let mut levels = [0u32; 64];
    for j in 0..8 {
        for i in 0..8 {
            let r = font_pixel(cell, i, j).inset_frac(1, 4);
            levels[(j * 8 + i) as usize] = view.mean_luma(r)?;
        }
    }
    let lo = levels.iter().copied().min().unwrap_or(0);
    let hi = levels.iter().copied().max().unwrap_or(0);
    if hi.saturating_sub(lo) < 64 {
        return Some(' ');
    }
    let mid = (lo + hi) / 2;
    let mut seen = [0u8; 8];
    for (k, &l) in levels.iter().enumerate() {
        if l > mid {
            seen[k / 8] |= 1 << (k % 8);
        }
    }
    let (best, distance) = PRINTABLE
        .map(|b| {
            let g = glyph(b as char);
            let d: u32 = g
                .iter()
                .zip(seen.iter())
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            (b as char, d)
        })
        .min_by_key(|&(_, d)| d)?;
    // More than this many wrong pixels out of 64 is a guess, not a reading.
    (distance <= 6).then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_glyphs_are_distinct() {
        let all: Vec<[u8; 8]> = PRINTABLE.map(|b| glyph(b as char)).collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn every_printable_glyph_reads_back_at_odd_cell_sizes() {
        for (w, h) in [(16, 16), (21, 27), (48, 49)] {
            for b in PRINTABLE {
                let mut f = Frame::new(w, h);
                let cell = Rect {
                    x0: 0,
                    y0: 0,
                    x1: w as i64,
                    y1: h as i64,
                };
                draw_glyph(&mut f, cell, b as char, 0xffffff, 0);
                assert_eq!(read_glyph(&f.view(), cell), Some(b as char), "{w}x{h}");
            }
        }
    }
}

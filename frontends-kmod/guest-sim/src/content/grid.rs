//! The layout grid shared by everything that must be read back from a picture.
//!
//! The frame is divided into `COLS × ROWS` cells whose edges are fixed *fractions* of the
//! width and height. A reader that only knows the size of the picture it holds (a downscaled
//! video frame, a browser canvas) finds the same cells, so the strip and the text line survive
//! scaling. At 640×360 a cell is 16×16 px, big enough to survive lossy video.

use super::frame::Rect;

/// Cells across the frame.
pub const COLS: u32 = 40;
/// Cells down the frame.
pub const ROWS: u32 = 22;
/// The frame-counter strip occupies the top rows.
pub const STRIP_ROWS: u32 = 3;
/// The text line (typed characters, mouse buttons) is the bottom row.
pub const TEXT_ROW: u32 = ROWS - 1;

/// The cell at column `col`, row `row` of a `width × height` picture. Edges are rounded
/// down, so neighbouring cells tile the picture exactly.
pub fn cell(width: u32, height: u32, col: u32, row: u32) -> Rect {
    let (w, h) = (u64::from(width), u64::from(height));
    let x = |c: u32| (u64::from(c) * w / u64::from(COLS)) as i64;
    let y = |r: u32| (u64::from(r) * h / u64::from(ROWS)) as i64;
    Rect {
        x0: x(col),
        y0: y(row),
        x1: x(col + 1),
        y1: y(row + 1),
    }
}

/// Pixel rows `[0, strip_bottom)` hold the strip; scenes and overlays draw below it.
pub fn strip_bottom(height: u32) -> i64 {
    cell(1, height, 0, STRIP_ROWS).y0
}

/// Pixel rows `[text_top, height)` hold the text line.
pub fn text_top(height: u32) -> i64 {
    cell(1, height, 0, TEXT_ROW).y0
}

/// The area scenes own: between the strip and the text line, full width.
pub fn content_area(width: u32, height: u32) -> Rect {
    Rect {
        x0: 0,
        y0: strip_bottom(height),
        x1: i64::from(width),
        y1: text_top(height),
    }
}

//! Finding what changed between two flips, and copying only that.
//!
//! displif carries no damage, so we work it out: the framebuffer is cut into
//! 64×64 tiles and each tile's bytes are hashed with xxh3 and compared with
//! the hash from the previous flip. The source is read once, one band of 64
//! rows at a time, into a private buffer; the hashes and the conversion both
//! work on that copy, so the pixels we copy are exactly the pixels we hashed
//! even if the guest writes the buffer meanwhile.

use crate::frame::{Frame, FRAME_BPP};
use crate::pixfmt::{PixelFormat, PixelFormatError, RowConverter};
use crate::source::{SourceBuffer, SourceOutOfBounds};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Edge of a damage tile in pixels.
pub const TILE: u32 = 64;

/// Largest row pitch accepted: twice the widest 32-bit row. A pitch is not
/// guest input for dumb buffers, but the band buffer is `64 × pitch`, so an
/// absurd one must not turn into an absurd allocation.
pub const MAX_PITCH: usize = crate::frame::MAX_FRAME_EDGE as usize * 4 * 2;

/// Where a framebuffer's pixels are inside its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLayout {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    /// Bytes from one row to the next.
    pub pitch: usize,
    /// Byte offset of the first row in the buffer (displif `data_ofs`).
    pub offset: usize,
}

impl SourceLayout {
    /// The layout of a dumb buffer: pitch = ceil(width * bpp / 8).
    pub fn dumb(
        width: u32,
        height: u32,
        format: PixelFormat,
        offset: usize,
    ) -> Result<SourceLayout, DamageError> {
        let pitch = format.row_bytes(width)?;
        Ok(SourceLayout {
            width,
            height,
            format,
            pitch,
            offset,
        })
    }

    /// Bytes the buffer must hold: offset + (height-1) * pitch + row bytes.
    pub fn required_len(&self) -> Result<usize, DamageError> {
        let row = self.format.row_bytes(self.width)?;
        (self.height as usize)
            .checked_sub(1)
            .and_then(|rows| rows.checked_mul(self.pitch))
            .and_then(|n| n.checked_add(row))
            .and_then(|n| n.checked_add(self.offset))
            .ok_or(DamageError::Geometry(*self))
    }
}

/// A rectangle of the frame, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// What changed in one flip.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Damage {
    pub tiles_x: u32,
    pub tiles_y: u32,
    /// Changed tiles, as row-major indices `ty * tiles_x + tx`, ascending.
    pub tiles: Vec<u32>,
    /// The changed tiles as rectangles clipped to the frame (runs of
    /// neighbouring tiles in a tile row are merged).
    pub rects: Vec<Rect>,
}

impl Damage {
    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }

    pub fn total_tiles(&self) -> u32 {
        self.tiles_x * self.tiles_y
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DamageError {
    #[error(transparent)]
    Format(#[from] PixelFormatError),
    #[error("framebuffer geometry {0:?} is empty, too large, or has a pitch shorter than a row")]
    Geometry(SourceLayout),
    #[error("framebuffer needs {needed} bytes but the buffer holds {len}")]
    BufferTooSmall { needed: usize, len: usize },
    #[error("destination frame is {got_w}x{got_h}, the framebuffer {want_w}x{want_h}")]
    FrameSize {
        want_w: u32,
        want_h: u32,
        got_w: u32,
        got_h: u32,
    },
    #[error(transparent)]
    Read(#[from] SourceOutOfBounds),
}

/// Per-framebuffer damage state: the hashes of the last flip.
pub struct DamageTracker {
    layout: SourceLayout,
    row_bytes: usize,
    tiles_x: u32,
    tiles_y: u32,
    hashes: Vec<u64>,
    /// False until the first flip, and after [`Self::invalidate`]: then every
    /// tile counts as changed whatever its hash.
    primed: bool,
    convert: RowConverter,
    band: Vec<u8>,
    band_hashes: Vec<u64>,
    /// Time the last scan spent converting changed tiles into the frame
    /// (measured apart from hashing, which is interleaved with it).
    last_copy_time: std::time::Duration,
}

impl DamageTracker {
    pub fn new(layout: SourceLayout) -> Result<DamageTracker, DamageError> {
        let row_bytes = layout.format.row_bytes(layout.width)?;
        if layout.width == 0
            || layout.height == 0
            || layout.width > crate::frame::MAX_FRAME_EDGE
            || layout.height > crate::frame::MAX_FRAME_EDGE
            || layout.pitch < row_bytes
            || layout.pitch > MAX_PITCH
        {
            return Err(DamageError::Geometry(layout));
        }
        layout.required_len()?;
        let band_len = layout
            .pitch
            .checked_mul(TILE as usize)
            .ok_or(DamageError::Geometry(layout))?;
        let tiles_x = layout.width.div_ceil(TILE);
        let tiles_y = layout.height.div_ceil(TILE);
        Ok(DamageTracker {
            layout,
            row_bytes,
            tiles_x,
            tiles_y,
            hashes: vec![0; (tiles_x * tiles_y) as usize],
            primed: false,
            convert: layout.format.converter(),
            band: vec![0; band_len],
            band_hashes: vec![0; tiles_x as usize],
            last_copy_time: std::time::Duration::ZERO,
        })
    }

    pub fn layout(&self) -> &SourceLayout {
        &self.layout
    }

    /// How long the last [`Self::update`] spent copying (converting) the
    /// changed tiles into the frame, without finding them. Zero after
    /// [`Self::detect`]. Two clock reads per run of changed tiles.
    pub fn last_copy_time(&self) -> std::time::Duration {
        self.last_copy_time
    }

    /// Make the next update report (and copy) every tile, e.g. after the
    /// gateway's frame was replaced.
    pub fn invalidate(&mut self) {
        self.primed = false;
    }

    /// Find the changed tiles and copy them, converted to XRGB8888, into
    /// `dst` (which must have the framebuffer's size).
    pub fn update<S: SourceBuffer + ?Sized>(
        &mut self,
        src: &S,
        dst: &mut Frame,
    ) -> Result<Damage, DamageError> {
        if dst.width() != self.layout.width || dst.height() != self.layout.height {
            return Err(DamageError::FrameSize {
                want_w: self.layout.width,
                want_h: self.layout.height,
                got_w: dst.width(),
                got_h: dst.height(),
            });
        }
        self.scan(src, Some(dst))
    }

    /// Find the changed tiles without copying anything (the hashes are
    /// updated as by [`Self::update`]).
    pub fn detect<S: SourceBuffer + ?Sized>(&mut self, src: &S) -> Result<Damage, DamageError> {
        self.scan(src, None)
    }

    fn scan<S: SourceBuffer + ?Sized>(
        &mut self,
        src: &S,
        mut dst: Option<&mut Frame>,
    ) -> Result<Damage, DamageError> {
        let needed = self.layout.required_len()?;
        if src.len() < needed {
            return Err(DamageError::BufferTooSmall {
                needed,
                len: src.len(),
            });
        }
        let format = self.layout.format;
        let pitch = self.layout.pitch;
        self.last_copy_time = std::time::Duration::ZERO;
        let mut damage = Damage {
            tiles_x: self.tiles_x,
            tiles_y: self.tiles_y,
            ..Damage::default()
        };
        // Byte ranges of each tile column inside a source row, computed once.
        let columns: Vec<(usize, usize)> = (0..self.tiles_x)
            .map(|tx| {
                let x0 = tx * TILE;
                let x1 = (x0 + TILE).min(self.layout.width);
                (format.byte_offset(x0), format.byte_offset(x1))
            })
            .collect();

        for ty in 0..self.tiles_y {
            let y0 = ty * TILE;
            let rows = TILE.min(self.layout.height - y0) as usize;
            // Within bounds: required_len covered the last row of the frame.
            let band_offset = self.layout.offset + y0 as usize * pitch;
            let band_len = (rows - 1) * pitch + self.row_bytes;
            let band = &mut self.band[..band_len];
            src.read_into(band_offset, band)?;

            self.band_hashes.iter_mut().for_each(|h| *h = 0);
            for r in 0..rows {
                let row = &band[r * pitch..r * pitch + self.row_bytes];
                for (h, &(b0, b1)) in self.band_hashes.iter_mut().zip(&columns) {
                    *h = xxh3_64_with_seed(&row[b0..b1], *h);
                }
            }

            // Neighbouring changed tiles in this tile row form one run, which
            // becomes one rectangle and one row-wise conversion.
            let mut run_start: Option<u32> = None;
            for tx in 0..self.tiles_x {
                let idx = (ty * self.tiles_x + tx) as usize;
                let h = self.band_hashes[tx as usize];
                let changed = !self.primed || self.hashes[idx] != h;
                self.hashes[idx] = h;
                if changed {
                    damage.tiles.push(idx as u32);
                    run_start.get_or_insert(tx);
                } else if let Some(start) = run_start.take() {
                    self.last_copy_time += self.flush_run(
                        (start, tx - 1),
                        ty,
                        rows,
                        &columns,
                        &mut damage,
                        dst.as_deref_mut(),
                    );
                }
            }
            if let Some(start) = run_start {
                let end = self.tiles_x - 1;
                self.last_copy_time += self.flush_run(
                    (start, end),
                    ty,
                    rows,
                    &columns,
                    &mut damage,
                    dst.as_deref_mut(),
                );
            }
        }
        self.primed = true;
        Ok(damage)
    }

    /// Record a run of changed tiles `start..=end` in tile row `ty` and copy
    /// its pixels from the band buffer into the frame; returns the time the
    /// copy took.
    fn flush_run(
        &self,
        (start, end): (u32, u32),
        ty: u32,
        rows: usize,
        columns: &[(usize, usize)],
        damage: &mut Damage,
        dst: Option<&mut Frame>,
    ) -> std::time::Duration {
        let x0 = start * TILE;
        let x1 = ((end + 1) * TILE).min(self.layout.width);
        let y0 = ty * TILE;
        damage.rects.push(Rect {
            x: x0,
            y: y0,
            w: x1 - x0,
            h: rows as u32,
        });
        let Some(dst) = dst else {
            return std::time::Duration::ZERO;
        };
        let started = std::time::Instant::now();
        let b0 = columns[start as usize].0;
        let b1 = columns[end as usize].1;
        let pitch = self.layout.pitch;
        let d0 = x0 as usize * FRAME_BPP;
        let d1 = x1 as usize * FRAME_BPP;
        for r in 0..rows {
            let src_row = &self.band[r * pitch + b0..r * pitch + b1];
            if let Some(dst_row) = dst.row_mut(y0 + r as u32) {
                (self.convert)(src_row, &mut dst_row[d0..d1]);
            }
        }
        started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An XRGB8888 source buffer of `w`×`h` with a pitch and data offset.
    fn source(
        w: u32,
        h: u32,
        pitch: usize,
        offset: usize,
        fill: impl Fn(u32, u32) -> u32,
    ) -> Vec<u8> {
        let mut buf = vec![0xEEu8; offset + pitch * h as usize];
        for y in 0..h {
            for x in 0..w {
                let o = offset + y as usize * pitch + x as usize * 4;
                buf[o..o + 4].copy_from_slice(&fill(x, y).to_le_bytes());
            }
        }
        buf
    }

    fn pattern(x: u32, y: u32) -> u32 {
        (x * 7919 + y * 104_729) & 0x00FF_FFFF
    }

    /// The bench's copy column comes from this clock: it must run while
    /// tiles are copied and only then.
    #[test]
    fn copy_time_is_measured_only_when_tiles_are_copied() {
        let (w, h) = (256, 128);
        let layout = SourceLayout::dumb(w, h, PixelFormat::Xrgb8888, 0).unwrap();
        let mut src = source(w, h, layout.pitch, 0, pattern);
        let mut t = DamageTracker::new(layout).unwrap();
        let mut frame = Frame::new(w, h).unwrap();
        t.update(&src, &mut frame).unwrap();
        assert!(t.last_copy_time() > std::time::Duration::ZERO);
        // Nothing changed: nothing copied, no time.
        t.update(&src, &mut frame).unwrap();
        assert_eq!(t.last_copy_time(), std::time::Duration::ZERO);
        // One tile changed: copied, timed.
        src[0] ^= 0xFF;
        t.update(&src, &mut frame).unwrap();
        assert!(t.last_copy_time() > std::time::Duration::ZERO);
        // Detection copies nothing.
        src[0] ^= 0xFF;
        t.detect(&src).unwrap();
        assert_eq!(t.last_copy_time(), std::time::Duration::ZERO);
    }

    #[test]
    fn first_update_copies_everything_then_nothing_changes() {
        // 130x70: neither edge is a multiple of 64 (3x2 tiles, partial ones).
        let (w, h) = (130, 70);
        let layout = SourceLayout::dumb(w, h, PixelFormat::Xrgb8888, 0).unwrap();
        let src = source(w, h, layout.pitch, 0, pattern);
        let mut t = DamageTracker::new(layout).unwrap();
        let mut frame = Frame::new(w, h).unwrap();
        let d = t.update(&src, &mut frame).unwrap();
        assert_eq!((d.tiles_x, d.tiles_y), (3, 2));
        assert_eq!(d.tiles, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(
            d.rects,
            vec![
                Rect {
                    x: 0,
                    y: 0,
                    w: 130,
                    h: 64
                },
                Rect {
                    x: 0,
                    y: 64,
                    w: 130,
                    h: 6
                }
            ]
        );
        for (x, y) in [(0, 0), (129, 69), (64, 63), (128, 64)] {
            assert_eq!(
                frame.pixel(x, y),
                Some(0xFF00_0000 | pattern(x, y)),
                "({x},{y})"
            );
        }
        let again = t.update(&src, &mut frame).unwrap();
        assert!(again.is_empty());
        assert!(again.rects.is_empty());
    }

    #[test]
    fn one_pixel_change_marks_and_copies_exactly_one_tile() {
        let (w, h) = (200, 150);
        let layout = SourceLayout::dumb(w, h, PixelFormat::Xrgb8888, 0).unwrap();
        let mut src = source(w, h, layout.pitch, 0, pattern);
        let mut t = DamageTracker::new(layout).unwrap();
        let mut frame = Frame::new(w, h).unwrap();
        t.update(&src, &mut frame).unwrap();

        // Pixel (150, 100) is in tile (2, 1): index 1 * 4 + 2 = 6.
        let o = 100 * layout.pitch + 150 * 4;
        src[o..o + 4].copy_from_slice(&0x00AB_CDEFu32.to_le_bytes());
        // Also scribble outside the tile in our frame: an unchanged tile must
        // not be rewritten, so this survives.
        frame.set_pixel(0, 0, 0xFF12_3456);
        let d = t.update(&src, &mut frame).unwrap();
        assert_eq!(d.tiles, vec![6]);
        assert_eq!(
            d.rects,
            vec![Rect {
                x: 128,
                y: 64,
                w: 64,
                h: 64
            }]
        );
        assert_eq!(frame.pixel(150, 100), Some(0xFFAB_CDEF));
        assert_eq!(frame.pixel(0, 0), Some(0xFF12_3456));
    }

    #[test]
    fn edge_tile_change_in_partial_tile() {
        let (w, h) = (100, 65);
        let layout = SourceLayout::dumb(w, h, PixelFormat::Rgb565, 0).unwrap();
        let mut src = vec![0u8; layout.pitch * h as usize];
        let mut t = DamageTracker::new(layout).unwrap();
        let mut frame = Frame::new(w, h).unwrap();
        t.update(&src, &mut frame).unwrap();
        // Last pixel of the last row: tile (1, 1) = index 3, 36x1 pixels.
        let o = 64 * layout.pitch + 99 * 2;
        src[o..o + 2].copy_from_slice(&0xF800u16.to_le_bytes());
        let d = t.update(&src, &mut frame).unwrap();
        assert_eq!(d.tiles, vec![3]);
        assert_eq!(
            d.rects,
            vec![Rect {
                x: 64,
                y: 64,
                w: 36,
                h: 1
            }]
        );
        assert_eq!(frame.pixel(99, 64), Some(0xFFFF_0000));
    }

    #[test]
    fn neighbouring_changed_tiles_merge_into_one_rect() {
        let (w, h) = (320, 64);
        let layout = SourceLayout::dumb(w, h, PixelFormat::Xrgb8888, 0).unwrap();
        let mut src = source(w, h, layout.pitch, 0, pattern);
        let mut t = DamageTracker::new(layout).unwrap();
        t.detect(&src).unwrap();
        for x in [70, 140, 300] {
            let o = 10 * layout.pitch + x * 4;
            src[o] ^= 0xFF;
        }
        let d = t.detect(&src).unwrap();
        assert_eq!(d.tiles, vec![1, 2, 4]);
        assert_eq!(
            d.rects,
            vec![
                Rect {
                    x: 64,
                    y: 0,
                    w: 128,
                    h: 64
                },
                Rect {
                    x: 256,
                    y: 0,
                    w: 64,
                    h: 64
                }
            ]
        );
    }

    #[test]
    fn honours_pitch_offset_and_format() {
        // RGB888 with a padded pitch and a data offset; padding bytes change
        // but are not pixels, so they must not count as damage.
        let (w, h) = (10, 3);
        let layout = SourceLayout {
            width: w,
            height: h,
            format: PixelFormat::Rgb888,
            pitch: 40,
            offset: 16,
        };
        let mut src = vec![0u8; 16 + 40 * 3];
        for y in 0..3usize {
            for x in 0..10usize {
                let o = 16 + y * 40 + x * 3;
                src[o..o + 3].copy_from_slice(&[x as u8, y as u8, 0x80]);
            }
        }
        let mut t = DamageTracker::new(layout).unwrap();
        let mut frame = Frame::new(w, h).unwrap();
        t.update(&src, &mut frame).unwrap();
        assert_eq!(frame.pixel(9, 2), Some(0xFF80_0209));
        src[16 + 35] = 0x55; // padding after row 0
        assert!(t.update(&src, &mut frame).unwrap().is_empty());
    }

    #[test]
    fn invalidate_reports_everything_again() {
        let layout = SourceLayout::dumb(64, 64, PixelFormat::Xrgb8888, 0).unwrap();
        let src = vec![0u8; 64 * 64 * 4];
        let mut t = DamageTracker::new(layout).unwrap();
        t.detect(&src).unwrap();
        assert!(t.detect(&src).unwrap().is_empty());
        t.invalidate();
        assert_eq!(t.detect(&src).unwrap().tiles, vec![0]);
    }

    #[test]
    fn rejects_short_buffers_bad_geometry_and_wrong_frames() {
        let layout = SourceLayout::dumb(64, 64, PixelFormat::Xrgb8888, 8).unwrap();
        let mut t = DamageTracker::new(layout).unwrap();
        let short = vec![0u8; 64 * 64 * 4];
        assert_eq!(
            t.detect(&short),
            Err(DamageError::BufferTooSmall {
                needed: 64 * 64 * 4 + 8,
                len: 64 * 64 * 4
            })
        );
        let mut wrong = Frame::new(32, 64).unwrap();
        assert!(matches!(
            t.update(&vec![0u8; 70_000], &mut wrong),
            Err(DamageError::FrameSize { .. })
        ));
        let bad_pitch = SourceLayout {
            pitch: 100,
            ..layout
        };
        assert!(matches!(
            DamageTracker::new(bad_pitch),
            Err(DamageError::Geometry(_))
        ));
        let huge = SourceLayout {
            height: u32::MAX,
            ..layout
        };
        assert!(DamageTracker::new(huge).is_err());
        assert!(SourceLayout::dumb(0, 10, PixelFormat::Xrgb8888, 0)
            .and_then(DamageTracker::new)
            .is_err());
    }

    #[test]
    fn every_format_goes_through_the_tracker() {
        // Same picture in each format: a tile-aligned colour bar whose
        // expected XRGB value is exact in every format (pure primaries).
        let (w, h) = (128, 2);
        for format in PixelFormat::ALL {
            let layout = SourceLayout::dumb(w, h, format, 0).unwrap();
            let mut src = vec![0u8; layout.pitch * h as usize];
            // White everywhere: the maximum value in each format.
            let white: Vec<u8> = match format {
                PixelFormat::Xrgb8888 | PixelFormat::Argb8888 => vec![0xFF; 4],
                PixelFormat::Rgb888 => vec![0xFF; 3],
                PixelFormat::Rgb565 | PixelFormat::Xrgb4444 | PixelFormat::Argb4444 => {
                    vec![0xFF, 0xFF]
                }
                PixelFormat::Xrgb1555 | PixelFormat::Argb1555 => vec![0xFF, 0x7F],
                PixelFormat::Yuyv => vec![235, 128, 235, 128],
            };
            for chunk in src.chunks_exact_mut(white.len()) {
                chunk.copy_from_slice(&white);
            }
            let mut t = DamageTracker::new(layout).unwrap();
            let mut frame = Frame::new(w, h).unwrap();
            t.update(&src, &mut frame).unwrap();
            for (x, y) in [(0, 0), (127, 1), (64, 0)] {
                assert_eq!(
                    frame.pixel(x, y),
                    Some(0xFFFF_FFFF),
                    "{format:?} at ({x},{y})"
                );
            }
        }
    }
}

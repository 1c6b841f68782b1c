//! The frame-counter strip: frame number and timestamp as big black/white blocks at the top
//! of every frame, so a test (or a browser) can tell which guest frame a decoded picture is
//! and when the guest made it.
//!
//! Layout: the top `STRIP_ROWS` rows of the shared grid (40 columns, cells are fractions of
//! the frame size so scaling keeps them). In each row the first and last cells are markers of
//! known colour; the 38 cells between carry one bit each (white = 1). Markers give the reader
//! the black and white levels of *this* picture (limited-range video, dim screenshots), and
//! let it reject pictures that have no strip at all before the checksum does.
//!
//! Bit order puts everything that changes every frame (checksum, low timestamp and frame
//! bits) in the first row, so a static scene's damage from the strip stays in one band.

use super::frame::{rgb, Frame};
use super::grid::{cell, COLS, STRIP_ROWS};
use super::view::ImageView;

/// What the strip carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StripData {
    pub frame: u32,
    /// Microseconds, typically CLOCK_REALTIME so a browser can compare with `Date.now()`.
    pub timestamp_us: u64,
}

const BLACK: u32 = rgb(0, 0, 0);
const WHITE: u32 = rgb(255, 255, 255);
const DATA_COLS: u32 = COLS - 2;
const DATA_BITS: usize = (DATA_COLS * STRIP_ROWS) as usize;
/// Fixed trailing bits: a picture of all-white or all-black cells never passes.
const MAGIC: [bool; 2] = [true, false];
/// CRC-16/IBM-3740 (a.k.a. CCITT-FALSE): a non-zero init, so an all-zero payload is rejected too.
const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740);

/// Marker colour per strip row: (first cell white?, last cell white?). Mixed per row so a
/// picture with a uniformly bright or dark top band fails.
const MARKERS: [(bool, bool); STRIP_ROWS as usize] = [(false, true), (true, false), (false, true)];

fn checksum(d: &StripData) -> u16 {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&d.frame.to_le_bytes());
    bytes[4..].copy_from_slice(&d.timestamp_us.to_le_bytes());
    CRC.checksum(&bytes)
}

/// The strip's bits in cell order (row by row, left to right, markers excluded).
fn bits(d: &StripData) -> [bool; DATA_BITS] {
    let mut out = [false; DATA_BITS];
    let mut n = 0;
    let mut push = |value: u64, from: u32, count: u32| {
        for i in from..from + count {
            if let Some(slot) = out.get_mut(n) {
                *slot = (value >> i) & 1 == 1;
            }
            n += 1;
        }
    };
    let crc = u64::from(checksum(d));
    let (f, t) = (u64::from(d.frame), d.timestamp_us);
    // Row 0: what changes every frame.
    push(crc, 0, 16);
    push(t, 0, 16);
    push(f, 0, 6);
    // Rows 1 and 2: what changes rarely.
    push(f, 6, 26);
    push(t, 16, 48);
    for m in MAGIC {
        push(u64::from(m), 0, 1);
    }
    debug_assert_eq!(n, DATA_BITS);
    out
}

fn from_bits(b: &[bool; DATA_BITS]) -> Option<StripData> {
    let mut n = 0;
    let mut take = |count: u32| -> u64 {
        let mut v = 0u64;
        for i in 0..count {
            if b.get(n).copied().unwrap_or(false) {
                v |= 1 << i;
            }
            n += 1;
        }
        v
    };
    let crc = take(16) as u16;
    let t_lo = take(16);
    let f_lo = take(6);
    let f_hi = take(26);
    let t_hi = take(48);
    let magic = [take(1) == 1, take(1) == 1];
    if magic != MAGIC {
        return None;
    }
    let d = StripData {
        frame: (f_lo | (f_hi << 6)) as u32,
        timestamp_us: t_lo | (t_hi << 16),
    };
    (checksum(&d) == crc).then_some(d)
}

/// Height in pixels of the strip in a frame of this height.
pub fn strip_height(height: u32) -> u32 {
    super::grid::strip_bottom(height) as u32
}

/// Draws the strip over the top rows of `frame`.
pub fn draw_strip(frame: &mut Frame, data: &StripData) {
    let (w, h) = (frame.width, frame.height);
    let bits = bits(data);
    for row in 0..STRIP_ROWS {
        let (first, last) = MARKERS[row as usize];
        frame.fill(cell(w, h, 0, row), if first { WHITE } else { BLACK });
        frame.fill(cell(w, h, COLS - 1, row), if last { WHITE } else { BLACK });
        for col in 0..DATA_COLS {
            let bit = bits[(row * DATA_COLS + col) as usize];
            frame.fill(cell(w, h, col + 1, row), if bit { WHITE } else { BLACK });
        }
    }
}

/// Reads the strip back from a picture of any size (the cells scale with it). `None` when the
/// picture has no readable strip: markers missing, too little contrast, a cell too close to
/// the threshold to trust, wrong magic bits or a checksum mismatch.
pub fn decode_strip(view: &ImageView<'_>) -> Option<StripData> {
    let (w, h) = (view.width(), view.height());
    if w < COLS || h < super::grid::ROWS {
        return None;
    }
    // The middle half of each cell: edges are where blur, scaling and block artefacts live.
    let level = |col: u32, row: u32| view.mean_luma(cell(w, h, col, row).inset_frac(1, 4));

    let (mut black, mut white) = (Vec::new(), Vec::new());
    for row in 0..STRIP_ROWS {
        let (first, last) = MARKERS[row as usize];
        for (col, is_white) in [(0, first), (COLS - 1, last)] {
            let l = level(col, row)?;
            if is_white {
                white.push(l)
            } else {
                black.push(l)
            }
        }
    }
    let mean = |v: &[u32]| v.iter().sum::<u32>() / v.len().max(1) as u32;
    let (lo, hi) = (mean(&black), mean(&white));
    let contrast = hi.checked_sub(lo)?;
    if contrast < 96 {
        return None;
    }
    let threshold = lo + contrast / 2;
    // Each marker individually clear of the threshold: a picture with one bright corner is no
    // strip.
    let margin = contrast / 4;
    if black.iter().any(|&l| l + margin > threshold)
        || white.iter().any(|&l| l < threshold + margin)
    {
        return None;
    }

    let guard = contrast / 8;
    let mut out = [false; DATA_BITS];
    for row in 0..STRIP_ROWS {
        for col in 0..DATA_COLS {
            let l = level(col + 1, row)?;
            if l.abs_diff(threshold) < guard {
                return None;
            }
            out[(row * DATA_COLS + col) as usize] = l > threshold;
        }
    }
    from_bits(&out)
}

#[cfg(test)]
mod tests {
    use super::super::degrade;
    use super::*;

    fn sample(frame: u32) -> StripData {
        StripData {
            frame,
            timestamp_us: 1_795_000_000_000_000 + u64::from(frame) * 16_667,
        }
    }

    fn grey_frame(w: u32, h: u32) -> Frame {
        let mut f = Frame::new(w, h);
        // Busy background so "no strip" really means something else is there.
        for y in 0..h {
            for x in 0..w {
                f.set(
                    i64::from(x),
                    i64::from(y),
                    rgb((x * 7) as u8, (y * 3) as u8, ((x + y) * 5) as u8),
                );
            }
        }
        f
    }

    #[test]
    fn strip_round_trip_at_several_sizes() {
        for (w, h) in [
            (320, 240),
            (640, 360),
            (640, 480),
            (1024, 768),
            (1280, 720),
            (1920, 1080),
            (3840, 2160),
        ] {
            for n in [0u32, 1, 63, 64, 0xdead_beef, u32::MAX] {
                let mut f = grey_frame(w, h);
                let d = StripData {
                    frame: n,
                    timestamp_us: u64::MAX - u64::from(n),
                };
                draw_strip(&mut f, &d);
                assert_eq!(decode_strip(&f.view()), Some(d), "{w}x{h} frame {n}");
            }
        }
    }

    #[test]
    fn strip_survives_blur_noise_and_quantisation() {
        // Several frame numbers small, one large (debug builds are slow at this).
        for (w, h, n) in [
            (640, 360, 7u32),
            (640, 360, 1000),
            (640, 360, 123_456),
            (1280, 720, 99),
        ] {
            {
                let mut f = grey_frame(w, h);
                let d = sample(n);
                draw_strip(&mut f, &d);
                let rough =
                    degrade::jpeg_like(&degrade::add_noise(&degrade::box_blur(&f, 2), 24, n), 24);
                assert_eq!(decode_strip(&rough.view()), Some(d), "{w}x{h} frame {n}");
                let video_like = degrade::jpeg_like(&degrade::chroma_420(&f), 32);
                assert_eq!(
                    decode_strip(&video_like.view()),
                    Some(d),
                    "4:2:0 {w}x{h} frame {n}"
                );
            }
        }
    }

    #[test]
    fn strip_survives_downscaling() {
        let mut f = grey_frame(1920, 1080);
        let d = sample(4242);
        draw_strip(&mut f, &d);
        for (w, h) in [(1280, 720), (640, 360), (800, 600)] {
            let s = degrade::scale_bilinear(&f, w, h);
            assert_eq!(decode_strip(&s.view()), Some(d), "scaled to {w}x{h}");
            let rough = degrade::jpeg_like(&degrade::add_noise(&s, 16, 1), 20);
            assert_eq!(
                decode_strip(&rough.view()),
                Some(d),
                "scaled to {w}x{h} then degraded"
            );
        }
    }

    #[test]
    fn strip_reads_from_byte_buffers_and_crops() {
        let mut f = grey_frame(640, 360);
        let d = sample(99);
        draw_strip(&mut f, &d);
        // An RGBA canvas with the video letterboxed 20 px down inside a taller picture.
        let (cw, ch) = (640u32, 400u32);
        let mut rgba = vec![0u8; (cw * ch * 4) as usize];
        for y in 0..360 {
            for x in 0..640 {
                let [r, g, b] = super::super::frame::channels(f.get(x, y).unwrap());
                let i = (((y + 20) * cw + x) * 4) as usize;
                rgba[i..i + 4].copy_from_slice(&[r, g, b, 255]);
            }
        }
        let canvas = ImageView::new(
            &rgba,
            cw,
            ch,
            (cw * 4) as usize,
            super::super::view::PixelLayout::Rgba,
        )
        .unwrap();
        assert_eq!(
            decode_strip(&canvas),
            None,
            "strip is not at the top of the whole canvas"
        );
        assert_eq!(
            decode_strip(&canvas.crop(0, 20, 640, 360).unwrap()),
            Some(d)
        );
        // A luma plane in limited range (16..235), as a decoder's Y plane would be.
        let y: Vec<u8> = (0..360)
            .flat_map(|yy| (0..640).map(move |xx| (yy, xx)))
            .map(|(yy, xx)| {
                let [r, g, b] = super::super::frame::channels(f.get(xx, yy).unwrap());
                16 + (u32::from(super::super::view::luma_of(r, g, b)) * 219 / 255) as u8
            })
            .collect();
        let luma =
            ImageView::new(&y, 640, 360, 640, super::super::view::PixelLayout::Luma).unwrap();
        assert_eq!(decode_strip(&luma), Some(d));
    }

    #[test]
    fn pictures_without_a_strip_are_rejected() {
        assert_eq!(decode_strip(&grey_frame(640, 360).view()), None);
        assert_eq!(decode_strip(&Frame::new(640, 360).view()), None);
        let mut white = Frame::new(640, 360);
        white.fill_rect(0, 0, 640, 360, WHITE);
        assert_eq!(decode_strip(&white.view()), None);
        // Random black/white blocks on the strip grid with correct markers: only the checksum
        // can tell, and it does.
        let mut rejected = 0;
        for seed in 0..200u64 {
            let mut f = Frame::new(640, 360);
            draw_strip(&mut f, &sample(seed as u32));
            let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for row in 0..STRIP_ROWS {
                for col in 1..COLS - 1 {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    f.fill(
                        cell(640, 360, col, row),
                        if s & 1 == 1 { WHITE } else { BLACK },
                    );
                }
            }
            if decode_strip(&f.view()).is_none() {
                rejected += 1;
            }
        }
        assert_eq!(rejected, 200);
        // A single flipped bit is caught.
        let mut f = Frame::new(640, 360);
        draw_strip(&mut f, &sample(5));
        let c = cell(640, 360, 20, 1);
        let old = f.get(c.x0 as u32 + 2, c.y0 as u32 + 2).unwrap();
        f.fill(c, if old == WHITE { BLACK } else { WHITE });
        assert_eq!(decode_strip(&f.view()), None);
    }

    #[test]
    fn tiny_pictures_do_not_panic() {
        for (w, h) in [(0, 0), (1, 1), (39, 21), (40, 22), (41, 5)] {
            let mut f = Frame::new(w, h);
            draw_strip(&mut f, &sample(1));
            let _ = decode_strip(&f.view());
        }
    }
}

//! The internal XRGB8888 frame written as the bytes of each DRM format xen-drm-front offers,
//! exactly as drm_fourcc.h defines them (packed little-endian words), and read back.
//!
//! Byte layouts in memory (drm_fourcc.h, "little endian"):
//! - XRGB8888 / ARGB8888: `[B, G, R, X/A]`
//! - RGB888: `[B, G, R]` (a 24-bit little-endian `R:G:B` word)
//! - RGB565: 16-bit `R5 G6 B5` (red in the top bits), stored low byte first
//! - XRGB4444 / ARGB4444: 16-bit `X/A4 R4 G4 B4`
//! - XRGB1555 / ARGB1555: 16-bit `X/A1 R5 G5 B5`
//! - YUYV: per pixel pair `[Y0, Cb, Y1, Cr]`, BT.601 limited range
//!
//! X bits are written as zero so a backend that wrongly treats X as alpha shows it; A bits
//! as opaque.

use thiserror::Error;

pub use pvgate_protocol::displif::PixelFormat;

use super::frame::{channels, rgb, Frame};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PixFmtError {
    #[error("{format}: pitch {pitch} is less than the {min} bytes a {width}-pixel row needs")]
    PitchTooSmall {
        format: &'static str,
        width: u32,
        pitch: usize,
        min: usize,
    },
    #[error("{format} {width}x{height} pitch {pitch}: needs {needed} bytes, buffer has {len}")]
    BufferTooSmall {
        format: &'static str,
        width: u32,
        height: u32,
        pitch: usize,
        needed: usize,
        len: usize,
    },
    #[error("YUYV carries pixels in pairs; width {width} is odd")]
    OddWidth { width: u32 },
}

/// `ceil(width × bpp / 8)`, the pitch xen-drm-front gives a dumb buffer.
pub fn min_pitch(format: PixelFormat, width: u32) -> usize {
    (u64::from(width) * u64::from(format.bpp())).div_ceil(8) as usize
}

fn check(
    format: PixelFormat,
    width: u32,
    height: u32,
    pitch: usize,
    len: usize,
) -> Result<(), PixFmtError> {
    if format == PixelFormat::Yuyv && width % 2 == 1 {
        return Err(PixFmtError::OddWidth { width });
    }
    let min = min_pitch(format, width);
    if pitch < min {
        return Err(PixFmtError::PitchTooSmall {
            format: format.name(),
            width,
            pitch,
            min,
        });
    }
    let needed = if height == 0 {
        0
    } else {
        pitch
            .checked_mul(height as usize - 1)
            .and_then(|n| n.checked_add(min))
            .unwrap_or(usize::MAX)
    };
    if needed > len {
        return Err(PixFmtError::BufferTooSmall {
            format: format.name(),
            width,
            height,
            pitch,
            needed,
            len,
        });
    }
    Ok(())
}

/// 8-bit value to `bits` bits, rounded to nearest.
const fn down_table(bits: u32) -> [u16; 256] {
    let max = (1u32 << bits) - 1;
    let mut t = [0u16; 256];
    let mut v = 0;
    while v < 256 {
        t[v] = ((v as u32 * max + 127) / 255) as u16;
        v += 1;
    }
    t
}

// Tables, not division: a 1080p frame is two million pixels.
static DOWN4: [u16; 256] = down_table(4);
static DOWN5: [u16; 256] = down_table(5);
static DOWN6: [u16; 256] = down_table(6);

fn down(v: u8, bits: u32) -> u16 {
    let table = match bits {
        4 => &DOWN4,
        5 => &DOWN5,
        _ => &DOWN6,
    };
    table[usize::from(v)]
}

/// `bits`-bit value back to 8 bits, rounded to nearest (the inverse of `down` to within
/// half a step).
fn up(v: u16, bits: u32) -> u8 {
    let max = (1u32 << bits) - 1;
    ((u32::from(v) * 255 + max / 2) / max) as u8
}

/// BT.601 limited-range Y'CbCr from 8-bit R'G'B': the Rec. 601 coefficients (Y: 219/255,
/// C: 224/255 of full scale) in 16-bit fixed point, so 100 % red gives the textbook
/// (81, 90, 240).
pub fn rgb_to_ycbcr(r: u8, g: u8, b: u8) -> (u8, u8, u8) {
    let (r, g, b) = (i64::from(r), i64::from(g), i64::from(b));
    let fix = |v: i64| (v + (1 << 15)) >> 16;
    let y = 16 + fix(16829 * r + 33039 * g + 6416 * b);
    let cb = 128 + fix(-9714 * r - 19070 * g + 28784 * b);
    let cr = 128 + fix(28784 * r - 24103 * g - 4681 * b);
    (
        y.clamp(0, 255) as u8,
        cb.clamp(0, 255) as u8,
        cr.clamp(0, 255) as u8,
    )
}

/// The inverse of [`rgb_to_ycbcr`] (same fixed point).
pub fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let c = 76309 * (i64::from(y) - 16);
    let d = i64::from(cb) - 128;
    let e = i64::from(cr) - 128;
    let clamp = |v: i64| ((v + (1 << 15)) >> 16).clamp(0, 255) as u8;
    [
        clamp(c + 104597 * e),
        clamp(c - 25675 * d - 53279 * e),
        clamp(c + 132201 * d),
    ]
}

/// One row of a 16-bit RGB format; generic so each format's packing is inlined into its loop
/// instead of matching the format per pixel.
fn pack_row16(dst: &mut [u8], src: &[u32], pack: impl Fn([u8; 3]) -> u16) {
    for (d, &p) in dst.chunks_exact_mut(2).zip(src) {
        d.copy_from_slice(&pack(channels(p)).to_le_bytes());
    }
}

/// The 16-bit word of one pixel in a 16-bit RGB format (not YUYV).
#[inline(always)]
fn pack16(format: PixelFormat, [r, g, b]: [u8; 3]) -> u16 {
    match format {
        PixelFormat::Rgb565 => (down(r, 5) << 11) | (down(g, 6) << 5) | down(b, 5),
        PixelFormat::Xrgb4444 => (down(r, 4) << 8) | (down(g, 4) << 4) | down(b, 4),
        PixelFormat::Argb4444 => 0xf000 | (down(r, 4) << 8) | (down(g, 4) << 4) | down(b, 4),
        PixelFormat::Xrgb1555 => (down(r, 5) << 10) | (down(g, 5) << 5) | down(b, 5),
        PixelFormat::Argb1555 => 0x8000 | (down(r, 5) << 10) | (down(g, 5) << 5) | down(b, 5),
        _ => 0,
    }
}

fn unpack16(format: PixelFormat, v: u16) -> [u8; 3] {
    match format {
        PixelFormat::Rgb565 => [up(v >> 11, 5), up((v >> 5) & 0x3f, 6), up(v & 0x1f, 5)],
        PixelFormat::Xrgb4444 | PixelFormat::Argb4444 => {
            [up((v >> 8) & 0xf, 4), up((v >> 4) & 0xf, 4), up(v & 0xf, 4)]
        }
        PixelFormat::Xrgb1555 | PixelFormat::Argb1555 => [
            up((v >> 10) & 0x1f, 5),
            up((v >> 5) & 0x1f, 5),
            up(v & 0x1f, 5),
        ],
        _ => [0; 3],
    }
}

/// Writes `frame` into `out` as `format` with `pitch` bytes per row. Padding bytes past
/// each row's pixels are left as they were.
pub fn encode(
    frame: &Frame,
    format: PixelFormat,
    pitch: usize,
    out: &mut [u8],
) -> Result<(), PixFmtError> {
    encode_rows(frame, format, pitch, out, 0, frame.height)
}

/// Like [`encode`] but only rows `[y0, y1)` (clipped): for guests that redraw part of a
/// buffer.
pub fn encode_rows(
    frame: &Frame,
    format: PixelFormat,
    pitch: usize,
    out: &mut [u8],
    y0: u32,
    y1: u32,
) -> Result<(), PixFmtError> {
    let (w, h) = (frame.width, frame.height);
    check(format, w, h, pitch, out.len())?;
    let row_bytes = min_pitch(format, w);
    let (y0, y1) = (y0.min(h), y1.min(h));
    for y in y0..y1 {
        let src_start = y as usize * w as usize;
        let (Some(src), Some(dst)) = (
            frame.pixels.get(src_start..src_start + w as usize),
            out.get_mut(y as usize * pitch..y as usize * pitch + row_bytes),
        ) else {
            continue; // unreachable after `check`; never panic on a size mistake
        };
        match format {
            PixelFormat::Xrgb8888 | PixelFormat::Argb8888 => {
                let alpha = if format == PixelFormat::Argb8888 {
                    0xff00_0000
                } else {
                    0
                };
                for (d, &p) in dst.chunks_exact_mut(4).zip(src) {
                    d.copy_from_slice(&((p & 0x00ff_ffff) | alpha).to_le_bytes());
                }
            }
            PixelFormat::Rgb888 => {
                for (d, &p) in dst.chunks_exact_mut(3).zip(src) {
                    let [r, g, b] = channels(p);
                    d.copy_from_slice(&[b, g, r]);
                }
            }
            PixelFormat::Yuyv => {
                for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(2)) {
                    let (c0, c1) = (channels(s[0]), channels(s[1]));
                    let (y_0, _, _) = rgb_to_ycbcr(c0[0], c0[1], c0[2]);
                    let (y_1, _, _) = rgb_to_ycbcr(c1[0], c1[1], c1[2]);
                    // Chroma of the pair's average colour (a 2-tap horizontal filter).
                    let avg = |k: usize| (u16::from(c0[k]) + u16::from(c1[k])).div_ceil(2) as u8;
                    let (_, cb, cr) = rgb_to_ycbcr(avg(0), avg(1), avg(2));
                    d.copy_from_slice(&[y_0, cb, y_1, cr]);
                }
            }
            PixelFormat::Rgb565 => pack_row16(dst, src, |c| pack16(PixelFormat::Rgb565, c)),
            PixelFormat::Xrgb4444 => pack_row16(dst, src, |c| pack16(PixelFormat::Xrgb4444, c)),
            PixelFormat::Argb4444 => pack_row16(dst, src, |c| pack16(PixelFormat::Argb4444, c)),
            PixelFormat::Xrgb1555 => pack_row16(dst, src, |c| pack16(PixelFormat::Xrgb1555, c)),
            PixelFormat::Argb1555 => pack_row16(dst, src, |c| pack16(PixelFormat::Argb1555, c)),
        }
    }
    Ok(())
}

/// [`encode`] into a new buffer of `pitch × height` bytes (padding zero).
pub fn encode_to_vec(
    frame: &Frame,
    format: PixelFormat,
    pitch: usize,
) -> Result<Vec<u8>, PixFmtError> {
    let len = pitch.saturating_mul(frame.height as usize);
    let mut out = vec![0u8; len];
    encode(frame, format, pitch, &mut out)?;
    Ok(out)
}

/// Reads a `format` buffer back into XRGB8888 (for tests: what a correct backend would see).
pub fn decode(
    bytes: &[u8],
    width: u32,
    height: u32,
    pitch: usize,
    format: PixelFormat,
) -> Result<Frame, PixFmtError> {
    check(format, width, height, pitch, bytes.len())?;
    let mut f = Frame::new(width, height);
    let row_bytes = min_pitch(format, width);
    for y in 0..height as usize {
        let (Some(src), Some(dst)) = (
            bytes.get(y * pitch..y * pitch + row_bytes),
            f.pixels
                .get_mut(y * width as usize..(y + 1) * width as usize),
        ) else {
            continue;
        };
        match format {
            PixelFormat::Xrgb8888 | PixelFormat::Argb8888 => {
                for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                    *d = rgb(s[2], s[1], s[0]);
                }
            }
            PixelFormat::Rgb888 => {
                for (d, s) in dst.iter_mut().zip(src.chunks_exact(3)) {
                    *d = rgb(s[2], s[1], s[0]);
                }
            }
            PixelFormat::Yuyv => {
                for (d, s) in dst.chunks_exact_mut(2).zip(src.chunks_exact(4)) {
                    let [r, g, b] = ycbcr_to_rgb(s[0], s[1], s[3]);
                    d[0] = rgb(r, g, b);
                    let [r, g, b] = ycbcr_to_rgb(s[2], s[1], s[3]);
                    d[1] = rgb(r, g, b);
                }
            }
            _ => {
                for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                    let [r, g, b] = unpack16(format, u16::from_le_bytes([s[0], s[1]]));
                    *d = rgb(r, g, b);
                }
            }
        }
    }
    Ok(f)
}

/// Largest per-channel difference a round trip through `format` may cause on content whose
/// horizontal pixel pairs share a colour (YUYV subsamples chroma across each pair).
pub fn round_trip_tolerance(format: PixelFormat) -> u8 {
    match format {
        PixelFormat::Xrgb8888 | PixelFormat::Argb8888 | PixelFormat::Rgb888 => 0,
        PixelFormat::Rgb565 | PixelFormat::Xrgb1555 | PixelFormat::Argb1555 => 4, // 255/31/2
        PixelFormat::Xrgb4444 | PixelFormat::Argb4444 => 9,                       // 255/15/2
        PixelFormat::Yuyv => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::super::scene::{render, Scene};
    use super::*;

    /// The DRM fourcc values, spelled out from drm_fourcc.h's `fourcc_code()` of the name.
    #[test]
    fn fourcc_values_match_drm() {
        let code = |s: &[u8; 4]| u32::from_le_bytes(*s);
        for (f, name) in [
            (PixelFormat::Xrgb8888, b"XR24"),
            (PixelFormat::Argb8888, b"AR24"),
            (PixelFormat::Rgb565, b"RG16"),
            (PixelFormat::Rgb888, b"RG24"),
            (PixelFormat::Xrgb4444, b"XR12"),
            (PixelFormat::Argb4444, b"AR12"),
            (PixelFormat::Xrgb1555, b"XR15"),
            (PixelFormat::Argb1555, b"AR15"),
            (PixelFormat::Yuyv, b"YUYV"),
        ] {
            assert_eq!(f.fourcc(), code(name), "{}", f.name());
        }
        assert_eq!(PixelFormat::Xrgb8888.fourcc(), 0x3432_5258);
    }

    fn one(px: u32, format: PixelFormat) -> Vec<u8> {
        let mut f = Frame::new(2, 1);
        f.pixels = vec![px, px];
        let out = encode_to_vec(&f, format, min_pitch(format, 2)).unwrap();
        out[..min_pitch(format, 1).max(if format == PixelFormat::Yuyv { 4 } else { 0 })].to_vec()
    }

    /// Known colours against layouts derived by hand from drm_fourcc.h.
    #[test]
    fn known_colours_have_the_drm_bytes() {
        let (red, green, blue, white) = (
            rgb(255, 0, 0),
            rgb(0, 255, 0),
            rgb(0, 0, 255),
            rgb(255, 255, 255),
        );
        use PixelFormat::*;
        // RGB565: R in bits 15..11 → 0xF800, little-endian.
        assert_eq!(one(red, Rgb565), [0x00, 0xf8]);
        assert_eq!(one(green, Rgb565), [0xe0, 0x07]);
        assert_eq!(one(blue, Rgb565), [0x1f, 0x00]);
        // XRGB8888: word 0x00RRGGBB → B, G, R, X(0).
        assert_eq!(one(red, Xrgb8888), [0x00, 0x00, 0xff, 0x00]);
        assert_eq!(
            one(rgb(0x12, 0x34, 0x56), Xrgb8888),
            [0x56, 0x34, 0x12, 0x00]
        );
        assert_eq!(
            one(rgb(0x12, 0x34, 0x56), Argb8888),
            [0x56, 0x34, 0x12, 0xff]
        );
        // RGB888: [23:0] R:G:B little endian → B, G, R.
        assert_eq!(one(rgb(0x12, 0x34, 0x56), Rgb888), [0x56, 0x34, 0x12]);
        // XRGB4444: red 0x0F00; ARGB4444 white 0xFFFF.
        assert_eq!(one(red, Xrgb4444), [0x00, 0x0f]);
        assert_eq!(one(blue, Argb4444), [0x0f, 0xf0]);
        assert_eq!(one(white, Argb4444), [0xff, 0xff]);
        // XRGB1555: red 0x7C00, green 0x03E0; ARGB1555 sets bit 15.
        assert_eq!(one(red, Xrgb1555), [0x00, 0x7c]);
        assert_eq!(one(green, Xrgb1555), [0xe0, 0x03]);
        assert_eq!(one(blue, Argb1555), [0x1f, 0x80]);
        // YUYV, BT.601 limited range: white Y=235, Cb=Cr=128; black Y=16.
        assert_eq!(one(white, Yuyv), [235, 128, 235, 128]);
        assert_eq!(one(0, Yuyv), [16, 128, 16, 128]);
        // Red: Y=81, Cb=90, Cr=240 (the standard 100% red values).
        assert_eq!(one(red, Yuyv), [81, 90, 81, 240]);
        assert_eq!(one(blue, Yuyv), [41, 240, 41, 110]);
    }

    #[test]
    fn round_trip_every_format_within_its_precision() {
        // Pattern scene doubled horizontally so YUYV's shared chroma is exact per pair.
        let src = render(Scene::Pattern, 160, 90, 7, 0, None);
        let mut f = Frame::new(320, 90);
        for y in 0..90 {
            for x in 0..320 {
                f.set(x.into(), y.into(), src.get(x / 2, y).unwrap());
            }
        }
        for format in PixelFormat::ALL {
            for extra in [0usize, 64] {
                let pitch = min_pitch(format, f.width) + extra;
                let bytes = encode_to_vec(&f, format, pitch).unwrap();
                assert_eq!(bytes.len(), pitch * 90);
                let back = decode(&bytes, f.width, f.height, pitch, format).unwrap();
                let tol = round_trip_tolerance(format);
                let worst = f
                    .pixels
                    .iter()
                    .zip(&back.pixels)
                    .flat_map(|(&a, &b)| {
                        let (a, b) = (channels(a), channels(b));
                        (0..3).map(move |k| a[k].abs_diff(b[k]))
                    })
                    .max()
                    .unwrap();
                assert!(worst <= tol, "{}: off by {worst} > {tol}", format.name());
            }
        }
    }

    #[test]
    fn padding_is_left_alone_and_pitch_is_ceil_of_bits() {
        assert_eq!(min_pitch(PixelFormat::Rgb888, 3), 9);
        assert_eq!(min_pitch(PixelFormat::Rgb565, 3), 6);
        assert_eq!(min_pitch(PixelFormat::Xrgb8888, 1920), 7680);
        let f = render(Scene::Noise, 6, 4, 1, 0, None);
        let pitch = min_pitch(PixelFormat::Rgb888, 6) + 5;
        let mut out = vec![0xa5u8; pitch * 4];
        encode(&f, PixelFormat::Rgb888, pitch, &mut out).unwrap();
        for y in 0..4 {
            assert!(out[y * pitch + 18..(y + 1) * pitch]
                .iter()
                .all(|&b| b == 0xa5));
        }
    }

    #[test]
    fn bad_geometry_is_an_error_not_a_panic() {
        let f = Frame::new(5, 4);
        assert_eq!(
            encode(&f, PixelFormat::Yuyv, 10, &mut [0; 40]),
            Err(PixFmtError::OddWidth { width: 5 })
        );
        assert!(matches!(
            encode(&f, PixelFormat::Xrgb8888, 19, &mut [0; 80]),
            Err(PixFmtError::PitchTooSmall { min: 20, .. })
        ));
        assert!(matches!(
            encode(&f, PixelFormat::Xrgb8888, 20, &mut [0; 79]),
            Err(PixFmtError::BufferTooSmall { needed: 80, .. })
        ));
        assert!(decode(&[0; 10], 5, 4, usize::MAX, PixelFormat::Rgb565).is_err());
    }

    /// What the gateway will do: read the guest's buffer in its format. The strip, cursor and
    /// text line must survive every format's quantisation.
    #[test]
    fn readers_work_after_every_format() {
        use super::super::input::{events_for_text, InputEvent, InputState};
        use super::super::{decode_strip, find_cursor, read_text_line};
        let mut input = InputState::new(640, 360);
        input.apply(InputEvent::Motion { x: 321, y: 201 });
        for e in events_for_text("fmt ok") {
            input.apply(e);
        }
        for scene in [Scene::Pattern, Scene::Desktop] {
            let f = render(scene, 640, 360, 77, 12345, Some(&input));
            for format in PixelFormat::ALL {
                let pitch = min_pitch(format, 640) + 8;
                let back = decode(
                    &encode_to_vec(&f, format, pitch).unwrap(),
                    640,
                    360,
                    pitch,
                    format,
                )
                .unwrap();
                let v = back.view();
                let d = decode_strip(&v).unwrap_or_else(|| panic!("{scene} {}", format.name()));
                assert_eq!((d.frame, d.timestamp_us), (77, 12345));
                assert_eq!(
                    find_cursor(&v),
                    Some((321, 201)),
                    "{scene} {}",
                    format.name()
                );
                assert_eq!(read_text_line(&v), "fmt ok", "{scene} {}", format.name());
            }
        }
    }
}

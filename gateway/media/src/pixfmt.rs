//! Conversion of every displif pixel format xen-drm-front offers into the
//! gateway's XRGB8888 rows.
//!
//! The format is looked up once per framebuffer ([`PixelFormat::from_fourcc`])
//! and yields one row converter function; the per-pixel loops below therefore
//! never branch on the format, which matters because they run on every flip.
//! Alpha is dropped: a scanout plane shows ARGB as if it were XRGB, and the
//! output X byte is always 0xFF.

/// DRM fourcc codes (drm_fourcc.h), little-endian 'a','b','c','d'.
pub mod fourcc {
    const fn code(s: &[u8; 4]) -> u32 {
        (s[0] as u32) | (s[1] as u32) << 8 | (s[2] as u32) << 16 | (s[3] as u32) << 24
    }
    pub const XRGB8888: u32 = code(b"XR24");
    pub const ARGB8888: u32 = code(b"AR24");
    pub const RGB565: u32 = code(b"RG16");
    pub const RGB888: u32 = code(b"RG24");
    pub const XRGB4444: u32 = code(b"XR12");
    pub const ARGB4444: u32 = code(b"AR12");
    pub const XRGB1555: u32 = code(b"XR15");
    pub const ARGB1555: u32 = code(b"AR15");
    pub const YUYV: u32 = code(b"YUYV");
}

/// One of the formats xen-drm-front advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    Xrgb8888,
    Argb8888,
    Rgb565,
    Rgb888,
    Xrgb4444,
    Argb4444,
    Xrgb1555,
    Argb1555,
    Yuyv,
}

/// Converts `dst.len() / 4` pixels from `src` (which holds at least
/// `pixels * bits_per_pixel / 8` bytes) into XRGB8888.
pub type RowConverter = fn(src: &[u8], dst: &mut [u8]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PixelFormatError {
    #[error("unsupported pixel format fourcc {0:#010x}")]
    Unsupported(u32),
    #[error("{format:?} needs an even width, got {width}")]
    OddWidth { format: PixelFormat, width: u32 },
    #[error("{width} pixels of {format:?} do not fit a size computation")]
    TooWide { format: PixelFormat, width: u32 },
}

impl PixelFormat {
    pub const ALL: [PixelFormat; 9] = [
        PixelFormat::Xrgb8888,
        PixelFormat::Argb8888,
        PixelFormat::Rgb565,
        PixelFormat::Rgb888,
        PixelFormat::Xrgb4444,
        PixelFormat::Argb4444,
        PixelFormat::Xrgb1555,
        PixelFormat::Argb1555,
        PixelFormat::Yuyv,
    ];

    pub fn from_fourcc(code: u32) -> Result<PixelFormat, PixelFormatError> {
        Ok(match code {
            fourcc::XRGB8888 => PixelFormat::Xrgb8888,
            fourcc::ARGB8888 => PixelFormat::Argb8888,
            fourcc::RGB565 => PixelFormat::Rgb565,
            fourcc::RGB888 => PixelFormat::Rgb888,
            fourcc::XRGB4444 => PixelFormat::Xrgb4444,
            fourcc::ARGB4444 => PixelFormat::Argb4444,
            fourcc::XRGB1555 => PixelFormat::Xrgb1555,
            fourcc::ARGB1555 => PixelFormat::Argb1555,
            fourcc::YUYV => PixelFormat::Yuyv,
            other => return Err(PixelFormatError::Unsupported(other)),
        })
    }

    pub fn fourcc(self) -> u32 {
        match self {
            PixelFormat::Xrgb8888 => fourcc::XRGB8888,
            PixelFormat::Argb8888 => fourcc::ARGB8888,
            PixelFormat::Rgb565 => fourcc::RGB565,
            PixelFormat::Rgb888 => fourcc::RGB888,
            PixelFormat::Xrgb4444 => fourcc::XRGB4444,
            PixelFormat::Argb4444 => fourcc::ARGB4444,
            PixelFormat::Xrgb1555 => fourcc::XRGB1555,
            PixelFormat::Argb1555 => fourcc::ARGB1555,
            PixelFormat::Yuyv => fourcc::YUYV,
        }
    }

    pub fn bits_per_pixel(self) -> u32 {
        match self {
            PixelFormat::Xrgb8888 | PixelFormat::Argb8888 => 32,
            PixelFormat::Rgb888 => 24,
            _ => 16,
        }
    }

    /// Bytes of `width` pixels: the pitch of a dumb buffer,
    /// `ceil(width * bpp / 8)`, which is what displif implies (it carries no
    /// stride). YUYV needs an even width because two pixels share chroma.
    pub fn row_bytes(self, width: u32) -> Result<usize, PixelFormatError> {
        if self == PixelFormat::Yuyv && !width.is_multiple_of(2) {
            return Err(PixelFormatError::OddWidth {
                format: self,
                width,
            });
        }
        (width as usize)
            .checked_mul(self.bits_per_pixel() as usize)
            .map(|bits| bits.div_ceil(8))
            .ok_or(PixelFormatError::TooWide {
                format: self,
                width,
            })
    }

    /// Byte offset of pixel `x` within a row. Tiles start at multiples of 64,
    /// which keeps YUYV pairs whole.
    pub fn byte_offset(self, x: u32) -> usize {
        x as usize * self.bits_per_pixel() as usize / 8
    }

    /// The row converter for this format, chosen once per framebuffer.
    pub fn converter(self) -> RowConverter {
        match self {
            PixelFormat::Xrgb8888 | PixelFormat::Argb8888 => convert_xrgb8888,
            PixelFormat::Rgb565 => convert_rgb565,
            PixelFormat::Rgb888 => convert_rgb888,
            PixelFormat::Xrgb4444 | PixelFormat::Argb4444 => convert_xrgb4444,
            PixelFormat::Xrgb1555 | PixelFormat::Argb1555 => convert_xrgb1555,
            PixelFormat::Yuyv => convert_yuyv,
        }
    }
}

// Expanding n-bit channels by bit replication maps 0 to 0 and the maximum to
// 255 exactly, which a plain shift would not (31 << 3 = 248).
#[inline(always)]
fn expand5(v: u16) -> u8 {
    let v = (v & 0x1F) as u8;
    (v << 3) | (v >> 2)
}

#[inline(always)]
fn expand6(v: u16) -> u8 {
    let v = (v & 0x3F) as u8;
    (v << 2) | (v >> 4)
}

#[inline(always)]
fn expand4(v: u16) -> u8 {
    let v = (v & 0x0F) as u8;
    (v << 4) | v
}

fn convert_xrgb8888(src: &[u8], dst: &mut [u8]) {
    for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
        d[0] = s[0];
        d[1] = s[1];
        d[2] = s[2];
        d[3] = 0xFF;
    }
}

fn convert_rgb888(src: &[u8], dst: &mut [u8]) {
    // DRM RGB888 is little-endian [23:0] R:G:B, so memory holds B, G, R.
    for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(3)) {
        d[0] = s[0];
        d[1] = s[1];
        d[2] = s[2];
        d[3] = 0xFF;
    }
}

fn convert_rgb565(src: &[u8], dst: &mut [u8]) {
    for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(2)) {
        let v = u16::from_le_bytes([s[0], s[1]]);
        d[0] = expand5(v);
        d[1] = expand6(v >> 5);
        d[2] = expand5(v >> 11);
        d[3] = 0xFF;
    }
}

fn convert_xrgb4444(src: &[u8], dst: &mut [u8]) {
    for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(2)) {
        let v = u16::from_le_bytes([s[0], s[1]]);
        d[0] = expand4(v);
        d[1] = expand4(v >> 4);
        d[2] = expand4(v >> 8);
        d[3] = 0xFF;
    }
}

fn convert_xrgb1555(src: &[u8], dst: &mut [u8]) {
    for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(2)) {
        let v = u16::from_le_bytes([s[0], s[1]]);
        d[0] = expand5(v);
        d[1] = expand5(v >> 5);
        d[2] = expand5(v >> 10);
        d[3] = 0xFF;
    }
}

#[inline(always)]
fn clamp8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// YUYV (Y0 U Y1 V) in BT.601 limited range, the usual meaning of YUYV on a
/// Linux scanout. Fixed-point coefficients are the BT.601 ones scaled by 256.
fn convert_yuyv(src: &[u8], dst: &mut [u8]) {
    for (d, s) in dst.chunks_exact_mut(8).zip(src.chunks_exact(4)) {
        let u = s[1] as i32 - 128;
        let v = s[3] as i32 - 128;
        let r_off = 409 * v + 128;
        let g_off = -100 * u - 208 * v + 128;
        let b_off = 516 * u + 128;
        for (px, y) in d.chunks_exact_mut(4).zip([s[0], s[2]]) {
            let c = 298 * (y as i32 - 16);
            px[0] = clamp8((c + b_off) >> 8);
            px[1] = clamp8((c + g_off) >> 8);
            px[2] = clamp8((c + r_off) >> 8);
            px[3] = 0xFF;
        }
    }
}

/// The protocol crate names the same formats (as the wire carries them);
/// this is where a backend turns an FB_ATTACH format into a converter.
impl From<pvgate_protocol::displif::PixelFormat> for PixelFormat {
    fn from(f: pvgate_protocol::displif::PixelFormat) -> PixelFormat {
        use pvgate_protocol::displif::PixelFormat as P;
        match f {
            P::Xrgb8888 => PixelFormat::Xrgb8888,
            P::Argb8888 => PixelFormat::Argb8888,
            P::Rgb565 => PixelFormat::Rgb565,
            P::Rgb888 => PixelFormat::Rgb888,
            P::Xrgb4444 => PixelFormat::Xrgb4444,
            P::Argb4444 => PixelFormat::Argb4444,
            P::Xrgb1555 => PixelFormat::Xrgb1555,
            P::Argb1555 => PixelFormat::Argb1555,
            P::Yuyv => PixelFormat::Yuyv,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_protocol_crate() {
        for p in pvgate_protocol::displif::PixelFormat::ALL {
            let ours = PixelFormat::from(p);
            assert_eq!(ours.fourcc(), p.fourcc(), "{p:?}");
            assert_eq!(ours.bits_per_pixel(), p.bpp(), "{p:?}");
            assert_eq!(PixelFormat::from_fourcc(p.fourcc()), Ok(ours));
        }
    }

    /// Convert one row of source bytes and return the pixels as 0xXXRRGGBB.
    fn convert(format: PixelFormat, src: &[u8], pixels: usize) -> Vec<u32> {
        let mut dst = vec![0u8; pixels * 4];
        (format.converter())(src, &mut dst);
        dst.chunks_exact(4)
            .map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]))
            .collect()
    }

    #[test]
    fn fourcc_round_trips_and_matches_drm_values() {
        // Values from drm_fourcc.h, computed by hand: 'X'=0x58 'R'=0x52 '2'=0x32 '4'=0x34.
        assert_eq!(fourcc::XRGB8888, 0x3432_5258);
        assert_eq!(fourcc::RGB565, 0x3631_4752);
        assert_eq!(fourcc::YUYV, 0x5659_5559);
        for f in PixelFormat::ALL {
            assert_eq!(PixelFormat::from_fourcc(f.fourcc()), Ok(f));
        }
        assert_eq!(
            PixelFormat::from_fourcc(0x1234_5678),
            Err(PixelFormatError::Unsupported(0x1234_5678))
        );
    }

    #[test]
    fn dumb_buffer_pitch() {
        assert_eq!(PixelFormat::Rgb888.row_bytes(5), Ok(15));
        assert_eq!(PixelFormat::Rgb565.row_bytes(5), Ok(10));
        assert_eq!(PixelFormat::Xrgb8888.row_bytes(1920), Ok(7680));
        assert!(PixelFormat::Yuyv.row_bytes(5).is_err());
        assert_eq!(PixelFormat::Yuyv.row_bytes(6), Ok(12));
    }

    #[test]
    fn xrgb_and_argb8888_copy_and_force_opaque() {
        let src = [0x10, 0x20, 0x30, 0x00, 0xAA, 0xBB, 0xCC, 0x7F];
        let want = vec![0xFF30_2010, 0xFFCC_BBAA];
        assert_eq!(convert(PixelFormat::Xrgb8888, &src, 2), want);
        assert_eq!(convert(PixelFormat::Argb8888, &src, 2), want);
    }

    #[test]
    fn rgb888_memory_order_is_b_g_r() {
        let src = [0x01, 0x02, 0x03, 0xFF, 0x00, 0x80];
        assert_eq!(
            convert(PixelFormat::Rgb888, &src, 2),
            vec![0xFF03_0201, 0xFF80_00FF]
        );
    }

    #[test]
    fn rgb565_known_colours() {
        // Pure red 0xF800, pure green 0x07E0, pure blue 0x001F, and
        // 0b10000_100000_10000 = 0x8410 (mid grey: 16->132, 32->130).
        let src = [0x00, 0xF8, 0xE0, 0x07, 0x1F, 0x00, 0x10, 0x84];
        assert_eq!(
            convert(PixelFormat::Rgb565, &src, 4),
            vec![0xFFFF_0000, 0xFF00_FF00, 0xFF00_00FF, 0xFF84_8284]
        );
    }

    #[test]
    fn xrgb4444_and_argb4444_known_colours() {
        // 0x0F00 red, 0x00F0 green, 0xF00F blue with alpha, 0x0123.
        let src = [0x00, 0x0F, 0xF0, 0x00, 0x0F, 0xF0, 0x23, 0x01];
        let want = vec![0xFFFF_0000, 0xFF00_FF00, 0xFF00_00FF, 0xFF11_2233];
        assert_eq!(convert(PixelFormat::Xrgb4444, &src, 4), want);
        assert_eq!(convert(PixelFormat::Argb4444, &src, 4), want);
    }

    #[test]
    fn xrgb1555_and_argb1555_known_colours() {
        // 0x7C00 red, 0x03E0 green, 0x801F blue with alpha bit,
        // 0b0_00001_00010_00011 = 0x0443: 1->8, 2->16, 3->24 (v<<3 | v>>2).
        let src = [0x00, 0x7C, 0xE0, 0x03, 0x1F, 0x80, 0x43, 0x04];
        let want = vec![0xFFFF_0000, 0xFF00_FF00, 0xFF00_00FF, 0xFF08_1018];
        assert_eq!(convert(PixelFormat::Xrgb1555, &src, 4), want);
        assert_eq!(convert(PixelFormat::Argb1555, &src, 4), want);
    }

    #[test]
    fn yuyv_bt601_limited_known_colours() {
        // White (235,128,128), black (16,128,128): one macropixel.
        // Red in BT.601 limited: Y=81 U=90 V=240 -> R=(298*65+409*112+128)>>8=255,
        // G=(298*65+100*38-208*112+128)>>8=0, B=(298*65-516*38+128)>>8 <0 -> 0.
        // Grey Y=126: (298*110+128)>>8 = 128.
        let src = [235, 128, 16, 128, 81, 90, 126, 240];
        let got = convert(PixelFormat::Yuyv, &src, 4);
        assert_eq!(got[0], 0xFFFF_FFFF);
        assert_eq!(got[1], 0xFF00_0000);
        assert_eq!(got[2], 0xFFFF_0000);
        // Second pixel of the red pair has Y=126 with the same chroma:
        // R=(298*110+409*112+128)>>8 = 307 -> 255, G=(32780+3800-23296+128)>>8 = 52,
        // B=(32780-19608+128)>>8 = 51.
        assert_eq!(got[3], 0xFFFF_3433);
    }
}

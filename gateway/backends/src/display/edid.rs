//! An EDID 1.4 base block describing one connector: its resolution as the
//! preferred (first) detailed timing, so that a guest that asks GET_EDID
//! gets the same mode the `resolution` key names (displif.h: EDID takes
//! precedence over `resolution`).

/// One EDID block.
pub const EDID_BLOCK: usize = 128;

/// The refresh rate we describe; the gateway has no real scanout clock.
const REFRESH_HZ: u64 = 60;
/// Detailed timing fields are 12 bits wide.
const MAX_DTD_EDGE: u32 = 4095;
/// Pixel clock is 16 bits in 10 kHz units.
const MAX_PIXEL_CLOCK_10KHZ: u64 = 0xffff;

/// Why no EDID can describe a resolution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdidError {
    #[error("{width}x{height} does not fit an EDID detailed timing (12-bit fields, at most {MAX_DTD_EDGE})")]
    TooLarge { width: u32, height: u32 },
    #[error("{width}x{height} is empty")]
    Empty { width: u32, height: u32 },
}

/// Blanking in the spirit of CVT reduced blanking: fixed horizontal
/// blanking, enough vertical blanking for ~460 µs.
struct Timing {
    h_front: u32,
    h_sync: u32,
    h_blank: u32,
    v_front: u32,
    v_sync: u32,
    v_blank: u32,
    clock_10khz: u64,
}

fn timing(width: u32, height: u32) -> Timing {
    let (h_front, h_sync, h_blank) = (48, 32, 160);
    let (v_front, v_sync) = (3, 5);
    // lines of blanking ≈ 460 µs of a 60 Hz frame, at least front+sync+6.
    let v_blank = ((u64::from(height) * 460 * REFRESH_HZ).div_ceil(1_000_000 - 460 * REFRESH_HZ)
        as u32)
        .max(v_front + v_sync + 6);
    let total = u64::from(width + h_blank) * u64::from(height + v_blank);
    // Lower the refresh for very large modes so the clock fits 16 bits.
    let clock_10khz = (total * REFRESH_HZ)
        .div_ceil(10_000)
        .min(MAX_PIXEL_CLOCK_10KHZ);
    Timing {
        h_front,
        h_sync,
        h_blank,
        v_front,
        v_sync,
        v_blank,
        clock_10khz,
    }
}

/// Physical size for ~96 dpi, in millimetres.
fn size_mm(pixels: u32) -> u32 {
    (pixels * 254).div_ceil(960)
}

fn detailed_timing(width: u32, height: u32) -> [u8; 18] {
    let t = timing(width, height);
    let (hmm, vmm) = (size_mm(width).min(4095), size_mm(height).min(4095));
    let lo = |v: u32| (v & 0xff) as u8;
    let hi4 = |v: u32| ((v >> 8) & 0x0f) as u8;
    let clock = (t.clock_10khz as u16).to_le_bytes();
    [
        clock[0],
        clock[1],
        lo(width),
        lo(t.h_blank),
        (hi4(width) << 4) | hi4(t.h_blank),
        lo(height),
        lo(t.v_blank),
        (hi4(height) << 4) | hi4(t.v_blank),
        lo(t.h_front),
        lo(t.h_sync),
        (((t.v_front & 0x0f) as u8) << 4) | (t.v_sync & 0x0f) as u8,
        ((((t.h_front >> 8) & 3) as u8) << 6)
            | ((((t.h_sync >> 8) & 3) as u8) << 4)
            | ((((t.v_front >> 4) & 3) as u8) << 2)
            | (((t.v_sync >> 4) & 3) as u8),
        lo(hmm),
        lo(vmm),
        (hi4(hmm) << 4) | hi4(vmm),
        0,
        0,
        // Digital separate sync, hsync positive, vsync negative (as CVT-RB).
        0x1a,
    ]
}

/// A display descriptor carrying text (monitor name 0xFC, serial 0xFF).
fn text_descriptor(tag: u8, text: &str) -> [u8; 18] {
    let mut d = [0u8; 18];
    d[3] = tag;
    let mut body = [b' '; 13];
    let bytes = text.as_bytes();
    let n = bytes.len().min(12);
    body[..n].copy_from_slice(&bytes[..n]);
    if n < 13 {
        body[n] = b'\n';
    }
    d[5..].copy_from_slice(&body);
    d
}

/// The EDID base block for a `width × height` connector; `serial` tells
/// connectors apart (the guest sees distinct monitors).
pub fn build_edid(width: u32, height: u32, serial: u32) -> Result<[u8; EDID_BLOCK], EdidError> {
    if width == 0 || height == 0 {
        return Err(EdidError::Empty { width, height });
    }
    if width > MAX_DTD_EDGE || height > MAX_DTD_EDGE {
        return Err(EdidError::TooLarge { width, height });
    }
    let mut e = [0u8; EDID_BLOCK];
    e[..8].copy_from_slice(&[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]);
    // Manufacturer "PVG": three 5-bit letters, big-endian.
    let letter = |c: u8| u16::from(c - b'A' + 1);
    let mfg = (letter(b'P') << 10) | (letter(b'V') << 5) | letter(b'G');
    e[8..10].copy_from_slice(&mfg.to_be_bytes());
    e[10..12].copy_from_slice(&0x0d15u16.to_le_bytes()); // product code
    e[12..16].copy_from_slice(&serial.to_le_bytes());
    e[16] = 1; // week
    e[17] = (2026 - 1990) as u8; // year of manufacture
    e[18] = 1; // EDID 1.4
    e[19] = 4;
    e[20] = 0xa0; // digital input, 8 bits per colour
    e[21] = (size_mm(width) / 10).clamp(1, 255) as u8;
    e[22] = (size_mm(height) / 10).clamp(1, 255) as u8;
    e[23] = 120; // gamma 2.2
                 // sRGB default colour space, preferred timing is native, RGB 4:4:4.
    e[24] = 0x06;
    // sRGB chromaticity.
    e[25..35].copy_from_slice(&[0xee, 0x91, 0xa3, 0x54, 0x4c, 0x99, 0x26, 0x0f, 0x50, 0x54]);
    // No established timings; standard timings unused (0x01 0x01).
    for i in 0..8 {
        e[38 + 2 * i] = 0x01;
        e[39 + 2 * i] = 0x01;
    }
    e[54..72].copy_from_slice(&detailed_timing(width, height));
    e[72..90].copy_from_slice(&text_descriptor(0xfc, "pvgate"));
    e[90..108].copy_from_slice(&text_descriptor(0xff, &format!("{serial:08x}")));
    let mut dummy = [0u8; 18];
    dummy[3] = 0x10;
    e[108..126].copy_from_slice(&dummy);
    e[126] = 0; // no extension blocks
    let sum = e[..127].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    e[127] = 0u8.wrapping_sub(sum);
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checksum_and_preferred_mode() {
        for (w, h) in [
            (640, 480),
            (1280, 720),
            (1920, 1080),
            (3840, 2160),
            (4095, 4095),
        ] {
            let e = build_edid(w, h, 7).unwrap();
            assert_eq!(&e[..8], &[0, 255, 255, 255, 255, 255, 255, 0]);
            assert_eq!(e.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
            let dtd = &e[54..72];
            assert_ne!(u16::from_le_bytes([dtd[0], dtd[1]]), 0);
            let hact = u32::from(dtd[2]) | (u32::from(dtd[4] >> 4) << 8);
            let vact = u32::from(dtd[5]) | (u32::from(dtd[7] >> 4) << 8);
            assert_eq!((hact, vact), (w, h));
        }
    }

    #[test]
    fn unrepresentable_sizes_are_refused() {
        assert!(build_edid(4096, 2160, 0).is_err());
        assert!(build_edid(0, 10, 0).is_err());
    }
}

//! G.711 companding (µ-law and A-law) between 16-bit linear samples and 8-bit codes.
//!
//! Both laws split the magnitude into 8 segments whose step doubles from one to the next,
//! with 16 steps per segment; the code is sign, segment and step. µ-law adds a bias of 132
//! so segment edges fall on powers of two and stores the code inverted; A-law works on the
//! 13-bit magnitude and stores the code with every other bit flipped (XOR 0x55).

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// 16-bit linear to µ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let s = i32::from(sample);
    let (sign, magnitude) = if s < 0 { (0x80, -s) } else { (0, s) };
    let biased = magnitude.min(ULAW_CLIP) + ULAW_BIAS;
    // Segment = position of the highest set bit above bit 7 (biased ≥ 132 has bit 7 set).
    let segment = (31 - biased.leading_zeros() as i32 - 7).clamp(0, 7);
    let step = (biased >> (segment + 3)) & 0x0f;
    !(sign | (segment << 4) as u8 | step as u8)
}

/// µ-law to 16-bit linear.
pub fn ulaw_to_linear(code: u8) -> i16 {
    let c = !code;
    let segment = i32::from((c >> 4) & 0x07);
    let step = i32::from(c & 0x0f);
    let magnitude = (((step << 3) + ULAW_BIAS) << segment) - ULAW_BIAS;
    (if c & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

/// 16-bit linear to A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let s = i32::from(sample) >> 3; // A-law quantises 13 bits
    let (sign_mask, magnitude) = if s >= 0 {
        (0xd5u8, s)
    } else {
        (0x55u8, -s - 1)
    };
    // Segment 0 and 1 share the finest step (2 in 13-bit units); then it doubles.
    let segment = (32 - magnitude.leading_zeros() as i32 - 5).max(0);
    if segment > 7 {
        return 0x7f ^ sign_mask;
    }
    let step = if segment < 2 {
        (magnitude >> 1) & 0x0f
    } else {
        (magnitude >> segment) & 0x0f
    };
    (((segment << 4) | step) as u8) ^ sign_mask
}

/// A-law to 16-bit linear (the middle of the code's interval).
pub fn alaw_to_linear(code: u8) -> i16 {
    let c = code ^ 0x55;
    let step = i32::from(c & 0x0f) << 4;
    let segment = i32::from((c >> 4) & 0x07);
    let magnitude = match segment {
        0 => step + 8,
        1 => step + 0x108,
        _ => (step + 0x108) << (segment - 1),
    };
    (if c & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes() {
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x7f), 0); // "negative zero"
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
        assert_eq!(alaw_to_linear(0x2a), -32256);
        assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2a);
    }

    #[test]
    fn every_code_decodes_and_re_encodes_to_itself() {
        for code in 0..=255u8 {
            if code != 0x7f {
                assert_eq!(
                    linear_to_ulaw(ulaw_to_linear(code)),
                    code,
                    "µ-law {code:#x}"
                );
            }
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "A-law {code:#x}"
            );
        }
    }

    /// Quantisation error of a round trip stays within one step of the segment the sample
    /// falls in (G.711's precision), for every 16-bit input.
    #[test]
    fn round_trip_error_within_the_segment_step() {
        for x in i16::MIN..=i16::MAX {
            let m = i32::from(x).abs();
            let u = i32::from(ulaw_to_linear(linear_to_ulaw(x)));
            let useg = (31 - (m.min(ULAW_CLIP) + ULAW_BIAS).leading_zeros() as i32 - 7).clamp(0, 7);
            let ustep = 8 << useg;
            let uerr = (u - i32::from(x)).abs() - (m - ULAW_CLIP).max(0);
            assert!(uerr <= ustep, "µ-law {x}: got {u}");
            let a = i32::from(alaw_to_linear(linear_to_alaw(x)));
            let aseg = (32 - (m >> 3).leading_zeros() as i32 - 5).max(1);
            let astep = 8 << aseg;
            assert!((a - i32::from(x)).abs() <= astep, "A-law {x}: got {a}");
        }
    }

    #[test]
    fn decoding_is_monotonic() {
        let mut u: Vec<i16> = (0..=255u8).map(ulaw_to_linear).collect();
        let mut a: Vec<i16> = (0..=255u8).map(alaw_to_linear).collect();
        u.sort();
        a.sort();
        u.dedup();
        a.dedup();
        assert_eq!(u.len(), 255); // ±0 coincide
        assert_eq!(a.len(), 256);
    }
}

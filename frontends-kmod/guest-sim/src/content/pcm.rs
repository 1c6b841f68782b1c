//! Float samples as the bytes of every sndif PCM format that carries plain audio, and back.
//!
//! Integer formats scale by 2^(bits-1) (so -1.0 is the most negative code and +1.0 clips one
//! step short), unsigned ones are offset by half the range. The 24-bit formats are ALSA's
//! S24_LE/S24_BE/U24_*: 24 significant bits in a 32-bit container (snd-xen-front maps
//! them so); we write the container's top byte as the sign extension (unsigned: zero) and
//! ignore it when reading. µ-law and A-law go through 16-bit linear (G.711).

use thiserror::Error;

pub use pvgate_protocol::sndif::PcmFormat;

use super::g711;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PcmError {
    #[error("PCM format {0:?} is not plain sample data (IEC958 subframes or a compressed stream)")]
    Unsupported(PcmFormat),
    #[error("{format:?}: {len} bytes is not a whole number of {size}-byte samples")]
    Partial {
        format: PcmFormat,
        len: usize,
        size: usize,
    },
}

/// Bytes one sample takes in the buffer; `Err` for formats we do not generate.
pub fn sample_size(format: PcmFormat) -> Result<usize, PcmError> {
    use PcmFormat::*;
    Ok(match format {
        S8 | U8 | MuLaw | ALaw => 1,
        S16Le | S16Be | U16Le | U16Be => 2,
        S24Le | S24Be | U24Le | U24Be | S32Le | S32Be | U32Le | U32Be | F32Le | F32Be => 4,
        F64Le | F64Be => 8,
        other => return Err(PcmError::Unsupported(other)),
    })
}

/// True for the formats [`encode`] and [`decode`] handle.
pub fn is_supported(format: PcmFormat) -> bool {
    sample_size(format).is_ok()
}

/// `x` (nominally -1..1) as a signed `bits`-bit integer, rounded and clipped.
fn to_int(x: f32, bits: u32) -> i64 {
    let full = (1i64 << (bits - 1)) as f64;
    let v = (f64::from(x) * full).round();
    if v.is_nan() {
        return 0;
    }
    (v as i64).clamp(-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
}

fn from_int(v: i64, bits: u32) -> f32 {
    (v as f64 / (1i64 << (bits - 1)) as f64) as f32
}

/// Appends `samples` (interleaved, any channel count) to `out` as `format`.
pub fn encode(samples: &[f32], format: PcmFormat, out: &mut Vec<u8>) -> Result<(), PcmError> {
    use PcmFormat::*;
    let size = sample_size(format)?;
    out.reserve(samples.len() * size);
    for &x in samples {
        match format {
            S8 => out.push(to_int(x, 8) as i8 as u8),
            U8 => out.push((to_int(x, 8) + 128) as u8),
            S16Le => out.extend_from_slice(&(to_int(x, 16) as i16).to_le_bytes()),
            S16Be => out.extend_from_slice(&(to_int(x, 16) as i16).to_be_bytes()),
            U16Le => out.extend_from_slice(&((to_int(x, 16) + 0x8000) as u16).to_le_bytes()),
            U16Be => out.extend_from_slice(&((to_int(x, 16) + 0x8000) as u16).to_be_bytes()),
            S24Le => out.extend_from_slice(&(to_int(x, 24) as i32).to_le_bytes()),
            S24Be => out.extend_from_slice(&(to_int(x, 24) as i32).to_be_bytes()),
            U24Le => out.extend_from_slice(&((to_int(x, 24) + 0x80_0000) as u32).to_le_bytes()),
            U24Be => out.extend_from_slice(&((to_int(x, 24) + 0x80_0000) as u32).to_be_bytes()),
            S32Le => out.extend_from_slice(&(to_int(x, 32) as i32).to_le_bytes()),
            S32Be => out.extend_from_slice(&(to_int(x, 32) as i32).to_be_bytes()),
            U32Le => out.extend_from_slice(&((to_int(x, 32) + 0x8000_0000) as u32).to_le_bytes()),
            U32Be => out.extend_from_slice(&((to_int(x, 32) + 0x8000_0000) as u32).to_be_bytes()),
            F32Le => out.extend_from_slice(&x.to_le_bytes()),
            F32Be => out.extend_from_slice(&x.to_be_bytes()),
            F64Le => out.extend_from_slice(&f64::from(x).to_le_bytes()),
            F64Be => out.extend_from_slice(&f64::from(x).to_be_bytes()),
            MuLaw => out.push(g711::linear_to_ulaw(to_int(x, 16) as i16)),
            ALaw => out.push(g711::linear_to_alaw(to_int(x, 16) as i16)),
            other => return Err(PcmError::Unsupported(other)),
        }
    }
    Ok(())
}

/// [`encode`] into a new vector.
pub fn encode_to_vec(samples: &[f32], format: PcmFormat) -> Result<Vec<u8>, PcmError> {
    let mut out = Vec::new();
    encode(samples, format, &mut out)?;
    Ok(out)
}

/// Bytes of `format` back to float samples (the capture side, and tests).
pub fn decode(bytes: &[u8], format: PcmFormat) -> Result<Vec<f32>, PcmError> {
    use PcmFormat::*;
    let size = sample_size(format)?;
    if bytes.len().checked_rem(size) != Some(0) {
        return Err(PcmError::Partial {
            format,
            len: bytes.len(),
            size,
        });
    }
    let sign24 = |v: u32| (((v & 0x00ff_ffff) << 8) as i32 >> 8) as i64;
    let out = bytes
        .chunks_exact(size)
        .map(|b| {
            let w2 = || [b[0], b[1]];
            let w4 = || [b[0], b[1], b[2], b[3]];
            match format {
                S8 => from_int(i64::from(b[0] as i8), 8),
                U8 => from_int(i64::from(b[0]) - 128, 8),
                S16Le => from_int(i16::from_le_bytes(w2()).into(), 16),
                S16Be => from_int(i16::from_be_bytes(w2()).into(), 16),
                U16Le => from_int(i64::from(u16::from_le_bytes(w2())) - 0x8000, 16),
                U16Be => from_int(i64::from(u16::from_be_bytes(w2())) - 0x8000, 16),
                S24Le => from_int(sign24(u32::from_le_bytes(w4())), 24),
                S24Be => from_int(sign24(u32::from_be_bytes(w4())), 24),
                U24Le => from_int(
                    i64::from(u32::from_le_bytes(w4()) & 0x00ff_ffff) - 0x80_0000,
                    24,
                ),
                U24Be => from_int(
                    i64::from(u32::from_be_bytes(w4()) & 0x00ff_ffff) - 0x80_0000,
                    24,
                ),
                S32Le => from_int(i32::from_le_bytes(w4()).into(), 32),
                S32Be => from_int(i32::from_be_bytes(w4()).into(), 32),
                U32Le => from_int(i64::from(u32::from_le_bytes(w4())) - 0x8000_0000, 32),
                U32Be => from_int(i64::from(u32::from_be_bytes(w4())) - 0x8000_0000, 32),
                F32Le => f32::from_le_bytes(w4()),
                F32Be => f32::from_be_bytes(w4()),
                F64Le => {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                }
                F64Be => {
                    f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                }
                MuLaw => from_int(g711::ulaw_to_linear(b[0]).into(), 16),
                ALaw => from_int(g711::alaw_to_linear(b[0]).into(), 16),
                _ => 0.0, // unreachable: sample_size refused the rest
            }
        })
        .collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_formats_are_exactly_the_plain_ones() {
        for f in PcmFormat::ALL {
            let plain = f.is_linear() || f.is_float() || f.is_companded();
            assert_eq!(is_supported(f), plain, "{f:?}");
            if plain {
                // Our container sizes agree with the protocol crate's (which follows sndif.h and
                // snd-xen-front's ALSA mapping).
                assert_eq!(
                    Some(sample_size(f).unwrap() as u32),
                    f.bytes_per_sample(),
                    "{f:?}"
                );
            } else {
                assert_eq!(encode_to_vec(&[0.5], f), Err(PcmError::Unsupported(f)));
                assert!(decode(&[0; 8], f).is_err());
            }
        }
    }

    #[test]
    fn known_bytes() {
        use PcmFormat::*;
        let e = |x: f32, f| encode_to_vec(&[x], f).unwrap();
        assert_eq!(e(0.5, S16Le), [0x00, 0x40]);
        assert_eq!(e(0.5, S16Be), [0x40, 0x00]);
        assert_eq!(e(-1.0, S16Le), [0x00, 0x80]);
        assert_eq!(e(1.0, S16Le), [0xff, 0x7f]); // clipped one step short
        assert_eq!(e(0.0, U16Le), [0x00, 0x80]);
        assert_eq!(e(0.0, U8), [0x80]);
        assert_eq!(e(-0.5, S8), [0xc0]);
        assert_eq!(e(0.5, S24Le), [0x00, 0x00, 0x40, 0x00]);
        assert_eq!(e(-0.5, S24Le), [0x00, 0x00, 0xc0, 0xff]); // sign-extended container
        assert_eq!(e(-0.5, S24Be), [0xff, 0xc0, 0x00, 0x00]);
        assert_eq!(e(0.0, U24Le), [0x00, 0x00, 0x80, 0x00]);
        assert_eq!(e(0.5, S32Be), [0x40, 0x00, 0x00, 0x00]);
        assert_eq!(e(0.0, U32Le), [0x00, 0x00, 0x00, 0x80]);
        assert_eq!(e(1.0, F32Le), 1.0f32.to_le_bytes());
        assert_eq!(e(-0.25, F64Be), (-0.25f64).to_be_bytes());
        assert_eq!(e(0.0, MuLaw), [0xff]);
        assert_eq!(e(0.0, ALaw), [0xd5]);
        assert_eq!(e(f32::NAN, S16Le), [0, 0]);
        // The top byte of a 24-bit container is ignored on reading.
        assert_eq!(decode(&[0x00, 0x00, 0x40, 0x7f], S24Le).unwrap(), [0.5]);
    }

    #[test]
    fn every_format_round_trips_within_its_precision() {
        let samples: Vec<f32> = (0..2000)
            .map(|i| ((i as f32 * 0.013).sin() * 0.9) - 0.05)
            .collect();
        for f in PcmFormat::ALL.into_iter().filter(|&f| is_supported(f)) {
            let bytes = encode_to_vec(&samples, f).unwrap();
            assert_eq!(bytes.len(), samples.len() * sample_size(f).unwrap());
            let back = decode(&bytes, f).unwrap();
            let tol = match f {
                PcmFormat::S8 | PcmFormat::U8 => 0.5 / 128.0,
                PcmFormat::MuLaw | PcmFormat::ALaw => 1.0 / 16.0, // G.711: about 1/32 relative, more near segment edges
                _ if f.is_float() => 0.0,
                _ => 1e-4,
            };
            for (a, b) in samples.iter().zip(&back) {
                let limit = if f.is_companded() {
                    tol * a.abs().max(1.0 / 64.0)
                } else {
                    tol
                };
                assert!((a - b).abs() <= limit + 1e-7, "{f:?}: {a} → {b}");
            }
        }
    }

    #[test]
    fn partial_samples_are_an_error() {
        assert_eq!(
            decode(&[0; 3], PcmFormat::S16Le),
            Err(PcmError::Partial {
                format: PcmFormat::S16Le,
                len: 3,
                size: 2
            })
        );
    }
}

//! sndif PCM sample formats: which ones we carry, and their conversion to
//! and from `f32` in [-1.0, 1.0].
//!
//! [`PcmFormat`] (numbers and xenstore names of `XENSND_PCM_FORMAT_*`) is
//! the protocol crate's; a test here still checks it against the installed
//! header, since a wrong number would silently misdecode audio.
//! The sample layouts follow ALSA's `SNDRV_PCM_FORMAT_*`, because
//! snd-xen-front maps each ALSA format one to one onto the sndif number and
//! hands us ALSA's bytes unchanged.

use thiserror::Error;

pub use pvgate_protocol::sndif::PcmFormat;

/// Why a format cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FormatError {
    #[error("PCM format number {0} is not defined by sndif (XENSND_PCM_FORMAT_* ends at 24)")]
    Unknown(u8),
    #[error("PCM format {} ({:?}) is compressed or framed; pvgate only carries linear and companded PCM", .0.xenstore_name(), .0)]
    Compressed(PcmFormat),
}

/// How one sample is laid out in its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// Two's complement integer with `bits` significant bits in a
    /// container of `bytes` bytes (S24 uses the low 3 bytes of 4).
    Signed {
        bits: u32,
    },
    /// Offset-binary integer (zero is half scale).
    Unsigned {
        bits: u32,
    },
    Float32,
    Float64,
    MuLaw,
    ALaw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

/// The format with sndif number `code` (an OPEN request's `pcm_format`).
pub fn pcm_format_from_sndif(code: u8) -> Result<PcmFormat, FormatError> {
    PcmFormat::from_u8(code).ok_or(FormatError::Unknown(code))
}

/// Whether pvgate can convert this format (linear or companded PCM).
pub fn is_supported(format: PcmFormat) -> bool {
    layout(format).is_some()
}

/// The bit mask of all supported formats, as HW_PARAM_QUERY's `formats`
/// field (`1 << XENSND_PCM_FORMAT_*`).
pub fn supported_mask() -> u64 {
    PcmFormat::ALL
        .into_iter()
        .filter(|&f| is_supported(f))
        .fold(0u64, |mask, f| mask | f.mask_bit())
}

fn layout(format: PcmFormat) -> Option<(Encoding, Endian, usize)> {
    use Encoding::*;
    use Endian::*;
    Some(match format {
        PcmFormat::S8 => (Signed { bits: 8 }, Little, 1),
        PcmFormat::U8 => (Unsigned { bits: 8 }, Little, 1),
        PcmFormat::S16Le => (Signed { bits: 16 }, Little, 2),
        PcmFormat::S16Be => (Signed { bits: 16 }, Big, 2),
        PcmFormat::U16Le => (Unsigned { bits: 16 }, Little, 2),
        PcmFormat::U16Be => (Unsigned { bits: 16 }, Big, 2),
        // ALSA's S24/U24: 24 significant bits in the low three bytes of a
        // 4-byte word (not the packed 3-byte S24_3LE).
        PcmFormat::S24Le => (Signed { bits: 24 }, Little, 4),
        PcmFormat::S24Be => (Signed { bits: 24 }, Big, 4),
        PcmFormat::U24Le => (Unsigned { bits: 24 }, Little, 4),
        PcmFormat::U24Be => (Unsigned { bits: 24 }, Big, 4),
        PcmFormat::S32Le => (Signed { bits: 32 }, Little, 4),
        PcmFormat::S32Be => (Signed { bits: 32 }, Big, 4),
        PcmFormat::U32Le => (Unsigned { bits: 32 }, Little, 4),
        PcmFormat::U32Be => (Unsigned { bits: 32 }, Big, 4),
        PcmFormat::F32Le => (Float32, Little, 4),
        PcmFormat::F32Be => (Float32, Big, 4),
        PcmFormat::F64Le => (Float64, Little, 8),
        PcmFormat::F64Be => (Float64, Big, 8),
        PcmFormat::MuLaw => (MuLaw, Little, 1),
        PcmFormat::ALaw => (ALaw, Little, 1),
        PcmFormat::Iec958SubframeLe
        | PcmFormat::Iec958SubframeBe
        | PcmFormat::ImaAdpcm
        | PcmFormat::Mpeg
        | PcmFormat::Gsm => return None,
    })
}

/// A format pvgate can convert: the proof that [`PcmFormat::is_supported`]
/// holds, plus the converters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleFormat {
    format: PcmFormat,
    encoding: Encoding,
    endian: Endian,
    bytes: usize,
}

impl SampleFormat {
    /// Accepts linear and companded formats; refuses compressed ones.
    pub fn new(format: PcmFormat) -> Result<Self, FormatError> {
        let (encoding, endian, bytes) = layout(format).ok_or(FormatError::Compressed(format))?;
        Ok(Self {
            format,
            encoding,
            endian,
            bytes,
        })
    }

    /// From an OPEN request's `pcm_format` number.
    pub fn from_sndif(code: u8) -> Result<Self, FormatError> {
        Self::new(pcm_format_from_sndif(code)?)
    }

    pub fn format(&self) -> PcmFormat {
        self.format
    }

    /// Bytes per sample (one channel), container included.
    pub fn sample_bytes(&self) -> usize {
        self.bytes
    }

    /// Decodes every whole sample in `bytes`, appending to `out`. Returns
    /// the number of bytes used; a trailing partial sample is left for the
    /// caller to carry over.
    pub fn decode(&self, bytes: &[u8], out: &mut Vec<f32>) -> usize {
        let chunks = bytes.chunks_exact(self.bytes);
        let used = bytes.len() - chunks.remainder().len();
        out.reserve(used / self.bytes);
        out.extend(chunks.map(|s| self.decode_one(s)));
        used
    }

    /// Encodes `samples`, appending to `out`. Values are clamped to
    /// [-1.0, 1.0]; NaN becomes silence.
    pub fn encode(&self, samples: &[f32], out: &mut Vec<u8>) {
        out.reserve(samples.len() * self.bytes);
        let mut word = [0u8; 8];
        for &s in samples {
            let w = &mut word[..self.bytes];
            self.encode_one(sanitize(s), w);
            out.extend_from_slice(w);
        }
    }

    /// The bytes of one silent sample (not all zeros for unsigned and
    /// companded formats).
    pub fn silence(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.bytes);
        self.encode(&[0.0], &mut v);
        v
    }

    fn decode_one(&self, s: &[u8]) -> f32 {
        match self.encoding {
            Encoding::Signed { bits } => {
                let raw = self.read_word(s);
                // Sign-extend the `bits` significant bits; for S24 the top
                // byte of the container is ignored, as ALSA does.
                let shift = 64 - bits;
                let v = ((raw << shift) as i64) >> shift;
                (v as f64 / (1u64 << (bits - 1)) as f64) as f32
            }
            Encoding::Unsigned { bits } => {
                let raw = self.read_word(s) & mask(bits);
                let v = raw as i64 - (1i64 << (bits - 1));
                (v as f64 / (1u64 << (bits - 1)) as f64) as f32
            }
            Encoding::Float32 => sanitize(f32::from_bits(self.read_word(s) as u32)),
            Encoding::Float64 => sanitize(f64::from_bits(self.read_word(s)) as f32),
            Encoding::MuLaw => s.first().map_or(0.0, |&b| mulaw_decode(b) as f32 / 32768.0),
            Encoding::ALaw => s.first().map_or(0.0, |&b| alaw_decode(b) as f32 / 32768.0),
        }
    }

    fn encode_one(&self, x: f32, w: &mut [u8]) {
        match self.encoding {
            Encoding::Signed { bits } => {
                // Two's complement of the whole container: for S24 this
                // sign-extends into the top byte, as ALSA's conversions do.
                self.write_word(quantize(x, bits) as u64, w);
            }
            Encoding::Unsigned { bits } => {
                let v = quantize(x, bits) + (1i64 << (bits - 1));
                self.write_word(v as u64 & mask(bits), w);
            }
            Encoding::Float32 => self.write_word(u64::from(x.to_bits()), w),
            Encoding::Float64 => self.write_word(f64::from(x).to_bits(), w),
            Encoding::MuLaw => w[0] = mulaw_encode(quantize(x, 16) as i16),
            Encoding::ALaw => w[0] = alaw_encode(quantize(x, 16) as i16),
        }
    }

    fn read_word(&self, s: &[u8]) -> u64 {
        let fold = |acc: u64, &b: &u8| (acc << 8) | u64::from(b);
        match self.endian {
            Endian::Big => s.iter().fold(0, fold),
            Endian::Little => s.iter().rev().fold(0, fold),
        }
    }

    fn write_word(&self, v: u64, w: &mut [u8]) {
        let n = w.len();
        for (i, b) in w.iter_mut().enumerate() {
            let byte_index = match self.endian {
                Endian::Little => i,
                Endian::Big => n - 1 - i,
            };
            *b = (v >> (8 * byte_index)) as u8;
        }
    }
}

fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

fn sanitize(x: f32) -> f32 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(-1.0, 1.0)
    }
}

/// `x` in [-1, 1] to a signed integer of `bits` bits, rounded and clamped
/// (so +1.0 becomes the largest positive code rather than wrapping).
fn quantize(x: f32, bits: u32) -> i64 {
    let scale = (1u64 << (bits - 1)) as f64;
    let v = (f64::from(x) * scale).round();
    v.clamp(-scale, scale - 1.0) as i64
}

// G.711 companding (ITU-T G.711), written from the standard's segment
// description: 8 segments, 4 mantissa bits, bits inverted on the wire.

const MULAW_BIAS: i32 = 0x84;
const MULAW_CLIP: i32 = 32635;

fn mulaw_encode(pcm: i16) -> u8 {
    let mut v = i32::from(pcm);
    let sign = if v < 0 { 0x80 } else { 0 };
    if v < 0 {
        v = -v;
    }
    v = v.min(MULAW_CLIP) + MULAW_BIAS;
    // Segment = position of the highest set bit above bit 7.
    let exponent = (31 - (v as u32).leading_zeros()).saturating_sub(7).min(7);
    let mantissa = (v >> (exponent + 3)) & 0x0F;
    !(sign | ((exponent as i32) << 4) | mantissa) as u8
}

fn mulaw_decode(code: u8) -> i16 {
    let u = !code;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + MULAW_BIAS) << exponent) - MULAW_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

fn alaw_encode(pcm: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let v = i32::from(pcm) >> 3;
    let (sign, mag) = if v >= 0 { (0x80, v) } else { (0x00, -v - 1) };
    let mag = mag.min(0x0FFF);
    let code = if mag < 32 {
        mag >> 1
    } else {
        let exponent = 31 - (mag as u32).leading_zeros() - 4; // 1..=7
        let mantissa = (mag >> exponent) & 0x0F;
        ((exponent as i32) << 4) | mantissa
    };
    ((sign | code) ^ 0x55) as u8
}

fn alaw_decode(code: u8) -> i16 {
    let a = i32::from(code ^ 0x55);
    let exponent = (a >> 4) & 0x07;
    let mantissa = a & 0x0F;
    let mag = if exponent == 0 {
        (mantissa << 1) + 1
    } else {
        ((mantissa << 1) + 33) << (exponent - 1)
    };
    let v = mag << 3;
    if a & 0x80 != 0 {
        v as i16
    } else {
        -v as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers and names must match the installed sndif header, the
    /// specification.
    #[test]
    fn numbers_and_names_match_sndif_header() {
        let header = match std::fs::read_to_string("/usr/include/xen/io/sndif.h") {
            Ok(h) => h,
            Err(e) => panic!("sndif.h is needed (apt-get install libxen-dev): {e}"),
        };
        let mut numbers = std::collections::HashMap::new();
        let mut names = std::collections::HashMap::new();
        for line in header.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("#define") {
                continue;
            }
            let (Some(sym), Some(val)) = (words.next(), words.next()) else {
                continue;
            };
            let Some(rest) = sym.strip_prefix("XENSND_PCM_FORMAT_") else {
                continue;
            };
            if let Some(base) = rest.strip_suffix("_STR") {
                names.insert(base.to_string(), val.trim_matches('"').to_string());
            } else if let Ok(n) = val.parse::<u8>() {
                numbers.insert(rest.to_string(), n);
            }
        }
        assert_eq!(numbers.len(), 25, "header defines 25 formats");
        for (sym, n) in &numbers {
            let f = pcm_format_from_sndif(*n).unwrap();
            assert_eq!(f as u8, *n);
            assert_eq!(
                Some(f.xenstore_name()),
                names.get(sym).map(String::as_str),
                "{sym}"
            );
        }
        assert_eq!(pcm_format_from_sndif(25), Err(FormatError::Unknown(25)));
        assert_eq!(pcm_format_from_sndif(255), Err(FormatError::Unknown(255)));
    }

    #[test]
    fn compressed_formats_are_refused_with_their_name() {
        for f in [
            PcmFormat::Mpeg,
            PcmFormat::Gsm,
            PcmFormat::ImaAdpcm,
            PcmFormat::Iec958SubframeLe,
            PcmFormat::Iec958SubframeBe,
        ] {
            let err = SampleFormat::new(f).unwrap_err();
            assert_eq!(err, FormatError::Compressed(f));
            assert!(err.to_string().contains(f.xenstore_name()), "{err}");
            assert_eq!(supported_mask() & f.mask_bit(), 0);
        }
        assert_eq!(
            PcmFormat::ALL.iter().filter(|&&f| is_supported(f)).count(),
            20
        );
        assert_eq!(supported_mask(), 0x3F_FFFF & !(0b11 << 18));
    }

    #[test]
    fn known_byte_patterns_decode_to_known_values() {
        let cases: &[(PcmFormat, &[u8], f32)] = &[
            (PcmFormat::S8, &[0x80], -1.0),
            (PcmFormat::S8, &[0x40], 0.5),
            (PcmFormat::U8, &[0x80], 0.0),
            (PcmFormat::U8, &[0x00], -1.0),
            (PcmFormat::S16Le, &[0x00, 0x40], 0.5),
            (PcmFormat::S16Be, &[0x40, 0x00], 0.5),
            (PcmFormat::S16Le, &[0x00, 0x80], -1.0),
            (PcmFormat::U16Le, &[0x00, 0x80], 0.0),
            (PcmFormat::U16Be, &[0xC0, 0x00], 0.5),
            // S24 in a 4-byte container: top byte is ignored.
            (PcmFormat::S24Le, &[0x00, 0x00, 0x40, 0x00], 0.5),
            (PcmFormat::S24Le, &[0x00, 0x00, 0x40, 0xAB], 0.5),
            (PcmFormat::S24Le, &[0x00, 0x00, 0xC0, 0xFF], -0.5),
            (PcmFormat::S24Be, &[0x00, 0xC0, 0x00, 0x00], -0.5),
            (PcmFormat::U24Le, &[0x00, 0x00, 0xC0, 0x00], 0.5),
            (PcmFormat::U24Be, &[0x00, 0x80, 0x00, 0x00], 0.0),
            (PcmFormat::S32Le, &[0x00, 0x00, 0x00, 0xC0], -0.5),
            (PcmFormat::S32Be, &[0x40, 0x00, 0x00, 0x00], 0.5),
            (PcmFormat::U32Le, &[0x00, 0x00, 0x00, 0x80], 0.0),
            (PcmFormat::U32Be, &[0x00, 0x00, 0x00, 0x00], -1.0),
            (PcmFormat::F32Le, &[0x00, 0x00, 0x00, 0x3F], 0.5),
            (PcmFormat::F32Be, &[0xBF, 0x00, 0x00, 0x00], -0.5),
            (PcmFormat::F64Le, &[0, 0, 0, 0, 0, 0, 0xE0, 0x3F], 0.5),
            (PcmFormat::F64Be, &[0xBF, 0xE0, 0, 0, 0, 0, 0, 0], -0.5),
            // G.711 silence codes and full-scale codes.
            (PcmFormat::MuLaw, &[0xFF], 0.0),
            (PcmFormat::MuLaw, &[0x80], 32124.0 / 32768.0),
            (PcmFormat::MuLaw, &[0x00], -32124.0 / 32768.0),
            (PcmFormat::ALaw, &[0xD5], 8.0 / 32768.0),
            (PcmFormat::ALaw, &[0xAA], 32256.0 / 32768.0),
            (PcmFormat::ALaw, &[0x2A], -32256.0 / 32768.0),
        ];
        for &(f, bytes, want) in cases {
            let sf = SampleFormat::new(f).unwrap();
            let mut out = Vec::new();
            assert_eq!(sf.decode(bytes, &mut out), bytes.len());
            assert_eq!(out, vec![want], "{f:?} {bytes:02x?}");
        }
    }

    #[test]
    fn round_trip_is_within_one_quantum() {
        let ramp: Vec<f32> = (0..=2000).map(|i| i as f32 / 1000.0 - 1.0).collect();
        for f in PcmFormat::ALL.into_iter().filter(|&f| is_supported(f)) {
            let sf = SampleFormat::new(f).unwrap();
            let mut bytes = Vec::new();
            sf.encode(&ramp, &mut bytes);
            assert_eq!(bytes.len(), ramp.len() * sf.sample_bytes());
            let mut back = Vec::new();
            assert_eq!(sf.decode(&bytes, &mut back), bytes.len());
            // Companded formats lose up to half a segment step: 1/32 near
            // full scale for mu-law/A-law (step 1024/32768).
            let tol = match f {
                PcmFormat::S8 | PcmFormat::U8 => 1.0 / 128.0,
                PcmFormat::MuLaw | PcmFormat::ALaw => 1024.0 / 32768.0,
                _ => 1.0 / 32768.0,
            };
            for (a, b) in ramp.iter().zip(&back) {
                assert!((a - b).abs() <= tol, "{f:?}: {a} -> {b}");
            }
            assert_eq!(sf.silence().len(), sf.sample_bytes());
            let mut s = Vec::new();
            sf.decode(&sf.silence(), &mut s);
            assert!(
                s[0].abs() <= 8.0 / 32768.0,
                "{f:?} silence decodes to {}",
                s[0]
            );
        }
    }

    #[test]
    fn g711_encode_inverts_decode_for_every_code() {
        for code in 0..=255u8 {
            // 0x7F (-0) and 0xFF (+0) are both zero in mu-law; encode picks +0.
            let want = if code == 0x7F { 0xFF } else { code };
            assert_eq!(mulaw_encode(mulaw_decode(code)), want, "mu-law {code:#x}");
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#x}");
        }
    }

    #[test]
    fn out_of_range_and_nan_floats_are_clamped() {
        let sf = SampleFormat::new(PcmFormat::F32Le).unwrap();
        let mut bytes = Vec::new();
        for x in [f32::NAN, 7.0f32, -7.0, f32::INFINITY] {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        let mut out = Vec::new();
        sf.decode(&bytes, &mut out);
        assert_eq!(out, vec![0.0, 1.0, -1.0, 1.0]);
        let s16 = SampleFormat::new(PcmFormat::S16Le).unwrap();
        let mut enc = Vec::new();
        s16.encode(&[1.0, -1.0, 2.0, f32::NAN], &mut enc);
        assert_eq!(enc, vec![0xFF, 0x7F, 0x00, 0x80, 0xFF, 0x7F, 0, 0]);
    }

    #[test]
    fn partial_trailing_sample_is_left_over() {
        let sf = SampleFormat::new(PcmFormat::S24Be).unwrap();
        let mut out = Vec::new();
        assert_eq!(sf.decode(&[0, 0x40, 0, 0, 0, 0x40], &mut out), 4);
        assert_eq!(out, vec![0.5]);
    }
}

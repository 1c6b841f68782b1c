//! sndif requests, responses and events as typed values, and the PCM
//! formats with the properties later stages need (to refuse compressed
//! formats, to convert linear ones).
//!
//! [`SndRequest::decode`] validates what it can without stream state:
//! known opcode, trigger type and PCM format, non-zero rate, channels and
//! sizes, `offset + length` without overflow, `min <= max` in queries, a
//! period no larger than the buffer. Reserved bytes are ignored.

use crate::abi::sndif::*;
use crate::wire::*;
use crate::GrantRef;
use core::mem::offset_of;

const ID: usize = offset_of!(xensnd_req, id);
const OPERATION: usize = offset_of!(xensnd_req, operation);
const OP: usize = offset_of!(xensnd_req, op);
const RSP_ID: usize = offset_of!(xensnd_resp, id);
const RSP_OPERATION: usize = offset_of!(xensnd_resp, operation);
const RSP_STATUS: usize = offset_of!(xensnd_resp, status);
const RSP_BODY: usize = offset_of!(xensnd_resp, resp);
const EVT_ID: usize = offset_of!(xensnd_evt, id);
const EVT_TYPE: usize = offset_of!(xensnd_evt, r#type);
const EVT_OP: usize = offset_of!(xensnd_evt, op);

/// A sndif slot: requests, responses and events are all 64 bytes.
pub type Slot = [u8; 64];

/// Byte order of a multi-byte sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endian {
    Little,
    Big,
}

/// How samples are coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PcmEncoding {
    /// Integer PCM.
    Linear,
    /// IEEE-754 float PCM, range -1.0..1.0.
    Float,
    /// IEC958 (S/PDIF) subframes: 24-bit audio plus status bits in 32.
    Iec958Subframe,
    /// µ-law / A-law: 8 bits expanding to 14/13-bit linear.
    Companded,
    /// IMA ADPCM, MPEG, GSM: compressed bit streams.
    Compressed,
}

/// `XENSND_PCM_FORMAT_*`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum PcmFormat {
    S8 = XENSND_PCM_FORMAT_S8,
    U8 = XENSND_PCM_FORMAT_U8,
    S16Le = XENSND_PCM_FORMAT_S16_LE,
    S16Be = XENSND_PCM_FORMAT_S16_BE,
    U16Le = XENSND_PCM_FORMAT_U16_LE,
    U16Be = XENSND_PCM_FORMAT_U16_BE,
    S24Le = XENSND_PCM_FORMAT_S24_LE,
    S24Be = XENSND_PCM_FORMAT_S24_BE,
    U24Le = XENSND_PCM_FORMAT_U24_LE,
    U24Be = XENSND_PCM_FORMAT_U24_BE,
    S32Le = XENSND_PCM_FORMAT_S32_LE,
    S32Be = XENSND_PCM_FORMAT_S32_BE,
    U32Le = XENSND_PCM_FORMAT_U32_LE,
    U32Be = XENSND_PCM_FORMAT_U32_BE,
    F32Le = XENSND_PCM_FORMAT_F32_LE,
    F32Be = XENSND_PCM_FORMAT_F32_BE,
    F64Le = XENSND_PCM_FORMAT_F64_LE,
    F64Be = XENSND_PCM_FORMAT_F64_BE,
    Iec958SubframeLe = XENSND_PCM_FORMAT_IEC958_SUBFRAME_LE,
    Iec958SubframeBe = XENSND_PCM_FORMAT_IEC958_SUBFRAME_BE,
    MuLaw = XENSND_PCM_FORMAT_MU_LAW,
    ALaw = XENSND_PCM_FORMAT_A_LAW,
    ImaAdpcm = XENSND_PCM_FORMAT_IMA_ADPCM,
    Mpeg = XENSND_PCM_FORMAT_MPEG,
    Gsm = XENSND_PCM_FORMAT_GSM,
}

impl PcmFormat {
    pub const ALL: [PcmFormat; 25] = [
        PcmFormat::S8,
        PcmFormat::U8,
        PcmFormat::S16Le,
        PcmFormat::S16Be,
        PcmFormat::U16Le,
        PcmFormat::U16Be,
        PcmFormat::S24Le,
        PcmFormat::S24Be,
        PcmFormat::U24Le,
        PcmFormat::U24Be,
        PcmFormat::S32Le,
        PcmFormat::S32Be,
        PcmFormat::U32Le,
        PcmFormat::U32Be,
        PcmFormat::F32Le,
        PcmFormat::F32Be,
        PcmFormat::F64Le,
        PcmFormat::F64Be,
        PcmFormat::Iec958SubframeLe,
        PcmFormat::Iec958SubframeBe,
        PcmFormat::MuLaw,
        PcmFormat::ALaw,
        PcmFormat::ImaAdpcm,
        PcmFormat::Mpeg,
        PcmFormat::Gsm,
    ];

    pub fn from_u8(v: u8) -> Option<PcmFormat> {
        PcmFormat::ALL.into_iter().find(|f| *f as u8 == v)
    }

    /// The bit this format has in a HW_PARAM_QUERY `formats` mask.
    pub const fn mask_bit(self) -> u64 {
        1u64 << (self as u8)
    }

    /// The xenstore spelling (`XENSND_PCM_FORMAT_*_STR`).
    pub const fn xenstore_name(self) -> &'static str {
        match self {
            PcmFormat::S8 => XENSND_PCM_FORMAT_S8_STR,
            PcmFormat::U8 => XENSND_PCM_FORMAT_U8_STR,
            PcmFormat::S16Le => XENSND_PCM_FORMAT_S16_LE_STR,
            PcmFormat::S16Be => XENSND_PCM_FORMAT_S16_BE_STR,
            PcmFormat::U16Le => XENSND_PCM_FORMAT_U16_LE_STR,
            PcmFormat::U16Be => XENSND_PCM_FORMAT_U16_BE_STR,
            PcmFormat::S24Le => XENSND_PCM_FORMAT_S24_LE_STR,
            PcmFormat::S24Be => XENSND_PCM_FORMAT_S24_BE_STR,
            PcmFormat::U24Le => XENSND_PCM_FORMAT_U24_LE_STR,
            PcmFormat::U24Be => XENSND_PCM_FORMAT_U24_BE_STR,
            PcmFormat::S32Le => XENSND_PCM_FORMAT_S32_LE_STR,
            PcmFormat::S32Be => XENSND_PCM_FORMAT_S32_BE_STR,
            PcmFormat::U32Le => XENSND_PCM_FORMAT_U32_LE_STR,
            PcmFormat::U32Be => XENSND_PCM_FORMAT_U32_BE_STR,
            PcmFormat::F32Le => XENSND_PCM_FORMAT_F32_LE_STR,
            PcmFormat::F32Be => XENSND_PCM_FORMAT_F32_BE_STR,
            PcmFormat::F64Le => XENSND_PCM_FORMAT_F64_LE_STR,
            PcmFormat::F64Be => XENSND_PCM_FORMAT_F64_BE_STR,
            PcmFormat::Iec958SubframeLe => XENSND_PCM_FORMAT_IEC958_SUBFRAME_LE_STR,
            PcmFormat::Iec958SubframeBe => XENSND_PCM_FORMAT_IEC958_SUBFRAME_BE_STR,
            PcmFormat::MuLaw => XENSND_PCM_FORMAT_MU_LAW_STR,
            PcmFormat::ALaw => XENSND_PCM_FORMAT_A_LAW_STR,
            PcmFormat::ImaAdpcm => XENSND_PCM_FORMAT_IMA_ADPCM_STR,
            PcmFormat::Mpeg => XENSND_PCM_FORMAT_MPEG_STR,
            PcmFormat::Gsm => XENSND_PCM_FORMAT_GSM_STR,
        }
    }

    /// Matches a xenstore name as snd-xen-front does: case-insensitive,
    /// whole string, at most `XENSND_SAMPLE_FORMAT_MAX_LEN` characters
    /// compared.
    pub fn from_xenstore_name(s: &str) -> Option<PcmFormat> {
        PcmFormat::ALL.into_iter().find(|f| {
            crate::keys::strncasecmp_eq(s, f.xenstore_name(), XENSND_SAMPLE_FORMAT_MAX_LEN)
        })
    }

    pub const fn encoding(self) -> PcmEncoding {
        use PcmFormat::*;
        match self {
            S8 | U8 | S16Le | S16Be | U16Le | U16Be | S24Le | S24Be | U24Le | U24Be | S32Le
            | S32Be | U32Le | U32Be => PcmEncoding::Linear,
            F32Le | F32Be | F64Le | F64Be => PcmEncoding::Float,
            Iec958SubframeLe | Iec958SubframeBe => PcmEncoding::Iec958Subframe,
            MuLaw | ALaw => PcmEncoding::Companded,
            ImaAdpcm | Mpeg | Gsm => PcmEncoding::Compressed,
        }
    }

    pub const fn is_linear(self) -> bool {
        matches!(self.encoding(), PcmEncoding::Linear)
    }

    pub const fn is_float(self) -> bool {
        matches!(self.encoding(), PcmEncoding::Float)
    }

    pub const fn is_companded(self) -> bool {
        matches!(self.encoding(), PcmEncoding::Companded)
    }

    pub const fn is_compressed(self) -> bool {
        matches!(self.encoding(), PcmEncoding::Compressed)
    }

    /// Bits of audio per sample (S24 carries 24 bits; µ-law 8 coded bits;
    /// IMA ADPCM 4). `None` for MPEG and GSM, which have no fixed width.
    pub const fn sample_bits(self) -> Option<u32> {
        use PcmFormat::*;
        match self {
            S8 | U8 | MuLaw | ALaw => Some(8),
            S16Le | S16Be | U16Le | U16Be => Some(16),
            S24Le | S24Be | U24Le | U24Be => Some(24),
            S32Le | S32Be | U32Le | U32Be | F32Le | F32Be | Iec958SubframeLe | Iec958SubframeBe => {
                Some(32)
            }
            F64Le | F64Be => Some(64),
            ImaAdpcm => Some(4),
            Mpeg | Gsm => None,
        }
    }

    /// Bits a sample occupies in the buffer. The 24-bit formats map to
    /// ALSA's `S24_LE` etc. in snd-xen-front, which are 24 bits in a 32-bit
    /// container.
    pub const fn physical_bits(self) -> Option<u32> {
        use PcmFormat::*;
        match self {
            S24Le | S24Be | U24Le | U24Be => Some(32),
            other => other.sample_bits(),
        }
    }

    /// Bytes per sample for formats with whole-byte samples.
    pub const fn bytes_per_sample(self) -> Option<u32> {
        match self.physical_bits() {
            Some(bits) if bits % 8 == 0 => Some(bits / 8),
            _ => None,
        }
    }

    /// `Some(true)` for signed integer and float samples, `Some(false)` for
    /// unsigned, `None` where signedness does not apply.
    pub const fn is_signed(self) -> Option<bool> {
        use PcmFormat::*;
        match self {
            S8 | S16Le | S16Be | S24Le | S24Be | S32Le | S32Be | F32Le | F32Be | F64Le | F64Be => {
                Some(true)
            }
            U8 | U16Le | U16Be | U24Le | U24Be | U32Le | U32Be => Some(false),
            _ => None,
        }
    }

    /// Byte order, for multi-byte samples.
    pub const fn endian(self) -> Option<Endian> {
        use PcmFormat::*;
        match self {
            S16Le | U16Le | S24Le | U24Le | S32Le | U32Le | F32Le | F64Le | Iec958SubframeLe => {
                Some(Endian::Little)
            }
            S16Be | U16Be | S24Be | U24Be | S32Be | U32Be | F32Be | F64Be | Iec958SubframeBe => {
                Some(Endian::Big)
            }
            _ => None,
        }
    }
}

/// The formats set in a HW_PARAM_QUERY mask (unknown bits are skipped).
pub fn formats_in_mask(mask: u64) -> Vec<PcmFormat> {
    PcmFormat::ALL
        .into_iter()
        .filter(|f| mask & f.mask_bit() != 0)
        .collect()
}

/// The mask for a set of formats.
pub fn mask_of(formats: impl IntoIterator<Item = PcmFormat>) -> u64 {
    formats.into_iter().fold(0, |m, f| m | f.mask_bit())
}

/// sndif operation codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SndOp {
    Open = XENSND_OP_OPEN,
    Close = XENSND_OP_CLOSE,
    Read = XENSND_OP_READ,
    Write = XENSND_OP_WRITE,
    SetVolume = XENSND_OP_SET_VOLUME,
    GetVolume = XENSND_OP_GET_VOLUME,
    Mute = XENSND_OP_MUTE,
    Unmute = XENSND_OP_UNMUTE,
    Trigger = XENSND_OP_TRIGGER,
    HwParamQuery = XENSND_OP_HW_PARAM_QUERY,
}

impl SndOp {
    pub const ALL: [SndOp; 10] = [
        SndOp::Open,
        SndOp::Close,
        SndOp::Read,
        SndOp::Write,
        SndOp::SetVolume,
        SndOp::GetVolume,
        SndOp::Mute,
        SndOp::Unmute,
        SndOp::Trigger,
        SndOp::HwParamQuery,
    ];

    pub fn from_u8(v: u8) -> Option<SndOp> {
        SndOp::ALL.into_iter().find(|op| *op as u8 == v)
    }

    pub const fn name(self) -> &'static str {
        match self {
            SndOp::Open => "OPEN",
            SndOp::Close => "CLOSE",
            SndOp::Read => "READ",
            SndOp::Write => "WRITE",
            SndOp::SetVolume => "SET_VOLUME",
            SndOp::GetVolume => "GET_VOLUME",
            SndOp::Mute => "MUTE",
            SndOp::Unmute => "UNMUTE",
            SndOp::Trigger => "TRIGGER",
            SndOp::HwParamQuery => "HW_PARAM_QUERY",
        }
    }
}

/// `XENSND_OP_TRIGGER_*`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TriggerType {
    Start = XENSND_OP_TRIGGER_START,
    Pause = XENSND_OP_TRIGGER_PAUSE,
    Stop = XENSND_OP_TRIGGER_STOP,
    Resume = XENSND_OP_TRIGGER_RESUME,
}

impl TriggerType {
    pub const ALL: [TriggerType; 4] = [
        TriggerType::Start,
        TriggerType::Pause,
        TriggerType::Stop,
        TriggerType::Resume,
    ];

    pub fn from_u8(v: u8) -> Option<TriggerType> {
        TriggerType::ALL.into_iter().find(|t| *t as u8 == v)
    }
}

/// Why a sndif slot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SndDecodeError {
    #[error("unknown sndif operation {0}")]
    UnknownOperation(u8),
    #[error("unknown sndif event type {0}")]
    UnknownEventType(u8),
    #[error("TRIGGER: unknown trigger type {0}")]
    UnknownTrigger(u8),
    #[error("OPEN: unknown PCM format {0}")]
    UnknownFormat(u8),
    #[error("{op}: {field} is 0")]
    Zero {
        op: &'static str,
        field: &'static str,
    },
    #[error("{op}: grant reference {field} is 0 (never a valid page for a PV driver)")]
    ZeroGrantRef {
        op: &'static str,
        field: &'static str,
    },
    #[error("{op}: offset {offset} + length {length} overflows")]
    RangeOverflow {
        op: &'static str,
        offset: u32,
        length: u32,
    },
    #[error("OPEN: period_sz {period_sz} is larger than buffer_sz {buffer_sz}")]
    PeriodLargerThanBuffer { period_sz: u32, buffer_sz: u32 },
    #[error("HW_PARAM_QUERY: {what} interval has min {min} > max {max}")]
    InvertedInterval {
        what: &'static str,
        min: u32,
        max: u32,
    },
}

/// A `[min, max]` range of a HW parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interval {
    pub min: u32,
    pub max: u32,
}

/// `struct xensnd_query_hw_param`: a formats mask and four intervals
/// (rates in Hz, channels, buffer and period in frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HwParams {
    pub formats: u64,
    pub rates: Interval,
    pub channels: Interval,
    pub buffer: Interval,
    pub period: Interval,
}

const HW_FORMATS: usize = offset_of!(xensnd_query_hw_param, formats);
const HW_RATES: usize = offset_of!(xensnd_query_hw_param, rates);
const HW_CHANNELS: usize = offset_of!(xensnd_query_hw_param, channels);
const HW_BUFFER: usize = offset_of!(xensnd_query_hw_param, buffer);
const HW_PERIOD: usize = offset_of!(xensnd_query_hw_param, period);
const IV_MIN: usize = offset_of!(xensnd_interval, min);
const IV_MAX: usize = offset_of!(xensnd_interval, max);

impl HwParams {
    fn read(b: &Slot, base: usize) -> HwParams {
        let iv = |o: usize| Interval {
            min: u32_at(b, base + o + IV_MIN),
            max: u32_at(b, base + o + IV_MAX),
        };
        HwParams {
            formats: u64_at(b, base + HW_FORMATS),
            rates: iv(HW_RATES),
            channels: iv(HW_CHANNELS),
            buffer: iv(HW_BUFFER),
            period: iv(HW_PERIOD),
        }
    }

    fn write(&self, b: &mut Slot, base: usize) {
        put_u64(b, base + HW_FORMATS, self.formats);
        for (o, iv) in [
            (HW_RATES, self.rates),
            (HW_CHANNELS, self.channels),
            (HW_BUFFER, self.buffer),
            (HW_PERIOD, self.period),
        ] {
            put_u32(b, base + o + IV_MIN, iv.min);
            put_u32(b, base + o + IV_MAX, iv.max);
        }
    }

    fn validate(&self) -> Result<(), SndDecodeError> {
        for (what, iv) in [
            ("rates", self.rates),
            ("channels", self.channels),
            ("buffer", self.buffer),
            ("period", self.period),
        ] {
            if iv.min > iv.max {
                return Err(SndDecodeError::InvertedInterval {
                    what,
                    min: iv.min,
                    max: iv.max,
                });
            }
        }
        Ok(())
    }
}

/// `XENSND_OP_OPEN`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    pub pcm_rate: u32,
    pub pcm_format: PcmFormat,
    pub pcm_channels: u8,
    pub buffer_sz: u32,
    pub gref_directory: GrantRef,
    /// Octets between CUR_POS events; 0 means no events.
    pub period_sz: u32,
}

impl Open {
    /// Grant references the page directory must list.
    pub fn grant_count(&self) -> u32 {
        crate::pagedir::grant_count(self.buffer_sz)
    }
}

/// `offset`/`length` of READ, WRITE and the volume/mute requests, in octets
/// of the buffer given at OPEN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RwRange {
    pub offset: u32,
    pub length: u32,
}

impl RwRange {
    /// The byte range, if it lies within a `buffer_sz`-byte buffer.
    pub fn within(&self, buffer_sz: u32) -> Option<std::ops::Range<usize>> {
        let end = self.offset.checked_add(self.length)?;
        if end > buffer_sz {
            return None;
        }
        Some(self.offset as usize..end as usize)
    }
}

/// The operation-specific part of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SndRequestOp {
    Open(Open),
    Close,
    Read(RwRange),
    Write(RwRange),
    SetVolume(RwRange),
    GetVolume(RwRange),
    Mute(RwRange),
    Unmute(RwRange),
    Trigger(TriggerType),
    HwParamQuery(HwParams),
}

impl SndRequestOp {
    pub fn op(&self) -> SndOp {
        match self {
            SndRequestOp::Open(_) => SndOp::Open,
            SndRequestOp::Close => SndOp::Close,
            SndRequestOp::Read(_) => SndOp::Read,
            SndRequestOp::Write(_) => SndOp::Write,
            SndRequestOp::SetVolume(_) => SndOp::SetVolume,
            SndRequestOp::GetVolume(_) => SndOp::GetVolume,
            SndRequestOp::Mute(_) => SndOp::Mute,
            SndRequestOp::Unmute(_) => SndOp::Unmute,
            SndRequestOp::Trigger(_) => SndOp::Trigger,
            SndRequestOp::HwParamQuery(_) => SndOp::HwParamQuery,
        }
    }
}

/// A sndif request (`struct xensnd_req`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SndRequest {
    pub id: u16,
    pub op: SndRequestOp,
}

fn nonzero(v: u32, op: &'static str, field: &'static str) -> Result<u32, SndDecodeError> {
    if v == 0 {
        Err(SndDecodeError::Zero { op, field })
    } else {
        Ok(v)
    }
}

impl SndRequest {
    /// Decodes and validates a request copied out of the ring.
    pub fn decode(b: &Slot) -> Result<SndRequest, SndDecodeError> {
        let id = u16_at(b, ID);
        let raw = u8_at(b, OPERATION);
        let op = SndOp::from_u8(raw).ok_or(SndDecodeError::UnknownOperation(raw))?;
        let name = op.name();
        let rw = || -> Result<RwRange, SndDecodeError> {
            let offset = u32_at(b, OP + offset_of!(xensnd_rw_req, offset));
            let length = nonzero(
                u32_at(b, OP + offset_of!(xensnd_rw_req, length)),
                name,
                "length",
            )?;
            if offset.checked_add(length).is_none() {
                return Err(SndDecodeError::RangeOverflow {
                    op: name,
                    offset,
                    length,
                });
            }
            Ok(RwRange { offset, length })
        };
        let op = match op {
            SndOp::Open => {
                let pcm_rate = nonzero(
                    u32_at(b, OP + offset_of!(xensnd_open_req, pcm_rate)),
                    name,
                    "pcm_rate",
                )?;
                let raw_fmt = u8_at(b, OP + offset_of!(xensnd_open_req, pcm_format));
                let pcm_format =
                    PcmFormat::from_u8(raw_fmt).ok_or(SndDecodeError::UnknownFormat(raw_fmt))?;
                let pcm_channels = u8_at(b, OP + offset_of!(xensnd_open_req, pcm_channels));
                if pcm_channels == 0 {
                    return Err(SndDecodeError::Zero {
                        op: name,
                        field: "pcm_channels",
                    });
                }
                let buffer_sz = nonzero(
                    u32_at(b, OP + offset_of!(xensnd_open_req, buffer_sz)),
                    name,
                    "buffer_sz",
                )?;
                let gref_directory = u32_at(b, OP + offset_of!(xensnd_open_req, gref_directory));
                if gref_directory == 0 {
                    return Err(SndDecodeError::ZeroGrantRef {
                        op: name,
                        field: "gref_directory",
                    });
                }
                let period_sz = u32_at(b, OP + offset_of!(xensnd_open_req, period_sz));
                if period_sz > buffer_sz {
                    return Err(SndDecodeError::PeriodLargerThanBuffer {
                        period_sz,
                        buffer_sz,
                    });
                }
                SndRequestOp::Open(Open {
                    pcm_rate,
                    pcm_format,
                    pcm_channels,
                    buffer_sz,
                    gref_directory,
                    period_sz,
                })
            }
            SndOp::Close => SndRequestOp::Close,
            SndOp::Read => SndRequestOp::Read(rw()?),
            SndOp::Write => SndRequestOp::Write(rw()?),
            SndOp::SetVolume => SndRequestOp::SetVolume(rw()?),
            SndOp::GetVolume => SndRequestOp::GetVolume(rw()?),
            SndOp::Mute => SndRequestOp::Mute(rw()?),
            SndOp::Unmute => SndRequestOp::Unmute(rw()?),
            SndOp::Trigger => {
                let t = u8_at(b, OP + offset_of!(xensnd_trigger_req, r#type));
                SndRequestOp::Trigger(
                    TriggerType::from_u8(t).ok_or(SndDecodeError::UnknownTrigger(t))?,
                )
            }
            SndOp::HwParamQuery => {
                let p = HwParams::read(b, OP);
                p.validate()?;
                SndRequestOp::HwParamQuery(p)
            }
        };
        Ok(SndRequest { id, op })
    }

    pub fn encode(&self) -> Slot {
        let mut b = [0u8; 64];
        put_u16(&mut b, ID, self.id);
        put_u8(&mut b, OPERATION, self.op.op() as u8);
        match self.op {
            SndRequestOp::Open(o) => {
                put_u32(
                    &mut b,
                    OP + offset_of!(xensnd_open_req, pcm_rate),
                    o.pcm_rate,
                );
                put_u8(
                    &mut b,
                    OP + offset_of!(xensnd_open_req, pcm_format),
                    o.pcm_format as u8,
                );
                put_u8(
                    &mut b,
                    OP + offset_of!(xensnd_open_req, pcm_channels),
                    o.pcm_channels,
                );
                put_u32(
                    &mut b,
                    OP + offset_of!(xensnd_open_req, buffer_sz),
                    o.buffer_sz,
                );
                put_u32(
                    &mut b,
                    OP + offset_of!(xensnd_open_req, gref_directory),
                    o.gref_directory,
                );
                put_u32(
                    &mut b,
                    OP + offset_of!(xensnd_open_req, period_sz),
                    o.period_sz,
                );
            }
            SndRequestOp::Close => {}
            SndRequestOp::Read(r)
            | SndRequestOp::Write(r)
            | SndRequestOp::SetVolume(r)
            | SndRequestOp::GetVolume(r)
            | SndRequestOp::Mute(r)
            | SndRequestOp::Unmute(r) => {
                put_u32(&mut b, OP + offset_of!(xensnd_rw_req, offset), r.offset);
                put_u32(&mut b, OP + offset_of!(xensnd_rw_req, length), r.length);
            }
            SndRequestOp::Trigger(t) => {
                put_u8(&mut b, OP + offset_of!(xensnd_trigger_req, r#type), t as u8)
            }
            SndRequestOp::HwParamQuery(p) => p.write(&mut b, OP),
        }
        b
    }
}

/// The operation-specific part of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SndResponseBody {
    /// Every operation but HW_PARAM_QUERY answers with status only.
    Status(SndOp),
    HwParamQuery(HwParams),
}

/// A sndif response (`struct xensnd_resp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SndResponse {
    pub id: u16,
    /// 0 on success, `-XEN_Exx` on failure.
    pub status: i32,
    pub body: SndResponseBody,
}

impl SndResponse {
    /// A status-only answer to `req` (for HW_PARAM_QUERY, empty params).
    pub fn for_request(req: &SndRequest, status: i32) -> SndResponse {
        let body = match req.op.op() {
            SndOp::HwParamQuery => SndResponseBody::HwParamQuery(HwParams::default()),
            op => SndResponseBody::Status(op),
        };
        SndResponse {
            id: req.id,
            status,
            body,
        }
    }

    pub fn op(&self) -> SndOp {
        match self.body {
            SndResponseBody::Status(op) => op,
            SndResponseBody::HwParamQuery(_) => SndOp::HwParamQuery,
        }
    }

    pub fn encode(&self) -> Slot {
        let mut b = [0u8; 64];
        put_u16(&mut b, RSP_ID, self.id);
        put_u8(&mut b, RSP_OPERATION, self.op() as u8);
        put_i32(&mut b, RSP_STATUS, self.status);
        if let SndResponseBody::HwParamQuery(p) = self.body {
            p.write(&mut b, RSP_BODY);
        }
        b
    }

    /// Frontend side (the guest simulator).
    pub fn decode(b: &Slot) -> Result<SndResponse, SndDecodeError> {
        let raw = u8_at(b, RSP_OPERATION);
        let op = SndOp::from_u8(raw).ok_or(SndDecodeError::UnknownOperation(raw))?;
        let body = match op {
            SndOp::HwParamQuery => SndResponseBody::HwParamQuery(HwParams::read(b, RSP_BODY)),
            op => SndResponseBody::Status(op),
        };
        Ok(SndResponse {
            id: u16_at(b, RSP_ID),
            status: i32_at(b, RSP_STATUS),
            body,
        })
    }
}

/// A sndif event (`struct xensnd_evt`); ids run 0, 1, 2… per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SndEvent {
    pub id: u16,
    pub kind: SndEventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SndEventKind {
    /// `XENSND_EVT_CUR_POS`: octets played/captured since OPEN.
    CurPos { position: u64 },
}

impl SndEvent {
    pub fn encode(&self) -> Slot {
        let mut b = [0u8; 64];
        put_u16(&mut b, EVT_ID, self.id);
        match self.kind {
            SndEventKind::CurPos { position } => {
                put_u8(&mut b, EVT_TYPE, XENSND_EVT_CUR_POS);
                put_u64(
                    &mut b,
                    EVT_OP + offset_of!(xensnd_cur_pos_evt, position),
                    position,
                );
            }
        }
        b
    }

    pub fn decode(b: &Slot) -> Result<SndEvent, SndDecodeError> {
        let t = u8_at(b, EVT_TYPE);
        let kind = match t {
            XENSND_EVT_CUR_POS => SndEventKind::CurPos {
                position: u64_at(b, EVT_OP + offset_of!(xensnd_cur_pos_evt, position)),
            },
            other => return Err(SndDecodeError::UnknownEventType(other)),
        };
        Ok(SndEvent {
            id: u16_at(b, EVT_ID),
            kind,
        })
    }
}

//! displif requests, responses and events as typed values.
//!
//! [`DisplRequest::decode`] reads a 64-byte slot copy and validates what can
//! be validated without device state: known opcode, non-zero cookies and
//! grant references, non-zero sizes, no arithmetic overflow, a buffer large
//! enough for `width × height` at `bpp` (dumb-buffer pitch
//! `ceil(width × bpp / 8)`, displif carries no stride). Reserved bytes are
//! ignored, not rejected. `encode` writes reserved bytes as zero.

use crate::abi::displif::*;
use crate::wire::*;
use crate::GrantRef;
use core::mem::offset_of;
use std::num::NonZeroU64;

const ID: usize = offset_of!(xendispl_req, id);
const OPERATION: usize = offset_of!(xendispl_req, operation);
const OP: usize = offset_of!(xendispl_req, op);
const RSP_ID: usize = offset_of!(xendispl_resp, id);
const RSP_OPERATION: usize = offset_of!(xendispl_resp, operation);
const RSP_STATUS: usize = offset_of!(xendispl_resp, status);
const RSP_OP: usize = offset_of!(xendispl_resp, op);
const EVT_ID: usize = offset_of!(xendispl_evt, id);
const EVT_TYPE: usize = offset_of!(xendispl_evt, r#type);
const EVT_OP: usize = offset_of!(xendispl_evt, op);

/// A displif slot: requests, responses and events are all 64 bytes.
pub type Slot = [u8; 64];

/// Pixel formats xen-drm-front offers (its `plane_formats[]`), as DRM
/// fourcc codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    Rgb565,
    Rgb888,
    Xrgb8888,
    Argb8888,
    Xrgb4444,
    Argb4444,
    Xrgb1555,
    Argb1555,
    Yuyv,
}

const fn fourcc(a: u8, b: u8, c: u8, d: u8) -> u32 {
    (a as u32) | ((b as u32) << 8) | ((c as u32) << 16) | ((d as u32) << 24)
}

impl PixelFormat {
    /// In the order xen-drm-front lists them.
    pub const ALL: [PixelFormat; 9] = [
        PixelFormat::Rgb565,
        PixelFormat::Rgb888,
        PixelFormat::Xrgb8888,
        PixelFormat::Argb8888,
        PixelFormat::Xrgb4444,
        PixelFormat::Argb4444,
        PixelFormat::Xrgb1555,
        PixelFormat::Argb1555,
        PixelFormat::Yuyv,
    ];

    /// The DRM fourcc (`DRM_FORMAT_*` from drm_fourcc.h).
    pub const fn fourcc(self) -> u32 {
        match self {
            PixelFormat::Rgb565 => fourcc(b'R', b'G', b'1', b'6'),
            PixelFormat::Rgb888 => fourcc(b'R', b'G', b'2', b'4'),
            PixelFormat::Xrgb8888 => fourcc(b'X', b'R', b'2', b'4'),
            PixelFormat::Argb8888 => fourcc(b'A', b'R', b'2', b'4'),
            PixelFormat::Xrgb4444 => fourcc(b'X', b'R', b'1', b'2'),
            PixelFormat::Argb4444 => fourcc(b'A', b'R', b'1', b'2'),
            PixelFormat::Xrgb1555 => fourcc(b'X', b'R', b'1', b'5'),
            PixelFormat::Argb1555 => fourcc(b'A', b'R', b'1', b'5'),
            PixelFormat::Yuyv => fourcc(b'Y', b'U', b'Y', b'V'),
        }
    }

    pub fn from_fourcc(code: u32) -> Option<PixelFormat> {
        PixelFormat::ALL.into_iter().find(|f| f.fourcc() == code)
    }

    /// Bits per pixel (YUYV: 2 bytes per pixel, packed 4:2:2).
    pub const fn bpp(self) -> u32 {
        match self {
            PixelFormat::Xrgb8888 | PixelFormat::Argb8888 => 32,
            PixelFormat::Rgb888 => 24,
            PixelFormat::Rgb565
            | PixelFormat::Xrgb4444
            | PixelFormat::Argb4444
            | PixelFormat::Xrgb1555
            | PixelFormat::Argb1555
            | PixelFormat::Yuyv => 16,
        }
    }

    /// The DRM name, e.g. `XRGB8888`.
    pub const fn name(self) -> &'static str {
        match self {
            PixelFormat::Rgb565 => "RGB565",
            PixelFormat::Rgb888 => "RGB888",
            PixelFormat::Xrgb8888 => "XRGB8888",
            PixelFormat::Argb8888 => "ARGB8888",
            PixelFormat::Xrgb4444 => "XRGB4444",
            PixelFormat::Argb4444 => "ARGB4444",
            PixelFormat::Xrgb1555 => "XRGB1555",
            PixelFormat::Argb1555 => "ARGB1555",
            PixelFormat::Yuyv => "YUYV",
        }
    }
}

/// Dumb-buffer pitch as xen-drm-front computes it: `ceil(width × bpp / 8)`.
/// `None` if it does not fit in a u32.
pub fn dumb_pitch(width: u32, bpp: u32) -> Option<u32> {
    let bits = u64::from(width).checked_mul(u64::from(bpp))?;
    u32::try_from(bits.div_ceil(8)).ok()
}

/// Bytes a `width × height` buffer at `bpp` needs (`pitch × height`).
pub fn dumb_size(width: u32, height: u32, bpp: u32) -> Option<u64> {
    u64::from(dumb_pitch(width, bpp)?).checked_mul(u64::from(height))
}

/// displif operation codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DisplOp {
    DbufCreate = XENDISPL_OP_DBUF_CREATE,
    DbufDestroy = XENDISPL_OP_DBUF_DESTROY,
    FbAttach = XENDISPL_OP_FB_ATTACH,
    FbDetach = XENDISPL_OP_FB_DETACH,
    SetConfig = XENDISPL_OP_SET_CONFIG,
    PgFlip = XENDISPL_OP_PG_FLIP,
    GetEdid = XENDISPL_OP_GET_EDID,
}

impl DisplOp {
    pub const ALL: [DisplOp; 7] = [
        DisplOp::DbufCreate,
        DisplOp::DbufDestroy,
        DisplOp::FbAttach,
        DisplOp::FbDetach,
        DisplOp::SetConfig,
        DisplOp::PgFlip,
        DisplOp::GetEdid,
    ];

    pub fn from_u8(v: u8) -> Option<DisplOp> {
        DisplOp::ALL.into_iter().find(|op| *op as u8 == v)
    }

    pub const fn name(self) -> &'static str {
        match self {
            DisplOp::DbufCreate => "DBUF_CREATE",
            DisplOp::DbufDestroy => "DBUF_DESTROY",
            DisplOp::FbAttach => "FB_ATTACH",
            DisplOp::FbDetach => "FB_DETACH",
            DisplOp::SetConfig => "SET_CONFIG",
            DisplOp::PgFlip => "PG_FLIP",
            DisplOp::GetEdid => "GET_EDID",
        }
    }
}

/// Why a displif slot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisplDecodeError {
    #[error("unknown displif operation {0:#04x}")]
    UnknownOperation(u8),
    #[error("unknown displif event type {0:#04x}")]
    UnknownEventType(u8),
    #[error("{op}: {field} is 0, which displif treats as invalid")]
    ZeroCookie {
        op: &'static str,
        field: &'static str,
    },
    #[error("{op}: grant reference {field} is 0 (never a valid page for a PV driver)")]
    ZeroGrantRef {
        op: &'static str,
        field: &'static str,
    },
    #[error("{op}: {field} is 0")]
    ZeroSize {
        op: &'static str,
        field: &'static str,
    },
    #[error("{op}: {what} overflows")]
    Overflow {
        op: &'static str,
        what: &'static str,
    },
    #[error("DBUF_CREATE: buffer_sz {buffer_sz} cannot hold data_ofs {data_ofs} + {needed} bytes for {width}x{height} at {bpp} bpp")]
    BufferTooSmall {
        buffer_sz: u32,
        data_ofs: u32,
        needed: u64,
        width: u32,
        height: u32,
        bpp: u32,
    },
    #[error("FB_ATTACH: pixel format {0:#010x} is not one xen-drm-front offers")]
    UnknownPixelFormat(u32),
    #[error("GET_EDID: buffer_sz {0} is below XENDISPL_EDID_MAX_SIZE ({XENDISPL_EDID_MAX_SIZE})")]
    EdidBufferTooSmall(u32),
    #[error("SET_CONFIG: fb_cookie 0 means reset, but x={x} y={y} width={width} height={height} bpp={bpp} are not all 0")]
    PartialReset {
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        bpp: u32,
    },
}

/// `XENDISPL_OP_DBUF_CREATE`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbufCreate {
    pub dbuf_cookie: NonZeroU64,
    pub width: u32,
    pub height: u32,
    pub bpp: u32,
    pub buffer_sz: u32,
    /// `XENDISPL_DBUF_FLG_REQ_ALLOC`: the backend allocates the buffer and
    /// fills the page directory (be-alloc).
    pub be_alloc: bool,
    pub gref_directory: GrantRef,
    pub data_ofs: u32,
}

impl DbufCreate {
    /// Bytes per line (`ceil(width × bpp / 8)`).
    pub fn pitch(&self) -> u32 {
        dumb_pitch(self.width, self.bpp).unwrap_or(0)
    }

    /// Grant references the page directory must list.
    pub fn grant_count(&self) -> u32 {
        crate::pagedir::grant_count(self.buffer_sz)
    }
}

/// `XENDISPL_OP_FB_ATTACH`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FbAttach {
    pub dbuf_cookie: NonZeroU64,
    pub fb_cookie: NonZeroU64,
    pub width: u32,
    pub height: u32,
    pub pixel_format: PixelFormat,
}

/// `XENDISPL_OP_SET_CONFIG`: all zeros resets (disables) the display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetConfig {
    Reset,
    Set {
        fb_cookie: NonZeroU64,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        bpp: u32,
    },
}

impl SetConfig {
    /// The header requires the area to lie within the connector's
    /// resolution; decoding cannot know it, the backend checks with this.
    pub fn fits(&self, res_width: u32, res_height: u32) -> bool {
        match *self {
            SetConfig::Reset => true,
            SetConfig::Set {
                x,
                y,
                width,
                height,
                ..
            } => {
                x.checked_add(width).is_some_and(|r| r <= res_width)
                    && y.checked_add(height).is_some_and(|b| b <= res_height)
            }
        }
    }
}

/// `XENDISPL_OP_GET_EDID`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetEdid {
    pub buffer_sz: u32,
    pub gref_directory: GrantRef,
}

/// The operation-specific part of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplRequestOp {
    DbufCreate(DbufCreate),
    DbufDestroy { dbuf_cookie: NonZeroU64 },
    FbAttach(FbAttach),
    FbDetach { fb_cookie: NonZeroU64 },
    SetConfig(SetConfig),
    PgFlip { fb_cookie: NonZeroU64 },
    GetEdid(GetEdid),
}

impl DisplRequestOp {
    pub fn op(&self) -> DisplOp {
        match self {
            DisplRequestOp::DbufCreate(_) => DisplOp::DbufCreate,
            DisplRequestOp::DbufDestroy { .. } => DisplOp::DbufDestroy,
            DisplRequestOp::FbAttach(_) => DisplOp::FbAttach,
            DisplRequestOp::FbDetach { .. } => DisplOp::FbDetach,
            DisplRequestOp::SetConfig(_) => DisplOp::SetConfig,
            DisplRequestOp::PgFlip { .. } => DisplOp::PgFlip,
            DisplRequestOp::GetEdid(_) => DisplOp::GetEdid,
        }
    }
}

/// A displif request (`struct xendispl_req`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisplRequest {
    /// Private guest value, echoed in the response.
    pub id: u16,
    pub op: DisplRequestOp,
}

fn cookie(v: u64, op: &'static str, field: &'static str) -> Result<NonZeroU64, DisplDecodeError> {
    NonZeroU64::new(v).ok_or(DisplDecodeError::ZeroCookie { op, field })
}

fn nonzero(v: u32, op: &'static str, field: &'static str) -> Result<u32, DisplDecodeError> {
    if v == 0 {
        Err(DisplDecodeError::ZeroSize { op, field })
    } else {
        Ok(v)
    }
}

fn gref(v: u32, op: &'static str, field: &'static str) -> Result<GrantRef, DisplDecodeError> {
    if v == 0 {
        Err(DisplDecodeError::ZeroGrantRef { op, field })
    } else {
        Ok(v)
    }
}

impl DisplRequest {
    /// Decodes and validates a request copied out of the ring.
    pub fn decode(b: &Slot) -> Result<DisplRequest, DisplDecodeError> {
        let id = u16_at(b, ID);
        let raw_op = u8_at(b, OPERATION);
        let op = DisplOp::from_u8(raw_op).ok_or(DisplDecodeError::UnknownOperation(raw_op))?;
        let name = op.name();
        let op = match op {
            DisplOp::DbufCreate => {
                const F: usize = OP;
                let dbuf_cookie = cookie(
                    u64_at(b, F + offset_of!(xendispl_dbuf_create_req, dbuf_cookie)),
                    name,
                    "dbuf_cookie",
                )?;
                let width = nonzero(
                    u32_at(b, F + offset_of!(xendispl_dbuf_create_req, width)),
                    name,
                    "width",
                )?;
                let height = nonzero(
                    u32_at(b, F + offset_of!(xendispl_dbuf_create_req, height)),
                    name,
                    "height",
                )?;
                let bpp = nonzero(
                    u32_at(b, F + offset_of!(xendispl_dbuf_create_req, bpp)),
                    name,
                    "bpp",
                )?;
                let buffer_sz = nonzero(
                    u32_at(b, F + offset_of!(xendispl_dbuf_create_req, buffer_sz)),
                    name,
                    "buffer_sz",
                )?;
                let flags = u32_at(b, F + offset_of!(xendispl_dbuf_create_req, flags));
                let gref_directory = gref(
                    u32_at(b, F + offset_of!(xendispl_dbuf_create_req, gref_directory)),
                    name,
                    "gref_directory",
                )?;
                let data_ofs = u32_at(b, F + offset_of!(xendispl_dbuf_create_req, data_ofs));
                let needed = dumb_size(width, height, bpp).ok_or(DisplDecodeError::Overflow {
                    op: name,
                    what: "width * height * bpp",
                })?;
                let end =
                    needed
                        .checked_add(u64::from(data_ofs))
                        .ok_or(DisplDecodeError::Overflow {
                            op: name,
                            what: "data_ofs + size",
                        })?;
                if end > u64::from(buffer_sz) {
                    return Err(DisplDecodeError::BufferTooSmall {
                        buffer_sz,
                        data_ofs,
                        needed,
                        width,
                        height,
                        bpp,
                    });
                }
                DisplRequestOp::DbufCreate(DbufCreate {
                    dbuf_cookie,
                    width,
                    height,
                    bpp,
                    buffer_sz,
                    // Unused flag bits "must be 0"; like reserved bytes they
                    // are ignored rather than failing the request.
                    be_alloc: flags & XENDISPL_DBUF_FLG_REQ_ALLOC != 0,
                    gref_directory,
                    data_ofs,
                })
            }
            DisplOp::DbufDestroy => DisplRequestOp::DbufDestroy {
                dbuf_cookie: cookie(
                    u64_at(b, OP + offset_of!(xendispl_dbuf_destroy_req, dbuf_cookie)),
                    name,
                    "dbuf_cookie",
                )?,
            },
            DisplOp::FbAttach => {
                const F: usize = OP;
                let dbuf_cookie = cookie(
                    u64_at(b, F + offset_of!(xendispl_fb_attach_req, dbuf_cookie)),
                    name,
                    "dbuf_cookie",
                )?;
                let fb_cookie = cookie(
                    u64_at(b, F + offset_of!(xendispl_fb_attach_req, fb_cookie)),
                    name,
                    "fb_cookie",
                )?;
                let width = nonzero(
                    u32_at(b, F + offset_of!(xendispl_fb_attach_req, width)),
                    name,
                    "width",
                )?;
                let height = nonzero(
                    u32_at(b, F + offset_of!(xendispl_fb_attach_req, height)),
                    name,
                    "height",
                )?;
                let code = u32_at(b, F + offset_of!(xendispl_fb_attach_req, pixel_format));
                let pixel_format = PixelFormat::from_fourcc(code)
                    .ok_or(DisplDecodeError::UnknownPixelFormat(code))?;
                if dumb_size(width, height, pixel_format.bpp()).is_none() {
                    return Err(DisplDecodeError::Overflow {
                        op: name,
                        what: "width * height * bpp",
                    });
                }
                DisplRequestOp::FbAttach(FbAttach {
                    dbuf_cookie,
                    fb_cookie,
                    width,
                    height,
                    pixel_format,
                })
            }
            DisplOp::FbDetach => DisplRequestOp::FbDetach {
                fb_cookie: cookie(
                    u64_at(b, OP + offset_of!(xendispl_fb_detach_req, fb_cookie)),
                    name,
                    "fb_cookie",
                )?,
            },
            DisplOp::SetConfig => {
                const F: usize = OP;
                let fb = u64_at(b, F + offset_of!(xendispl_set_config_req, fb_cookie));
                let x = u32_at(b, F + offset_of!(xendispl_set_config_req, x));
                let y = u32_at(b, F + offset_of!(xendispl_set_config_req, y));
                let width = u32_at(b, F + offset_of!(xendispl_set_config_req, width));
                let height = u32_at(b, F + offset_of!(xendispl_set_config_req, height));
                let bpp = u32_at(b, F + offset_of!(xendispl_set_config_req, bpp));
                match NonZeroU64::new(fb) {
                    None if (x, y, width, height, bpp) == (0, 0, 0, 0, 0) => {
                        DisplRequestOp::SetConfig(SetConfig::Reset)
                    }
                    None => {
                        return Err(DisplDecodeError::PartialReset {
                            x,
                            y,
                            width,
                            height,
                            bpp,
                        });
                    }
                    Some(fb_cookie) => {
                        nonzero(width, name, "width")?;
                        nonzero(height, name, "height")?;
                        nonzero(bpp, name, "bpp")?;
                        if x.checked_add(width).is_none() {
                            return Err(DisplDecodeError::Overflow {
                                op: name,
                                what: "x + width",
                            });
                        }
                        if y.checked_add(height).is_none() {
                            return Err(DisplDecodeError::Overflow {
                                op: name,
                                what: "y + height",
                            });
                        }
                        DisplRequestOp::SetConfig(SetConfig::Set {
                            fb_cookie,
                            x,
                            y,
                            width,
                            height,
                            bpp,
                        })
                    }
                }
            }
            DisplOp::PgFlip => DisplRequestOp::PgFlip {
                fb_cookie: cookie(
                    u64_at(b, OP + offset_of!(xendispl_page_flip_req, fb_cookie)),
                    name,
                    "fb_cookie",
                )?,
            },
            DisplOp::GetEdid => {
                let buffer_sz = nonzero(
                    u32_at(b, OP + offset_of!(xendispl_get_edid_req, buffer_sz)),
                    name,
                    "buffer_sz",
                )?;
                if buffer_sz < XENDISPL_EDID_MAX_SIZE {
                    return Err(DisplDecodeError::EdidBufferTooSmall(buffer_sz));
                }
                let gref_directory = gref(
                    u32_at(b, OP + offset_of!(xendispl_get_edid_req, gref_directory)),
                    name,
                    "gref_directory",
                )?;
                DisplRequestOp::GetEdid(GetEdid {
                    buffer_sz,
                    gref_directory,
                })
            }
        };
        Ok(DisplRequest { id, op })
    }

    /// Encodes into a slot (reserved bytes zero).
    pub fn encode(&self) -> Slot {
        let mut b = [0u8; 64];
        put_u16(&mut b, ID, self.id);
        put_u8(&mut b, OPERATION, self.op.op() as u8);
        match self.op {
            DisplRequestOp::DbufCreate(c) => {
                const F: usize = OP;
                put_u64(
                    &mut b,
                    F + offset_of!(xendispl_dbuf_create_req, dbuf_cookie),
                    c.dbuf_cookie.get(),
                );
                put_u32(
                    &mut b,
                    F + offset_of!(xendispl_dbuf_create_req, width),
                    c.width,
                );
                put_u32(
                    &mut b,
                    F + offset_of!(xendispl_dbuf_create_req, height),
                    c.height,
                );
                put_u32(&mut b, F + offset_of!(xendispl_dbuf_create_req, bpp), c.bpp);
                put_u32(
                    &mut b,
                    F + offset_of!(xendispl_dbuf_create_req, buffer_sz),
                    c.buffer_sz,
                );
                let flags = if c.be_alloc {
                    XENDISPL_DBUF_FLG_REQ_ALLOC
                } else {
                    0
                };
                put_u32(
                    &mut b,
                    F + offset_of!(xendispl_dbuf_create_req, flags),
                    flags,
                );
                put_u32(
                    &mut b,
                    F + offset_of!(xendispl_dbuf_create_req, gref_directory),
                    c.gref_directory,
                );
                put_u32(
                    &mut b,
                    F + offset_of!(xendispl_dbuf_create_req, data_ofs),
                    c.data_ofs,
                );
            }
            DisplRequestOp::DbufDestroy { dbuf_cookie } => {
                put_u64(
                    &mut b,
                    OP + offset_of!(xendispl_dbuf_destroy_req, dbuf_cookie),
                    dbuf_cookie.get(),
                );
            }
            DisplRequestOp::FbAttach(a) => {
                const F: usize = OP;
                put_u64(
                    &mut b,
                    F + offset_of!(xendispl_fb_attach_req, dbuf_cookie),
                    a.dbuf_cookie.get(),
                );
                put_u64(
                    &mut b,
                    F + offset_of!(xendispl_fb_attach_req, fb_cookie),
                    a.fb_cookie.get(),
                );
                put_u32(
                    &mut b,
                    F + offset_of!(xendispl_fb_attach_req, width),
                    a.width,
                );
                put_u32(
                    &mut b,
                    F + offset_of!(xendispl_fb_attach_req, height),
                    a.height,
                );
                put_u32(
                    &mut b,
                    F + offset_of!(xendispl_fb_attach_req, pixel_format),
                    a.pixel_format.fourcc(),
                );
            }
            DisplRequestOp::FbDetach { fb_cookie } => {
                put_u64(
                    &mut b,
                    OP + offset_of!(xendispl_fb_detach_req, fb_cookie),
                    fb_cookie.get(),
                );
            }
            DisplRequestOp::SetConfig(SetConfig::Reset) => {}
            DisplRequestOp::SetConfig(SetConfig::Set {
                fb_cookie,
                x,
                y,
                width,
                height,
                bpp,
            }) => {
                const F: usize = OP;
                put_u64(
                    &mut b,
                    F + offset_of!(xendispl_set_config_req, fb_cookie),
                    fb_cookie.get(),
                );
                put_u32(&mut b, F + offset_of!(xendispl_set_config_req, x), x);
                put_u32(&mut b, F + offset_of!(xendispl_set_config_req, y), y);
                put_u32(
                    &mut b,
                    F + offset_of!(xendispl_set_config_req, width),
                    width,
                );
                put_u32(
                    &mut b,
                    F + offset_of!(xendispl_set_config_req, height),
                    height,
                );
                put_u32(&mut b, F + offset_of!(xendispl_set_config_req, bpp), bpp);
            }
            DisplRequestOp::PgFlip { fb_cookie } => {
                put_u64(
                    &mut b,
                    OP + offset_of!(xendispl_page_flip_req, fb_cookie),
                    fb_cookie.get(),
                );
            }
            DisplRequestOp::GetEdid(e) => {
                put_u32(
                    &mut b,
                    OP + offset_of!(xendispl_get_edid_req, buffer_sz),
                    e.buffer_sz,
                );
                put_u32(
                    &mut b,
                    OP + offset_of!(xendispl_get_edid_req, gref_directory),
                    e.gref_directory,
                );
            }
        }
        b
    }
}

/// The operation-specific part of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplResponseBody {
    /// Every operation but GET_EDID answers with status only.
    Status(DisplOp),
    GetEdid {
        edid_sz: u32,
    },
}

/// A displif response (`struct xendispl_resp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisplResponse {
    pub id: u16,
    /// 0 on success, `-XEN_Exx` on failure.
    pub status: i32,
    pub body: DisplResponseBody,
}

impl DisplResponse {
    /// A status-only answer to `req` (for GET_EDID, `edid_sz` 0).
    pub fn for_request(req: &DisplRequest, status: i32) -> DisplResponse {
        let body = match req.op.op() {
            DisplOp::GetEdid => DisplResponseBody::GetEdid { edid_sz: 0 },
            op => DisplResponseBody::Status(op),
        };
        DisplResponse {
            id: req.id,
            status,
            body,
        }
    }

    pub fn op(&self) -> DisplOp {
        match self.body {
            DisplResponseBody::Status(op) => op,
            DisplResponseBody::GetEdid { .. } => DisplOp::GetEdid,
        }
    }

    pub fn encode(&self) -> Slot {
        let mut b = [0u8; 64];
        put_u16(&mut b, RSP_ID, self.id);
        put_u8(&mut b, RSP_OPERATION, self.op() as u8);
        put_i32(&mut b, RSP_STATUS, self.status);
        if let DisplResponseBody::GetEdid { edid_sz } = self.body {
            put_u32(
                &mut b,
                RSP_OP + offset_of!(xendispl_get_edid_resp, edid_sz),
                edid_sz,
            );
        }
        b
    }

    /// Frontend side (the guest simulator).
    pub fn decode(b: &Slot) -> Result<DisplResponse, DisplDecodeError> {
        let raw_op = u8_at(b, RSP_OPERATION);
        let op = DisplOp::from_u8(raw_op).ok_or(DisplDecodeError::UnknownOperation(raw_op))?;
        let body = match op {
            DisplOp::GetEdid => DisplResponseBody::GetEdid {
                edid_sz: u32_at(b, RSP_OP + offset_of!(xendispl_get_edid_resp, edid_sz)),
            },
            op => DisplResponseBody::Status(op),
        };
        Ok(DisplResponse {
            id: u16_at(b, RSP_ID),
            status: i32_at(b, RSP_STATUS),
            body,
        })
    }
}

/// A displif event (`struct xendispl_evt`). Ids must run 0, 1, 2… per
/// connector: xen-drm-front drops an event whose id is not the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisplEvent {
    pub id: u16,
    pub kind: DisplEventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplEventKind {
    /// `XENDISPL_EVT_PG_FLIP`: the flip of `fb_cookie` is done (the guest's
    /// vsync).
    PgFlip { fb_cookie: NonZeroU64 },
}

impl DisplEvent {
    pub fn encode(&self) -> Slot {
        let mut b = [0u8; 64];
        put_u16(&mut b, EVT_ID, self.id);
        match self.kind {
            DisplEventKind::PgFlip { fb_cookie } => {
                put_u8(&mut b, EVT_TYPE, XENDISPL_EVT_PG_FLIP);
                put_u64(
                    &mut b,
                    EVT_OP + offset_of!(xendispl_pg_flip_evt, fb_cookie),
                    fb_cookie.get(),
                );
            }
        }
        b
    }

    pub fn decode(b: &Slot) -> Result<DisplEvent, DisplDecodeError> {
        let t = u8_at(b, EVT_TYPE);
        let kind = match t {
            XENDISPL_EVT_PG_FLIP => DisplEventKind::PgFlip {
                fb_cookie: cookie(
                    u64_at(b, EVT_OP + offset_of!(xendispl_pg_flip_evt, fb_cookie)),
                    "EVT_PG_FLIP",
                    "fb_cookie",
                )?,
            },
            other => return Err(DisplDecodeError::UnknownEventType(other)),
        };
        Ok(DisplEvent {
            id: u16_at(b, EVT_ID),
            kind,
        })
    }
}

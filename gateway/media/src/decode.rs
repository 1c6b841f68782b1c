//! Decoders for tests and tools: openh264 for H.264, libvpx for VP8, both
//! giving back an XRGB8888 [`Frame`] (via BT.601 limited range, as encoded).

use crate::colour::I420Frame;
use crate::encoder::Codec;
use crate::frame::Frame;
use openh264::formats::YUVSource;
use std::mem::MaybeUninit;
use std::os::raw::{c_int, c_uint};
use vpx_sys as vpx;

#[derive(Debug, thiserror::Error)]
#[error("{codec} decoder: {detail}")]
pub struct DecodeError {
    pub codec: Codec,
    pub detail: String,
}

fn err(codec: Codec, detail: impl Into<String>) -> DecodeError {
    DecodeError {
        codec,
        detail: detail.into(),
    }
}

/// Any of our decoders.
pub trait VideoDecoder {
    /// Decode one encoded frame; `None` if it produced no picture.
    fn decode(&mut self, data: &[u8]) -> Result<Option<Frame>, DecodeError>;
}

/// Make a decoder for `codec`.
pub fn new_decoder(codec: Codec) -> Result<Box<dyn VideoDecoder>, DecodeError> {
    Ok(match codec {
        Codec::H264 => Box::new(H264Decoder::new()?),
        Codec::Vp8 => Box::new(Vp8Decoder::new()?),
    })
}

pub struct H264Decoder {
    inner: openh264::decoder::Decoder,
}

impl H264Decoder {
    pub fn new() -> Result<H264Decoder, DecodeError> {
        Ok(H264Decoder {
            inner: openh264::decoder::Decoder::new()
                .map_err(|e| err(Codec::H264, e.to_string()))?,
        })
    }
}

impl VideoDecoder for H264Decoder {
    fn decode(&mut self, data: &[u8]) -> Result<Option<Frame>, DecodeError> {
        let Some(yuv) = self
            .inner
            .decode(data)
            .map_err(|e| err(Codec::H264, e.to_string()))?
        else {
            return Ok(None);
        };
        let (w, h) = yuv.dimensions();
        let (ys, us, vs) = yuv.strides();
        let i420 = I420Frame::from_planes(
            w as u32,
            h as u32,
            (yuv.y(), yuv.u(), yuv.v()),
            (ys, us, vs),
        )
        .map_err(|e| err(Codec::H264, e.to_string()))?;
        i420.to_xrgb()
            .map(Some)
            .map_err(|e| err(Codec::H264, e.to_string()))
    }
}

pub struct Vp8Decoder {
    ctx: Box<vpx::vpx_codec_ctx_t>,
}

// SAFETY: the context is only used through &mut self.
unsafe impl Send for Vp8Decoder {}

impl Vp8Decoder {
    pub fn new() -> Result<Vp8Decoder, DecodeError> {
        // SAFETY: zeroed is the pre-init state; init fills it in.
        let mut ctx: Box<vpx::vpx_codec_ctx_t> =
            Box::new(unsafe { MaybeUninit::zeroed().assume_init() });
        let cfg = vpx::vpx_codec_dec_cfg_t {
            threads: 1,
            w: 0,
            h: 0,
        };
        let rc = unsafe {
            vpx::vpx_codec_dec_init_ver(
                &mut *ctx,
                vpx::vpx_codec_vp8_dx(),
                &cfg,
                0,
                vpx::VPX_DECODER_ABI_VERSION as c_int,
            )
        };
        if rc != vpx::vpx_codec_err_t::VPX_CODEC_OK {
            return Err(err(Codec::Vp8, format!("init: {rc:?}")));
        }
        Ok(Vp8Decoder { ctx })
    }
}

impl VideoDecoder for Vp8Decoder {
    fn decode(&mut self, data: &[u8]) -> Result<Option<Frame>, DecodeError> {
        let len = c_uint::try_from(data.len()).map_err(|_| err(Codec::Vp8, "frame too large"))?;
        // SAFETY: data is valid for len bytes during the call.
        let rc = unsafe {
            vpx::vpx_codec_decode(&mut *self.ctx, data.as_ptr(), len, std::ptr::null_mut(), 0)
        };
        if rc != vpx::vpx_codec_err_t::VPX_CODEC_OK {
            return Err(err(Codec::Vp8, format!("decode: {rc:?}")));
        }
        let mut iter: vpx::vpx_codec_iter_t = std::ptr::null();
        let mut last = None;
        loop {
            // SAFETY: iterating the frames of the data just decoded.
            let img = unsafe { vpx::vpx_codec_get_frame(&mut *self.ctx, &mut iter) };
            if img.is_null() {
                break;
            }
            // SAFETY: non-null image valid until the next decode call.
            let img = unsafe { &*img };
            if img.fmt != vpx::vpx_img_fmt::VPX_IMG_FMT_I420 {
                return Err(err(
                    Codec::Vp8,
                    format!("unexpected image format {:?}", img.fmt),
                ));
            }
            let (w, h) = (img.d_w as usize, img.d_h as usize);
            let strides: Vec<usize> = img.stride[..3].iter().map(|&s| s.max(0) as usize).collect();
            let plane = |i: usize, rows: usize| -> &[u8] {
                // SAFETY: libvpx planes hold `rows` rows of `stride` bytes.
                unsafe { std::slice::from_raw_parts(img.planes[i], strides[i] * rows) }
            };
            let (ch, _) = (h.div_ceil(2), w.div_ceil(2));
            let i420 = I420Frame::from_planes(
                w as u32,
                h as u32,
                (plane(0, h), plane(1, ch), plane(2, ch)),
                (strides[0], strides[1], strides[2]),
            )
            .map_err(|e| err(Codec::Vp8, e.to_string()))?;
            last = Some(i420.to_xrgb().map_err(|e| err(Codec::Vp8, e.to_string()))?);
        }
        Ok(last)
    }
}

impl Drop for Vp8Decoder {
    fn drop(&mut self) {
        // SAFETY: initialised in new, destroyed once.
        unsafe { vpx::vpx_codec_destroy(&mut *self.ctx) };
    }
}

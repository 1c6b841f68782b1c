//! VP8 through libvpx (Debian `libvpx-dev`) via `env-libvpx-sys`.
//!
//! Set up for interactive screen streaming: realtime deadline with a high
//! `cpu-used`, one-pass CBR, no lag, error resilient (a viewer that loses a
//! packet can carry on), screen-content mode, and keyframes only when asked
//! for.
//!
//! One thread, not two: libvpx's VP8 row-parallel encoder synchronises its
//! threads by spinning, and on a host with more busy threads than cores (a
//! dom0 serving many guests) that collapses. Measured here with the machine
//! shared (load average 4–9 on 2 cores), 720p desktop content: 272 ms/frame
//! with 2 threads, 17 ms/frame with 1 (ffmpeg's libvpx with `-threads 2`
//! behaves the same). Parallelism comes from running one encoder per
//! connector and parameter set instead.

use crate::encoder::{
    too_soon, Codec, Content, EncodeError, EncodedFrame, EncoderParams, Prepare, VideoEncoder,
};
use crate::frame::Frame;
use std::mem::MaybeUninit;
use std::os::raw::{c_int, c_uint, c_ulong};
use std::time::{Duration, Instant};
use vpx_sys as vpx;

/// Encoder threads (see the module comment for why one).
pub const VP8_THREADS: u32 = 1;
/// libvpx's speed/quality knob for the realtime deadline; 8 is the usual
/// choice for live screen sharing.
const CPU_USED: c_int = 8;
/// Quantizer ceiling during the refresh frame (normal ceiling: 56 of 63).
///
/// The refresh is a keyframe: in realtime mode libvpx skips macroblocks whose
/// source is unchanged since the previous frame, so a P-frame of the same
/// picture would carry almost nothing, whatever its quantizer.
const REFRESH_MAX_QUANTIZER: c_uint = 12;
/// Normal keyframe size cap, percent of the per-frame budget: a joiner's
/// keyframe must not stall everyone's stream for long.
const MAX_INTRA_BITRATE_PCT: c_int = 900;

fn vpx_err(what: &'static str, rc: vpx::vpx_codec_err_t) -> EncodeError {
    EncodeError::Codec {
        codec: Codec::Vp8,
        what,
        detail: format!("{rc:?}"),
    }
}

fn check(what: &'static str, rc: vpx::vpx_codec_err_t) -> Result<(), EncodeError> {
    if rc == vpx::vpx_codec_err_t::VPX_CODEC_OK {
        Ok(())
    } else {
        Err(vpx_err(what, rc))
    }
}

/// An initialised libvpx encoder context. Boxed so its address is stable.
struct Context {
    ctx: Box<vpx::vpx_codec_ctx_t>,
    cfg: vpx::vpx_codec_enc_cfg_t,
    width: u32,
    height: u32,
}

// SAFETY: a libvpx context has no thread affinity; it is only used through
// &mut self.
unsafe impl Send for Context {}

impl Context {
    fn new(params: &EncoderParams, width: u32, height: u32) -> Result<Context, EncodeError> {
        // SAFETY: the iface getter returns a static; config_default fills cfg.
        let iface = unsafe { vpx::vpx_codec_vp8_cx() };
        let mut cfg = MaybeUninit::<vpx::vpx_codec_enc_cfg_t>::zeroed();
        check("config_default", unsafe {
            vpx::vpx_codec_enc_config_default(iface, cfg.as_mut_ptr(), 0)
        })?;
        // SAFETY: initialised by vpx_codec_enc_config_default (checked).
        let mut cfg = unsafe { cfg.assume_init() };
        cfg.g_w = width;
        cfg.g_h = height;
        // Timestamps in milliseconds.
        cfg.g_timebase = vpx::vpx_rational { num: 1, den: 1000 };
        cfg.g_threads = VP8_THREADS;
        cfg.g_error_resilient = vpx::VPX_ERROR_RESILIENT_DEFAULT;
        cfg.g_lag_in_frames = 0;
        cfg.g_pass = vpx::vpx_enc_pass::VPX_RC_ONE_PASS;
        cfg.rc_end_usage = vpx::vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = (params.bitrate_bps / 1000).max(1);
        cfg.rc_dropframe_thresh = 0;
        cfg.rc_min_quantizer = 2;
        cfg.rc_max_quantizer = 56;
        cfg.rc_undershoot_pct = 100;
        cfg.rc_overshoot_pct = 15;
        cfg.rc_buf_sz = 1000;
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.kf_mode = vpx::vpx_kf_mode::VPX_KF_DISABLED;

        // SAFETY: zeroed is the documented pre-init state of a context.
        let mut ctx: Box<vpx::vpx_codec_ctx_t> =
            Box::new(unsafe { MaybeUninit::zeroed().assume_init() });
        check("enc_init", unsafe {
            vpx::vpx_codec_enc_init_ver(
                &mut *ctx,
                iface,
                &cfg,
                0,
                vpx::VPX_ENCODER_ABI_VERSION as c_int,
            )
        })?;
        let mut this = Context {
            ctx,
            cfg,
            width,
            height,
        };
        this.control(vpx::vp8e_enc_control_id::VP8E_SET_CPUUSED, CPU_USED)?;
        let screen = match params.content {
            Content::Screen => 1,
            Content::Motion => 0,
        };
        this.control(
            vpx::vp8e_enc_control_id::VP8E_SET_SCREEN_CONTENT_MODE,
            screen,
        )?;
        this.control(vpx::vp8e_enc_control_id::VP8E_SET_NOISE_SENSITIVITY, 0)?;
        // Two token partitions let decoders use two threads.
        this.control(vpx::vp8e_enc_control_id::VP8E_SET_TOKEN_PARTITIONS, 1)?;
        this.control(
            vpx::vp8e_enc_control_id::VP8E_SET_MAX_INTRA_BITRATE_PCT,
            MAX_INTRA_BITRATE_PCT,
        )?;
        Ok(this)
    }

    fn control(&mut self, id: vpx::vp8e_enc_control_id, value: c_int) -> Result<(), EncodeError> {
        // SAFETY: these controls take an int argument.
        check("control", unsafe {
            vpx::vpx_codec_control_(&mut *self.ctx, id as c_int, value)
        })
    }

    fn apply_config(&mut self) -> Result<(), EncodeError> {
        // SAFETY: cfg is the configuration the context was built with, modified
        // only in rate-control fields.
        check("enc_config_set", unsafe {
            vpx::vpx_codec_enc_config_set(&mut *self.ctx, &self.cfg)
        })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: initialised in new, destroyed once.
        unsafe { vpx::vpx_codec_destroy(&mut *self.ctx) };
    }
}

/// VP8 encoder (libvpx).
pub struct Vp8Encoder {
    params: EncoderParams,
    ctx: Option<Context>,
    prepare: Prepare,
    last_pts: Option<Duration>,
    /// libvpx wants strictly increasing timestamps.
    last_vpx_pts: Option<i64>,
}

impl Vp8Encoder {
    pub fn new(params: EncoderParams) -> Result<Vp8Encoder, EncodeError> {
        if params.bitrate_bps < 1000 || params.max_fps == 0 {
            return Err(EncodeError::BadParam(
                format!(
                    "bitrate {} bps at {} fps",
                    params.bitrate_bps, params.max_fps
                ),
                Codec::Vp8,
            ));
        }
        Ok(Vp8Encoder {
            params,
            ctx: None,
            prepare: Prepare::default(),
            last_pts: None,
            last_vpx_pts: None,
        })
    }

    fn encode_inner(
        &mut self,
        frame: &Frame,
        pts: Duration,
        force_keyframe: bool,
        refresh: bool,
    ) -> Result<Option<EncodedFrame>, EncodeError> {
        let started = Instant::now();
        let (w, h) = self.params.output_dimensions(frame.width(), frame.height());
        if !matches!(&self.ctx, Some(c) if c.width == w && c.height == h) {
            self.ctx = None;
            self.ctx = Some(Context::new(&self.params, w, h)?);
        }
        let i420 = self.prepare.to_i420(frame, w, h)?;
        let Some(ctx) = self.ctx.as_mut() else {
            return Ok(None);
        };

        let mut vpx_pts = pts.as_millis().min(i64::MAX as u128 / 2) as i64;
        if let Some(last) = self.last_vpx_pts {
            vpx_pts = vpx_pts.max(last + 1);
        }
        let duration = self.params.frame_interval().as_millis().max(1) as c_ulong;

        let mut img = MaybeUninit::<vpx::vpx_image_t>::zeroed();
        // SAFETY: vpx_img_wrap only records the pointer and dimensions; we
        // then point the three planes at our (separate) buffers, which live
        // until vpx_codec_encode returns (libvpx copies the picture into its
        // own lookahead buffer; lag is 0).
        let img = unsafe {
            let p = vpx::vpx_img_wrap(
                img.as_mut_ptr(),
                vpx::vpx_img_fmt::VPX_IMG_FMT_I420,
                w,
                h,
                1,
                i420.y().as_ptr().cast_mut(),
            );
            if p.is_null() {
                return Err(vpx_err(
                    "img_wrap",
                    vpx::vpx_codec_err_t::VPX_CODEC_INVALID_PARAM,
                ));
            }
            let mut img = img.assume_init();
            img.planes[0] = i420.y().as_ptr().cast_mut();
            img.planes[1] = i420.u().as_ptr().cast_mut();
            img.planes[2] = i420.v().as_ptr().cast_mut();
            img.stride[0] = i420.y_stride() as c_int;
            img.stride[1] = i420.uv_stride() as c_int;
            img.stride[2] = i420.uv_stride() as c_int;
            img
        };

        let saved_quantizers = (ctx.cfg.rc_min_quantizer, ctx.cfg.rc_max_quantizer);
        if refresh {
            ctx.cfg.rc_max_quantizer = REFRESH_MAX_QUANTIZER;
            ctx.cfg.rc_min_quantizer = ctx.cfg.rc_min_quantizer.min(REFRESH_MAX_QUANTIZER);
            ctx.apply_config()?;
            // 0: no cap for this one frame.
            ctx.control(vpx::vp8e_enc_control_id::VP8E_SET_MAX_INTRA_BITRATE_PCT, 0)?;
        }
        let flags = if force_keyframe || refresh {
            vpx::VPX_EFLAG_FORCE_KF as vpx::vpx_enc_frame_flags_t
        } else {
            0
        };
        // SAFETY: img describes live planes of the right size.
        let rc = unsafe {
            vpx::vpx_codec_encode(
                &mut *ctx.ctx,
                &img,
                vpx_pts,
                duration,
                flags,
                vpx::VPX_DL_REALTIME as c_ulong,
            )
        };
        let mut data = Vec::new();
        let mut keyframe = false;
        if rc == vpx::vpx_codec_err_t::VPX_CODEC_OK {
            let mut iter: vpx::vpx_codec_iter_t = std::ptr::null();
            loop {
                // SAFETY: iterating the packets of the frame just encoded.
                let pkt = unsafe { vpx::vpx_codec_get_cx_data(&mut *ctx.ctx, &mut iter) };
                if pkt.is_null() {
                    break;
                }
                // SAFETY: non-null packet pointer valid until the next call.
                let pkt = unsafe { &*pkt };
                if pkt.kind != vpx::vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                    continue;
                }
                // SAFETY: `frame` is the active union member for FRAME_PKT.
                let f = unsafe { pkt.data.frame };
                if !f.buf.is_null() && f.sz > 0 {
                    // SAFETY: libvpx owns buf with sz bytes until the next call.
                    let bytes =
                        unsafe { std::slice::from_raw_parts(f.buf as *const u8, f.sz as usize) };
                    data.extend_from_slice(bytes);
                }
                keyframe |= f.flags & vpx::VPX_FRAME_IS_KEY != 0;
            }
        }
        if refresh {
            (ctx.cfg.rc_min_quantizer, ctx.cfg.rc_max_quantizer) = saved_quantizers;
            ctx.apply_config()?;
            ctx.control(
                vpx::vp8e_enc_control_id::VP8E_SET_MAX_INTRA_BITRATE_PCT,
                MAX_INTRA_BITRATE_PCT,
            )?;
        }
        check("encode", rc)?;
        self.last_vpx_pts = Some(vpx_pts);
        if data.is_empty() {
            return Ok(None);
        }
        self.last_pts = Some(pts);
        Ok(Some(EncodedFrame {
            codec: Codec::Vp8,
            data,
            keyframe,
            refresh,
            pts,
            width: w,
            height: h,
            encode_time: started.elapsed(),
        }))
    }
}

impl VideoEncoder for Vp8Encoder {
    fn encode(
        &mut self,
        frame: &Frame,
        pts: Duration,
        force_keyframe: bool,
    ) -> Result<Option<EncodedFrame>, EncodeError> {
        if !force_keyframe && too_soon(&self.params, self.last_pts, pts) {
            return Ok(None);
        }
        self.encode_inner(frame, pts, force_keyframe, false)
    }

    fn encode_refresh(
        &mut self,
        frame: &Frame,
        pts: Duration,
    ) -> Result<Option<EncodedFrame>, EncodeError> {
        self.encode_inner(frame, pts, false, true)
    }

    fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), EncodeError> {
        if bitrate_bps < 1000 {
            return Err(EncodeError::BadParam(
                format!("bitrate {bitrate_bps}"),
                Codec::Vp8,
            ));
        }
        self.params.bitrate_bps = bitrate_bps;
        if let Some(ctx) = self.ctx.as_mut() {
            ctx.cfg.rc_target_bitrate = bitrate_bps / 1000;
            ctx.apply_config()?;
        }
        Ok(())
    }

    fn params(&self) -> &EncoderParams {
        &self.params
    }
}

/// Whether a VP8 frame is a keyframe, from its frame tag (RFC 6386 §9.1:
/// bit 0 of the first byte is 0 for key frames, which then carry the start
/// code 9d 01 2a at bytes 3..6).
pub fn is_vp8_keyframe(data: &[u8]) -> bool {
    data.first().is_some_and(|b| b & 1 == 0) && data.get(3..6) == Some(&[0x9d, 0x01, 0x2a][..])
}

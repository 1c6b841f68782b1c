//! H.264 through openh264, driven through `openh264-sys2` directly.
//!
//! The `openh264` crate's safe encoder always configures one slice, and
//! openh264 only spreads work over threads by slices, so its `num_threads`
//! does nothing. We set the encoder up ourselves: constrained baseline (no
//! B-frames, CAVLC), screen-content realtime mode, bitrate rate control, and
//! two slices on two threads (1080p desktop content: 7.9 → 5.0 ms/frame).

use crate::encoder::{
    too_soon, Codec, Content, EncodeError, EncodedFrame, EncoderParams, Prepare, VideoEncoder,
};
use crate::frame::Frame;
use openh264_sys2 as sys;
use std::os::raw::{c_int, c_void};
use std::time::{Duration, Instant};

/// During the refresh frame the bitrate target is raised this much, which
/// lets rate control pick a much lower QP for that one frame.
///
/// The refresh is an IDR: openh264's screen-content mode skips every
/// macroblock whose source did not change since the previous picture, so a
/// P-frame of the same picture carries (almost) nothing, whatever its QP.
const REFRESH_BITRATE_FACTOR: u32 = 8;
/// Rate control's QP range.
const MIN_QP: c_int = 12;
const MAX_QP: c_int = 42;
/// QP ceiling for the refresh frame (openh264's screen-content default
/// range tops out far higher at low bitrates).
const REFRESH_MAX_QP: c_int = 22;

fn codec_err(what: &'static str, rc: c_int) -> EncodeError {
    EncodeError::Codec {
        codec: Codec::H264,
        what,
        detail: format!("openh264 returned {rc}"),
    }
}

/// Owns one openh264 encoder instance.
struct RawEncoder {
    ptr: *mut sys::ISVCEncoder,
    initialised: bool,
}

// SAFETY: an openh264 encoder instance has no thread affinity; we only use it
// through &mut self, so it is never used from two threads at once.
unsafe impl Send for RawEncoder {}

impl RawEncoder {
    fn new() -> Result<RawEncoder, EncodeError> {
        let mut ptr: *mut sys::ISVCEncoder = std::ptr::null_mut();
        // SAFETY: WelsCreateSVCEncoder writes a new instance pointer or fails.
        let rc = unsafe { sys::source::APILoader::WelsCreateSVCEncoder(&mut ptr) };
        if rc != 0 || ptr.is_null() {
            return Err(codec_err("WelsCreateSVCEncoder", rc));
        }
        let mut raw = RawEncoder {
            ptr,
            initialised: false,
        };
        // openh264 logs parameter adjustments and rate-control notes to
        // stderr unless told not to, from InitializeExt on.
        let mut level: c_int = sys::WELS_LOG_QUIET as c_int;
        raw.set_option(
            sys::ENCODER_OPTION_TRACE_LEVEL,
            &mut level as *mut c_int as *mut c_void,
        )?;
        Ok(raw)
    }

    fn vtbl(&self) -> &sys::ISVCEncoderVtbl {
        // SAFETY: ptr is a live encoder (created in new, destroyed in drop);
        // an ISVCEncoder is a pointer to its vtable.
        unsafe { &**self.ptr }
    }

    fn check(what: &'static str, rc: c_int) -> Result<(), EncodeError> {
        if rc == 0 {
            Ok(())
        } else {
            Err(codec_err(what, rc))
        }
    }

    fn default_params(&self) -> Result<sys::SEncParamExt, EncodeError> {
        let f = self
            .vtbl()
            .GetDefaultParams
            .ok_or(codec_err("GetDefaultParams missing", -1))?;
        let mut p = sys::SEncParamExt::default();
        // SAFETY: p is a valid, writable SEncParamExt.
        Self::check("GetDefaultParams", unsafe { f(self.ptr, &mut p) })?;
        Ok(p)
    }

    fn initialise(&mut self, params: &sys::SEncParamExt) -> Result<(), EncodeError> {
        self.uninitialise();
        let f = self
            .vtbl()
            .InitializeExt
            .ok_or(codec_err("InitializeExt missing", -1))?;
        // SAFETY: params is a fully initialised SEncParamExt from GetDefaultParams.
        Self::check("InitializeExt", unsafe { f(self.ptr, params) })?;
        self.initialised = true;
        let mut format: c_int = sys::videoFormatI420 as c_int;
        self.set_option(
            sys::ENCODER_OPTION_DATAFORMAT,
            &mut format as *mut c_int as *mut c_void,
        )
    }

    fn uninitialise(&mut self) {
        if self.initialised {
            if let Some(f) = self.vtbl().Uninitialize {
                // SAFETY: initialised instance.
                unsafe { f(self.ptr) };
            }
            self.initialised = false;
        }
    }

    fn set_option(
        &mut self,
        option: sys::ENCODER_OPTION,
        value: *mut c_void,
    ) -> Result<(), EncodeError> {
        let f = self
            .vtbl()
            .SetOption
            .ok_or(codec_err("SetOption missing", -1))?;
        // SAFETY: callers pass a pointer to the type openh264 documents for `option`.
        Self::check("SetOption", unsafe { f(self.ptr, option, value) })
    }

    fn set_bitrate(&mut self, bps: u32) -> Result<(), EncodeError> {
        let mut info = sys::SBitrateInfo {
            iLayer: sys::SPATIAL_LAYER_ALL,
            iBitrate: c_int::try_from(bps)
                .map_err(|_| EncodeError::BadParam(format!("bitrate {bps}"), Codec::H264))?,
        };
        self.set_option(
            sys::ENCODER_OPTION_BITRATE,
            &mut info as *mut _ as *mut c_void,
        )
    }

    fn get_params(&mut self) -> Result<sys::SEncParamExt, EncodeError> {
        let f = self
            .vtbl()
            .GetOption
            .ok_or(codec_err("GetOption missing", -1))?;
        let mut p = sys::SEncParamExt::default();
        // SAFETY: ENCODER_OPTION_SVC_ENCODE_PARAM_EXT fills an SEncParamExt.
        Self::check("GetOption", unsafe {
            f(
                self.ptr,
                sys::ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
                &mut p as *mut _ as *mut c_void,
            )
        })?;
        Ok(p)
    }

    /// Change rate-control parameters that openh264 applies without a
    /// reset (the QP range and bitrates are not among its reset triggers).
    fn set_params(&mut self, p: &mut sys::SEncParamExt) -> Result<(), EncodeError> {
        self.set_option(
            sys::ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
            p as *mut _ as *mut c_void,
        )
    }

    fn force_intra(&mut self) -> Result<(), EncodeError> {
        let f = self
            .vtbl()
            .ForceIntraFrame
            .ok_or(codec_err("ForceIntraFrame missing", -1))?;
        // SAFETY: initialised instance.
        Self::check("ForceIntraFrame", unsafe { f(self.ptr, true) })
    }

    /// Encode one picture; returns the frame type and appends the bitstream.
    fn encode(
        &mut self,
        pic: &sys::SSourcePicture,
        bs: &mut sys::SFrameBSInfo,
        out: &mut Vec<u8>,
    ) -> Result<sys::EVideoFrameType, EncodeError> {
        let f = self
            .vtbl()
            .EncodeFrame
            .ok_or(codec_err("EncodeFrame missing", -1))?;
        // SAFETY: pic points at planes that live for this call; bs is ours.
        Self::check("EncodeFrame", unsafe { f(self.ptr, pic, bs) })?;
        let layers = usize::try_from(bs.iLayerNum)
            .unwrap_or(0)
            .min(bs.sLayerInfo.len());
        for layer in &bs.sLayerInfo[..layers] {
            let nals = usize::try_from(layer.iNalCount).unwrap_or(0);
            if nals == 0 || layer.pNalLengthInByte.is_null() || layer.pBsBuf.is_null() {
                continue;
            }
            // SAFETY: openh264 fills iNalCount lengths and a buffer holding
            // all those NAL units back to back, valid until the next call.
            let lens = unsafe { std::slice::from_raw_parts(layer.pNalLengthInByte, nals) };
            let total: usize = lens.iter().map(|&l| usize::try_from(l).unwrap_or(0)).sum();
            let bytes = unsafe { std::slice::from_raw_parts(layer.pBsBuf, total) };
            out.extend_from_slice(bytes);
        }
        Ok(bs.eFrameType)
    }
}

impl Drop for RawEncoder {
    fn drop(&mut self) {
        self.uninitialise();
        // SAFETY: created by WelsCreateSVCEncoder, destroyed exactly once.
        unsafe { sys::source::APILoader::WelsDestroySVCEncoder(self.ptr) };
    }
}

/// H.264 encoder (openh264).
pub struct H264Encoder {
    params: EncoderParams,
    raw: RawEncoder,
    /// Encoded size the instance is initialised for.
    size: Option<(u32, u32)>,
    prepare: Prepare,
    bitstream: Box<BitstreamInfo>,
    last_pts: Option<Duration>,
}

/// openh264's per-call output description; its pointers point into the
/// encoder's own buffers.
#[derive(Default)]
struct BitstreamInfo(sys::SFrameBSInfo);

// SAFETY: the raw pointers inside only refer to buffers of the encoder that
// owns this value and are only read right after EncodeFrame, on the thread
// that called it.
unsafe impl Send for BitstreamInfo {}

impl H264Encoder {
    pub fn new(params: EncoderParams) -> Result<H264Encoder, EncodeError> {
        if params.bitrate_bps == 0 || params.max_fps == 0 {
            return Err(EncodeError::BadParam(
                format!(
                    "bitrate {} bps at {} fps",
                    params.bitrate_bps, params.max_fps
                ),
                Codec::H264,
            ));
        }
        Ok(H264Encoder {
            params,
            raw: RawEncoder::new()?,
            size: None,
            prepare: Prepare::default(),
            bitstream: Box::default(),
            last_pts: None,
        })
    }

    fn configure(&mut self, width: u32, height: u32) -> Result<(), EncodeError> {
        let mut p = self.raw.default_params()?;
        let bitrate = c_int::try_from(self.params.bitrate_bps)
            .map_err(|_| EncodeError::BadParam("bitrate".into(), Codec::H264))?;
        let fps = self.params.max_fps as f32;
        p.iUsageType = match self.params.content {
            Content::Screen => sys::SCREEN_CONTENT_REAL_TIME,
            Content::Motion => sys::CAMERA_VIDEO_REAL_TIME,
        };
        p.iPicWidth = width as c_int;
        p.iPicHeight = height as c_int;
        p.iTargetBitrate = bitrate;
        p.iMaxBitrate = sys::UNSPECIFIED_BIT_RATE as c_int;
        p.iRCMode = sys::RC_BITRATE_MODE;
        // We pace frames ourselves; a frame we hand over must come out.
        p.bEnableFrameSkip = false;
        p.fMaxFrameRate = fps;
        p.iSpatialLayerNum = 1;
        p.iTemporalLayerNum = 1;
        // Keyframes only when asked for (joiners, losses): a periodic IDR
        // would be a bitrate spike every few seconds on a static desktop.
        p.uiIntraPeriod = 0;
        p.iNumRefFrame = 1;
        p.eSpsPpsIdStrategy = sys::CONSTANT_ID;
        p.iEntropyCodingModeFlag = 0;
        p.bEnableLongTermReference = false;
        p.bEnableDenoise = false;
        // Neither is supported in screen-content mode (openh264 turns them off).
        p.bEnableBackgroundDetection = false;
        p.bEnableAdaptiveQuant = false;
        p.bEnableSceneChangeDetect = true;
        p.iComplexityMode = sys::LOW_COMPLEXITY;
        // Without an explicit range, screen-content mode clamps QP to 26..35,
        // which caps quality whatever the bitrate (and cannot save bits on
        // hard content either).
        p.iMinQp = MIN_QP;
        p.iMaxQp = MAX_QP;
        // Two slices let openh264 encode with two threads; a picture of a
        // single macroblock row cannot be split.
        let slices = if height >= 32 { 2 } else { 1 };
        p.iMultipleThreadIdc = slices as u16;
        let layer = &mut p.sSpatialLayers[0];
        layer.iVideoWidth = width as c_int;
        layer.iVideoHeight = height as c_int;
        layer.fFrameRate = fps;
        layer.iSpatialBitrate = bitrate;
        layer.iMaxSpatialBitrate = sys::UNSPECIFIED_BIT_RATE as c_int;
        layer.uiProfileIdc = sys::PRO_BASELINE;
        layer.sSliceArgument.uiSliceMode = sys::SM_FIXEDSLCNUM_SLICE;
        layer.sSliceArgument.uiSliceNum = slices;
        self.raw.initialise(&p)?;
        self.size = Some((width, height));
        Ok(())
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
        if self.size != Some((w, h)) {
            // A new instance starts with an IDR anyway.
            self.configure(w, h)?;
        } else if force_keyframe || refresh {
            self.raw.force_intra()?;
        }
        let saved = if refresh {
            let saved = self.raw.get_params()?;
            let mut boosted = saved;
            boosted.iMaxQp = REFRESH_MAX_QP.min(saved.iMaxQp);
            boosted.iMinQp = boosted.iMinQp.min(boosted.iMaxQp);
            let rate = saved
                .iTargetBitrate
                .saturating_mul(REFRESH_BITRATE_FACTOR as c_int);
            boosted.iTargetBitrate = rate;
            boosted.sSpatialLayers[0].iSpatialBitrate = rate;
            self.raw.set_params(&mut boosted)?;
            Some(saved)
        } else {
            None
        };
        let i420 = self.prepare.to_i420(frame, w, h)?;
        let pic = sys::SSourcePicture {
            iColorFormat: sys::videoFormatI420 as c_int,
            iStride: [
                i420.y_stride() as c_int,
                i420.uv_stride() as c_int,
                i420.uv_stride() as c_int,
                0,
            ],
            // openh264 only reads the planes; the API is not const-correct.
            pData: [
                i420.y().as_ptr().cast_mut(),
                i420.u().as_ptr().cast_mut(),
                i420.v().as_ptr().cast_mut(),
                std::ptr::null_mut(),
            ],
            iPicWidth: w as c_int,
            iPicHeight: h as c_int,
            uiTimeStamp: pts.as_millis().min(i64::MAX as u128) as i64,
            bPsnrY: false,
            bPsnrU: false,
            bPsnrV: false,
        };
        let mut data = Vec::new();
        let result = self.raw.encode(&pic, &mut self.bitstream.0, &mut data);
        if let Some(mut saved) = saved {
            self.raw.set_params(&mut saved)?;
        }
        let frame_type = result?;
        if frame_type == sys::videoFrameTypeSkip || data.is_empty() {
            return Ok(None);
        }
        self.last_pts = Some(pts);
        Ok(Some(EncodedFrame {
            codec: Codec::H264,
            data,
            keyframe: frame_type == sys::videoFrameTypeIDR,
            refresh,
            pts,
            width: w,
            height: h,
            encode_time: started.elapsed(),
        }))
    }
}

impl VideoEncoder for H264Encoder {
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
        if bitrate_bps == 0 {
            return Err(EncodeError::BadParam("bitrate 0".into(), Codec::H264));
        }
        self.params.bitrate_bps = bitrate_bps;
        if self.size.is_some() {
            self.raw.set_bitrate(bitrate_bps)?;
        }
        Ok(())
    }

    fn params(&self) -> &EncoderParams {
        &self.params
    }
}

/// NAL unit types in an Annex B byte stream (for keyframe checks).
pub fn nal_unit_types(data: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(&header) = data.get(i + 3) {
                types.push(header & 0x1F);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    types
}

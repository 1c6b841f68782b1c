//! Scaling a frame down to an encoder's output size, with
//! `fast_image_resize` (SIMD convolution; bilinear is plenty for a downscale
//! of screen content and much cheaper than Lanczos).

use crate::frame::{Frame, FRAME_BPP};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

#[derive(Debug, thiserror::Error)]
#[error("scaling {from_w}x{from_h} to {to_w}x{to_h} failed: {reason}")]
pub struct ScaleError {
    pub from_w: u32,
    pub from_h: u32,
    pub to_w: u32,
    pub to_h: u32,
    pub reason: String,
}

/// Reusable scaler (keeps the resizer's buffers between frames).
pub struct Scaler {
    resizer: Resizer,
    options: ResizeOptions,
}

impl Default for Scaler {
    fn default() -> Self {
        Self::new()
    }
}

impl Scaler {
    pub fn new() -> Scaler {
        Scaler {
            resizer: Resizer::new(),
            // The X byte is not alpha: no premultiplication.
            options: ResizeOptions::new()
                .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
                .use_alpha(false),
        }
    }

    /// Scale `src` to `width`×`height` into `dst` (reallocated if its size
    /// differs).
    pub fn scale_into(
        &mut self,
        src: &Frame,
        width: u32,
        height: u32,
        dst: &mut Option<Frame>,
    ) -> Result<(), ScaleError> {
        let err = |reason: String| ScaleError {
            from_w: src.width(),
            from_h: src.height(),
            to_w: width,
            to_h: height,
            reason,
        };
        if !matches!(dst, Some(f) if f.width() == width && f.height() == height) {
            *dst = Some(Frame::new(width, height).map_err(|e| err(e.to_string()))?);
        }
        let Some(out) = dst.as_mut() else {
            return Err(err("no destination".into()));
        };
        let packed = src.packed();
        let src_img = ImageRef::new(src.width(), src.height(), &packed, PixelType::U8x4)
            .map_err(|e| err(e.to_string()))?;
        let stride = out.stride();
        debug_assert_eq!(stride, width as usize * FRAME_BPP);
        let mut dst_img = Image::from_slice_u8(width, height, out.data_mut(), PixelType::U8x4)
            .map_err(|e| err(e.to_string()))?;
        self.resizer
            .resize(&src_img, &mut dst_img, &self.options)
            .map_err(|e| err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downscale_produces_requested_size_and_averages() {
        let mut src = Frame::new(64, 32).unwrap();
        // Left half red, right half blue.
        src.fill_rect(0, 0, 32, 32, 0xFFFF_0000);
        src.fill_rect(32, 0, 32, 32, 0xFF00_00FF);
        let mut out = None;
        Scaler::new().scale_into(&src, 16, 8, &mut out).unwrap();
        let out = out.unwrap();
        assert_eq!((out.width(), out.height()), (16, 8));
        assert_eq!(out.pixel(0, 0), Some(0xFFFF_0000));
        assert_eq!(out.pixel(15, 7), Some(0xFF00_00FF));
    }
}

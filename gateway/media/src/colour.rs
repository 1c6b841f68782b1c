//! XRGB8888 ⇄ I420 with the `yuv` crate.
//!
//! Everything in pvgate uses **BT.601, limited range**: it is what H.264
//! decoders assume when the stream carries no colour description (openh264
//! writes none by default) and what VP8 is defined with, so browsers, our test
//! decoders and the encoders all agree without signalling.

use crate::frame::{Frame, FRAME_BPP};
use yuv::{
    BufferStoreMut, YuvConversionMode, YuvPlanarImage, YuvPlanarImageMut, YuvRange,
    YuvStandardMatrix,
};

const RANGE: YuvRange = YuvRange::Limited;
const MATRIX: YuvStandardMatrix = YuvStandardMatrix::Bt601;

#[derive(Debug, thiserror::Error)]
pub enum ColourError {
    #[error("I420 needs even dimensions, got {0}x{1}")]
    OddSize(u32, u32),
    #[error("I420 planes too small for {width}x{height}")]
    PlanesTooSmall { width: u32, height: u32 },
    #[error("colour conversion failed: {0}")]
    Yuv(String),
}

/// An I420 picture: a full-size luma plane and two quarter-size chroma
/// planes, each tightly packed.
#[derive(Clone, PartialEq, Eq)]
pub struct I420Frame {
    width: u32,
    height: u32,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl std::fmt::Debug for I420Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "I420Frame({}x{})", self.width, self.height)
    }
}

impl I420Frame {
    /// A black picture; dimensions must be even (what the encoders want).
    pub fn new(width: u32, height: u32) -> Result<I420Frame, ColourError> {
        if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(ColourError::OddSize(width, height));
        }
        let luma = width as usize * height as usize;
        Ok(I420Frame {
            width,
            height,
            y: vec![16; luma],
            u: vec![128; luma / 4],
            v: vec![128; luma / 4],
        })
    }

    /// Copy planes with arbitrary strides (as decoders hand them out).
    pub fn from_planes(
        width: u32,
        height: u32,
        (y, u, v): (&[u8], &[u8], &[u8]),
        (ys, us, vs): (usize, usize, usize),
    ) -> Result<I420Frame, ColourError> {
        let mut out = I420Frame::new(width, height)?;
        let (w, h) = (width as usize, height as usize);
        let copy = |dst: &mut [u8], src: &[u8], stride: usize, w: usize, h: usize| {
            for row in 0..h {
                let s = src
                    .get(row * stride..row * stride + w)
                    .ok_or(ColourError::PlanesTooSmall { width, height })?;
                dst[row * w..row * w + w].copy_from_slice(s);
            }
            Ok::<(), ColourError>(())
        };
        copy(&mut out.y, y, ys, w, h)?;
        copy(&mut out.u, u, us, w / 2, h / 2)?;
        copy(&mut out.v, v, vs, w / 2, h / 2)?;
        Ok(out)
    }

    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    pub fn y(&self) -> &[u8] {
        &self.y
    }
    pub fn u(&self) -> &[u8] {
        &self.u
    }
    pub fn v(&self) -> &[u8] {
        &self.v
    }
    pub fn y_stride(&self) -> usize {
        self.width as usize
    }
    pub fn uv_stride(&self) -> usize {
        self.width as usize / 2
    }

    /// Mutable access to all three planes at once (for decoders).
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        (&mut self.y, &mut self.u, &mut self.v)
    }

    /// Convert `frame` (same size) into this picture.
    pub fn fill_from_xrgb(&mut self, frame: &Frame) -> Result<(), ColourError> {
        if frame.width() != self.width || frame.height() != self.height {
            return Err(ColourError::Yuv(format!(
                "frame {}x{} into I420 {}x{}",
                frame.width(),
                frame.height(),
                self.width,
                self.height
            )));
        }
        let (w, h) = (self.width, self.height);
        let mut planar = YuvPlanarImageMut {
            y_plane: BufferStoreMut::Borrowed(&mut self.y),
            y_stride: w,
            u_plane: BufferStoreMut::Borrowed(&mut self.u),
            u_stride: w / 2,
            v_plane: BufferStoreMut::Borrowed(&mut self.v),
            v_stride: w / 2,
            width: w,
            height: h,
        };
        let stride = u32::try_from(frame.stride()).map_err(|e| ColourError::Yuv(e.to_string()))?;
        yuv::bgra_to_yuv420(
            &mut planar,
            frame.data(),
            stride,
            RANGE,
            MATRIX,
            YuvConversionMode::Balanced,
        )
        .map_err(|e| ColourError::Yuv(e.to_string()))
    }

    /// Convert back to an XRGB8888 frame.
    pub fn to_xrgb(&self) -> Result<Frame, ColourError> {
        let planar = YuvPlanarImage {
            y_plane: &self.y,
            y_stride: self.width,
            u_plane: &self.u,
            u_stride: self.width / 2,
            v_plane: &self.v,
            v_stride: self.width / 2,
            width: self.width,
            height: self.height,
        };
        let stride = self.width as usize * FRAME_BPP;
        let mut data = vec![0u8; stride * self.height as usize];
        yuv::yuv420_to_bgra(&planar, &mut data, stride as u32, RANGE, MATRIX)
            .map_err(|e| ColourError::Yuv(e.to_string()))?;
        for px in data.chunks_exact_mut(FRAME_BPP) {
            px[3] = 0xFF;
        }
        Frame::from_vec(self.width, self.height, stride, data)
            .map_err(|e| ColourError::Yuv(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bt601_limited_levels_and_round_trip() {
        let mut f = Frame::new(4, 2).unwrap();
        f.fill_rect(0, 0, 2, 2, 0xFFFF_FFFF);
        let mut i = I420Frame::new(4, 2).unwrap();
        i.fill_from_xrgb(&f).unwrap();
        // Limited range: white is Y=235, black Y=16, greys have neutral chroma.
        assert_eq!(&i.y()[..4], &[235, 235, 16, 16]);
        assert!(i.u().iter().chain(i.v()).all(|&c| (127..=129).contains(&c)));
        let back = i.to_xrgb().unwrap();
        let white = back.pixel(0, 0).unwrap();
        assert!((white & 0xFF) >= 0xFC, "{white:#x}");
        assert!(back.pixel(3, 1).unwrap() & 0xFF <= 3);
        assert!(I420Frame::new(3, 2).is_err());
    }
}

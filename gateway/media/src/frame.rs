//! The gateway's own copy of a guest screen.
//!
//! Everything downstream of the flip path (encoders, snapshots) reads this
//! frame, never guest memory: the guest may scribble over its buffers at any
//! time, our copy only changes when the flip path says so.

use std::sync::Arc;

/// Bytes per pixel of [`Frame`] (XRGB8888).
pub const FRAME_BPP: usize = 4;

/// A picture in XRGB8888: each pixel is the little-endian `u32` 0xXXRRGGBB,
/// so in memory B, G, R, X. This is also what libyuv and the `yuv` crate call
/// BGRA, which is why encoders can take it without a shuffle.
///
/// The X byte is always 0xFF in frames the flip path produces, so the same
/// bytes can be handed to anything that wants opaque BGRA (PNG snapshots).
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    width: u32,
    height: u32,
    stride: usize,
    data: Vec<u8>,
}

/// A frame shared between the flip path and encoders without copying.
pub type SharedFrame = Arc<Frame>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame size {width}x{height} is empty or too large")]
    BadSize { width: u32, height: u32 },
    #[error("frame buffer of {len} bytes is too small for {width}x{height} with stride {stride}")]
    BufferTooSmall {
        width: u32,
        height: u32,
        stride: usize,
        len: usize,
    },
}

/// The largest edge we accept; H.264 level 5.2 and our tiling both stay far
/// inside this, and it keeps every size computation below overflow.
pub const MAX_FRAME_EDGE: u32 = 8192;

impl Frame {
    /// A black, opaque frame.
    pub fn new(width: u32, height: u32) -> Result<Frame, FrameError> {
        let stride = Self::check_size(width, height)?;
        let mut data = vec![0u8; stride * height as usize];
        for px in data.chunks_exact_mut(FRAME_BPP) {
            px[3] = 0xFF;
        }
        Ok(Frame {
            width,
            height,
            stride,
            data,
        })
    }

    /// Wrap existing XRGB8888 bytes with the given stride (bytes per row).
    pub fn from_vec(
        width: u32,
        height: u32,
        stride: usize,
        data: Vec<u8>,
    ) -> Result<Frame, FrameError> {
        let min_stride = Self::check_size(width, height)?;
        let needed = stride
            .checked_mul(height as usize - 1)
            .and_then(|n| n.checked_add(min_stride));
        match needed {
            Some(n) if stride >= min_stride && data.len() >= n => Ok(Frame {
                width,
                height,
                stride,
                data,
            }),
            _ => Err(FrameError::BufferTooSmall {
                width,
                height,
                stride,
                len: data.len(),
            }),
        }
    }

    fn check_size(width: u32, height: u32) -> Result<usize, FrameError> {
        if width == 0 || height == 0 || width > MAX_FRAME_EDGE || height > MAX_FRAME_EDGE {
            return Err(FrameError::BadSize { width, height });
        }
        Ok(width as usize * FRAME_BPP)
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes from the start of one row to the start of the next.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// All bytes, rows `stride` apart.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// The visible bytes of row `y` (`width * 4` long), or `None` past the end.
    pub fn row(&self, y: u32) -> Option<&[u8]> {
        if y >= self.height {
            return None;
        }
        let start = y as usize * self.stride;
        self.data
            .get(start..start + self.width as usize * FRAME_BPP)
    }

    pub fn row_mut(&mut self, y: u32) -> Option<&mut [u8]> {
        if y >= self.height {
            return None;
        }
        let start = y as usize * self.stride;
        let end = start + self.width as usize * FRAME_BPP;
        self.data.get_mut(start..end)
    }

    /// The pixel at (x, y) as 0xXXRRGGBB.
    pub fn pixel(&self, x: u32, y: u32) -> Option<u32> {
        if x >= self.width {
            return None;
        }
        let row = self.row(y)?;
        let i = x as usize * FRAME_BPP;
        let b = row.get(i..i + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn set_pixel(&mut self, x: u32, y: u32, xrgb: u32) {
        if x >= self.width {
            return;
        }
        if let Some(row) = self.row_mut(y) {
            let i = x as usize * FRAME_BPP;
            if let Some(px) = row.get_mut(i..i + 4) {
                px.copy_from_slice(&xrgb.to_le_bytes());
            }
        }
    }

    /// Fill a rectangle (clipped to the frame) with one colour.
    pub fn fill_rect(&mut self, x: u32, y: u32, w: u32, h: u32, xrgb: u32) {
        let x_end = x.saturating_add(w).min(self.width);
        let y_end = y.saturating_add(h).min(self.height);
        let bytes = xrgb.to_le_bytes();
        for yy in y.min(self.height)..y_end {
            if let Some(row) = self.row_mut(yy) {
                let start = x as usize * FRAME_BPP;
                let end = x_end as usize * FRAME_BPP;
                if let Some(span) = row.get_mut(start..end) {
                    for px in span.chunks_exact_mut(FRAME_BPP) {
                        px.copy_from_slice(&bytes);
                    }
                }
            }
        }
    }

    /// The frame with rows packed (`stride == width * 4`), as encoders and
    /// ffmpeg's rawvideo input want it. Borrowed when already packed.
    pub fn packed(&self) -> std::borrow::Cow<'_, [u8]> {
        let row_len = self.width as usize * FRAME_BPP;
        if self.stride == row_len {
            std::borrow::Cow::Borrowed(&self.data[..row_len * self.height as usize])
        } else {
            let mut out = Vec::with_capacity(row_len * self.height as usize);
            for y in 0..self.height {
                if let Some(r) = self.row(y) {
                    out.extend_from_slice(r);
                }
            }
            std::borrow::Cow::Owned(out)
        }
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("stride", &self.stride)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_layout_is_little_endian_xrgb() {
        let mut f = Frame::new(3, 2).unwrap();
        f.set_pixel(1, 1, 0xFF11_2233);
        let row = f.row(1).unwrap();
        assert_eq!(&row[4..8], &[0x33, 0x22, 0x11, 0xFF]);
        assert_eq!(f.pixel(1, 1), Some(0xFF11_2233));
        assert_eq!(f.pixel(0, 0), Some(0xFF00_0000));
        assert_eq!(f.pixel(3, 0), None);
    }

    #[test]
    fn rejects_bad_sizes_and_short_buffers() {
        assert!(Frame::new(0, 1).is_err());
        assert!(Frame::new(MAX_FRAME_EDGE + 1, 1).is_err());
        assert!(Frame::from_vec(2, 2, 8, vec![0; 15]).is_err());
        assert!(Frame::from_vec(2, 2, 4, vec![0; 64]).is_err());
        let f = Frame::from_vec(2, 2, 12, vec![0; 20]).unwrap();
        assert_eq!(f.packed().len(), 16);
    }
}

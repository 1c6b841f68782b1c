//! A read-only window onto someone else's pixels: our own frames, a decoder's output, a
//! browser screenshot. The analysis functions (strip, cursor, text line, PSNR) read through it
//! so they work on whatever buffer a test happens to hold, without copying.

use thiserror::Error;

/// How the bytes of one pixel are laid out in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelLayout {
    /// 3 bytes `[R, G, B]` (e.g. `image::RgbImage`).
    Rgb,
    /// 4 bytes `[R, G, B, A]` (a browser canvas' `ImageData`, `image::RgbaImage`).
    Rgba,
    /// 4 bytes `[B, G, R, A/X]` (DRM XRGB8888/ARGB8888 in little-endian memory).
    Bgra,
    /// 1 byte of luma (the Y plane of an I420 picture from a decoder).
    Luma,
}

impl PixelLayout {
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelLayout::Rgb => 3,
            PixelLayout::Rgba | PixelLayout::Bgra => 4,
            PixelLayout::Luma => 1,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ViewError {
    #[error("image view {width}x{height}: stride {stride} bytes is less than a row ({row} bytes)")]
    StrideTooSmall {
        width: u32,
        height: u32,
        stride: usize,
        row: usize,
    },
    #[error("image view {width}x{height} stride {stride}: needs {needed} bytes, buffer has {len}")]
    BufferTooSmall {
        width: u32,
        height: u32,
        stride: usize,
        needed: usize,
        len: usize,
    },
    #[error("crop {x},{y} {w}x{h} is outside the {width}x{height} view")]
    CropOutside {
        x: u32,
        y: u32,
        w: u32,
        h: u32,
        width: u32,
        height: u32,
    },
}

#[derive(Clone, Copy, Debug)]
enum Pixels<'a> {
    Bytes(&'a [u8], PixelLayout),
    /// `0x00RRGGBB` words; stride counted in pixels.
    Xrgb(&'a [u32]),
}

/// A validated view: every `(x, y)` inside `width × height` is inside the buffer.
#[derive(Clone, Copy, Debug)]
pub struct ImageView<'a> {
    pixels: Pixels<'a>,
    width: u32,
    height: u32,
    /// Bytes per row for byte buffers, pixels per row for `u32` buffers.
    stride: usize,
    /// Index of pixel (0, 0) in the same units as `stride` (non-zero after a crop).
    origin: usize,
}

impl<'a> ImageView<'a> {
    /// A view of a byte buffer; `stride` is in bytes.
    pub fn new(
        data: &'a [u8],
        width: u32,
        height: u32,
        stride: usize,
        layout: PixelLayout,
    ) -> Result<Self, ViewError> {
        let row = (width as usize).saturating_mul(layout.bytes_per_pixel());
        if stride < row {
            return Err(ViewError::StrideTooSmall {
                width,
                height,
                stride,
                row,
            });
        }
        let needed = if height == 0 {
            0
        } else {
            stride
                .checked_mul(height as usize - 1)
                .and_then(|n| n.checked_add(row))
                .unwrap_or(usize::MAX)
        };
        if needed > data.len() {
            return Err(ViewError::BufferTooSmall {
                width,
                height,
                stride,
                needed,
                len: data.len(),
            });
        }
        Ok(ImageView {
            pixels: Pixels::Bytes(data, layout),
            width,
            height,
            stride,
            origin: 0,
        })
    }

    /// A view of a tightly packed XRGB8888 word buffer (our `Frame`). Sizes come from the frame
    /// itself; a short buffer yields a view clipped to the rows that exist.
    pub fn from_xrgb(data: &'a [u32], width: u32, height: u32) -> Self {
        let rows = if width == 0 {
            0
        } else {
            (data.len() / width as usize).min(height as usize) as u32
        };
        ImageView {
            pixels: Pixels::Xrgb(data),
            width,
            height: rows,
            stride: width as usize,
            origin: 0,
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }

    /// A sub-rectangle, e.g. the video area of a letterboxed browser screenshot.
    pub fn crop(&self, x: u32, y: u32, w: u32, h: u32) -> Result<ImageView<'a>, ViewError> {
        let fits = u64::from(x) + u64::from(w) <= u64::from(self.width)
            && u64::from(y) + u64::from(h) <= u64::from(self.height);
        if !fits {
            return Err(ViewError::CropOutside {
                x,
                y,
                w,
                h,
                width: self.width,
                height: self.height,
            });
        }
        let unit = match self.pixels {
            Pixels::Bytes(_, layout) => layout.bytes_per_pixel(),
            Pixels::Xrgb(_) => 1,
        };
        Ok(ImageView {
            origin: self.origin + y as usize * self.stride + x as usize * unit,
            width: w,
            height: h,
            ..*self
        })
    }

    /// `[r, g, b]` at `(x, y)`; black outside the view. Luma views return grey.
    pub fn rgb(&self, x: u32, y: u32) -> [u8; 3] {
        if x >= self.width || y >= self.height {
            return [0; 3];
        }
        match self.pixels {
            Pixels::Xrgb(words) => {
                let i = self.origin + y as usize * self.stride + x as usize;
                let px = words.get(i).copied().unwrap_or(0);
                [(px >> 16) as u8, (px >> 8) as u8, px as u8]
            }
            Pixels::Bytes(bytes, layout) => {
                let i =
                    self.origin + y as usize * self.stride + x as usize * layout.bytes_per_pixel();
                let b = |k: usize| bytes.get(i + k).copied().unwrap_or(0);
                match layout {
                    PixelLayout::Rgb | PixelLayout::Rgba => [b(0), b(1), b(2)],
                    PixelLayout::Bgra => [b(2), b(1), b(0)],
                    PixelLayout::Luma => [b(0); 3],
                }
            }
        }
    }

    /// BT.601 luma (full range, integer weights summing to 256) at `(x, y)`.
    pub fn luma(&self, x: u32, y: u32) -> u8 {
        if let Pixels::Bytes(bytes, PixelLayout::Luma) = self.pixels {
            let i = self.origin + y as usize * self.stride + x as usize;
            return if x < self.width && y < self.height {
                bytes.get(i).copied().unwrap_or(0)
            } else {
                0
            };
        }
        let [r, g, b] = self.rgb(x, y);
        luma_of(r, g, b)
    }

    /// Mean luma over a rectangle given in this view's pixels (clipped); `None` if empty.
    pub fn mean_luma(&self, r: super::frame::Rect) -> Option<u32> {
        let x0 = r.x0.clamp(0, i64::from(self.width)) as u32;
        let x1 = r.x1.clamp(0, i64::from(self.width)) as u32;
        let y0 = r.y0.clamp(0, i64::from(self.height)) as u32;
        let y1 = r.y1.clamp(0, i64::from(self.height)) as u32;
        let count = u64::from(x1.saturating_sub(x0)) * u64::from(y1.saturating_sub(y0));
        if count == 0 {
            return None;
        }
        let mut sum = 0u64;
        for y in y0..y1 {
            for x in x0..x1 {
                sum += u64::from(self.luma(x, y));
            }
        }
        Some((sum / count) as u32)
    }
}

/// BT.601 luma weights (0.299, 0.587, 0.114) scaled to 256.
pub fn luma_of(r: u8, g: u8, b: u8) -> u8 {
    ((77 * u32::from(r) + 150 * u32::from(g) + 29 * u32::from(b)) >> 8) as u8
}

/// Peak signal-to-noise ratio over R, G and B of two views of the same size, in dB
/// (`f64::INFINITY` when identical). `None` when the sizes differ.
pub fn psnr(a: &ImageView<'_>, b: &ImageView<'_>) -> Option<f64> {
    if a.width() != b.width() || a.height() != b.height() {
        return None;
    }
    let mut sse = 0u64;
    for y in 0..a.height() {
        for x in 0..a.width() {
            let (p, q) = (a.rgb(x, y), b.rgb(x, y));
            for k in 0..3 {
                let d = i64::from(p[k]) - i64::from(q[k]);
                sse += (d * d) as u64;
            }
        }
    }
    let n = 3 * u64::from(a.width()) * u64::from(a.height());
    if n == 0 {
        return None;
    }
    if sse == 0 {
        return Some(f64::INFINITY);
    }
    let mse = sse as f64 / n as f64;
    Some(10.0 * (255.0f64 * 255.0 / mse).log10())
}

#[cfg(test)]
mod tests {
    use super::super::frame::{rgb, Frame, Rect};
    use super::*;

    #[test]
    fn layouts_read_the_same_colour() {
        let (r, g, b) = (10u8, 200u8, 30u8);
        let rgb3 = [r, g, b, 0, 0, 0];
        let rgba = [r, g, b, 255, 0, 0, 0, 0];
        let bgra = [b, g, r, 0, 0, 0, 0, 0];
        for (data, layout) in [
            (&rgb3[..], PixelLayout::Rgb),
            (&rgba[..], PixelLayout::Rgba),
            (&bgra[..], PixelLayout::Bgra),
        ] {
            let v = ImageView::new(data, 2, 1, data.len(), layout).unwrap();
            assert_eq!(v.rgb(0, 0), [r, g, b], "{layout:?}");
            assert_eq!(v.luma(0, 0), luma_of(r, g, b));
            assert_eq!(v.rgb(5, 0), [0; 3], "outside reads black");
        }
        let luma = ImageView::new(&[77u8, 1], 2, 1, 2, PixelLayout::Luma).unwrap();
        assert_eq!((luma.luma(0, 0), luma.rgb(0, 0)), (77, [77; 3]));
        let words = [rgb(r, g, b)];
        assert_eq!(ImageView::from_xrgb(&words, 1, 1).rgb(0, 0), [r, g, b]);
    }

    #[test]
    fn bad_geometry_is_refused() {
        let buf = [0u8; 100];
        assert!(matches!(
            ImageView::new(&buf, 10, 2, 29, PixelLayout::Rgb),
            Err(ViewError::StrideTooSmall { .. })
        ));
        assert!(matches!(
            ImageView::new(&buf, 10, 4, 30, PixelLayout::Rgb),
            Err(ViewError::BufferTooSmall { needed: 120, .. })
        ));
        assert!(ImageView::new(&buf, 10, 3, 33, PixelLayout::Rgb).is_ok()); // 33*2+30 = 96
        assert!(ImageView::new(&buf, u32::MAX, 2, usize::MAX, PixelLayout::Rgba).is_err());
        let v = ImageView::new(&buf, 5, 5, 20, PixelLayout::Rgba).unwrap();
        assert!(v.crop(3, 3, 3, 1).is_err());
        assert!(v.crop(u32::MAX, 0, 2, 1).is_err());
        assert_eq!(v.crop(2, 3, 3, 2).unwrap().width(), 3);
    }

    #[test]
    fn crop_offsets_both_kinds_of_buffer() {
        let mut f = Frame::new(8, 6);
        f.set(5, 4, rgb(1, 2, 3));
        let v = f.view().crop(4, 3, 4, 3).unwrap();
        assert_eq!(v.rgb(1, 1), [1, 2, 3]);
        let bytes: Vec<u8> = f.pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
        let b = ImageView::new(&bytes, 8, 6, 32, PixelLayout::Bgra).unwrap();
        assert_eq!(b.crop(4, 3, 4, 3).unwrap().rgb(1, 1), [1, 2, 3]);
        assert_eq!(
            b.crop(4, 3, 4, 3)
                .unwrap()
                .crop(1, 1, 1, 1)
                .unwrap()
                .rgb(0, 0),
            [1, 2, 3]
        );
        let r = Rect {
            x0: 4,
            y0: 3,
            x1: 8,
            y1: 6,
        };
        assert_eq!(
            v.mean_luma(Rect {
                x0: -10,
                y0: -10,
                x1: 100,
                y1: 100
            }),
            f.view().mean_luma(r)
        );
    }

    #[test]
    fn psnr_of_known_errors() {
        let a = Frame::new(10, 10);
        let mut b = a.clone();
        assert_eq!(psnr(&a.view(), &b.view()), Some(f64::INFINITY));
        // Every channel off by 1: MSE 1 → 20·log10(255) ≈ 48.13 dB.
        b.fill_rect(0, 0, 10, 10, rgb(1, 1, 1));
        let p = psnr(&a.view(), &b.view()).unwrap();
        assert!((p - 48.1308).abs() < 1e-3, "{p}");
        assert_eq!(psnr(&a.view(), &Frame::new(10, 9).view()), None);
    }
}

//! Still pictures of a guest's screen, made from the gateway's own frame (not
//! from decoded video, so they show exactly what the guest flipped).

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use pvgate_media::Frame;

/// The picture formats we serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotFormat {
    Png,
    Jpeg,
}

impl SnapshotFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            SnapshotFormat::Png => "image/png",
            SnapshotFormat::Jpeg => "image/jpeg",
        }
    }
}

/// JPEG quality for snapshots: high enough that text stays readable.
const JPEG_QUALITY: u8 = 90;

/// XRGB8888 rows → tightly packed RGB8, the one layout both encoders take.
fn to_rgb(frame: &Frame) -> Vec<u8> {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..frame.height() {
        // Rows always exist for y < height; an absent row would be a bug in
        // Frame, and a black row is the harmless answer.
        match frame.row(y) {
            Some(row) => {
                for px in row[..w * 4].chunks_exact(4) {
                    rgb.extend_from_slice(&[px[2], px[1], px[0]]);
                }
            }
            None => rgb.resize(rgb.len() + w * 3, 0),
        }
    }
    rgb
}

/// Encode `frame` as a picture file.
pub fn encode(frame: &Frame, format: SnapshotFormat) -> Result<Vec<u8>, image::ImageError> {
    let rgb = to_rgb(frame);
    let mut out = Vec::new();
    match format {
        // Fast compression: snapshots are polled for thumbnails, and a
        // 1080p desktop still compresses well.
        SnapshotFormat::Png => {
            PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Sub)
                .write_image(&rgb, frame.width(), frame.height(), ExtendedColorType::Rgb8)?
        }
        SnapshotFormat::Jpeg => JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY).write_image(
            &rgb,
            frame.width(),
            frame.height(),
            ExtendedColorType::Rgb8,
        )?,
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_frame() -> Frame {
        let mut f = Frame::new(64, 48).unwrap();
        f.fill_rect(0, 0, 32, 48, 0x00FF_0000); // red left half
        f.fill_rect(32, 0, 32, 48, 0x0000_80FF); // blue-ish right half
        f
    }

    #[test]
    fn png_round_trips_exactly() {
        let frame = test_frame();
        let png = encode(&frame, SnapshotFormat::Png).unwrap();
        let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
            .unwrap()
            .to_rgb8();
        assert_eq!((img.width(), img.height()), (64, 48));
        assert_eq!(img.get_pixel(5, 5).0, [0xFF, 0, 0]);
        assert_eq!(img.get_pixel(40, 20).0, [0, 0x80, 0xFF]);
    }

    #[test]
    fn jpeg_is_close() {
        let frame = test_frame();
        let jpg = encode(&frame, SnapshotFormat::Jpeg).unwrap();
        let img = image::load_from_memory_with_format(&jpg, image::ImageFormat::Jpeg)
            .unwrap()
            .to_rgb8();
        let [r, g, b] = img.get_pixel(10, 24).0;
        assert!(r > 240 && g < 15 && b < 15, "{r} {g} {b}");
        let [r, g, b] = img.get_pixel(50, 24).0;
        assert!(
            r < 15 && (0x70..0x90).contains(&g) && b > 240,
            "{r} {g} {b}"
        );
    }
}

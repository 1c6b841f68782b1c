//! Small pictures of guest screens for the guest list: at most 320×180,
//! aspect kept, never enlarged, JPEG.

use pvgate_media::scale::Scaler;
use pvgate_media::Frame;

use super::snapshot::{self, SnapshotFormat};

/// The box a thumbnail fits in (16:9, the common screen shape).
pub const MAX_WIDTH: u32 = 320;
pub const MAX_HEIGHT: u32 = 180;

/// The thumbnail size of a `width`×`height` screen: the largest size that
/// fits the box with the screen's aspect, never larger than the screen,
/// never below 1 pixel.
pub fn size(width: u32, height: u32) -> (u32, u32) {
    let (w, h) = (u64::from(width.max(1)), u64::from(height.max(1)));
    let (mw, mh) = (u64::from(MAX_WIDTH), u64::from(MAX_HEIGHT));
    if w <= mw && h <= mh {
        return (w as u32, h as u32);
    }
    // Whichever edge is the tighter fit sets the scale; the other edge is
    // rounded to nearest (integer maths, so no float edge cases).
    if w * mh >= h * mw {
        (MAX_WIDTH, ((h * mw + w / 2) / w).clamp(1, mh) as u32)
    } else {
        (((w * mh + h / 2) / h).clamp(1, mw) as u32, MAX_HEIGHT)
    }
}

/// Scale `frame` into the thumbnail box and encode it as JPEG. CPU work:
/// call it off the async workers.
pub fn encode(frame: &Frame) -> anyhow::Result<Vec<u8>> {
    let (w, h) = size(frame.width(), frame.height());
    let jpeg = if (w, h) == (frame.width(), frame.height()) {
        snapshot::encode(frame, SnapshotFormat::Jpeg)?
    } else {
        let mut small = None;
        Scaler::new().scale_into(frame, w, h, &mut small)?;
        let small = small.ok_or_else(|| anyhow::anyhow!("the scaler produced no picture"))?;
        snapshot::encode(&small, SnapshotFormat::Jpeg)?
    };
    Ok(jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fit_the_box_and_keep_the_aspect() {
        assert_eq!(size(1280, 720), (320, 180));
        assert_eq!(size(1920, 1080), (320, 180));
        assert_eq!(size(1024, 768), (240, 180));
        assert_eq!(size(2560, 1080), (320, 135));
        assert_eq!(size(720, 1280), (101, 180));
        assert_eq!(size(8192, 16), (320, 1));
        assert_eq!(size(16, 8192), (1, 180));
        assert_eq!(size(100, 50), (100, 50), "never enlarged");
        assert_eq!(size(0, 0), (1, 1));
    }

    #[test]
    fn a_thumbnail_shows_the_screen_smaller() {
        let mut f = Frame::new(1280, 720).unwrap();
        f.fill_rect(0, 0, 640, 720, 0x00FF_0000);
        f.fill_rect(640, 0, 640, 720, 0x0000_00FF);
        let jpg = encode(&f).unwrap();
        let img = image::load_from_memory_with_format(&jpg, image::ImageFormat::Jpeg)
            .unwrap()
            .to_rgb8();
        assert_eq!(img.dimensions(), (320, 180));
        let [r, _, b] = img.get_pixel(40, 90).0;
        assert!(r > 230 && b < 30, "left is red: {r} {b}");
        let [r, _, b] = img.get_pixel(280, 90).0;
        assert!(r < 30 && b > 230, "right is blue: {r} {b}");
    }
}

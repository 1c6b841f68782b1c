//! Picture quality measures for tests and benchmarks.

use crate::frame::Frame;

/// PSNR in dB over the R, G and B samples of two same-size frames (the X byte
/// is ignored). Identical frames give `f64::INFINITY`; `None` if the sizes
/// differ.
pub fn psnr_rgb(a: &Frame, b: &Frame) -> Option<f64> {
    if a.width() != b.width() || a.height() != b.height() {
        return None;
    }
    let mut sum_sq: u64 = 0;
    for y in 0..a.height() {
        let (ra, rb) = (a.row(y)?, b.row(y)?);
        for (pa, pb) in ra.chunks_exact(4).zip(rb.chunks_exact(4)) {
            for c in 0..3 {
                let d = pa[c] as i64 - pb[c] as i64;
                sum_sq += (d * d) as u64;
            }
        }
    }
    let samples = a.width() as f64 * a.height() as f64 * 3.0;
    let mse = sum_sq as f64 / samples;
    if mse == 0.0 {
        return Some(f64::INFINITY);
    }
    Some(10.0 * (255.0f64 * 255.0 / mse).log10())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_known_error() {
        let a = Frame::new(8, 8).unwrap();
        let mut b = a.clone();
        assert_eq!(psnr_rgb(&a, &b), Some(f64::INFINITY));
        // Every R sample off by 10: MSE = 100 / 3.
        b.fill_rect(0, 0, 8, 8, 0xFF0A_0000);
        let p = psnr_rgb(&a, &b).unwrap();
        let want = 10.0 * (255.0f64 * 255.0 * 3.0 / 100.0).log10();
        assert!((p - want).abs() < 1e-9, "{p} vs {want}");
        assert_eq!(psnr_rgb(&a, &Frame::new(4, 4).unwrap()), None);
    }
}

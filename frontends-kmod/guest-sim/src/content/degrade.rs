//! Test-only picture damage standing in for what lossy video and browsers do to a frame:
//! blur, noise, block-transform quantisation and scaling. The readers (strip, cursor, text
//! line) are tested against these.

use super::frame::{channels, rgb, Frame};

fn clamp_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// Box blur of the given radius (a (2r+1)² mean), edges clamped.
pub fn box_blur(f: &Frame, radius: u32) -> Frame {
    let (w, h) = (f.width as i64, f.height as i64);
    let r = i64::from(radius);
    let px = |x: i64, y: i64| {
        channels(
            f.get(x.clamp(0, w - 1) as u32, y.clamp(0, h - 1) as u32)
                .unwrap_or(0),
        )
    };
    // Horizontal then vertical pass.
    let mut tmp = vec![[0u32; 3]; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            let mut s = [0u32; 3];
            for dx in -r..=r {
                let c = px(x + dx, y);
                for k in 0..3 {
                    s[k] += u32::from(c[k]);
                }
            }
            tmp[(y * w + x) as usize] = s;
        }
    }
    let n = ((2 * r + 1) * (2 * r + 1)) as u32;
    let mut out = Frame::new(f.width, f.height);
    for y in 0..h {
        for x in 0..w {
            let mut s = [0u32; 3];
            for dy in -r..=r {
                let c = tmp[(y + dy).clamp(0, h - 1) as usize * w as usize + x as usize];
                for k in 0..3 {
                    s[k] += c[k];
                }
            }
            out.set(
                x,
                y,
                rgb((s[0] / n) as u8, (s[1] / n) as u8, (s[2] / n) as u8),
            );
        }
    }
    out
}

/// Adds uniform noise in `[-amplitude, amplitude]` to every channel, deterministic per seed.
pub fn add_noise(f: &Frame, amplitude: i32, seed: u32) -> Frame {
    let mut s = u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % (2 * amplitude as u64 + 1)) as i32 - amplitude
    };
    let mut out = f.clone();
    for p in out.pixels.iter_mut() {
        let [r, g, b] = channels(*p);
        *p = rgb(
            clamp_u8(i32::from(r) + next()),
            clamp_u8(i32::from(g) + next()),
            clamp_u8(i32::from(b) + next()),
        );
    }
    out
}

/// JPEG-like damage: per 8×8 block and channel, a DCT, every coefficient quantised with step
/// `q` (high frequencies with a larger step, as codecs do), and the inverse DCT.
pub fn jpeg_like(f: &Frame, q: i32) -> Frame {
    let mut cos = [[0f32; 8]; 8];
    for (k, row) in cos.iter_mut().enumerate() {
        for (n, c) in row.iter_mut().enumerate() {
            let a = if k == 0 {
                (1.0f32 / 8.0).sqrt()
            } else {
                (2.0f32 / 8.0).sqrt()
            };
            *c = a * (std::f32::consts::PI * (2 * n + 1) as f32 * k as f32 / 16.0).cos();
        }
    }
    let mut step = [[0f32; 8]; 8];
    for (ky, row) in step.iter_mut().enumerate() {
        for (kx, v) in row.iter_mut().enumerate() {
            *v = (q * (1 + (kx + ky) as i32 / 3)) as f32;
        }
    }
    // 1-D DCT-II (forward) or DCT-III (inverse) of 8 values, orthonormal.
    let dct = |v: [f32; 8], inverse: bool| {
        let mut out = [0f32; 8];
        for (i, o) in out.iter_mut().enumerate() {
            let mut acc = 0.0;
            for (j, &x) in v.iter().enumerate() {
                acc += x * if inverse { cos[j][i] } else { cos[i][j] };
            }
            *o = acc;
        }
        out
    };
    let (w, h) = (f.width, f.height);
    let mut out = f.clone();
    for by in (0..h).step_by(8) {
        for bx in (0..w).step_by(8) {
            for ch in 0..3 {
                let mut blk = [[0f32; 8]; 8];
                for (y, row) in blk.iter_mut().enumerate() {
                    for (x, v) in row.iter_mut().enumerate() {
                        let p = f.get((bx + x as u32).min(w - 1), (by + y as u32).min(h - 1));
                        *v = f32::from(channels(p.unwrap_or(0))[ch]) - 128.0;
                    }
                }
                // Rows, then columns (transposing twice), quantise, and back.
                for row in blk.iter_mut() {
                    *row = dct(*row, false);
                }
                let mut t = [[0f32; 8]; 8];
                for x in 0..8 {
                    let col = dct(std::array::from_fn(|y| blk[y][x]), false);
                    for y in 0..8 {
                        t[y][x] = (col[y] / step[y][x]).round() * step[y][x];
                    }
                }
                for x in 0..8 {
                    let col = dct(std::array::from_fn(|y| t[y][x]), true);
                    for y in 0..8 {
                        blk[y][x] = col[y];
                    }
                }
                for (y, row) in blk.iter().enumerate() {
                    let back = dct(*row, true);
                    for (x, v) in back.iter().enumerate() {
                        let (px, py) = (bx + x as u32, by + y as u32);
                        if px < w && py < h {
                            let i = (py * w + px) as usize;
                            let mut cs = channels(out.pixels[i]);
                            cs[ch] = clamp_u8((v + 128.0).round() as i32);
                            out.pixels[i] = rgb(cs[0], cs[1], cs[2]);
                        }
                    }
                }
            }
        }
    }
    out
}

/// Bilinear resampling with pixel-centre alignment (what a browser canvas does to a frame).
pub fn scale_bilinear(f: &Frame, w: u32, h: u32) -> Frame {
    let mut out = Frame::new(w, h);
    let sx = f.width as f32 / w as f32;
    let sy = f.height as f32 / h as f32;
    for y in 0..h {
        let fy = ((y as f32 + 0.5) * sy - 0.5).max(0.0);
        let y0 = (fy as u32).min(f.height - 1);
        let y1 = (y0 + 1).min(f.height - 1);
        let ty = fy - y0 as f32;
        for x in 0..w {
            let fx = ((x as f32 + 0.5) * sx - 0.5).max(0.0);
            let x0 = (fx as u32).min(f.width - 1);
            let x1 = (x0 + 1).min(f.width - 1);
            let tx = fx - x0 as f32;
            let c = |xx, yy| channels(f.get(xx, yy).unwrap_or(0));
            let (a, b, cc, d) = (c(x0, y0), c(x1, y0), c(x0, y1), c(x1, y1));
            let mut o = [0u8; 3];
            for k in 0..3 {
                let top = f32::from(a[k]) * (1.0 - tx) + f32::from(b[k]) * tx;
                let bot = f32::from(cc[k]) * (1.0 - tx) + f32::from(d[k]) * tx;
                o[k] = (top * (1.0 - ty) + bot * ty).round() as u8;
            }
            out.set(i64::from(x), i64::from(y), rgb(o[0], o[1], o[2]));
        }
    }
    out
}

/// 4:2:0 chroma subsampling as every H.264/VP8 encoder does it: BT.601 Y'CbCr, chroma averaged
/// over each 2×2 block, back to RGB.
pub fn chroma_420(f: &Frame) -> Frame {
    use super::pixfmt::{rgb_to_ycbcr, ycbcr_to_rgb};
    let (w, h) = (f.width, f.height);
    let ycc = |x: u32, y: u32| {
        let [r, g, b] = channels(f.get(x.min(w - 1), y.min(h - 1)).unwrap_or(0));
        rgb_to_ycbcr(r, g, b)
    };
    let mut out = Frame::new(w, h);
    for by in (0..h).step_by(2) {
        for bx in (0..w).step_by(2) {
            let block = [
                ycc(bx, by),
                ycc(bx + 1, by),
                ycc(bx, by + 1),
                ycc(bx + 1, by + 1),
            ];
            let cb = (block.iter().map(|c| u32::from(c.1)).sum::<u32>() + 2) / 4;
            let cr = (block.iter().map(|c| u32::from(c.2)).sum::<u32>() + 2) / 4;
            for (k, (dx, dy)) in [(0, 0), (1, 0), (0, 1), (1, 1)].into_iter().enumerate() {
                let [r, g, b] = ycbcr_to_rgb(block[k].0, cb as u8, cr as u8);
                out.set(i64::from(bx + dx), i64::from(by + dy), rgb(r, g, b));
            }
        }
    }
    out
}

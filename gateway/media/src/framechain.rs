//! The flip path's frames: update only the changed tiles, and still hand
//! every encoder an immutable, shareable picture.
//!
//! Encoders keep the last frame they got (for keyframe requests and the
//! refresh), so the frame the flip path just published is almost always still
//! shared and cannot be written in place. Cloning it on every flip would copy
//! the whole screen each time, undoing the point of damage tracking. Instead a
//! few frames are recycled: a free one (nobody else holds it) is brought up to
//! date by copying from the current frame only the tiles that changed since it
//! was current, then the new damage is copied into it from the guest's buffer.

use crate::damage::{Damage, DamageError, DamageTracker, TILE};
use crate::frame::{Frame, SharedFrame, FRAME_BPP};
use crate::source::SourceBuffer;
use std::sync::Arc;

/// Frames kept for reuse besides the current one.
const POOL: usize = 3;

pub struct FrameChain {
    current: SharedFrame,
    /// Generation of `current`; bumped by every update with damage.
    generation: u64,
    /// Per tile: the generation that last changed it.
    tile_generation: Vec<u64>,
    tiles_x: u32,
    /// Older frames and the generation each one shows.
    pool: Vec<(SharedFrame, u64)>,
}

impl FrameChain {
    /// Start from a black frame of the framebuffer's size.
    pub fn new(width: u32, height: u32) -> Result<FrameChain, crate::frame::FrameError> {
        let tiles_x = width.div_ceil(TILE);
        let tiles = tiles_x as usize * height.div_ceil(TILE) as usize;
        Ok(FrameChain {
            current: Arc::new(Frame::new(width, height)?),
            generation: 0,
            tile_generation: vec![0; tiles],
            tiles_x,
            pool: Vec::with_capacity(POOL),
        })
    }

    /// The newest picture.
    pub fn current(&self) -> &SharedFrame {
        &self.current
    }

    /// Apply a flip: find and copy what changed in `src`. Returns the picture
    /// to publish (the same `Arc` as before when nothing changed) and the
    /// damage.
    pub fn update<S: SourceBuffer + ?Sized>(
        &mut self,
        tracker: &mut DamageTracker,
        src: &S,
    ) -> Result<(SharedFrame, Damage), DamageError> {
        let mut buf = self.take_free_frame();
        let damage = match Arc::get_mut(&mut buf.0) {
            Some(frame) => {
                self.catch_up(frame, buf.1);
                tracker.update(src, frame)?
            }
            // take_free_frame only returns unshared frames; if that ever
            // fails, a private copy is still correct.
            None => {
                let mut frame = (*self.current).clone();
                let d = tracker.update(src, &mut frame)?;
                buf.0 = Arc::new(frame);
                d
            }
        };
        if damage.is_empty() {
            // Up to date and unchanged: keep it for next time.
            self.pool.push((buf.0, self.generation));
            return Ok((self.current.clone(), damage));
        }
        self.generation += 1;
        for &t in &damage.tiles {
            if let Some(g) = self.tile_generation.get_mut(t as usize) {
                *g = self.generation;
            }
        }
        let previous = std::mem::replace(&mut self.current, buf.0);
        self.pool.push((previous, self.generation - 1));
        if self.pool.len() > POOL {
            // Drop the oldest; the newest are cheapest to catch up.
            self.pool.remove(0);
        }
        Ok((self.current.clone(), damage))
    }

    /// A frame nobody else holds, with the generation it shows; a copy of
    /// the current frame if every pooled one is still in use.
    fn take_free_frame(&mut self) -> (SharedFrame, u64) {
        // Oldest first would make catching up cost more; prefer the newest.
        if let Some(i) = (0..self.pool.len())
            .rev()
            .find(|&i| Arc::strong_count(&self.pool[i].0) == 1)
        {
            return self.pool.swap_remove(i);
        }
        ((Arc::new((*self.current).clone())), self.generation)
    }

    /// Copy into `frame` (showing generation `since`) every tile that changed
    /// after it, from the current frame.
    fn catch_up(&self, frame: &mut Frame, since: u64) {
        if since >= self.generation {
            return;
        }
        let (w, h) = (frame.width(), frame.height());
        for (t, &g) in self.tile_generation.iter().enumerate() {
            if g <= since {
                continue;
            }
            let (tx, ty) = (t as u32 % self.tiles_x, t as u32 / self.tiles_x);
            let x0 = (tx * TILE) as usize * FRAME_BPP;
            let x1 = ((tx + 1) * TILE).min(w) as usize * FRAME_BPP;
            for y in ty * TILE..((ty + 1) * TILE).min(h) {
                if let (Some(src), Some(dst)) = (self.current.row(y), frame.row_mut(y)) {
                    dst[x0..x1].copy_from_slice(&src[x0..x1]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::damage::SourceLayout;
    use crate::pixfmt::PixelFormat;

    fn set(src: &mut [u8], w: u32, x: u32, y: u32, v: u32) {
        let o = (y * w + x) as usize * 4;
        src[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn published_frames_stay_intact_and_new_ones_are_complete() {
        let (w, h) = (200, 130);
        let layout = SourceLayout::dumb(w, h, PixelFormat::Xrgb8888, 0).unwrap();
        let mut tracker = DamageTracker::new(layout).unwrap();
        let mut chain = FrameChain::new(w, h).unwrap();
        let mut src = vec![0u8; (w * h * 4) as usize];
        let mut held = Vec::new();
        // Each flip changes one pixel in a different tile; an "encoder" keeps
        // every published frame alive, so frames must be recycled correctly.
        let spots = [
            (10, 10),
            (150, 20),
            (70, 100),
            (190, 120),
            (10, 10),
            (100, 64),
        ];
        for (i, &(x, y)) in spots.iter().enumerate() {
            set(&mut src, w, x, y, 0x0010_0000 * (i as u32 + 1));
            let (frame, damage) = chain.update(&mut tracker, &src).unwrap();
            if i > 0 {
                assert_eq!(damage.tiles.len(), 1, "flip {i}");
            }
            // The new frame shows every change so far.
            for (j, &(xx, yy)) in spots[..=i].iter().enumerate() {
                let last_write = spots[..=i].iter().rposition(|&p| p == (xx, yy)).unwrap();
                if j == last_write {
                    assert_eq!(
                        frame.pixel(xx, yy),
                        Some(0xFF00_0000 | (0x0010_0000 * (j as u32 + 1)))
                    );
                }
            }
            held.push((frame, src.clone()));
            // Let go of the oldest so recycling happens.
            if held.len() > 2 {
                held.remove(0);
            }
            // Frames still held never changed after publication.
            for (f, bytes) in &held {
                let expect = Frame::from_vec(w, h, (w * 4) as usize, bytes.clone()).unwrap();
                for (xx, yy) in spots {
                    assert_eq!(f.pixel(xx, yy).map(|p| p & 0xFF_FFFF), expect.pixel(xx, yy));
                }
            }
        }
        // No damage: the very same Arc comes back.
        let before = chain.current().clone();
        let (again, damage) = chain.update(&mut tracker, &src).unwrap();
        assert!(damage.is_empty());
        assert!(Arc::ptr_eq(&before, &again));
    }
}

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

/// Older frames the chain keeps a reference to. Each encoder can hold up to
/// three different older frames (its input slot, its pending frame, the last
/// one it encoded, kept for the refresh), and a snapshot one more; a frame
/// the chain has forgotten must be cloned whole when it is needed again, so
/// the chain remembers enough of them for two encoders. Holding a reference
/// to a frame somebody else holds costs no memory.
const POOL: usize = 8;

/// Of those, how many may be free (held by nobody else) at once: a free
/// frame is memory the chain alone keeps alive, and one or two are all a
/// flip ever needs.
const FREE_KEPT: usize = 2;

pub struct FrameChain {
    current: SharedFrame,
    /// Generation of `current`; bumped by every update with damage.
    generation: u64,
    /// Per tile: the generation that last changed it.
    tile_generation: Vec<u64>,
    tiles_x: u32,
    /// Older frames and the generation each one shows, oldest first.
    pool: Vec<(SharedFrame, u64)>,
    /// Bytes written into frames by the last update (tile copies, catch-up,
    /// whole-frame clones).
    last_copied: u64,
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
            pool: Vec::with_capacity(POOL + 1),
            last_copied: 0,
        })
    }

    /// The newest picture.
    pub fn current(&self) -> &SharedFrame {
        &self.current
    }

    /// Bytes the last [`Self::update`] wrote into frames: the damaged tiles
    /// (as XRGB8888), the tiles a recycled frame had to catch up on, and a
    /// whole frame when no recycled one was free.
    pub fn last_copied_bytes(&self) -> u64 {
        self.last_copied
    }

    /// Apply a flip: find and copy what changed in `src`. Returns the picture
    /// to publish (the same `Arc` as before when nothing changed) and the
    /// damage.
    pub fn update<S: SourceBuffer + ?Sized>(
        &mut self,
        tracker: &mut DamageTracker,
        src: &S,
    ) -> Result<(SharedFrame, Damage), DamageError> {
        self.last_copied = 0;
        // Nobody else holds the current frame (the first flip, or every
        // viewer gone): write into it in place. If the update fails half-way
        // the frame is stale in places, and so is the tracker, which the
        // caller invalidates: the next update then rewrites every tile.
        if let Some(frame) = Arc::get_mut(&mut self.current) {
            let damage = tracker.update(src, frame)?;
            self.last_copied = damage_bytes(&damage);
            if !damage.is_empty() {
                self.generation += 1;
                self.mark(&damage);
            }
            return Ok((self.current.clone(), damage));
        }
        let mut buf = self.take_free_frame();
        let damage = match Arc::get_mut(&mut buf.0) {
            Some(frame) => {
                self.last_copied += self.catch_up(frame, buf.1);
                tracker.update(src, frame)?
            }
            // take_free_frame only returns unshared frames; if that ever
            // fails, a private copy is still correct.
            None => {
                let mut frame = (*self.current).clone();
                self.last_copied += frame.data().len() as u64;
                let d = tracker.update(src, &mut frame)?;
                buf.0 = Arc::new(frame);
                d
            }
        };
        self.last_copied += damage_bytes(&damage);
        if damage.is_empty() {
            // Up to date and unchanged: keep it for next time.
            self.pool.push((buf.0, self.generation));
            self.trim_pool();
            return Ok((self.current.clone(), damage));
        }
        self.generation += 1;
        self.mark(&damage);
        let previous = std::mem::replace(&mut self.current, buf.0);
        self.pool.push((previous, self.generation - 1));
        self.trim_pool();
        Ok((self.current.clone(), damage))
    }

    /// Record that `damage`'s tiles changed in the current generation.
    fn mark(&mut self, damage: &Damage) {
        for &t in &damage.tiles {
            if let Some(g) = self.tile_generation.get_mut(t as usize) {
                *g = self.generation;
            }
        }
    }

    /// Keep at most [`FREE_KEPT`] free frames and [`POOL`] in all, dropping
    /// the oldest first: the newest are the cheapest to catch up.
    fn trim_pool(&mut self) {
        let mut free = self
            .pool
            .iter()
            .filter(|(f, _)| Arc::strong_count(f) == 1)
            .count();
        let mut i = 0;
        while i < self.pool.len() && free > FREE_KEPT {
            if Arc::strong_count(&self.pool[i].0) == 1 {
                self.pool.remove(i);
                free -= 1;
            } else {
                i += 1;
            }
        }
        while self.pool.len() > POOL {
            self.pool.remove(0);
        }
    }

    /// A frame nobody else holds, with the generation it shows; a copy of
    /// the current frame if every pooled one is still in use.
    fn take_free_frame(&mut self) -> (SharedFrame, u64) {
        // Oldest first would make catching up cost more; prefer the newest.
        // `remove`, not `swap_remove`: the pool stays oldest first.
        if let Some(i) = (0..self.pool.len())
            .rev()
            .find(|&i| Arc::strong_count(&self.pool[i].0) == 1)
        {
            return self.pool.remove(i);
        }
        self.last_copied += self.current.data().len() as u64;
        ((Arc::new((*self.current).clone())), self.generation)
    }

    /// Copy into `frame` (showing generation `since`) every tile that changed
    /// after it, from the current frame; returns the bytes copied.
    fn catch_up(&self, frame: &mut Frame, since: u64) -> u64 {
        if since >= self.generation {
            return 0;
        }
        let mut copied = 0u64;
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
                    copied += (x1 - x0) as u64;
                }
            }
        }
        copied
    }
}

/// Bytes the tracker wrote for `damage` (XRGB8888 frames).
fn damage_bytes(damage: &Damage) -> u64 {
    damage
        .rects
        .iter()
        .map(|r| u64::from(r.w) * u64::from(r.h) * FRAME_BPP as u64)
        .sum()
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

    #[test]
    fn a_one_tile_flip_copies_about_one_tile_while_frames_are_held() {
        let (w, h) = (1280, 720);
        let layout = SourceLayout::dumb(w, h, PixelFormat::Xrgb8888, 0).unwrap();
        let mut tracker = DamageTracker::new(layout).unwrap();
        let mut chain = FrameChain::new(w, h).unwrap();
        let mut src = vec![0u8; (w * h * 4) as usize];
        let frame_bytes = u64::from(w * h) * 4;
        let tile_bytes = u64::from(TILE * TILE) * 4;
        // The first flip copies every tile.
        let (first, _) = chain.update(&mut tracker, &src).unwrap();
        assert_eq!(chain.last_copied_bytes(), frame_bytes);
        // Like the gateway: the snapshot slot and the encoders hold the four
        // newest frames.
        let mut held: Vec<SharedFrame> = vec![first];
        for i in 0..40u32 {
            let (x, y) = ((i * 97) % w, (i * 53) % h);
            set(&mut src, w, x, y, 0x0001_0000 + i);
            let (frame, damage) = chain.update(&mut tracker, &src).unwrap();
            assert_eq!(damage.tiles.len(), 1);
            let copied = chain.last_copied_bytes();
            // Warm-up: until the pool has frames nobody holds, a new frame is
            // a whole clone. After that: this flip's tile plus the tiles the
            // recycled frame missed (four flips' worth here).
            if i >= 8 {
                assert!(
                    copied <= 8 * tile_bytes,
                    "flip {i} copied {copied} bytes (one tile is {tile_bytes})"
                );
            }
            assert_eq!(frame.pixel(x, y), Some(0xFF00_0000 | (0x0001_0000 + i)));
            held.push(frame);
            if held.len() > 4 {
                held.remove(0);
            }
        }
        // Fewer frames than that are never all held: the pool recycles.
        assert!(chain.pool.len() <= POOL);
    }
}

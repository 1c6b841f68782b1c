//! The capture jitter buffer: PCM from a viewer's microphone, already in the
//! stream's format, waiting for the guest's READs.
//!
//! Bounded both ways. A viewer that sends faster than the guest reads (its
//! clock runs fast, or the guest stopped reading) makes the oldest frames
//! go: latency stays at most `capacity`. A viewer that sends too slowly (or
//! not at all) gets silence served in place of the missing frames, and the
//! buffer then waits until it holds `target` again before serving audio,
//! so network jitter becomes one gap rather than many small ones.

use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct JitterBuffer {
    fifo: VecDeque<u8>,
    frame_bytes: usize,
    capacity: usize,
    target: usize,
    silence_frame: Vec<u8>,
    buffering: bool,
    dropped_frames: u64,
    silence_frames: u64,
}

/// What a read served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    pub data_bytes: usize,
    pub silence_bytes: usize,
}

impl JitterBuffer {
    /// `silence_frame`: one frame of silence in the stream's format (its
    /// length is the frame size). `target_frames` is clamped to the
    /// capacity.
    pub fn new(silence_frame: Vec<u8>, target_frames: usize, capacity_frames: usize) -> Self {
        let frame_bytes = silence_frame.len().max(1);
        let capacity_frames = capacity_frames.max(1);
        Self {
            fifo: VecDeque::with_capacity((capacity_frames * frame_bytes).min(1 << 20)),
            frame_bytes,
            capacity: capacity_frames * frame_bytes,
            target: target_frames.min(capacity_frames) * frame_bytes,
            silence_frame,
            buffering: true,
            dropped_frames: 0,
            silence_frames: 0,
        }
    }

    pub fn buffered_frames(&self) -> usize {
        self.fifo.len() / self.frame_bytes
    }

    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    pub fn silence_frames(&self) -> u64 {
        self.silence_frames
    }

    /// Adds whole frames (a trailing partial frame is ignored); drops the
    /// oldest frames beyond the capacity.
    pub fn push(&mut self, bytes: &[u8]) {
        let whole = bytes.len() - bytes.len() % self.frame_bytes;
        self.fifo.extend(&bytes[..whole]);
        if self.fifo.len() > self.capacity {
            let excess = self.fifo.len() - self.capacity;
            self.fifo.drain(..excess);
            self.dropped_frames += (excess / self.frame_bytes) as u64;
        }
    }

    /// Serves `len` bytes into `out`: buffered frames first, silence for
    /// the rest.
    pub fn read(&mut self, len: usize, out: &mut Vec<u8>) -> ReadOutcome {
        if self.buffering && self.fifo.len() >= self.target.max(1) {
            self.buffering = false;
        }
        let mut outcome = ReadOutcome::default();
        if !self.buffering {
            let whole = len - len % self.frame_bytes;
            let n = whole.min(self.fifo.len());
            out.extend(self.fifo.drain(..n));
            outcome.data_bytes = n;
            if n < whole {
                // Ran dry: refill to the target before serving audio again.
                self.buffering = true;
            }
        }
        let rest = len - outcome.data_bytes;
        out.extend(self.silence_frame.iter().copied().cycle().take(rest));
        outcome.silence_bytes = rest;
        self.silence_frames += rest.div_ceil(self.frame_bytes) as u64;
        outcome
    }

    pub fn clear(&mut self) {
        self.fifo.clear();
        self.buffering = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_target_then_serves_then_pads_with_silence() {
        // 2-byte frames, silence 0x80 0x80 (U8 stereo), target 2, capacity 4.
        let mut j = JitterBuffer::new(vec![0x80, 0x80], 2, 4);
        let mut out = Vec::new();
        j.push(&[1, 1]);
        assert_eq!(
            j.read(2, &mut out),
            ReadOutcome {
                data_bytes: 0,
                silence_bytes: 2
            }
        );
        assert_eq!(out, vec![0x80, 0x80]);
        j.push(&[2, 2, 9]);
        out.clear();
        assert_eq!(
            j.read(6, &mut out),
            ReadOutcome {
                data_bytes: 4,
                silence_bytes: 2
            }
        );
        assert_eq!(out, vec![1, 1, 2, 2, 0x80, 0x80]);
        assert_eq!(j.silence_frames(), 2);
    }

    #[test]
    fn fast_sender_loses_oldest_frames_and_stays_bounded() {
        let mut j = JitterBuffer::new(vec![0; 2], 1, 4);
        for i in 0..100u8 {
            j.push(&[i, i]);
            assert!(j.buffered_frames() <= 4);
        }
        assert_eq!(j.dropped_frames(), 96);
        let mut out = Vec::new();
        j.read(8, &mut out);
        assert_eq!(out, vec![96, 96, 97, 97, 98, 98, 99, 99]);
    }
}

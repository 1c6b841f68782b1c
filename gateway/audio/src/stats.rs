//! Counters for /metrics, per stream: a plain snapshot type, and a shared
//! cell the stream's owner publishes into and the metrics endpoint reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::pacing::PacingStats;

/// A snapshot of one stream's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioStats {
    /// Times the guest's data ran out while the stream was due to play.
    pub underruns: u64,
    /// Frames of silence played in place of missing data.
    pub silence_frames: u64,
    /// Octets a guest wrote beyond its buffer size (dropped).
    pub overflow_bytes: u64,
    /// Frames a guest wrote after their position had played as silence.
    pub late_frames_skipped: u64,
    pub cur_pos_events: u64,
    pub cur_pos_coalesced: u64,
    /// Lateness of CUR_POS events behind their period boundary.
    pub cur_pos_lag_last_ns: u64,
    pub cur_pos_lag_max_ns: u64,
    pub frames_encoded: u64,
    pub bytes_encoded: u64,
    pub encode_errors: u64,
    /// Capture: frames dropped because a viewer sent faster than the
    /// guest read, frames of silence served on READ, packets refused.
    pub capture_dropped_frames: u64,
    pub capture_silence_frames: u64,
    pub capture_bad_packets: u64,
    /// Samples that were NaN or infinite before Opus and were encoded as
    /// silence.
    pub nonfinite_samples: u64,
    /// Frames (at the stream's rate) that the pacer released but the
    /// encoder dropped because it had fallen too far behind.
    pub encode_dropped_frames: u64,
}

impl AudioStats {
    /// Takes the pacer's counters into this snapshot.
    pub fn with_pacing(mut self, p: PacingStats) -> Self {
        self.underruns = p.underruns;
        self.silence_frames = p.silence_frames;
        self.overflow_bytes = p.overflow_bytes;
        self.late_frames_skipped = p.late_frames_skipped;
        self.cur_pos_events = p.cur_pos_events;
        self.cur_pos_coalesced = p.coalesced_events;
        self.cur_pos_lag_last_ns = p.cur_pos_lag_last_ns;
        self.cur_pos_lag_max_ns = p.cur_pos_lag_max_ns;
        self
    }

    fn fields(&self) -> [u64; FIELDS] {
        [
            self.underruns,
            self.silence_frames,
            self.overflow_bytes,
            self.cur_pos_events,
            self.cur_pos_coalesced,
            self.cur_pos_lag_last_ns,
            self.cur_pos_lag_max_ns,
            self.frames_encoded,
            self.bytes_encoded,
            self.encode_errors,
            self.capture_dropped_frames,
            self.capture_silence_frames,
            self.capture_bad_packets,
            self.late_frames_skipped,
            self.nonfinite_samples,
            self.encode_dropped_frames,
        ]
    }

    fn from_fields(f: [u64; FIELDS]) -> Self {
        Self {
            underruns: f[0],
            silence_frames: f[1],
            overflow_bytes: f[2],
            cur_pos_events: f[3],
            cur_pos_coalesced: f[4],
            cur_pos_lag_last_ns: f[5],
            cur_pos_lag_max_ns: f[6],
            frames_encoded: f[7],
            bytes_encoded: f[8],
            encode_errors: f[9],
            capture_dropped_frames: f[10],
            capture_silence_frames: f[11],
            capture_bad_packets: f[12],
            late_frames_skipped: f[13],
            nonfinite_samples: f[14],
            encode_dropped_frames: f[15],
        }
    }
}

const FIELDS: usize = 16;

/// A stream's latest counters, readable from any thread without locking
/// the stream. Each field is individually atomic; a reader may see fields
/// from two neighbouring publishes, which is fine for metrics.
#[derive(Debug, Clone, Default)]
pub struct SharedAudioStats {
    cells: Arc<[AtomicU64; FIELDS]>,
}

impl SharedAudioStats {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn publish(&self, stats: &AudioStats) {
        for (cell, v) in self.cells.iter().zip(stats.fields()) {
            cell.store(v, Ordering::Relaxed);
        }
    }

    pub fn load(&self) -> AudioStats {
        AudioStats::from_fields(std::array::from_fn(|i| {
            self.cells[i].load(Ordering::Relaxed)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_then_load_round_trips_every_field() {
        let s = AudioStats::from_fields(std::array::from_fn(|i| i as u64 * 7 + 1));
        let shared = SharedAudioStats::new();
        let reader = shared.clone();
        shared.publish(&s);
        assert_eq!(reader.load(), s);
        assert_eq!(AudioStats::from_fields(s.fields()), s);
    }
}

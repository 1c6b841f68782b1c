//! RTP sequence numbers and timestamps for one viewer's Opus packets.
//!
//! The receiver (NetEq in Chromium) sizes its jitter buffer from how late
//! each packet arrives against its RTP timestamp. Summing frame durations,
//! as a sample packetizer does, breaks that twice:
//! - the guest stops playing and starts again seconds later: the timestamps
//!   carry on where they stopped, every packet after the pause looks
//!   seconds late, and the buffer grows to match;
//! - audio the gateway dropped (the encoder fell behind, a slow viewer's
//!   queue was trimmed): the stream time skips ahead, the timestamps do
//!   not, and what follows plays late by the dropped amount.
//!
//! So the timestamp follows the stream's own time (jumps included), and a
//! silence in arrival much longer than the stream advanced (a pause)
//! advances it by the wall-clock gap, with the marker bit set on the first
//! packet after it (RFC 3551 §4.1: the start of a talkspurt). Sequence
//! numbers stay contiguous: nothing was lost on the wire, and a hole there
//! would show as packet loss in the viewer's statistics.

use std::time::{Duration, Instant};

/// Opus' RTP clock (RFC 7587: always 48 kHz).
const CLOCK_HZ: u64 = 48_000;

/// An arrival gap this much longer than the stream's advance is a pause,
/// not jitter: frames leave the encoder in bursts of up to a few tens of
/// milliseconds.
const PAUSE: Duration = Duration::from_millis(100);

/// What the next packet's header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpStamp {
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
}

/// The frame before, as far as timing goes.
#[derive(Debug, Clone, Copy)]
struct Previous {
    stream_time: u64,
    samples: u32,
    arrival: Instant,
    rtp: u32,
}

#[derive(Debug)]
pub struct AudioRtpClock {
    next_sequence: u16,
    first_timestamp: u32,
    previous: Option<Previous>,
}

impl AudioRtpClock {
    /// `sequence` and `timestamp` are the random starting values RFC 3550
    /// asks for.
    pub fn new(sequence: u16, timestamp: u32) -> Self {
        Self {
            next_sequence: sequence,
            first_timestamp: timestamp,
            previous: None,
        }
    }

    /// The header of a frame that starts at `stream_time` (48 kHz samples
    /// since its pipeline began), lasts `samples` and reached the sender
    /// at `arrival`.
    pub fn stamp(&mut self, stream_time: u64, samples: u32, arrival: Instant) -> RtpStamp {
        let (timestamp, marker) = match self.previous {
            None => (self.first_timestamp, true),
            Some(p) => {
                // A stream time that did not move forward is a new pipeline
                // (the guest opened the stream again): count the last
                // frame's length and let the arrival gap decide the rest.
                let stream_advance = stream_time
                    .checked_sub(p.stream_time)
                    .filter(|&d| d > 0)
                    .unwrap_or(u64::from(p.samples));
                let wall = arrival.saturating_duration_since(p.arrival);
                let wall_advance = duration_to_ticks(wall);
                let paused = wall > ticks_to_duration(stream_advance) + PAUSE;
                let advance = if paused { wall_advance } else { stream_advance };
                // RTP timestamps wrap at 32 bits by design.
                (p.rtp.wrapping_add(advance as u32), paused)
            }
        };
        let sequence = self.next_sequence;
        self.next_sequence = sequence.wrapping_add(1);
        self.previous = Some(Previous {
            stream_time,
            samples,
            arrival,
            rtp: timestamp,
        });
        RtpStamp {
            sequence,
            timestamp,
            marker,
        }
    }
}

fn duration_to_ticks(d: Duration) -> u64 {
    (d.as_nanos().saturating_mul(u128::from(CLOCK_HZ)) / 1_000_000_000) as u64
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / CLOCK_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: u32 = 960; // 20 ms

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_steady_stream_advances_by_its_frames_and_sequence_by_one() {
        let t0 = Instant::now();
        let mut c = AudioRtpClock::new(65_534, u32::MAX - 1000);
        let a = c.stamp(0, FRAME, t0);
        // Bursty arrival: three frames at once, then a 50 ms wait.
        let b = c.stamp(960, FRAME, t0);
        let d = c.stamp(1920, FRAME, t0 + ms(1));
        let e = c.stamp(2880, FRAME, t0 + ms(60));
        assert!(a.marker);
        assert!(!b.marker && !d.marker && !e.marker);
        assert_eq!(
            [a.sequence, b.sequence, d.sequence, e.sequence],
            [65_534, 65_535, 0, 1]
        );
        assert_eq!(b.timestamp, a.timestamp.wrapping_add(960));
        assert_eq!(d.timestamp, a.timestamp.wrapping_add(1920));
        assert_eq!(e.timestamp, a.timestamp.wrapping_add(2880));
    }

    #[test]
    fn audio_dropped_in_the_gateway_moves_the_timestamp_past_it() {
        let t0 = Instant::now();
        let mut c = AudioRtpClock::new(7, 1000);
        c.stamp(0, FRAME, t0);
        // 240 ms of stream dropped, the next frame arrives 20 ms later.
        let after = c.stamp(960 + 240 * 48, FRAME, t0 + ms(20));
        assert_eq!(after.timestamp, 1000 + 960 + 240 * 48);
        assert_eq!(after.sequence, 8, "no hole in the sequence");
        assert!(!after.marker);
    }

    #[test]
    fn a_pause_advances_the_timestamp_by_the_wall_clock_and_marks_the_restart() {
        let t0 = Instant::now();
        let mut c = AudioRtpClock::new(0, 0);
        c.stamp(0, FRAME, t0);
        c.stamp(960, FRAME, t0 + ms(20));
        // The guest stopped; 3 s later it plays again (same pipeline).
        let resumed = c.stamp(1920, FRAME, t0 + ms(3020));
        assert!(resumed.marker);
        assert_eq!(resumed.timestamp, 960 + 3000 * 48);
        let next = c.stamp(2880, FRAME, t0 + ms(3040));
        assert_eq!(next.timestamp, resumed.timestamp + 960);
        assert!(!next.marker);
    }

    #[test]
    fn a_reopened_stream_starting_again_at_zero_keeps_the_timestamp_moving_forward() {
        let t0 = Instant::now();
        let mut c = AudioRtpClock::new(0, 5000);
        c.stamp(48_000, FRAME, t0);
        // Reopened at once: stream time back to 0, 20 ms later.
        let reopened = c.stamp(0, FRAME, t0 + ms(20));
        assert_eq!(reopened.timestamp, 5000 + 960);
        // Reopened after a second of nothing.
        let later = c.stamp(0, FRAME, t0 + ms(1020));
        assert_eq!(later.timestamp, reopened.timestamp + 48_000);
        assert!(later.marker);
    }

    #[test]
    fn jitter_below_the_pause_threshold_leaves_the_stream_clock_in_charge() {
        let t0 = Instant::now();
        let mut c = AudioRtpClock::new(0, 0);
        c.stamp(0, FRAME, t0);
        // 110 ms late for a 20 ms frame: 90 ms over, still jitter.
        let late = c.stamp(960, FRAME, t0 + ms(110));
        assert_eq!(late.timestamp, 960);
        assert!(!late.marker);
    }
}

//! The CUR_POS clock: a virtual sound card's hardware pointer, driven by a
//! monotonic clock (nanoseconds, injected by the caller: sans-IO).
//!
//! # How snd-xen-front uses CUR_POS (Linux sound/xen/xen_snd_front_alsa.c)
//!
//! - There is no mmap. ALSA copies each chunk into the shared buffer at the
//!   application pointer (modulo the buffer) and sends a WRITE for it,
//!   blocking until answered. It only copies when `avail` allows, and
//!   `avail` = buffer − (appl_ptr − hw_ptr) grows only when the hardware
//!   pointer moves.
//! - The hardware pointer moves only on XENSND_EVT_CUR_POS:
//!   `xen_snd_front_alsa_handle_cur_pos` converts `position` (octets since
//!   OPEN; the frontend zeroes its counters in hw_params/OPEN) to frames,
//!   adds the delta to its pointer modulo the buffer size, and calls
//!   `snd_pcm_period_elapsed` when the frames counted since the last call
//!   *exceed* one period (`out_frames > period_size`). With one event of
//!   exactly one period, the guest therefore wakes its writer on every
//!   second event. A guest with only two periods in its buffer is then woken
//!   when the buffer is already drained; that is the frontend's behaviour,
//!   and it is why three or more periods per buffer are recommended in the
//!   xenstore configuration.
//! - buffer_sz and period_sz in OPEN are octets (ALSA's buffer/period bytes);
//!   HW_PARAM_QUERY ranges are frames.
//!
//! # The model
//!
//! The backend is the sound card. From TRIGGER START the stream is consumed
//! at exactly its rate: frames consumed at time t =
//! frames at the segment start + floor((t − segment start) × rate / 1 s),
//! computed from the segment start every time, never by adding up
//! intervals, so it does not drift. PAUSE (snd-xen-front sends it for ALSA
//! SUSPEND) freezes the count; RESUME starts a new segment from it. STOP
//! freezes it too and discards queued data; the position keeps counting
//! from OPEN, as the frontend's counters do.
//!
//! Every time the count crosses a multiple of the period, one CUR_POS event
//! reports that multiple (in octets). Events are thus exactly one period
//! apart; the reported position is never ahead of the clock and at most
//! one period behind it.
//!
//! Data: each WRITE appends to a FIFO, the model of the guest's ring buffer
//! contents. A frontend that follows CUR_POS can never have more than a
//! buffer in it (it only writes into `avail`), so the FIFO holds at most
//! `buffer_frames`; bytes beyond that (a guest ignoring the protocol) are
//! dropped and counted, keeping memory bounded. The WRITE is still answered
//! at once: pacing the events is what holds a well-behaved guest back.
//! When frames are due and the FIFO is short (a late writer), silence is
//! consumed in their place and an underrun is counted, as a sound card
//! plays on through an xrun. The silence stands for stream positions the
//! guest had not filled in time; when its data for those positions arrives
//! it is skipped (as a card's DMA has moved past it), so the guest's later
//! data still plays at its own positions and the FIFO stays within the
//! buffer. Because the reported position lags the consumer by less than a
//! period, the FIFO runs dry up to a period before the guest's ALSA sees its
//! pointer overtaken (and it only looks on every second event, see above);
//! it then reports an xrun, sends TRIGGER_STOP, prepares, refills and starts
//! again, so a late writer costs at most about two periods of silence per
//! stall (a test checks this with a model of the frontend).
//!
//! Driving it: call [`PlaybackPacer::poll`] at (or after)
//! [`PlaybackPacer::next_deadline`] — the next period boundary or the next
//! 10 ms of data — and apply triggers through [`PlaybackPacer::trigger`],
//! which first consumes what was due up to that instant. Capture streams
//! use [`PositionClock`] alone for their events.

use thiserror::Error;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The most events one poll emits. After a long stall (a suspended host,
/// a starved thread) reporting every missed period would flood the 63-slot
/// event page; the frontend handles a jump of several periods in one event
/// (it works from the position delta), so older boundaries are skipped and
/// counted instead.
pub const MAX_EVENTS_PER_POLL: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacingConfig {
    /// Frames per second.
    pub rate: u32,
    /// Octets per frame (channels × sample size).
    pub frame_bytes: u32,
    /// Frames per period; 0 means the guest asked for no CUR_POS events.
    pub period_frames: u32,
    /// Frames in the guest's ring buffer.
    pub buffer_frames: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PacingError {
    #[error("pacing needs a non-zero {0}")]
    Zero(&'static str),
    #[error("{what} of {octets} octets is not a whole number of {frame_bytes}-octet frames")]
    NotWholeFrames {
        what: &'static str,
        octets: u32,
        frame_bytes: u32,
    },
    #[error("period of {period} frames is longer than the buffer of {buffer} frames")]
    PeriodExceedsBuffer { period: u32, buffer: u32 },
}

impl PacingConfig {
    /// From OPEN's octet sizes.
    pub fn from_octets(
        rate: u32,
        frame_bytes: u32,
        buffer_sz: u32,
        period_sz: u32,
    ) -> Result<Self, PacingError> {
        if frame_bytes == 0 {
            return Err(PacingError::Zero("frame size"));
        }
        for (what, octets) in [("buffer_sz", buffer_sz), ("period_sz", period_sz)] {
            if octets % frame_bytes != 0 {
                return Err(PacingError::NotWholeFrames {
                    what,
                    octets,
                    frame_bytes,
                });
            }
        }
        let cfg = Self {
            rate,
            frame_bytes,
            period_frames: period_sz / frame_bytes,
            buffer_frames: buffer_sz / frame_bytes,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), PacingError> {
        if self.rate == 0 {
            return Err(PacingError::Zero("rate"));
        }
        if self.frame_bytes == 0 {
            return Err(PacingError::Zero("frame size"));
        }
        if self.buffer_frames == 0 {
            return Err(PacingError::Zero("buffer size"));
        }
        if self.period_frames > self.buffer_frames {
            return Err(PacingError::PeriodExceedsBuffer {
                period: self.period_frames,
                buffer: self.buffer_frames,
            });
        }
        Ok(())
    }

    pub fn buffer_bytes(&self) -> usize {
        self.buffer_frames as usize * self.frame_bytes as usize
    }
}

/// Frames elapsed at a fixed rate across running segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    Stopped { frames: u64 },
    Running { start_ns: u64, base_frames: u64 },
}

/// Stream time: which frame the virtual card is at, and when it reaches a
/// given frame.
#[derive(Debug, Clone)]
pub struct StreamClock {
    rate: u64,
    segment: Segment,
}

impl StreamClock {
    pub fn new(rate: u32) -> Self {
        Self {
            rate: u64::from(rate.max(1)),
            segment: Segment::Stopped { frames: 0 },
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self.segment, Segment::Running { .. })
    }

    /// Frames consumed since OPEN at time `now_ns`.
    pub fn frames_at(&self, now_ns: u64) -> u64 {
        match self.segment {
            Segment::Stopped { frames } => frames,
            Segment::Running {
                start_ns,
                base_frames,
            } => {
                let elapsed = u128::from(now_ns.saturating_sub(start_ns));
                let frames = elapsed * u128::from(self.rate) / NANOS_PER_SEC;
                base_frames.saturating_add(u64::try_from(frames).unwrap_or(u64::MAX))
            }
        }
    }

    /// When the count reaches `frame` (None if stopped or overflowing).
    pub fn time_of_frame(&self, frame: u64) -> Option<u64> {
        match self.segment {
            Segment::Stopped { .. } => None,
            Segment::Running {
                start_ns,
                base_frames,
            } => {
                let ahead = u128::from(frame.saturating_sub(base_frames));
                let rate = u128::from(self.rate);
                // Round up: the earliest instant at which frames_at() >= frame.
                let ns = (ahead * NANOS_PER_SEC).div_ceil(rate);
                u64::try_from(ns)
                    .ok()
                    .and_then(|ns| start_ns.checked_add(ns))
            }
        }
    }

    /// Starts (or continues) counting from `now_ns`.
    pub fn run(&mut self, now_ns: u64) {
        if let Segment::Stopped { frames } = self.segment {
            self.segment = Segment::Running {
                start_ns: now_ns,
                base_frames: frames,
            };
        }
    }

    /// Freezes the count at its value at `now_ns`.
    pub fn halt(&mut self, now_ns: u64) {
        let frames = self.frames_at(now_ns);
        self.segment = Segment::Stopped { frames };
    }
}

/// A stream trigger (XENSND_OP_TRIGGER_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Start,
    Pause,
    Stop,
    Resume,
}

/// One XENSND_EVT_CUR_POS to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurPos {
    /// Octets since OPEN.
    pub position: u64,
    /// When the position was reached.
    pub due_ns: u64,
    /// How late the poll that found it was.
    pub lag_ns: u64,
}

/// Counters kept by the pacer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacingStats {
    pub cur_pos_events: u64,
    /// Period boundaries not reported separately after a stall.
    pub coalesced_events: u64,
    pub cur_pos_lag_last_ns: u64,
    pub cur_pos_lag_max_ns: u64,
    /// Times the FIFO ran dry while frames were due.
    pub underruns: u64,
    pub silence_frames: u64,
    pub played_frames: u64,
    /// Octets written beyond the buffer size and dropped.
    pub overflow_bytes: u64,
    /// Frames that arrived after their position was played as silence.
    pub late_frames_skipped: u64,
}

/// The result of a poll.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tick {
    /// Frames of guest data appended to the output, in order.
    pub data_frames: usize,
    /// Frames of silence that follow them (an underrun).
    pub silence_frames: usize,
    /// Events to send, in order.
    pub events: Vec<CurPos>,
}

/// What a WRITE did to the FIFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Octets queued.
    pub accepted: usize,
    /// Octets beyond the buffer size, dropped.
    pub dropped: usize,
    /// Octets for positions already played as silence, skipped.
    pub late: usize,
}

/// Period events for one stream (playback or capture).
#[derive(Debug, Clone)]
pub struct PositionClock {
    cfg: PacingConfig,
    clock: StreamClock,
    /// Frames the owner has been told about (consumed) so far.
    consumed: u64,
    next_boundary: u64,
    paused: bool,
    stats: PacingStats,
}

impl PositionClock {
    pub fn new(cfg: PacingConfig) -> Result<Self, PacingError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            clock: StreamClock::new(cfg.rate),
            consumed: 0,
            next_boundary: u64::from(cfg.period_frames),
            paused: false,
            stats: PacingStats::default(),
        })
    }

    pub fn config(&self) -> &PacingConfig {
        &self.cfg
    }

    pub fn is_running(&self) -> bool {
        self.clock.is_running()
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Frames consumed as of the last poll.
    pub fn consumed_frames(&self) -> u64 {
        self.consumed
    }

    /// The last reported (or reportable) position, octets since OPEN.
    pub fn position_octets(&self) -> u64 {
        self.consumed
            .saturating_mul(u64::from(self.cfg.frame_bytes))
    }

    pub fn stats(&self) -> PacingStats {
        self.stats
    }

    /// Applies a trigger at `now_ns`. Starting a running stream, or
    /// resuming one that is not paused, changes nothing.
    pub fn trigger(&mut self, trigger: Trigger, now_ns: u64) {
        match trigger {
            Trigger::Start => {
                self.paused = false;
                self.clock.run(now_ns);
            }
            Trigger::Resume => {
                if self.paused {
                    self.paused = false;
                    self.clock.run(now_ns);
                }
            }
            Trigger::Pause => {
                if self.clock.is_running() {
                    self.paused = true;
                }
                self.clock.halt(now_ns);
            }
            Trigger::Stop => {
                self.paused = false;
                self.clock.halt(now_ns);
            }
        }
    }

    /// Advances to `now_ns`: returns the frames newly due and pushes the
    /// period events crossed into `events`.
    pub fn advance(&mut self, now_ns: u64, events: &mut Vec<CurPos>) -> u64 {
        let now_frames = self.clock.frames_at(now_ns).max(self.consumed);
        let due = now_frames - self.consumed;
        self.consumed = now_frames;
        let period = u64::from(self.cfg.period_frames);
        if period == 0 || self.next_boundary > now_frames {
            return due;
        }
        let crossed = (now_frames - self.next_boundary) / period + 1;
        let max = MAX_EVENTS_PER_POLL as u64;
        if crossed > max {
            self.stats.coalesced_events += crossed - max;
            self.next_boundary += (crossed - max) * period;
        }
        while self.next_boundary <= now_frames {
            // If the clock was halted exactly on this poll the boundary time
            // is unknown; it was reached no later than now.
            let due_ns = self
                .clock
                .time_of_frame(self.next_boundary)
                .unwrap_or(now_ns)
                .min(now_ns);
            let lag_ns = now_ns - due_ns;
            events.push(CurPos {
                position: self
                    .next_boundary
                    .saturating_mul(u64::from(self.cfg.frame_bytes)),
                due_ns,
                lag_ns,
            });
            self.stats.cur_pos_events += 1;
            self.stats.cur_pos_lag_last_ns = lag_ns;
            self.stats.cur_pos_lag_max_ns = self.stats.cur_pos_lag_max_ns.max(lag_ns);
            self.next_boundary += period;
        }
        due
    }

    /// When the next period boundary falls (None while stopped or paused,
    /// or without events).
    pub fn next_event_ns(&self) -> Option<u64> {
        if self.cfg.period_frames == 0 {
            return None;
        }
        self.clock.time_of_frame(self.next_boundary)
    }

    /// When `frames` more frames beyond the last poll will be due.
    pub fn time_after(&self, frames: u64) -> Option<u64> {
        self.clock
            .time_of_frame(self.consumed.saturating_add(frames))
    }
}

/// A playback stream's virtual card: the CUR_POS clock plus the FIFO of
/// written data it consumes.
#[derive(Debug, Clone)]
pub struct PlaybackPacer {
    clock: PositionClock,
    fifo: std::collections::VecDeque<u8>,
    capacity: usize,
    /// How often the owner should hand data on even between periods, so
    /// a long period does not become encoder latency.
    tick_frames: u64,
    starved: bool,
    /// Frames of silence played in place of data not yet written: the
    /// head of the guest's next data is for positions already passed.
    skip_frames: u64,
}

impl PlaybackPacer {
    pub fn new(cfg: PacingConfig) -> Result<Self, PacingError> {
        let clock = PositionClock::new(cfg)?;
        let capacity = cfg.buffer_bytes();
        Ok(Self {
            clock,
            fifo: std::collections::VecDeque::with_capacity(capacity.min(1 << 20)),
            capacity,
            // 10 ms: the shorter Opus frame.
            tick_frames: u64::from(cfg.rate / 100).max(1),
            starved: false,
            skip_frames: 0,
        })
    }

    pub fn config(&self) -> &PacingConfig {
        self.clock.config()
    }

    pub fn position_octets(&self) -> u64 {
        self.clock.position_octets()
    }

    /// Octets written and not yet consumed.
    pub fn queued_bytes(&self) -> usize {
        self.fifo.len()
    }

    pub fn is_running(&self) -> bool {
        self.clock.is_running()
    }

    /// Neither running nor paused (before START, or after STOP).
    pub fn is_stopped(&self) -> bool {
        !self.clock.is_running() && !self.clock.is_paused()
    }

    pub fn stats(&self) -> PacingStats {
        self.clock.stats
    }

    /// A WRITE's data (already copied out of shared memory).
    pub fn write(&mut self, data: &[u8]) -> WriteOutcome {
        let frame_bytes = self.clock.cfg.frame_bytes as usize;
        // Whole frames the consumer already played silence for.
        let late = (self.skip_frames as usize).min(data.len() / frame_bytes);
        self.skip_frames -= late as u64;
        let data = &data[late * frame_bytes..];
        let room = self.capacity.saturating_sub(self.fifo.len());
        let accepted = data.len().min(room);
        self.fifo.extend(&data[..accepted]);
        let dropped = data.len() - accepted;
        self.clock.stats.overflow_bytes += dropped as u64;
        self.clock.stats.late_frames_skipped += late as u64;
        WriteOutcome {
            accepted,
            dropped,
            late: late * frame_bytes,
        }
    }

    /// Applies a trigger at `now_ns`, first consuming what was due up to
    /// that instant (so a PAUSE does not lose the frames and events that
    /// preceded it). The returned tick is handled like a poll's.
    pub fn trigger(&mut self, trigger: Trigger, now_ns: u64, out: &mut Vec<u8>) -> Tick {
        let tick = self.poll(now_ns, out);
        self.clock.trigger(trigger, now_ns);
        if matches!(trigger, Trigger::Stop | Trigger::Start) {
            // ALSA prepares between STOP and START: the guest's pointers
            // restart, so nothing it writes next is late.
            self.skip_frames = 0;
            self.starved = false;
        }
        if trigger == Trigger::Stop {
            self.fifo.clear();
        }
        tick
    }

    /// Consumes what is due at `now_ns`: guest bytes are appended to
    /// `out` (whole frames), silence stands in for frames the guest has
    /// not written.
    pub fn poll(&mut self, now_ns: u64, out: &mut Vec<u8>) -> Tick {
        let mut tick = Tick::default();
        let due = self.clock.advance(now_ns, &mut tick.events);
        let frame_bytes = self.clock.cfg.frame_bytes as usize;
        let queued_frames = (self.fifo.len() / frame_bytes) as u64;
        let data_frames = due.min(queued_frames);
        let silence_frames = due - data_frames;
        let take = data_frames as usize * frame_bytes;
        out.extend(self.fifo.drain(..take));
        let stats = &mut self.clock.stats;
        stats.played_frames += data_frames;
        stats.silence_frames += silence_frames;
        if silence_frames > 0 && !self.starved {
            stats.underruns += 1;
        }
        if due > 0 {
            self.starved = silence_frames > 0;
        }
        // Beyond a buffer of silence a guest following the protocol has
        // certainly restarted (xrun, STOP, prepare), so its data is not for
        // the skipped positions any more.
        self.skip_frames =
            (self.skip_frames + silence_frames).min(u64::from(self.clock.cfg.buffer_frames));
        tick.data_frames = data_frames as usize;
        tick.silence_frames = silence_frames as usize;
        tick
    }

    /// When to poll next: the next period boundary or the next 10 ms of
    /// data, whichever is first; None while stopped or paused.
    pub fn next_deadline(&self) -> Option<u64> {
        let tick = self.clock.time_after(self.tick_frames);
        match (self.clock.next_event_ns(), tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_octets_checks_sizes() {
        let c = PacingConfig::from_octets(48_000, 4, 4 * 4096, 4 * 1024).unwrap();
        assert_eq!((c.buffer_frames, c.period_frames), (4096, 1024));
        assert!(matches!(
            PacingConfig::from_octets(48_000, 4, 4097, 1024),
            Err(PacingError::NotWholeFrames {
                what: "buffer_sz",
                ..
            })
        ));
        assert_eq!(
            PacingConfig::from_octets(48_000, 4, 4096, 8192),
            Err(PacingError::PeriodExceedsBuffer {
                period: 2048,
                buffer: 1024
            })
        );
        assert_eq!(
            PacingConfig::from_octets(0, 4, 4096, 1024),
            Err(PacingError::Zero("rate"))
        );
        assert_eq!(
            PacingConfig::from_octets(48_000, 0, 4096, 1024),
            Err(PacingError::Zero("frame size"))
        );
    }

    #[test]
    fn clock_counts_from_segment_start_without_drift() {
        let mut c = StreamClock::new(44_100);
        c.run(1_000);
        // 1 hour: exactly 44100 * 3600 frames.
        assert_eq!(c.frames_at(1_000 + 3_600 * 1_000_000_000), 44_100 * 3_600);
        assert_eq!(c.frames_at(500), 0, "before start");
        let t = c.time_of_frame(44_100).unwrap();
        assert_eq!(c.frames_at(t), 44_100);
        assert_eq!(c.frames_at(t - 1), 44_099);
    }

    #[test]
    fn no_events_without_period() {
        let cfg = PacingConfig {
            rate: 48_000,
            frame_bytes: 4,
            period_frames: 0,
            buffer_frames: 4800,
        };
        let mut p = PlaybackPacer::new(cfg).unwrap();
        let mut out = Vec::new();
        p.trigger(Trigger::Start, 0, &mut out);
        let t = p.poll(1_000_000_000, &mut out);
        assert!(t.events.is_empty());
        assert_eq!(t.silence_frames, 48_000);
    }

    #[test]
    fn stall_coalesces_events() {
        let cfg = PacingConfig {
            rate: 48_000,
            frame_bytes: 4,
            period_frames: 480,
            buffer_frames: 4800,
        };
        let mut c = PositionClock::new(cfg).unwrap();
        c.trigger(Trigger::Start, 0);
        let mut ev = Vec::new();
        c.advance(10_000_000_000, &mut ev); // 1000 periods late
        assert_eq!(ev.len(), MAX_EVENTS_PER_POLL);
        assert_eq!(ev.last().unwrap().position, 480_000 * 4);
        assert_eq!(
            c.stats().coalesced_events,
            1000 - MAX_EVENTS_PER_POLL as u64
        );
    }
}

//! The CUR_POS clock under a fake monotonic clock, with a guest modelled on
//! snd-xen-front + ALSA: it writes only into the room its hardware pointer
//! leaves, the pointer moves only on CUR_POS, and its writer wakes when the
//! frames counted since the last wake exceed a period (the `>` in
//! xen_snd_front_alsa_handle_cur_pos).

use pvgate_audio::pacing::{PacingConfig, PlaybackPacer, Tick, Trigger};

const NS: u64 = 1_000_000_000;

/// A deterministic byte stream, so the test can check that what the pacer
/// releases is exactly what the guest wrote, in order.
fn pattern(offset: u64) -> u8 {
    (offset % 251) as u8
}

struct Guest {
    cfg: PacingConfig,
    /// Frames the guest has written since OPEN (ALSA's appl_ptr).
    written: u64,
    /// The frontend's `be_cur_frame`.
    hw_frames: u64,
    /// The frontend's `out_frames`.
    out_frames: u64,
    /// A period elapsed: the blocked writer wakes.
    woken: bool,
    /// Bytes of the pattern handed out so far.
    bytes: u64,
    xruns: u64,
    /// ALSA stopped the stream after an xrun; it prepares and restarts on
    /// the next write.
    stopped: bool,
    paused_writing: bool,
}

impl Guest {
    fn new(cfg: PacingConfig) -> Self {
        Self {
            cfg,
            written: 0,
            hw_frames: 0,
            out_frames: 0,
            woken: false,
            bytes: 0,
            xruns: 0,
            stopped: false,
            paused_writing: false,
        }
    }

    fn fb(&self) -> u64 {
        u64::from(self.cfg.frame_bytes)
    }

    fn on_cur_pos(&mut self, position: u64) {
        let cur = position / self.fb();
        let delta = cur - self.hw_frames;
        self.hw_frames = cur;
        self.out_frames += delta;
        if self.out_frames > u64::from(self.cfg.period_frames) {
            self.out_frames %= u64::from(self.cfg.period_frames);
            self.woken = true;
            // snd_pcm_period_elapsed updates the pointer and checks for an
            // xrun: avail >= stop_threshold (the buffer size by default).
            if !self.stopped && self.written <= self.hw_frames {
                self.xruns += 1;
                self.stopped = true;
            }
        }
    }

    /// Writes all the room it has, a period per WRITE (as ALSA does with a
    /// period-sized application buffer). After an xrun the application
    /// prepares (pointers restart where the card stopped), refills and
    /// starts again.
    fn write(&mut self, pacer: &mut PlaybackPacer, now: u64, rel: &mut Released) {
        if self.paused_writing {
            return;
        }
        let restart = self.stopped;
        if restart {
            self.hw_frames = pacer.position_octets() / self.fb();
            self.written = self.hw_frames;
            self.out_frames = 0;
        }
        let room = u64::from(self.cfg.buffer_frames) - (self.written - self.hw_frames);
        let mut left = room;
        while left > 0 {
            let frames = left.min(u64::from(self.cfg.period_frames.max(1)));
            let data: Vec<u8> = (0..frames * self.fb())
                .map(|i| pattern(self.bytes + i))
                .collect();
            let outcome = pacer.write(&data);
            assert_eq!(
                outcome.dropped, 0,
                "a guest that follows CUR_POS never overflows"
            );
            self.bytes += data.len() as u64;
            self.written += frames;
            left -= frames;
        }
        self.woken = false;
        if restart {
            self.stopped = false;
            let mut out = Vec::new();
            let tick = pacer.trigger(Trigger::Start, now, &mut out);
            rel.take(now, tick, &mut out);
        }
    }
}

/// What the pacer released, in order.
#[derive(Default)]
struct Released {
    data: Vec<u8>,
    /// (index in `data` where silence was inserted, frames)
    silences: Vec<(usize, usize)>,
    events: Vec<(u64, u64)>, // (poll time, position)
    stops: Vec<u64>,
}

impl Released {
    fn take(&mut self, now: u64, tick: Tick, out: &mut Vec<u8>) {
        self.data.append(out);
        if tick.silence_frames > 0 {
            self.silences.push((self.data.len(), tick.silence_frames));
        }
        self.events
            .extend(tick.events.iter().map(|e| (now, e.position)));
    }
}

/// Pseudo-random timer lateness in 0..=max_ns (the backend's timer never
/// fires exactly on time).
struct Lateness(u64, u64);
impl Lateness {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        if self.1 == 0 {
            0
        } else {
            (self.0 >> 33) % (self.1 + 1)
        }
    }
}

fn cfg(rate: u32, frame_bytes: u32, period: u32, periods: u32) -> PacingConfig {
    PacingConfig {
        rate,
        frame_bytes,
        period_frames: period,
        buffer_frames: period * periods,
    }
}

/// Runs a guest against the pacer until `until_ns`, polling at each
/// deadline plus some lateness; returns the time reached.
fn run(
    pacer: &mut PlaybackPacer,
    guest: &mut Guest,
    rel: &mut Released,
    mut now: u64,
    until_ns: u64,
    late: &mut Lateness,
) -> u64 {
    let mut out = Vec::new();
    while let Some(deadline) = pacer.next_deadline() {
        let t = deadline.max(now) + late.next();
        if t > until_ns {
            break;
        }
        now = t;
        let tick = pacer.poll(now, &mut out);
        for e in &tick.events {
            guest.on_cur_pos(e.position);
        }
        rel.take(now, tick, &mut out);
        if guest.stopped && !pacer.is_stopped() {
            let tick = pacer.trigger(Trigger::Stop, now, &mut out);
            rel.take(now, tick, &mut out);
            rel.stops.push(now);
        }
        if guest.woken {
            guest.write(pacer, now, rel);
        }
    }
    now
}

/// Checks every event against a clock that ran during `running` spans.
fn check_events(rel: &Released, c: &PacingConfig, running: &[(u64, u64)], late_ns: u64) {
    let fb = u64::from(c.frame_bytes);
    let period = u64::from(c.period_frames);
    let ideal_frames = |t: u64| -> u64 {
        running
            .iter()
            .map(|&(a, b)| {
                let span = t.clamp(a, b) - a;
                (u128::from(span) * u128::from(c.rate) / u128::from(NS)) as u64
            })
            .sum()
    };
    let late_frames = (u128::from(late_ns) * u128::from(c.rate)).div_ceil(u128::from(NS)) as u64;
    for (i, &(t, pos)) in rel.events.iter().enumerate() {
        // Exactly one event per period, in order.
        assert_eq!(pos, (i as u64 + 1) * period * fb, "event {i}");
        let frames = pos / fb;
        let ideal = ideal_frames(t);
        assert!(
            frames <= ideal,
            "event {i} at {t} ns: position {frames} ahead of the clock {ideal}"
        );
        assert!(
            ideal - frames <= period.min(late_frames + 1),
            "event {i} at {t} ns: position {frames} more than a period behind {ideal}"
        );
    }
}

fn steady_stream(rate: u32, seconds: u64, period: u32, late_ns: u64) {
    let c = cfg(rate, 4, period, 4);
    let mut pacer = PlaybackPacer::new(c).unwrap();
    let mut guest = Guest::new(c);
    let mut rel = Released::default();
    let mut late = Lateness(rate.into(), late_ns);
    let start = 5 * NS;
    guest.write(&mut pacer, 0, &mut rel); // ALSA fills the buffer before START
    let mut out = Vec::new();
    let tick = pacer.trigger(Trigger::Start, start, &mut out);
    rel.take(start, tick, &mut out);
    let end = start + seconds * NS;
    run(&mut pacer, &mut guest, &mut rel, start, end, &mut late);

    check_events(&rel, &c, &[(start, u64::MAX)], late_ns);
    let total_frames = (u128::from(end - start) * u128::from(rate) / u128::from(NS)) as u64;
    let events = rel.events.len() as u64;
    // Every period boundary reached was reported (the last poll may fall
    // up to one deadline before `end`).
    assert!(
        events + 1 >= total_frames / u64::from(period),
        "{events} events for {total_frames} frames"
    );
    let stats = pacer.stats();
    assert_eq!(stats.cur_pos_events, events);
    assert_eq!(stats.underruns, 0, "a prompt guest never underruns");
    assert_eq!(guest.xruns, 0);
    assert_eq!(stats.silence_frames, 0);
    assert!(
        stats.cur_pos_lag_max_ns <= late_ns,
        "lag {} > {late_ns}",
        stats.cur_pos_lag_max_ns
    );
    // The released bytes are exactly the guest's stream, in order.
    assert!(rel
        .data
        .iter()
        .enumerate()
        .all(|(i, &b)| b == pattern(i as u64)));
    assert!(
        rel.data.len() as u64 + u64::from(c.frame_bytes) * u64::from(rate) / 50 >= total_frames * 4
    );
}

#[test]
fn position_follows_clock_over_10s_at_48k() {
    steady_stream(48_000, 10, 1_024, 2_000_000);
}

#[test]
fn position_follows_clock_over_10s_at_44k1_with_odd_period() {
    steady_stream(44_100, 10, 441 * 3, 3_000_000);
}

#[test]
fn position_follows_clock_over_60s() {
    steady_stream(48_000, 60, 960, 1_000_000);
    steady_stream(8_000, 60, 160, 5_000_000);
    steady_stream(96_000, 60, 4_096, 0);
}

#[test]
fn pause_stops_events_and_resume_continues_from_paused_position() {
    let c = cfg(48_000, 4, 1_000, 4);
    let mut pacer = PlaybackPacer::new(c).unwrap();
    let mut guest = Guest::new(c);
    let mut rel = Released::default();
    let mut late = Lateness(7, 500_000);
    let mut out = Vec::new();
    guest.write(&mut pacer, 0, &mut rel);
    let t0 = NS;
    let tick = pacer.trigger(Trigger::Start, t0, &mut out);
    rel.take(t0, tick, &mut out);
    // Pause mid-period.
    let t_pause = t0 + 2_510_000_000;
    run(&mut pacer, &mut guest, &mut rel, t0, t_pause, &mut late);
    let tick = pacer.trigger(Trigger::Pause, t_pause, &mut out);
    rel.take(t_pause, tick, &mut out);
    let events_at_pause = rel.events.len();
    let pos_at_pause = pacer.position_octets();
    assert_eq!(
        pos_at_pause,
        48_000 * 2_510 / 1_000 * 4,
        "consumed up to the pause instant"
    );
    assert_eq!(
        pacer.next_deadline(),
        None,
        "nothing to wake for while paused"
    );
    // Three seconds of polls while paused: nothing moves.
    for k in 1..=300 {
        let tick = pacer.poll(t_pause + k * 10_000_000, &mut out);
        assert!(tick.events.is_empty() && tick.data_frames == 0 && tick.silence_frames == 0);
    }
    assert_eq!(pacer.position_octets(), pos_at_pause);
    let t_resume = t_pause + 3 * NS;
    let tick = pacer.trigger(Trigger::Resume, t_resume, &mut out);
    rel.take(t_resume, tick, &mut out);
    let end = t_resume + 7 * NS;
    run(&mut pacer, &mut guest, &mut rel, t_resume, end, &mut late);

    check_events(&rel, &c, &[(t0, t_pause), (t_resume, u64::MAX)], 500_000);
    // The first event after resume is the next period boundary: 2.51 s
    // consumed is 120 480 frames, so 121 000, 520 frames after resuming.
    let (t_first, pos_first) = rel.events[events_at_pause];
    assert_eq!(pos_first, 121_000 * 4);
    assert!(
        t_first >= t_resume + 520 * NS / 48_000
            && t_first <= t_resume + 521 * NS / 48_000 + 500_000
    );
    assert_eq!(pacer.stats().underruns, 0);
    assert!(rel
        .data
        .iter()
        .enumerate()
        .all(|(i, &b)| b == pattern(i as u64)));
}

#[test]
fn late_writer_gets_silence_and_one_underrun() {
    let c = cfg(48_000, 4, 960, 4);
    let mut pacer = PlaybackPacer::new(c).unwrap();
    let mut guest = Guest::new(c);
    let mut rel = Released::default();
    let mut late = Lateness(3, 1_000_000);
    let mut out = Vec::new();
    guest.write(&mut pacer, 0, &mut rel);
    let t0 = 0;
    let tick = pacer.trigger(Trigger::Start, t0, &mut out);
    rel.take(t0, tick, &mut out);
    let mut now = run(&mut pacer, &mut guest, &mut rel, t0, 3 * NS, &mut late);
    // The guest stalls for half a second.
    guest.paused_writing = true;
    now = run(
        &mut pacer,
        &mut guest,
        &mut rel,
        now,
        3_500_000_000,
        &mut late,
    );
    assert!(
        pacer.is_stopped(),
        "the guest's ALSA stopped the stream on its xrun"
    );
    guest.paused_writing = false;
    guest.write(&mut pacer, now, &mut rel);
    run(&mut pacer, &mut guest, &mut rel, now, 10 * NS, &mut late);

    let stats = pacer.stats();
    assert_eq!(stats.underruns, 1);
    assert_eq!(guest.xruns, 1, "the guest saw its pointer overtaken, once");
    assert_eq!(rel.stops.len(), 1);
    // Silence filled the gap between the FIFO running dry and the guest
    // noticing, which is less than the two periods the frontend's wake-up
    // can take (it wakes on every second event), plus a 10 ms tick.
    let silence: u64 = rel.silences.iter().map(|&(_, n)| n as u64).sum();
    assert_eq!(silence, stats.silence_frames);
    assert!(silence > 0 && silence <= 2 * 960 + 480, "{silence}");
    let first = rel.silences[0].0;
    assert!(rel.silences.iter().all(|&(at, _)| at == first), "one gap");
    // The guest's data stayed in order: its data after the restart follows
    // what it wrote before.
    assert!(rel
        .data
        .iter()
        .enumerate()
        .all(|(i, &b)| b == pattern(i as u64)));
    assert_eq!(stats.overflow_bytes, 0);
    // The clock ran while playing; positions continued from OPEN after the
    // restart, one per period.
    let t_stop = rel.stops[0];
    let t_restart = now;
    check_events(&rel, &c, &[(t0, t_stop), (t_restart, u64::MAX)], 1_000_000);
}

#[test]
fn data_for_positions_already_played_is_skipped() {
    // A guest that is late but not yet overtaken in its own view (the
    // reported position lags the consumer by up to a period).
    let c = cfg(48_000, 4, 1_000, 4);
    let mut pacer = PlaybackPacer::new(c).unwrap();
    let mut out = Vec::new();
    let first: Vec<u8> = (0..2_000 * 4).map(pattern).collect();
    pacer.write(&first);
    pacer.trigger(Trigger::Start, 0, &mut out);
    // 2 500 frames due, 2 000 there: 500 of silence.
    let tick = pacer.poll((2_500 * NS).div_ceil(48_000), &mut out);
    assert_eq!((tick.data_frames, tick.silence_frames), (2_000, 500));
    assert_eq!(tick.events.len(), 2);
    // The guest, told position 2 000 frames, writes its room (4 000
    // frames, for positions 2 000..6 000). The first 500 were played as
    // silence already, so they are skipped and the rest fits the buffer.
    let second: Vec<u8> = (2_000 * 4..6_000 * 4).map(pattern).collect();
    let w = pacer.write(&second);
    assert_eq!((w.late, w.accepted, w.dropped), (500 * 4, 3_500 * 4, 0));
    out.clear();
    let tick = pacer.poll(6_000 * NS / 48_000, &mut out);
    assert_eq!((tick.data_frames, tick.silence_frames), (3_500, 0));
    // Position 2 500 onwards plays the data meant for it.
    assert_eq!(out, second[500 * 4..]);
    let s = pacer.stats();
    assert_eq!(
        (s.underruns, s.silence_frames, s.late_frames_skipped),
        (1, 500, 500)
    );
}

#[test]
fn early_writer_is_held_to_the_buffer_size() {
    let c = cfg(48_000, 4, 1_024, 4);
    let buffer_bytes = c.buffer_bytes();
    let mut pacer = PlaybackPacer::new(c).unwrap();
    let flood: Vec<u8> = (0..10 * buffer_bytes as u64).map(pattern).collect();
    let outcome = pacer.write(&flood);
    assert_eq!(outcome.accepted, buffer_bytes);
    assert_eq!(outcome.dropped, 9 * buffer_bytes);
    assert_eq!(pacer.queued_bytes(), buffer_bytes);
    // More writes while full are dropped too; memory stays bounded.
    assert_eq!(pacer.write(&flood[..100]).dropped, 100);
    assert_eq!(pacer.queued_bytes(), buffer_bytes);
    assert_eq!(
        pacer.stats().overflow_bytes as usize,
        9 * buffer_bytes + 100
    );

    let mut out = Vec::new();
    pacer.trigger(Trigger::Start, 0, &mut out);
    // The buffer plays at the stream rate, not faster: after 40 ms only
    // 1920 frames are consumed.
    let tick = pacer.poll(40_000_000, &mut out);
    assert_eq!(tick.data_frames, 1_920);
    assert_eq!(tick.events.len(), 1);
    assert_eq!(out, flood[..1_920 * 4]);
    assert_eq!(pacer.queued_bytes(), buffer_bytes - 1_920 * 4);
    // Room freed is room the guest may fill again, and no more.
    assert_eq!(pacer.write(&flood[..1_920 * 4 + 8]).dropped, 8);
}

#[test]
fn stop_discards_queued_data_and_position_counts_on_from_open() {
    let c = cfg(44_100, 2, 441, 4);
    let mut pacer = PlaybackPacer::new(c).unwrap();
    let mut out = Vec::new();
    pacer.write(&vec![7u8; c.buffer_bytes()]);
    pacer.trigger(Trigger::Start, 0, &mut out);
    let tick = pacer.trigger(Trigger::Stop, 15_000_000, &mut out); // 661.5 frames
    assert_eq!(tick.data_frames, 661);
    assert_eq!(tick.events.len(), 1);
    assert_eq!(pacer.queued_bytes(), 0, "STOP drops what was queued");
    assert_eq!(
        pacer.poll(NS, &mut out),
        Tick::default(),
        "nothing while stopped"
    );
    pacer.write(&[1u8; 882]);
    pacer.trigger(Trigger::Start, 2 * NS, &mut out);
    out.clear();
    // The next boundary is 882 frames since OPEN: 221 frames after restart.
    let t = pacer.next_deadline().unwrap();
    assert!(t > 2 * NS && t <= 2 * NS + 10_000_000);
    let tick = pacer.poll(2 * NS + 221 * NS / 44_100 + 1, &mut out);
    assert_eq!(tick.events.len(), 1);
    assert_eq!(tick.events[0].position, 882 * 2);
    assert_eq!(out, vec![1u8; 221 * 2]);
}

#[test]
fn resume_without_pause_and_double_start_change_nothing() {
    let c = cfg(48_000, 4, 480, 4);
    let mut pacer = PlaybackPacer::new(c).unwrap();
    let mut out = Vec::new();
    pacer.trigger(Trigger::Start, 0, &mut out);
    pacer.trigger(Trigger::Resume, NS / 2, &mut out);
    pacer.trigger(Trigger::Start, NS / 2, &mut out);
    let tick = pacer.poll(NS, &mut out);
    assert_eq!(pacer.position_octets(), 48_000 * 4);
    assert_eq!(tick.data_frames + tick.silence_frames, 24_000);
    // Time going backwards (a bad clock source) is ignored.
    let tick = pacer.poll(NS / 3, &mut out);
    assert_eq!(tick, Tick::default());
    // 100 boundaries, reported once each or coalesced after a long gap.
    let s = pacer.stats();
    assert_eq!(s.cur_pos_events + s.coalesced_events, 100);
}

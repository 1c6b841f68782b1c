//! CUR_POS pacing on a clock the test moves by hand: over more than 10 s
//! of stream time every period boundary produces exactly one event with
//! exactly that position, and none in between; pause holds the position
//! and resume continues it; a late writer gets silence (one underrun, not
//! one per period) and an early writer is not let ahead of the clock.

mod sound_common;

use std::sync::Arc;
use std::time::Duration;

use pvgate_backends::sound::{Clock, ManualClock, SoundLimits};
use pvgate_guest_sim::content::tone::ToneGenerator;
use pvgate_guest_sim::sound::SoundStream;
use pvgate_protocol::sndif::{PcmFormat, TriggerType};
use sound_common::*;

const RATE: u32 = 48_000;
const FRAME: u32 = 4; // S16_LE stereo
const PERIOD_FRAMES: u32 = 1024;
const PERIOD: u32 = PERIOD_FRAMES * FRAME;
const PERIODS: u32 = 4;
const BUFFER: u32 = PERIOD * PERIODS;
/// How long to wait for an event that must come, and for one that must not.
const MUST: Duration = Duration::from_secs(3);
const MUST_NOT: Duration = Duration::from_millis(100);

/// The instant stream frame `frames` is reached, `start` being TRIGGER
/// START (rounded up, as the pacer's clock reaches a frame).
fn time_of(start: u64, frames: u64) -> u64 {
    start + (u128::from(frames) * 1_000_000_000).div_ceil(u128::from(RATE)) as u64
}

struct Writer {
    tone: ToneGenerator,
    written: u64,
}

impl Writer {
    /// The guest's next period at its place in the ring buffer.
    async fn period(&mut self, stream: &SoundStream) {
        let bytes = self
            .tone
            .next_bytes(PERIOD_FRAMES as usize, PcmFormat::S16Le)
            .unwrap();
        let offset = (self.written % u64::from(BUFFER)) as u32;
        stream.write_at(offset, &bytes).await.expect("WRITE");
        self.written += u64::from(PERIOD);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cur_pos_follows_the_clock_through_pause_late_and_early_writers() {
    let clock = ManualClock::new(1_000_000_000);
    let rig = Rig::start(
        "card, sample-formats=s16_le, sample-rates=48000 | stream, type=p",
        Arc::new(clock.clone()),
        SoundLimits::default(),
    )
    .await;
    let stream = rig.stream(0);
    let output = rig.output(0);
    stream
        .open(PcmFormat::S16Le, RATE, 2, BUFFER, PERIOD)
        .await
        .expect("OPEN");
    let mut w = Writer {
        tone: ToneGenerator::new(RATE, 2, -12.0),
        written: 0,
    };
    for _ in 0..PERIODS {
        w.period(&stream).await;
    }
    let start = clock.now_ns();
    stream.trigger(TriggerType::Start).await.expect("START");

    // > 10 s of stream time, one period at a time; the guest refills each
    // period as it is reported, as ALSA would.
    let periods = 10 * RATE / PERIOD_FRAMES + 1;
    for k in 1..=u64::from(periods) {
        let due = time_of(start, k * u64::from(PERIOD_FRAMES));
        if k % 64 == 1 {
            clock.set(due - 1);
            assert_eq!(
                stream.next_position(MUST_NOT).await,
                None,
                "event before period {k} was due"
            );
        }
        clock.set(due);
        let pos = stream.next_position(MUST).await.expect("CUR_POS");
        assert_eq!(pos, k * u64::from(PERIOD), "position at period {k}");
        w.period(&stream).await;
    }
    let mut k = u64::from(periods);
    let stats = output.stats();
    assert_eq!(stats.cur_pos_events, k);
    assert_eq!(stats.underruns, 0, "the guest kept up: {stats:?}");
    // 48 kHz in, 20 ms Opus frames out: one per 960 stream frames (the
    // resampler holds back a few).
    let encoded = k * u64::from(PERIOD_FRAMES) / 960;
    assert!(
        (encoded.saturating_sub(2)..=encoded).contains(&stats.frames_encoded),
        "{} frames encoded for {encoded} due",
        stats.frames_encoded
    );

    // Pause exactly at a boundary: nothing for a second of clock time.
    stream.trigger(TriggerType::Pause).await.expect("PAUSE");
    let paused_at = clock.now_ns();
    clock.set(paused_at + 1_000_000_000);
    assert_eq!(
        stream.next_position(MUST_NOT).await,
        None,
        "event while paused"
    );
    stream.trigger(TriggerType::Resume).await.expect("RESUME");
    let resumed = clock.now_ns();
    let base = k * u64::from(PERIOD_FRAMES);
    for _ in 0..4 {
        k += 1;
        clock.set(time_of(resumed, k * u64::from(PERIOD_FRAMES) - base));
        let pos = stream
            .next_position(MUST)
            .await
            .expect("CUR_POS after resume");
        assert_eq!(
            pos,
            k * u64::from(PERIOD),
            "position continues after resume"
        );
        w.period(&stream).await;
    }

    // Late writer: the guest stops writing for 8 periods (its buffer holds
    // 4): the card plays silence, counted as one underrun.
    let before = output.stats();
    let base_time = resumed;
    for _ in 0..8 {
        k += 1;
        clock.set(time_of(base_time, k * u64::from(PERIOD_FRAMES) - base));
        let pos = stream
            .next_position(MUST)
            .await
            .expect("CUR_POS while starved");
        assert_eq!(pos, k * u64::from(PERIOD));
    }
    let starved = output.stats();
    assert_eq!(
        starved.underruns,
        before.underruns + 1,
        "one underrun, not a storm"
    );
    assert!(starved.silence_frames >= before.silence_frames + 4 * u64::from(PERIOD_FRAMES));
    // Opus output kept time through the gap.
    let encoded = (k * u64::from(PERIOD_FRAMES)) / 960;
    assert!(
        (encoded.saturating_sub(2)..=encoded).contains(&starved.frames_encoded),
        "{} frames encoded for {encoded} due",
        starved.frames_encoded
    );

    // Early writer: three buffers at once, ignoring CUR_POS. Every WRITE
    // is answered, the excess is dropped, and the position still moves
    // only with the clock.
    for _ in 0..3 * PERIODS {
        w.period(&stream).await;
    }
    let early = output.stats();
    assert!(
        early.overflow_bytes > 0,
        "excess beyond the buffer dropped: {early:?}"
    );
    for _ in 0..3 {
        k += 1;
        let due = time_of(base_time, k * u64::from(PERIOD_FRAMES) - base);
        clock.set(due - 1);
        assert_eq!(
            stream.next_position(MUST_NOT).await,
            None,
            "position ran ahead of the clock"
        );
        clock.set(due);
        let pos = stream.next_position(MUST).await.expect("CUR_POS");
        assert_eq!(pos, k * u64::from(PERIOD));
    }
    stream.trigger(TriggerType::Stop).await.expect("STOP");
    clock.set(clock.now_ns() + 1_000_000_000);
    assert_eq!(
        stream.next_position(MUST_NOT).await,
        None,
        "event after STOP"
    );
    stream.close().await.expect("CLOSE");
    assert!(output.open_info().is_none());
}

//! A guest that plays in several runs on one open stream (TRIGGER START …
//! STOP, START … STOP, as ALSA does for each sound it plays): the backend's
//! CUR_POS position counts on from OPEN across runs, so a frontend paces
//! each run by the positions' progress since that run started. The guest
//! simulator used to compare the absolute position with its run's own
//! byte count, and from the second run on wrote the whole run at once:
//! everything beyond the buffer was dropped and the audio came out at the
//! wrong times (it made the audio latency benchmark measure noise). Checked
//! on the backend's counters: no run writes past the buffer, and the stream
//! encodes as much audio as the runs wrote.
//!
//! The clock runs three times slower than real time, so a loaded machine
//! keeps the guest ahead of the card.

mod sound_common;

use pvgate_backends::sound::SoundLimits;
use pvgate_protocol::sndif::PcmFormat;
use sound_common::*;

const RATE: u32 = 48_000;
const FRAME_BYTES: u32 = 4; // S16_LE stereo

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_run_on_an_open_stream_is_paced_by_its_own_progress() {
    let rig = Rig::start(
        "card, sample-formats=s16_le, sample-rates=48000 | stream, type=p",
        SlowClock::shared(3),
        SoundLimits::default(),
    )
    .await;
    let stream = rig.stream(0);
    let period_frames = RATE / 100; // 10 ms, 4 periods: the latency bench's guest
    stream
        .negotiate(PcmFormat::S16Le, RATE, 2, period_frames, 4)
        .await
        .expect("HW_PARAM_QUERY sequence");
    stream
        .open(
            PcmFormat::S16Le,
            RATE,
            2,
            period_frames * 4 * FRAME_BYTES,
            period_frames * FRAME_BYTES,
        )
        .await
        .expect("OPEN");
    let run_bytes = u64::from(RATE / 5 * FRAME_BYTES); // 200 ms of stream time
    let runs: u32 = 3;
    for run in 0..runs {
        let stats = stream
            .play(run_bytes, |_, chunk| chunk.fill(0))
            .await
            .unwrap_or_else(|e| panic!("run {run}: {e}"));
        assert_eq!(stats.bytes, run_bytes, "run {run}");
        // A run ends once the backend reported all of it consumed.
        assert!(
            stats.cur_pos_events >= 20 - 1,
            "run {run} ended after {} CUR_POS events: it did not wait for the card",
            stats.cur_pos_events
        );
    }
    let stats = rig.output(0).stats();
    // Boundaries count from OPEN, and STOP freezes the count between two
    // of them, so a run's first event can come up to a period early and the
    // run write up to that much too soon; nothing more may be dropped (the
    // old guest had whole runs dropped: ~190 KB here).
    let period_bytes = u64::from(period_frames * FRAME_BYTES);
    assert!(
        stats.overflow_bytes < u64::from(runs) * period_bytes,
        "the guest wrote beyond its buffer: {stats:?}"
    );
    // 20 ms Opus frames: the runs' 600 ms, less a partial frame per STOP.
    let want = u64::from(runs) * 10 - u64::from(runs);
    assert!(
        stats.frames_encoded >= want,
        "only {} Opus frames for {runs} runs of 200 ms: {stats:?}",
        stats.frames_encoded
    );
    stream.close().await.expect("CLOSE");
}

//! The microphone path: a viewer's Opus (a 440 Hz tone) injected into a
//! capture stream comes out of the guest's READs at 440 Hz and the level
//! it was sent at, and READs before any audio arrives get silence.

mod sound_common;

use std::sync::Arc;
use std::time::Duration;

use pvgate_audio::opus::OpusEncoder;
use pvgate_audio::{FrameDuration, Layout, OpusApplication, OpusSettings};
use pvgate_backends::sound::{ManualClock, SoundLimits};
use pvgate_guest_sim::content::pcm;
use pvgate_guest_sim::content::tone::{measure_tone, ToneGenerator};
use pvgate_protocol::sndif::PcmFormat;
use sound_common::*;

const LEVEL_DBFS: f64 = -12.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tone_sent_by_a_viewer_is_read_by_the_guest() {
    let clock = ManualClock::new(0);
    let rig = Rig::start(
        "card, sample-formats=s16_le, sample-rates=48000 | stream, type=c",
        Arc::new(clock.clone()),
        SoundLimits::default(),
    )
    .await;
    let stream = rig.stream(0);
    let output = rig.output(0);
    // 20 ms periods, 8 per buffer, stereo S16.
    let period = 960 * 4;
    stream
        .open(PcmFormat::S16Le, 48000, 2, period * 8, period)
        .await
        .expect("OPEN");
    // The viewer: a mono microphone, 20 ms Opus packets, one per 20 ms of
    // the card's clock; the test moves the clock a packet at a time and
    // gives the guest a moment to READ.
    let driver = tokio::spawn(async move {
        let mut enc = OpusEncoder::new(OpusSettings {
            layout: Layout::Mono,
            frame: FrameDuration::Ms20,
            bitrate_bps: 64_000,
            application: OpusApplication::Audio,
        })
        .expect("encoder");
        let mut tone = ToneGenerator::new(48_000, 1, LEVEL_DBFS);
        // Before any packet: silence for a while.
        for _ in 0..5 {
            clock.advance(20_000_000);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..100 {
            let packet = enc.encode(&tone.next_frames(960)).expect("encode");
            assert!(output.inject_capture(packet), "packet refused");
            clock.advance(20_000_000);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let mut captured = Vec::new();
    let stats = stream
        .capture(u64::from(period) * 90, |chunk| {
            captured.extend_from_slice(chunk)
        })
        .await
        .expect("capture");
    driver.abort();
    assert!(stats.reads >= 90, "{stats:?}");
    let samples = pcm::decode(&captured, PcmFormat::S16Le).expect("S16");
    let left: Vec<f32> = samples.iter().step_by(2).copied().collect();
    let right: Vec<f32> = samples.iter().skip(1).step_by(2).copied().collect();
    // The first 100 ms were read before the viewer sent anything.
    assert!(
        left[..4800].iter().all(|&s| s == 0.0),
        "silence before audio arrives"
    );
    // The last second holds the tone, on both channels (mono upmixed).
    let tail = left.len() - 48_000..;
    for (name, ch) in [("left", &left), ("right", &right)] {
        let m = measure_tone(&ch[tail.clone()], 48_000).expect("a tone");
        assert!(
            (m.frequency_hz - 440.0).abs() <= 2.0 && (m.level_dbfs - LEVEL_DBFS).abs() <= 1.0,
            "{name}: {m:?}"
        );
    }
    let s = rig.output(0).stats();
    assert_eq!(s.capture_bad_packets, 0);
    assert!(s.capture_silence_frames >= 4800, "{s:?}");
}

//! SET_VOLUME / GET_VOLUME / MUTE / UNMUTE end to end: the guest plays a
//! 440/660 Hz tone at −12 dBFS in four segments — at unity, after
//! SET_VOLUME −20 dB, after MUTE, after UNMUTE — and the test decodes the
//! gateway's Opus and measures each segment's level with the guest
//! simulator's tone analyser. Linux's snd-xen-front does not send these
//! requests today; the protocol has them, so the gateway applies them.
//!
//! The clock runs three times slower than real time (a loaded shared test
//! machine must keep the guest ahead of the card); levels, not speed, are
//! checked.

mod sound_common;

use pvgate_backends::sound::SoundLimits;
use pvgate_guest_sim::content::tone::{measure_tone, ToneGenerator};
use pvgate_protocol::sndif::PcmFormat;
use sound_common::*;

const LEVEL_DBFS: f64 = -12.0;
const VOLUME_MDB: i32 = -20_000;
const RATE: u32 = 48_000;
/// Each segment's length.
const SEGMENT_S: f64 = 0.6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_volume_mute_and_unmute_change_the_level_heard() {
    let rig = Rig::start(
        "card, sample-formats=s16_le, sample-rates=48000 | stream, type=p",
        SlowClock::shared(3),
        SoundLimits::default(),
    )
    .await;
    let stream = rig.stream(0);
    let collector = OpusCollector::start(rig.output(0).subscribe_all());
    let format = PcmFormat::S16Le;
    let frame_bytes = 4;
    let period_frames = RATE / 50;
    stream
        .negotiate(format, RATE, 2, period_frames, 10)
        .await
        .expect("HW_PARAM_QUERY sequence");
    stream
        .open(
            format,
            RATE,
            2,
            period_frames * 10 * frame_bytes,
            period_frames * frame_bytes,
        )
        .await
        .expect("OPEN");
    assert_eq!(
        stream.get_volume().await.expect("GET_VOLUME"),
        vec![0, 0],
        "a stream opens at 0 dB"
    );
    // One continuous stream (CUR_POS counts from OPEN, and OPEN resets the
    // volume); the changes come from here while it plays, each after about
    // SEGMENT_S more of the stream was encoded, and where each took effect
    // is read off the encoder's frame count (20 ms Opus frames).
    let total_bytes = (f64::from(RATE) * SEGMENT_S * 4.6) as u64 * u64::from(frame_bytes);
    let player = {
        let stream = stream.clone();
        tokio::spawn(async move {
            let mut tone = ToneGenerator::new(RATE, 2, LEVEL_DBFS);
            stream.play_tone(&mut tone, total_bytes).await
        })
    };
    let out = rig.output(0);
    let segment_frames = (SEGMENT_S * 50.0) as u64;
    let encoded_at_least = |n: u64| {
        let out = out.clone();
        async move {
            tokio::time::timeout(WAIT, async {
                loop {
                    let f = out.stats().frames_encoded;
                    if f >= n {
                        return f;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} Opus frames encoded"))
        }
    };
    let mut boundaries = Vec::new();
    // 1 → 2: −20 dB on both channels.
    let b = encoded_at_least(segment_frames).await;
    stream
        .set_volume(&[VOLUME_MDB, VOLUME_MDB])
        .await
        .expect("SET_VOLUME");
    boundaries.push(b);
    assert_eq!(
        stream.get_volume().await.expect("GET_VOLUME"),
        vec![VOLUME_MDB, VOLUME_MDB]
    );
    // 2 → 3: muted.
    let b = encoded_at_least(b + segment_frames).await;
    stream.set_mute(&[true, true], true).await.expect("MUTE");
    boundaries.push(b);
    // 3 → 4: unmuted, back to the volume set before (not to unity).
    let b = encoded_at_least(b + segment_frames).await;
    stream.set_mute(&[true, true], false).await.expect("UNMUTE");
    boundaries.push(b);
    assert_eq!(
        stream.get_volume().await.expect("GET_VOLUME"),
        vec![VOLUME_MDB, VOLUME_MDB],
        "mute does not change the volume"
    );
    player.await.expect("player").expect("play");
    stream.close().await.expect("CLOSE");
    let (pcm, _frames, lost) = collector.finish().await;
    assert_eq!(lost, 0, "the subscriber lost frames");
    let stats = rig.output(0).stats();
    boundaries.push((pcm.len() / 2 / 960) as u64);

    // Measure each segment away from its edges: the encoder's start, and
    // the frames encoded while a change was on its way.
    let level = |segment: usize, ch: usize| {
        let from = if segment == 0 {
            0
        } else {
            boundaries[segment - 1]
        } + 8;
        let to = boundaries[segment].saturating_sub(3);
        assert!(
            to >= from + 10,
            "segment {segment}: frames {from}..{to} are too few to measure (boundaries {boundaries:?}, underruns {}, silence frames {})",
            stats.underruns,
            stats.silence_frames
        );
        let samples = &pcm[from as usize * 960 * 2..to as usize * 960 * 2];
        measure_tone(&channel(samples, ch), RATE)
    };
    let want_db = f64::from(VOLUME_MDB) / 1000.0;
    for (ch, hz) in [(0, 440.0), (1, 660.0)] {
        for (segment, what, want) in [
            (0, "unity", Some(LEVEL_DBFS)),
            (1, "SET_VOLUME −20 dB", Some(LEVEL_DBFS + want_db)),
            (2, "MUTE", None),
            (3, "UNMUTE", Some(LEVEL_DBFS + want_db)),
        ] {
            let m = level(segment, ch);
            match want {
                Some(db) => {
                    let m = m.unwrap_or_else(|| panic!("{what}, channel {ch}: no tone"));
                    assert!(
                        (m.frequency_hz - hz).abs() <= 2.0 && (m.level_dbfs - db).abs() <= 1.0,
                        "{what}, channel {ch}: want {hz} Hz at {db} dBFS, got {m:?}"
                    );
                }
                // Silence decodes to (near) zeros: no tone, or far below
                // anything audible next to the −32 dBFS segment.
                None => assert!(
                    m.is_none_or(|m| m.level_dbfs < -60.0),
                    "{what}, channel {ch}: still audible: {m:?}"
                ),
            }
        }
    }
}

//! The gateway restarts while a guest's sound device is connected: the old
//! backend lets go of every page, snd-xen-front re-publishes when it sees
//! InitWait again, and a new backend serves the same stream: the guest's
//! tone comes out of the new backend's Opus.

mod sound_common;

use std::sync::Arc;

use pvgate_backends::sound::{serve_device_with_clock, MonotonicClock, SoundLimits};
use pvgate_guest_sim::content::tone::{measure_tone, ToneGenerator};
use pvgate_protocol::sndif::PcmFormat;
use sound_common::*;
use tokio::sync::watch;

const LEVEL_DBFS: f64 = -12.0;

/// Play one second of 440/660 Hz on stream 0 and measure what the backend
/// published.
async fn play_and_measure(
    rig_stream: Arc<pvgate_guest_sim::sound::SoundStream>,
    output: Arc<pvgate_backends::sound::StreamOutput>,
) {
    let collector = OpusCollector::start(output.subscribe_all());
    let period = 960u32; // 20 ms at 48 kHz
    let frame_bytes = 4u32; // S16_LE stereo
    rig_stream
        .open(
            PcmFormat::S16Le,
            48_000,
            2,
            period * 10 * frame_bytes,
            period * frame_bytes,
        )
        .await
        .expect("OPEN");
    let mut tone = ToneGenerator::new(48_000, 2, LEVEL_DBFS);
    rig_stream
        .play(u64::from(48_000 * frame_bytes), |_, chunk| {
            let bytes = tone
                .next_bytes(chunk.len() / frame_bytes as usize, PcmFormat::S16Le)
                .expect("tone bytes");
            chunk.copy_from_slice(&bytes);
        })
        .await
        .expect("play");
    rig_stream.close().await.expect("CLOSE");
    let (pcm, frames, _) = collector.finish().await;
    assert!(frames >= 40, "only {frames} Opus frames");
    let window = 48_000 * 2 / 10..48_000 * 2 * 7 / 10;
    let pcm = pcm.get(window).expect("enough decoded audio");
    for (ch, want) in [(0, 440.0), (1, 660.0)] {
        let m = measure_tone(&channel(pcm, ch), 48_000)
            .unwrap_or_else(|| panic!("channel {ch}: no tone in the decoded Opus"));
        assert!((m.frequency_hz - want).abs() <= 2.0, "channel {ch}: {m:?}");
        assert!(
            (m.level_dbfs - LEVEL_DBFS).abs() <= 1.0,
            "channel {ch}: {m:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_serves_the_same_stream_again() {
    let mut rig = Rig::start(
        "card, sample-formats=s16_le, sample-rates=48000 | stream, type=p",
        MonotonicClock::shared(),
        SoundLimits::default(),
    )
    .await;
    play_and_measure(rig.stream(0), rig.output(0)).await;

    // The gateway stops without a word to the guest.
    rig.stop.send_replace(true);
    (&mut rig.backend)
        .await
        .expect("backend task")
        .expect("backend stopped cleanly");
    assert!(
        rig.outputs.list().is_empty(),
        "a stopped gateway publishes nothing"
    );
    assert_eq!(
        rig.outputs.pages_in_use(DOMID),
        0,
        "a stopped gateway maps nothing"
    );

    // A new gateway starts on the same host.
    let (stop, stop_rx) = watch::channel(false);
    rig.stop = stop;
    rig.backend = tokio::spawn(serve_device_with_clock(
        rig.dom0.clone(),
        DOMID,
        0,
        rig.outputs.clone(),
        SoundLimits::default(),
        MonotonicClock::shared(),
        stop_rx,
    ));
    let session = rig.guest.sounds[0]
        .connected_after(Some(&rig.session), WAIT)
        .await
        .expect("the guest reconnects to the new gateway");
    rig.session = session;
    let output = rig
        .outputs
        .wait_for(key(0), WAIT)
        .await
        .expect("the new gateway registers the stream");
    play_and_measure(rig.stream(0), output).await;
}

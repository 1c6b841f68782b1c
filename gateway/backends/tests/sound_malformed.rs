//! A guest breaking the protocol on one stream gets error statuses and a
//! log line naming guest, device, stream and reason (checked for WRITE
//! before OPEN and a WRITE past the buffer's end) while its other stream
//! plays on unharmed; the broken stream still works afterwards; a corrupt
//! ring closes the device.

mod sound_common;

use std::time::Duration;

use pvgate_backends::sound::SoundLimits;
use pvgate_guest_sim::content::tone::{measure_tone, ToneGenerator};
use pvgate_guest_sim::misbehave::{self, Mode};
use pvgate_guest_sim::sound::SoundStream;
use pvgate_protocol::sndif::{Open, PcmFormat, RwRange, SndRequest, SndRequestOp};
use sound_common::*;

const FRAME: u32 = 4;
const PERIOD: u32 = 960 * FRAME;
const BUFFER: u32 = PERIOD * 8;

fn req(id: u16, op: SndRequestOp) -> [u8; 64] {
    SndRequest { id, op }.encode()
}

fn open(gref_directory: u32, pcm_format: PcmFormat) -> SndRequestOp {
    SndRequestOp::Open(Open {
        pcm_rate: 48000,
        pcm_format,
        pcm_channels: 2,
        buffer_sz: BUFFER,
        gref_directory,
        period_sz: PERIOD,
    })
}

async fn play_tone(stream: &SoundStream, seconds: u32) {
    let mut tone = ToneGenerator::new(48000, 2, -12.0);
    stream
        .play(u64::from(48000 * FRAME * seconds), |_, chunk| {
            let bytes = tone
                .next_bytes(chunk.len() / FRAME as usize, PcmFormat::S16Le)
                .unwrap();
            chunk.copy_from_slice(&bytes);
        })
        .await
        .expect("play");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_without_harming_the_other_stream() {
    let rig = Rig::start(
        "card, sample-formats=s16_le, sample-rates=48000 | stream, type=p | stream, type=p",
        SlowClock::shared(2),
        SoundLimits::default(),
    )
    .await;
    let (bad, good) = (rig.stream(0), rig.stream(1));

    // The good stream plays a tone all along.
    let good_out = rig.output(1);
    let collector = OpusCollector::start(good_out.subscribe_all());
    let good_task = {
        let good = good.clone();
        tokio::spawn(async move {
            good.open(PcmFormat::S16Le, 48000, 2, BUFFER, PERIOD)
                .await
                .expect("OPEN");
            play_tone(&good, 1).await;
            good.close().await.expect("CLOSE");
        })
    };

    // Before OPEN.
    let rw = RwRange {
        offset: 0,
        length: 64,
    };
    let mut unknown_format = req(3, open(1, PcmFormat::S16Le));
    unknown_format[12] = 99; // pcm_format
    let mut garbage = [0x5au8; 64];
    garbage[0..2].copy_from_slice(&7u16.to_le_bytes());
    garbage[2] = 0xee;
    assert_eq!(
        raw_requests(
            &bad,
            &[
                req(1, SndRequestOp::Write(rw)),
                req(2, open(99_999, PcmFormat::S16Le)),
                unknown_format,
                req(4, open(1, PcmFormat::Gsm)),
                req(5, SndRequestOp::Trigger(pvgate_protocol::sndif::TriggerType::Start)),
                garbage,
            ],
        )
        .await,
        vec![-22, -14, -22, -22, -22, -22],
        "WRITE before OPEN, bad directory, unknown format, compressed format, TRIGGER before OPEN, garbage"
    );
    // The operator can tell who did what: guest, device, stream, reason.
    let line = logs()
        .find(&["request refused", "WRITE before OPEN"])
        .unwrap_or_else(|| panic!("no refusal logged; logs: {:#?}", logs().lines()));
    for part in [
        format!("guest={DOMID}"),
        "device=0".to_string(),
        "stream 0".to_string(),
        "reason=WRITE before OPEN".to_string(),
    ] {
        assert!(line.contains(&part), "{part:?} missing from {line:?}");
    }
    assert!(rig.output(0).open_info().is_none());
    // Only the good stream's 8 buffer pages may be mapped.
    assert!(
        rig.outputs.pages_in_use(DOMID) <= 8,
        "failed OPENs left pages mapped"
    );

    // After OPEN.
    bad.open(PcmFormat::S16Le, 48000, 2, BUFFER, PERIOD)
        .await
        .expect("OPEN");
    assert!(rig.outputs.pages_in_use(DOMID) >= 8);
    assert_eq!(
        raw_requests(
            &bad,
            &[
                req(10, open(1, PcmFormat::S16Le)),
                req(
                    11,
                    SndRequestOp::Write(RwRange {
                        offset: BUFFER - 16,
                        length: 64
                    })
                ),
                req(
                    12,
                    SndRequestOp::Write(RwRange {
                        offset: u32::MAX - 16,
                        length: 16
                    })
                ),
                req(13, SndRequestOp::Read(rw)),
                req(
                    14,
                    SndRequestOp::SetVolume(RwRange {
                        offset: 0,
                        length: 4
                    })
                ),
            ],
        )
        .await,
        vec![-16, -22, -22, -22, -22],
        "OPEN twice, WRITE past the end, WRITE at a wrapping offset, READ on playback, SET_VOLUME short of 2 channels"
    );
    let past_end = format!("WRITE: offset {} + length 64 is outside", BUFFER - 16);
    let line = logs()
        .find(&["request refused", &past_end])
        .unwrap_or_else(|| panic!("WRITE past the end not logged; logs: {:#?}", logs().lines()));
    assert!(
        line.contains(&format!("guest={DOMID}")) && line.contains("device=0"),
        "{line}"
    );
    // The broken stream still plays.
    play_tone(&bad, 1).await;
    bad.close().await.expect("CLOSE");

    good_task.await.expect("good stream");
    let (pcm, _, lost) = collector.finish().await;
    assert_eq!(lost, 0);
    let left: Vec<f32> = channel(&pcm, 0);
    let m = measure_tone(&left[9600..43200], 48000).expect("tone");
    assert!(
        (m.frequency_hz - 440.0).abs() <= 2.0 && (m.level_dbfs + 12.0).abs() <= 1.0,
        "the other stream was disturbed: {m:?}"
    );
    assert!(good_out.stats().frames_encoded >= 45);
    assert_eq!(rig.outputs.pages_in_use(DOMID), 0, "CLOSE unmaps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_ring_closes_the_device() {
    let rig = Rig::start(
        "card, sample-formats=s16_le, sample-rates=48000 | stream, type=p | stream, type=c",
        SlowClock::shared(1),
        SoundLimits::default(),
    )
    .await;
    let bad = rig.stream(0);
    bad.open(PcmFormat::S16Le, 48000, 2, BUFFER, PERIOD)
        .await
        .expect("OPEN");
    let outcome = misbehave::on_sound(Mode::RingAhead, &bad, Duration::from_millis(200))
        .await
        .expect("ring ahead");
    assert!(outcome.silent);
    let store = &*rig.dom0.store;
    let state = format!("/local/domain/0/backend/vsnd/{DOMID}/0/state");
    let deadline = tokio::time::Instant::now() + WAIT;
    while store.read(&state).await.unwrap_or_default() != "5" {
        assert!(tokio::time::Instant::now() < deadline, "device not closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every stream of the device is gone, and its pages are released.
    let deadline = tokio::time::Instant::now() + WAIT;
    while rig.outputs.get(key(0)).is_some() || rig.outputs.get(key(1)).is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "outputs not removed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rig.outputs.pages_in_use(DOMID), 0);
}

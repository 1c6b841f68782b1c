//! HW_PARAM_QUERY as snd-xen-front sends it: ALSA's refinement calls the
//! driver's hw rule again and again, each time with the space narrowed by
//! the last answer, then OPENs. The answers must be the stream's xenstore
//! space (compressed formats removed) intersected with each query.

mod sound_common;

use pvgate_backends::sound::{MonotonicClock, SoundLimits};
use pvgate_guest_sim::sound::SoundError;
use pvgate_protocol::sndif::{
    mask_of, HwParams, Interval, Open, PcmFormat, SndRequest, SndRequestOp,
};
use sound_common::*;

fn iv(min: u32, max: u32) -> Interval {
    Interval { min, max }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refinement_sequence_of_snd_xen_front_ends_in_an_open() {
    let rig = Rig::start(
        "card, sample-formats=s16_le;float_le;mpeg, sample-rates=44100;48000, channels-max=2, buffer-size=65536 | stream, type=p",
        MonotonicClock::shared(),
        SoundLimits::default(),
    )
    .await;
    let stream = rig.stream(0);
    let answers = stream
        .negotiate(PcmFormat::S16Le, 48000, 2, 1024, 4)
        .await
        .expect("queries");
    let s16_f32 = mask_of([PcmFormat::S16Le, PcmFormat::F32Le]);
    let expected = [
        // Everything the config allows, MPEG dropped; buffer up to 64 KiB
        // of mono S16 and at least two of the query's shortest periods.
        HwParams {
            formats: s16_f32,
            rates: iv(44100, 48000),
            channels: iv(1, 2),
            buffer: iv(32, 16384),
            period: iv(16, 8192),
        },
        HwParams {
            formats: PcmFormat::S16Le.mask_bit(),
            rates: iv(44100, 48000),
            channels: iv(1, 2),
            buffer: iv(32, 16384),
            period: iv(16, 8192),
        },
        HwParams {
            formats: PcmFormat::S16Le.mask_bit(),
            rates: iv(48000, 48000),
            channels: iv(1, 2),
            buffer: iv(32, 16384),
            period: iv(16, 8192),
        },
        HwParams {
            formats: PcmFormat::S16Le.mask_bit(),
            rates: iv(48000, 48000),
            channels: iv(2, 2),
            buffer: iv(32, 16384),
            period: iv(16, 8192),
        },
        HwParams {
            formats: PcmFormat::S16Le.mask_bit(),
            rates: iv(48000, 48000),
            channels: iv(2, 2),
            buffer: iv(4096, 4096),
            period: iv(1024, 1024),
        },
    ];
    assert_eq!(answers.len(), expected.len());
    for (i, (got, want)) in answers.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "answer to query {i}");
    }
    // What ALSA settled on opens.
    stream
        .open(PcmFormat::S16Le, 48000, 2, 4096 * 4, 1024 * 4)
        .await
        .expect("OPEN");
    let info = rig.output(0).open_info().expect("open");
    assert_eq!((info.rate, info.channels, info.period_sz), (48000, 2, 4096));
    stream.close().await.expect("CLOSE");

    // Queries that leave nothing are refused with -EINVAL.
    let refused = |r: Result<HwParams, SoundError>| match r {
        Err(SoundError::Status { status, .. }) => status,
        other => panic!("not refused: {other:?}"),
    };
    let mpeg_only = HwParams {
        formats: PcmFormat::Mpeg.mask_bit(),
        ..expected[0]
    };
    assert_eq!(refused(stream.hw_param_query(mpeg_only).await), -22);
    let between_rates = HwParams {
        rates: iv(45000, 47000),
        ..expected[0]
    };
    assert_eq!(refused(stream.hw_param_query(between_rates).await), -22);
    let too_many_channels = HwParams {
        channels: iv(3, 8),
        ..expected[0]
    };
    assert_eq!(refused(stream.hw_param_query(too_many_channels).await), -22);
    // OPEN of the compressed format the config names is refused too.
    let open_mpeg = SndRequest {
        id: 0x4001,
        op: SndRequestOp::Open(Open {
            pcm_rate: 48000,
            pcm_format: PcmFormat::Mpeg,
            pcm_channels: 2,
            buffer_sz: 16384,
            gref_directory: 1,
            period_sz: 4096,
        }),
    }
    .encode();
    assert_eq!(raw_requests(&stream, &[open_mpeg]).await, vec![-22]);
    assert!(rig.output(0).open_info().is_none());
}

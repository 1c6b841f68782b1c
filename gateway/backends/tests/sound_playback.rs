//! The guest plays 440 Hz left / 660 Hz right in every PCM format the
//! gateway carries, at several rates and channel counts, all streams of
//! one card at once; the test decodes the Opus each stream publishes and
//! finds the tones at their frequency (±2 Hz) and level (±1 dB).
//!
//! Streams run five at a time on a clock four times slower than real time:
//! the test machine is shared, and what is checked here is the signal
//! path, not speed (the bench measures that).

mod sound_common;

use pvgate_backends::sound::SoundLimits;
use pvgate_guest_sim::content::tone::{measure_tone, ToneGenerator};
use pvgate_protocol::sndif::PcmFormat;
use sound_common::*;

const LEVEL_DBFS: f64 = -12.0;
const RATES: [u32; 8] = [8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000];
const CHANNELS: [u32; 5] = [2, 1, 4, 2, 6];

fn formats() -> Vec<PcmFormat> {
    PcmFormat::ALL
        .into_iter()
        .filter(|f| pvgate_audio::is_supported(*f))
        .collect()
}

/// (format, rate, channels) of stream `i`.
fn combo(i: usize, format: PcmFormat) -> (PcmFormat, u32, u32) {
    (format, RATES[i % RATES.len()], CHANNELS[i % CHANNELS.len()])
}

/// A card whose stream `i` allows exactly combo `i` (8 streams per PCM
/// device, as snd-xen-front reads at most 8).
fn card_spec(combos: &[(PcmFormat, u32, u32)]) -> String {
    let mut spec = String::from("card, buffer-size=1048576");
    for (i, (f, rate, ch)) in combos.iter().enumerate() {
        if i % 8 == 0 {
            spec.push_str(" | pcm");
        }
        spec.push_str(&format!(
            " | stream, type=p, sample-formats={}, sample-rates={rate}, channels-min={ch}, channels-max={ch}",
            f.xenstore_name()
        ));
    }
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tones_in_every_format_rate_and_channel_count_come_out_as_opus() {
    let combos: Vec<_> = formats()
        .into_iter()
        .enumerate()
        .map(|(i, f)| combo(i, f))
        .collect();
    assert_eq!(combos.len(), 20, "every linear and companded sndif format");
    let rig = Rig::start(
        &card_spec(&combos),
        SlowClock::shared(4),
        SoundLimits::default(),
    )
    .await;
    let mut results = Vec::new();
    for batch in (0..combos.len()).collect::<Vec<_>>().chunks(5) {
        let mut jobs = Vec::new();
        for &i in batch {
            let (format, rate, channels) = combos[i];
            let stream = rig.stream(i);
            let output = rig.output(i as u32);
            jobs.push(tokio::spawn(async move {
                let collector = OpusCollector::start(output.subscribe_all());
                let frame_bytes = format.bytes_per_sample().unwrap() * channels;
                // 20 ms periods, 10 per buffer: room for a loaded test machine.
                let period_frames = rate / 50;
                let answers = stream
                    .negotiate(format, rate, channels, period_frames, 10)
                    .await
                    .expect("HW_PARAM_QUERY sequence");
                let last = answers.last().unwrap();
                assert_eq!(last.formats, format.mask_bit());
                assert_eq!((last.rates.min, last.rates.max), (rate, rate));
                stream
                    .open(
                        format,
                        rate,
                        channels as u8,
                        period_frames * 10 * frame_bytes,
                        period_frames * frame_bytes,
                    )
                    .await
                    .expect("OPEN");
                let mut tone = ToneGenerator::new(rate, channels as usize, LEVEL_DBFS);
                let total = u64::from(rate * frame_bytes);
                stream
                    .play(total, |_, chunk| {
                        let frames = chunk.len() / frame_bytes as usize;
                        let bytes = tone.next_bytes(frames, format).expect("tone bytes");
                        chunk.copy_from_slice(&bytes);
                    })
                    .await
                    .expect("play");
                stream.close().await.expect("CLOSE");
                let (pcm, frames, lost) = collector.finish().await;
                (format, rate, channels, pcm, frames, lost, output.stats())
            }));
        }
        for job in jobs {
            results.push(job.await.expect("stream job"));
        }
    }
    let mut failures = Vec::new();
    for (format, rate, channels, pcm, frames, lost, stats) in results {
        let what = format!("{} {rate} Hz {channels} ch", format.xenstore_name());
        assert_eq!(lost, 0, "{what}: subscriber lost frames");
        // One second of stream is 50 frames of 20 ms.
        assert!((45..=51).contains(&frames), "{what}: {frames} Opus frames");
        assert_eq!(stats.frames_encoded as usize, frames, "{what}");
        // Skip the encoder's and resampler's start; 0.6 s window.
        let window = 48_000 * 2 / 10..48_000 * 2 * 8 / 10;
        let Some(pcm) = pcm.get(window) else {
            failures.push(format!("{what}: only {} samples decoded", pcm.len()));
            continue;
        };
        let want_right = if channels == 1 { 440.0 } else { 660.0 };
        for (ch, want) in [(0, 440.0), (1, want_right)] {
            let m = measure_tone(&channel(pcm, ch), 48_000);
            match m {
                Some(m)
                    if (m.frequency_hz - want).abs() <= 2.0
                        && (m.level_dbfs - LEVEL_DBFS).abs() <= 1.0 => {}
                other => failures.push(format!(
                    "{what}: channel {ch}: want {want} Hz at {LEVEL_DBFS} dBFS, got {other:?} \
                     (underruns {}, silence frames {})",
                    stats.underruns, stats.silence_frames
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

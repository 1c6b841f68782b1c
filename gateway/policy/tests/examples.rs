//! The example plugins' decisions on the checked-in traces
//! (tests/traces/*.json), asserted value by value.

mod support;

use pvgate_policy::types::*;
use pvgate_policy::{replay, Decision, PolicyTrace, ReplayStep, Source, TraceRecorder};
use support::*;

fn video(step: &ReplayStep) -> &VideoPolicy {
    match &step.decision {
        Decision::Video(v) => v,
        d => panic!("step {}: expected a video decision, got {d:?}", step.index),
    }
}

fn audio(step: &ReplayStep) -> &AudioPolicy {
    match &step.decision {
        Decision::Audio(a) => a,
        d => panic!("step {}: expected an audio decision, got {d:?}", step.index),
    }
}

fn admission(step: &ReplayStep) -> &Admission {
    match &step.decision {
        Decision::Admit(a) => a,
        d => panic!("step {}: expected an admission, got {d:?}", step.index),
    }
}

/// Every step answered by the plugin itself, with fuel spent.
fn all_from_plugin(steps: &[ReplayStep]) {
    for s in steps {
        assert_eq!(
            s.report.source,
            Source::Plugin,
            "step {}: {:?}",
            s.index,
            s.report
        );
        assert!(
            s.report.fuel_used.unwrap_or(0) > 0,
            "step {}: no fuel used",
            s.index
        );
    }
}

#[test]
fn tiers_on_its_trace() {
    let e = engine();
    let t = e
        .load("acme", example("tiers"), cfg(&[]))
        .unwrap_or_else(|e| panic!("{e}"));
    let trace = PolicyTrace::load(trace_path("tiers.json")).unwrap();
    let steps = replay(&t, &trace);
    assert_eq!(steps.len(), 10);
    all_from_plugin(&steps);

    // bronze: 854x480, 15 fps, 0.05..0.5 Mbit/s
    let v = video(&steps[0]);
    assert_eq!(v.max_size, Size::new(854, 480));
    assert_eq!(v.max_fps, 15);
    assert_eq!((v.min_bitrate_bps, v.max_bitrate_bps), (50_000, 500_000));
    assert_eq!(v.codecs, vec![Codec::H264, Codec::Vp8]);
    assert_eq!(v.keyframe_interval_ms, 2000);
    assert!(steps[0].report.corrections.is_empty());
    // bronze audio: 16 kHz mono, 24 kbit/s, no microphone; formats are the
    // offered convertible ones (mu-law dropped).
    let a = audio(&steps[1]);
    assert_eq!(a.rates, vec![16_000]);
    assert_eq!(a.channels_max, 1);
    assert_eq!(a.opus_bitrate_bps, 24_000);
    assert!(!a.capture_allowed);
    assert_eq!(a.formats, vec![SampleFormat::S16Le, SampleFormat::FloatLe]);
    let a = audio(&steps[2]);
    assert_eq!(
        (a.rates.as_slice(), a.channels_max, a.capture_allowed),
        (&[16_000][..], 1, false)
    );
    assert_eq!(a.formats, vec![SampleFormat::S16Le]);

    // silver: 1280x720, 30 fps, 0.2..2 Mbit/s, 48 kHz stereo
    let v = video(&steps[3]);
    assert_eq!((v.max_size, v.max_fps), (Size::new(1280, 720), 30));
    assert_eq!((v.min_bitrate_bps, v.max_bitrate_bps), (200_000, 2_000_000));
    let a = audio(&steps[4]);
    assert_eq!(
        (a.rates.as_slice(), a.channels_max, a.opus_bitrate_bps),
        (&[48_000][..], 2, 96_000)
    );
    assert!(!a.capture_allowed);

    // gold wins over bronze: 1920x1080 60 fps, 0.8..8 Mbit/s
    let v = video(&steps[5]);
    assert_eq!((v.max_size, v.max_fps), (Size::new(1920, 1080), 60));
    assert_eq!((v.min_bitrate_bps, v.max_bitrate_bps), (800_000, 8_000_000));
    // gold microphone: allowed; "at most stereo" on a mono stream is mono
    // (a ceiling, not a mistake: no correction).
    let a = audio(&steps[6]);
    assert!(a.capture_allowed);
    assert_eq!((a.rates.as_slice(), a.channels_max), (&[48_000][..], 1));
    assert!(steps[6].report.corrections.is_empty());
    assert_eq!(t.metrics().snapshot().rejected_values, 0);

    // no tier label: the defaults, at the guest's own size
    let v = video(&steps[7]);
    assert_eq!(v.max_size, Size::new(1280, 800));
    assert_eq!(
        (v.max_fps, v.min_bitrate_bps, v.max_bitrate_bps),
        (60, 300_000, 8_000_000)
    );

    assert_eq!(admission(&steps[8]), &Admission::Allow(Role::Control));
    assert_eq!(steps[9].decision, Decision::Adjust(None));
}

#[test]
fn office_hours_on_its_trace() {
    let e = engine();
    let config = cfg(&[
        ("hours", "09:00-17:00"),
        ("days", "mon-fri"),
        ("utc-offset-minutes", "0"),
    ]);
    let t = e
        .load("acme", example("office_hours"), config)
        .unwrap_or_else(|e| panic!("{e}"));
    let steps = replay(
        &t,
        &PolicyTrace::load(trace_path("office-hours.json")).unwrap(),
    );
    all_from_plugin(&steps);
    let got: Vec<_> = steps[..6].iter().map(|s| admission(s).clone()).collect();
    assert_eq!(
        got,
        vec![
            Admission::Allow(Role::Control), // Tuesday 10:00
            Admission::Allow(Role::View),    // Tuesday 20:00
            Admission::Allow(Role::View),    // a view token at 10:00
            Admission::Allow(Role::View),    // Saturday 10:00
            Admission::Allow(Role::View),    // Tuesday 08:59
            Admission::Allow(Role::View),    // Tuesday 17:00 (end exclusive)
        ]
    );
    // The plugin does not decide video: the defaults.
    assert_eq!(video(&steps[6]).max_size, Size::new(1024, 768));
}

#[test]
fn office_hours_zone_and_missing_config() {
    let e = engine();
    let trace = PolicyTrace::load(trace_path("office-hours.json")).unwrap();
    // UTC+1: Tuesday 08:59 UTC is 09:59 local (in hours), 10:00 UTC is 11:00.
    let cet = e
        .load(
            "cet",
            example("office_hours"),
            cfg(&[("hours", "09:00-17:00"), ("utc-offset-minutes", "60")]),
        )
        .unwrap();
    let steps = replay(&cet, &trace);
    assert_eq!(admission(&steps[4]), &Admission::Allow(Role::Control));
    assert_eq!(admission(&steps[0]), &Admission::Allow(Role::Control));
    // No `hours`: fail closed, never control, but still let in.
    let none = e.load("none", example("office_hours"), cfg(&[])).unwrap();
    let steps = replay(&none, &trace);
    assert_eq!(admission(&steps[0]), &Admission::Allow(Role::View));
}

/// The `default` plugin and the built-in policy decide the same, on every
/// question of the trace (the SDK's defaults and ours are in step).
#[test]
fn default_plugin_matches_builtin() {
    let e = engine();
    let plugin = e.load("p", example("default"), cfg(&[])).unwrap();
    let builtin = e.builtin("b");
    let trace = PolicyTrace::load(trace_path("default.json")).unwrap();
    let from_plugin = replay(&plugin, &trace);
    let from_builtin = replay(&builtin, &trace);
    all_from_plugin(&from_plugin);
    for (p, b) in from_plugin.iter().zip(&from_builtin) {
        assert_eq!(p.decision, b.decision, "event {}: {:?}", p.index, p.event);
        assert!(
            p.report.corrections.is_empty(),
            "event {}: {:?}",
            p.index,
            p.report.corrections
        );
        assert_eq!(b.report.source, Source::Builtin);
        assert_eq!(b.report.fuel_used, None);
    }
    // A few concrete values of the built-in policy.
    let v = video(&from_builtin[1]);
    assert_eq!(v.max_size, Size::new(1364, 766), "odd guest mode made even");
    let a = audio(&from_builtin[2]);
    assert_eq!(a.formats, vec![SampleFormat::S16Le, SampleFormat::FloatLe]);
    assert_eq!(a.rates, vec![16_000, 44_100, 48_000]);
    assert_eq!(
        (a.channels_max, a.opus_bitrate_bps, a.capture_allowed),
        (2, 96_000, true)
    );
    assert_eq!(admission(&from_builtin[5]), &Admission::Allow(Role::View));
    assert_eq!(e.tenants().len(), 2);
}

/// What the recorder writes, `PolicyTrace::load` reads back (JSON lines),
/// and replaying it gives the same decisions.
#[test]
fn recorded_trace_replays() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rec.jsonl");
    let e = engine();
    let t = e.load("acme", example("tiers"), cfg(&[])).unwrap();
    let rec = std::sync::Arc::new(TraceRecorder::create(&file).unwrap());
    t.set_recorder(Some(rec));
    let trace = PolicyTrace::load(trace_path("tiers.json")).unwrap();
    let first = replay(&t, &trace);
    t.set_recorder(None);
    let recorded = PolicyTrace::load(&file).unwrap();
    assert_eq!(recorded, trace);
    let again = replay(&t, &recorded);
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(a.decision, b.decision);
    }
    // The document spelling round-trips too.
    assert_eq!(PolicyTrace::parse(&trace.to_json_pretty()).unwrap(), trace);
    // A broken line is reported with its number.
    let err = PolicyTrace::parse("{\"call\":\"admit\"}\n").unwrap_err();
    assert_eq!(err.0, 1, "{err:?}");
}

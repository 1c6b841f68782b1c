//! `pvgate plugin check` and `pvgate plugin test` on the built example
//! plugins and the policy crate's fixed traces, through the real binary.

#[path = "../../policy/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output};

use pvgate_policy::types::*;
use pvgate_policy::{Decision, ReplayStep, Source};

const PVGATE: &str = env!("CARGO_BIN_EXE_pvgate");

fn pvgate(args: &[&str]) -> Output {
    Command::new(PVGATE)
        .args(args)
        // Compiled plugins shared with the policy crate's tests.
        .arg("--cache-dir")
        .arg(support::test_cache_dir())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run pvgate")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The policy crate's fixed traces.
fn trace_file(name: &str) -> std::path::PathBuf {
    support::repo_root()
        .join("gateway/policy/tests/traces")
        .join(name)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `plugin test --json`: one ReplayStep per line.
fn replay_json(plugin: &str, trace: &str, config: &[&str]) -> Vec<ReplayStep> {
    let wasm = support::example(plugin);
    let trace = trace_file(trace);
    let mut args = vec!["plugin", "test", path(&wasm), "--events", path(&trace)];
    for c in config {
        args.extend(["--config", c]);
    }
    args.push("--json");
    let out = pvgate(&args);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn check_prints_world_imports_and_size() {
    let wasm = support::example("tiers");
    let out = pvgate(&["plugin", "check", path(&wasm)]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("world      pvgate:policy/plugin@0.1.0"),
        "{stdout}"
    );
    assert!(stdout.contains("pvgate:policy/host@0.1.0"), "{stdout}");
    assert!(stdout.contains("video, audio, admit, adjust"), "{stdout}");
    let size = std::fs::metadata(&wasm).unwrap().len();
    assert!(
        stdout.contains(&format!("size       {size} bytes")),
        "{stdout}"
    );
    assert!(stdout.contains("ok: the gateway would load"), "{stdout}");
}

#[test]
fn check_says_what_is_wrong_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("policy.wasm");
    std::fs::write(&not_wasm, "#!/bin/sh\necho hi\n").unwrap();
    let out = pvgate(&["plugin", "check", path(&not_wasm)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(path(&not_wasm)), "{stderr}");
    assert!(stderr.contains("is not a WebAssembly file"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A core module (not a component): the message says how to build one.
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = pvgate(&["plugin", "check", path(&core)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("core WebAssembly module"), "{stderr}");

    let out = pvgate(&["plugin", "check", "/nonexistent/p.wasm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read the file"));
}

#[test]
fn tiers_decisions_through_the_cli() {
    let steps = replay_json("tiers", "tiers.json", &[]);
    assert_eq!(steps.len(), 10);
    for s in &steps {
        assert_eq!(s.report.source, Source::Plugin, "{:?}", s.report);
        assert!(s.report.fuel_used.unwrap_or(0) > 0);
    }
    let Decision::Video(v) = &steps[0].decision else {
        panic!("{:?}", steps[0].decision)
    };
    assert_eq!(
        (v.max_size, v.max_fps, v.max_bitrate_bps),
        (Size::new(854, 480), 15, 500_000)
    );
    let Decision::Audio(a) = &steps[1].decision else {
        panic!("{:?}", steps[1].decision)
    };
    assert_eq!(
        (a.rates.as_slice(), a.channels_max, a.capture_allowed),
        (&[16_000][..], 1, false)
    );
    let Decision::Video(v) = &steps[5].decision else {
        panic!()
    };
    assert_eq!((v.max_size, v.max_fps), (Size::new(1920, 1080), 60));
    assert_eq!(
        steps[8].decision,
        Decision::Admit(Admission::Allow(Role::Control))
    );
}

#[test]
fn office_hours_decisions_and_the_text_report() {
    let config = ["hours=09:00-17:00", "days=mon-fri", "utc-offset-minutes=0"];
    let steps = replay_json("office_hours", "office-hours.json", &config);
    let roles: Vec<_> = steps[..6]
        .iter()
        .map(|s| match &s.decision {
            Decision::Admit(Admission::Allow(r)) => *r,
            d => panic!("{d:?}"),
        })
        .collect();
    use Role::*;
    assert_eq!(roles, [Control, View, View, View, View, View]);

    // The human-readable form: each decision, who answered, fuel and time.
    let wasm = support::example("office_hours");
    let trace = trace_file("office-hours.json");
    let mut args = vec!["plugin", "test", path(&wasm), "--events", path(&trace)];
    for c in &config {
        args.extend(["--config", c]);
    }
    let out = pvgate(&args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("#0   admit  dom21 guest21"), "{stdout}");
    assert!(stdout.contains("→ allow as control"), "{stdout}");
    assert!(stdout.contains("→ allow as view"), "{stdout}");
    assert!(stdout.contains("plugin; fuel "), "{stdout}");
    assert!(stdout.contains(" µs"), "{stdout}");
    assert!(stdout.contains("0 failed"), "{stdout}");
    assert!(stdout.contains("fuel per call: median"), "{stdout}");
}

#[test]
fn a_failing_plugin_shows_the_fallback_and_exits_non_zero() {
    let wasm = support::example("misbehaving");
    let trace = trace_file("tiers.json");
    let args = [
        "plugin",
        "test",
        path(&wasm),
        "--events",
        path(&trace),
        "--config",
        "mode=panic",
    ];
    let out = pvgate(&args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stdout.contains("the plugin trapped"), "{stdout}");
    assert!(stdout.contains("fallback: "), "{stdout}");
    assert!(stderr.contains("--allow-failures"), "{stderr}");
    assert!(!stderr.contains("panicked at"), "{stderr}");
    let mut allowed = args.to_vec();
    allowed.push("--allow-failures");
    assert!(pvgate(&allowed).status.success());
}

#[test]
fn test_reports_a_bad_trace_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.jsonl");
    std::fs::write(&trace, "{\"call\":\"admit\"}\n").unwrap();
    let wasm = support::example("default");
    let out = pvgate(&["plugin", "test", path(&wasm), "--events", path(&trace)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(path(&trace)), "{stderr}");
    let out = pvgate(&[
        "plugin",
        "test",
        path(&wasm),
        "--events",
        path(&trace),
        "--config",
        "x",
    ]);
    assert!(text(&out.stderr).contains("KEY=VALUE"));
}

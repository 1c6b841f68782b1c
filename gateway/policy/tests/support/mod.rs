//! Shared by the integration tests and the bench: the example plugins
//! (built on demand), a test engine, and fixtures.
#![allow(dead_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use pvgate_policy::types::*;
use pvgate_policy::{CacheDir, EngineLimits, PolicyEngine, PolicyEngineConfig};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The example plugins' names and their output files.
pub const EXAMPLES: [&str; 4] = ["default", "tiers", "office_hours", "misbehaving"];

fn wasm_dir() -> PathBuf {
    repo_root().join("wasm-plugins/target/wasm32-wasip2/release")
}

/// An example plugin (`default`, `tiers`, `office_hours`, `misbehaving`),
/// built once per test process. The build runs under a file lock so test
/// binaries running in parallel (nextest) do not race on it.
pub fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(build_examples);
    let p = wasm_dir().join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} missing after building the examples",
        p.display()
    );
    p
}

fn build_examples() {
    let root = repo_root();
    let target = root.join("wasm-plugins/target");
    std::fs::create_dir_all(&target).expect("create wasm-plugins/target");
    let lock = File::create(target.join(".pvgate-policy-tests.lock")).expect("lock file");
    // SAFETY: flock on a file descriptor we own; released when `lock` drops.
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    let manifest = root.join("wasm-plugins/Cargo.toml");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        // Not the gateway's target dir or flags: a nested cargo under
        // `cargo test` inherits variables meant for the outer build.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("run cargo to build the example plugins");
    let all_there = EXAMPLES
        .iter()
        .all(|n| wasm_dir().join(format!("{n}.wasm")).exists());
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let missing_target = err.contains("wasm32-wasip2")
            && (err.contains("may not be installed")
                || err.contains("can't find crate for `core`")
                || err.contains("can't find crate for `std`"));
        if missing_target {
            panic!(
                "the example policy plugins need the wasm32-wasip2 Rust target: \
                 run `rustup target add wasm32-wasip2`\n{err}"
            );
        }
        if all_there {
            eprintln!("warning: rebuilding the example plugins failed; using the existing .wasm files\n{err}");
        } else {
            panic!(
                "building the example plugins failed ({}):\n{err}",
                manifest.display()
            );
        }
    }
}

/// A copy of `src` in a fresh temporary directory (for tests that change
/// the file under the tenant's feet).
pub fn copy_to_temp(src: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dst = dir.path().join("plugin.wasm");
    std::fs::copy(src, &dst).expect("copy plugin");
    (dir, dst)
}

/// Replaces `dst` atomically (write elsewhere, rename), as an operator's
/// deploy script should.
pub fn replace_file(dst: &Path, src: &Path) {
    let tmp = dst.with_extension("new");
    std::fs::copy(src, &tmp).expect("copy");
    std::fs::rename(&tmp, dst).expect("rename");
}

/// Compiled plugins shared by every test in this target dir.
pub fn test_cache_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp/pvgate-policy-cache");
    std::fs::create_dir_all(&d).expect("cache dir");
    d
}

/// A test engine: a small pool, the shared cache, no reload thread
/// (tests reload explicitly, except the one that tests the watcher).
pub fn config() -> PolicyEngineConfig {
    PolicyEngineConfig {
        engine_limits: EngineLimits {
            max_plugins: 4,
            ..EngineLimits::default()
        },
        cache_dir: CacheDir::Path(test_cache_dir()),
        reload_poll: None,
        ..PolicyEngineConfig::default()
    }
}

pub fn engine() -> PolicyEngine {
    PolicyEngine::new(config()).expect("policy engine")
}

pub fn cfg(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn guest(domid: u32, labels: &[&str]) -> Guest {
    Guest {
        domid,
        name: format!("guest{domid}"),
        tenant: "acme".into(),
        labels: labels.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn connector(w: u32, h: u32) -> DisplayConnector {
    DisplayConnector {
        index: 0,
        resolution: Size::new(w, h),
    }
}

pub fn stream() -> SoundStream {
    SoundStream {
        unique_id: "0".into(),
        direction: Direction::Playback,
        formats: vec![
            SampleFormat::S16Le,
            SampleFormat::MuLaw,
            SampleFormat::FloatLe,
        ],
        rates: vec![16_000, 44_100, 48_000],
        channels_min: 1,
        channels_max: 2,
    }
}

pub fn viewer(role: Role) -> Viewer {
    Viewer {
        tenant: "acme".into(),
        user: "alice".into(),
        role,
        remote_address: "127.0.0.1:50000".into(),
    }
}

pub fn stats() -> LinkStats {
    LinkStats {
        rtt_ms: 40,
        loss_permille: 5,
        estimated_bps: 3_000_000,
        fps_achieved: 30,
    }
}

pub fn trace_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/traces")
        .join(name)
}

//! The on-disk compile cache: hits after the first compile, corrupt
//! entries recompiled (never loaded), an unusable directory tolerated.

mod support;

use pvgate_policy::{CacheDir, PolicyEngine, PolicyEngineConfig};
use support::*;

fn engine_with(cache: CacheDir) -> PolicyEngine {
    PolicyEngine::new(PolicyEngineConfig {
        cache_dir: cache,
        ..config()
    })
    .unwrap()
}

fn entries(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect()
}

#[test]
fn second_load_hits_and_corruption_recompiles() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_with(CacheDir::Path(dir.path().to_path_buf()));
    let g = guest(5, &["bronze"]);
    let c = connector(1920, 1080);

    let t = e.load("acme", example("tiers"), cfg(&[])).unwrap();
    assert!(!t.plugin_info().unwrap().from_cache);
    let expected = t.video(&g, &c);
    let arts = entries(dir.path(), "cwasm");
    assert_eq!(arts.len(), 1, "{arts:?}");
    assert!(arts[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(&t.plugin_info().unwrap().sha256));

    // Another engine with the same settings: loaded from the cache.
    let e2 = engine_with(CacheDir::Path(dir.path().to_path_buf()));
    let t2 = e2.load("acme", example("tiers"), cfg(&[])).unwrap();
    assert!(t2.plugin_info().unwrap().from_cache);
    assert_eq!(t2.video(&g, &c), expected);

    // Flip bytes in the middle of the artifact: detected, recompiled.
    let mut bytes = std::fs::read(&arts[0]).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xff;
    }
    std::fs::write(&arts[0], &bytes).unwrap();
    let t3 = engine_with(CacheDir::Path(dir.path().to_path_buf()))
        .load("acme", example("tiers"), cfg(&[]))
        .unwrap();
    assert!(!t3.plugin_info().unwrap().from_cache);
    assert_eq!(t3.video(&g, &c), expected);
    // … and the entry was rewritten: the next load hits again.
    let t4 = engine_with(CacheDir::Path(dir.path().to_path_buf()))
        .load("acme", example("tiers"), cfg(&[]))
        .unwrap();
    assert!(t4.plugin_info().unwrap().from_cache);

    // Truncated artifact and a garbage digest: recompiled as well.
    std::fs::write(&arts[0], b"\x7fELF").unwrap();
    for s in entries(dir.path(), "sha256") {
        std::fs::write(s, "not a digest").unwrap();
    }
    let t5 = engine_with(CacheDir::Path(dir.path().to_path_buf()))
        .load("acme", example("tiers"), cfg(&[]))
        .unwrap();
    assert!(!t5.plugin_info().unwrap().from_cache);
    assert_eq!(t5.video(&g, &c), expected);
}

#[test]
fn unusable_cache_dir_compiles_in_memory() {
    let file = tempfile::NamedTempFile::new().unwrap();
    // A directory below a regular file cannot be created.
    let e = engine_with(CacheDir::Path(file.path().join("cache")));
    assert!(e.cache_dir().is_none());
    let t = e.load("acme", example("default"), cfg(&[])).unwrap();
    assert!(!t.plugin_info().unwrap().from_cache);
    let e = engine_with(CacheDir::Disabled);
    assert!(e.load("acme", example("default"), cfg(&[])).is_ok());
}

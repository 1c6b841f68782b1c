//! Files the gateway must refuse before running any of their code, each
//! with a message that says what is wrong and names the tenant and file.

mod support;

use std::path::{Path, PathBuf};

use pvgate_policy::{check, PluginError, PluginErrorKind};
use sha2::{Digest, Sha256};
use support::*;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A component exporting an instance `export_name` with the four function
/// names (of a trivial type) and importing `imports`.
fn component(export_name: &str, imports: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(component
            {imports}
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $p
                (export "video" (func $f))
                (export "audio" (func $f))
                (export "admit" (func $f))
                (export "adjust" (func $f)))
            (export "{export_name}" (instance $p)))"#
    ))
    .expect("test component WAT")
}

fn load_err(path: &Path) -> PluginError {
    match engine().load("acme", path, cfg(&[])) {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(e) => e,
    }
}

fn assert_names_tenant_and_file(e: &PluginError, file: &str) {
    let msg = e.to_string();
    assert!(msg.contains("tenant `acme`"), "{msg}");
    assert!(msg.contains(file), "{msg}");
}

#[test]
fn wasi_import_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let wasi = r#"(import "wasi:cli/environment@0.2.0" (instance
                    (export "get-arguments" (func (result (list string))))))"#;
    let p = write(
        dir.path(),
        "wasi.wasm",
        &component("pvgate:policy/policy@0.1.0", wasi),
    );
    let e = load_err(&p);
    assert_names_tenant_and_file(&e, "wasi.wasm");
    match &e.kind {
        PluginErrorKind::ForbiddenImport { name, .. } => {
            assert_eq!(name, "wasi:cli/environment@0.2.0")
        }
        k => panic!("{k:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("imports `wasi:cli/environment@0.2.0`") && msg.contains("no WASI"),
        "{msg}"
    );
    assert!(msg.contains("no_std"), "says what to do: {msg}");
    // `pvgate plugin check` says the same (without a tenant).
    let c = check(&p).unwrap_err();
    assert!(c.tenant.is_none());
    assert!(matches!(c.kind, PluginErrorKind::ForbiddenImport { .. }));
}

#[test]
fn unknown_import_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "other.wasm",
        &component(
            "pvgate:policy/policy@0.1.0",
            r#"(import "acme:evil/net" (instance))"#,
        ),
    );
    let e = load_err(&p);
    assert!(
        matches!(&e.kind, PluginErrorKind::ForbiddenImport { name, .. } if name == "acme:evil/net"),
        "{e}"
    );
}

#[test]
fn wrong_world_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "v2.wasm",
        &component("pvgate:policy/policy@0.2.0", ""),
    );
    let e = load_err(&p);
    assert_names_tenant_and_file(&e, "v2.wasm");
    match &e.kind {
        PluginErrorKind::WrongVersion { found } => assert_eq!(found, "pvgate:policy/policy@0.2.0"),
        k => panic!("{k:?}"),
    }
    assert!(e.to_string().contains("pvgate:policy@0.1.0"), "{e}");
}

#[test]
fn core_module_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "core.wasm",
        &wat::parse_str("(module)").unwrap(),
    );
    let e = load_err(&p);
    assert_names_tenant_and_file(&e, "core.wasm");
    assert!(matches!(e.kind, PluginErrorKind::CoreModule));
    assert!(
        e.to_string().contains("wasm32-wasip2"),
        "says what to do: {e}"
    );
}

#[test]
fn not_wasm_missing_export_and_mismatched_types() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "text.wasm", b"#!/bin/sh\necho hi\n");
    assert!(matches!(load_err(&p).kind, PluginErrorKind::NotWasm));

    let p = write(
        dir.path(),
        "empty.wasm",
        &wat::parse_str("(component)").unwrap(),
    );
    let e = load_err(&p);
    assert!(
        matches!(&e.kind, PluginErrorKind::MissingExport { exports } if exports == "none"),
        "{e}"
    );

    // The right name, but `video` takes nothing and returns nothing.
    let p = write(
        dir.path(),
        "types.wasm",
        &component("pvgate:policy/policy@0.1.0", ""),
    );
    let e = load_err(&p);
    assert!(matches!(e.kind, PluginErrorKind::ExportMismatch(_)), "{e}");
    assert!(e.to_string().contains("video"), "names the function: {e}");

    let p = dir.path().join("absent.wasm");
    assert!(matches!(load_err(&p).kind, PluginErrorKind::Io(_)));
}

#[test]
fn check_describes_a_good_plugin() {
    let path = example("default");
    let info = check(&path).unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(info.world, "pvgate:policy/plugin@0.1.0");
    assert_eq!(info.size, bytes.len() as u64);
    let hex: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(info.sha256, hex);
    assert_eq!(info.exports, vec!["pvgate:policy/policy@0.1.0"]);
    assert!(
        info.imports.iter().any(|i| i == "pvgate:policy/host@0.1.0"),
        "{:?}",
        info.imports
    );
    assert!(
        info.imports.iter().all(|i| i.starts_with("pvgate:policy/")),
        "{:?}",
        info.imports
    );
    assert_eq!(info.functions, vec!["video", "audio", "admit", "adjust"]);
}

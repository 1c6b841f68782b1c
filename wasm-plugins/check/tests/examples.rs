//! The example plugins, as built by
//! `cargo build --release --target wasm32-wasip2 --manifest-path wasm-plugins/Cargo.toml`,
//! are components the gateway accepts: no import but the host interface.

use std::path::PathBuf;

const EXAMPLES: [&str; 4] = ["default", "tiers", "office_hours", "misbehaving"];

fn built(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join(format!("wasm32-wasip2/release/{name}.wasm"))
}

#[test]
fn examples_import_only_the_host_interface() {
    for name in EXAMPLES {
        let path = built(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; build the plugins first: cargo build --release \
                 --target wasm32-wasip2 --manifest-path wasm-plugins/Cargo.toml",
                path.display()
            )
        });
        let inspection = pvgate_plugin_check::inspect(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let problems = pvgate_plugin_check::problems(&inspection);
        assert!(problems.is_empty(), "{}: {problems:?}", path.display());

        // Stricter than `problems`: exactly these names, nothing from WASI.
        let imports: Vec<&str> = inspection.imports.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            imports,
            [pvgate_plugin_check::HOST, pvgate_plugin_check::TYPES],
            "{name}"
        );
    }
}

#[test]
fn a_core_module_is_refused() {
    // The 8-byte header of an empty core module.
    let module = b"\0asm\x01\0\0\0";
    assert!(pvgate_plugin_check::inspect(module).is_err());
}

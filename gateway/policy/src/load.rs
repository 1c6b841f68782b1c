//! Reading, checking and compiling a plugin file, before anything of it
//! runs. Every refusal says what is wrong with the file and what to do, and
//! names the file (and the tenant, when loading for one).
//!
//! Order of checks: size, WebAssembly header (core module vs component),
//! compile (through the cache), then the component's *type*: its exports
//! (the world and its version) and its imports (only our `host`; no WASI).
//! Only then is it linked and instantiated.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre};
use wasmtime::Engine;

use crate::bindings::{
    PolicyIndices, HOST_IMPORT, POLICY_EXPORT, POLICY_FUNCTIONS, TYPES_IMPORT, WORLD,
};
use crate::cache::{hex, CacheOutcome};
use crate::engine::EngineInner;
use crate::host::HostState;

/// What `pvgate plugin check` prints about a plugin that passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub path: PathBuf,
    pub size: u64,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// The world it targets, `pvgate:policy/plugin@0.1.0`.
    pub world: String,
    /// Top-level import names.
    pub imports: Vec<String>,
    /// Top-level export names.
    pub exports: Vec<String>,
    /// The functions of its `policy` export.
    pub functions: Vec<String>,
    /// Whether compiled code came from the on-disk cache.
    pub from_cache: bool,
    /// Time to compile (or load from the cache) and check, milliseconds.
    pub load_ms: f64,
}

/// A plugin file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}policy plugin {}: {kind}", tenant_prefix(.tenant), .path.display())]
pub struct PluginError {
    pub tenant: Option<String>,
    pub path: PathBuf,
    pub kind: PluginErrorKind,
}

fn tenant_prefix(t: &Option<String>) -> String {
    match t {
        Some(t) => format!("tenant `{t}`: "),
        None => String::new(),
    }
}

impl PluginError {
    pub(crate) fn new(tenant: Option<&str>, path: &Path, kind: PluginErrorKind) -> Self {
        PluginError {
            tenant: tenant.map(str::to_string),
            path: path.to_path_buf(),
            kind,
        }
    }
}

const NO_WASI_HINT: &str = "WASI imports usually come from Rust std (println!, \
std::time, std::fs, the random seed of HashMap): write the plugin #![no_std] with the pvgate \
plugin SDK (wasm-plugins/sdk), log with its log macros, and take the time from the `now` \
argument. `wasm-tools component wit FILE` lists what a component imports.";

#[derive(Debug, thiserror::Error)]
pub enum PluginErrorKind {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "is {size} bytes, more than the {max} bytes the gateway accepts; \
         build it in release mode (the SDK's profile strips it), or raise the limit"
    )]
    TooLarge { size: u64, max: u64 },
    #[error(
        "is not a WebAssembly file (it does not start with the \\0asm header); \
         give the .wasm that `cargo build --release --target wasm32-wasip2` produces"
    )]
    NotWasm,
    #[error(
        "is a core WebAssembly module, not a component; build the plugin with the \
         pvgate plugin SDK for `--target wasm32-wasip2` (which produces a component), \
         or wrap a core module with `wasm-tools component new`"
    )]
    CoreModule,
    #[error(
        "has WebAssembly binary version {version:#x}, layer {layer}, which wasmtime 48 \
         does not read; rebuild it with a current toolchain"
    )]
    UnsupportedBinary { version: u16, layer: u16 },
    #[error("does not compile: {0}")]
    Compile(String),
    #[error(
        "exports `{found}`, but this gateway implements {POLICY_EXPORT} (world {WORLD}); \
         rebuild the plugin against the gateway's WIT (wasm-plugins/wit, pvgate:policy@0.1.0)"
    )]
    WrongVersion { found: String },
    #[error(
        "does not export `{POLICY_EXPORT}` (its exports: {exports}); is it a pvgate \
         policy plugin? Build it with the pvgate plugin SDK (pvgate_policy_sdk::export!)"
    )]
    MissingExport { exports: String },
    #[error(
        "imports `{name}`, which the gateway does not provide: a policy plugin may import \
         only {HOST_IMPORT} (and the types of {TYPES_IMPORT}); it gets no WASI. {hint}"
    )]
    ForbiddenImport { name: String, hint: &'static str },
    #[error(
        "its `{POLICY_EXPORT}` export does not match the gateway's WIT: {0}; rebuild it \
         against wasm-plugins/wit (pvgate:policy@0.1.0)"
    )]
    ExportMismatch(String),
    #[error("cannot be instantiated: {0}")]
    Instantiate(String),
}

/// A checked, compiled plugin ready to instantiate.
pub(crate) struct Prepared {
    pub info: PluginInfo,
    pub sha: [u8; 32],
    pub pre: InstancePre<HostState>,
    pub indices: PolicyIndices,
}

/// The file's bytes and digest, with the size limit applied before reading.
pub(crate) fn read(path: &Path, max: u64) -> Result<(Vec<u8>, [u8; 32]), PluginErrorKind> {
    let size = std::fs::metadata(path)?.len();
    if size > max {
        return Err(PluginErrorKind::TooLarge { size, max });
    }
    let bytes = std::fs::read(path)?;
    if bytes.len() as u64 > max {
        return Err(PluginErrorKind::TooLarge {
            size: bytes.len() as u64,
            max,
        });
    }
    let sha: [u8; 32] = Sha256::digest(&bytes).into();
    Ok((bytes, sha))
}

/// Core module or component, from the 8-byte preamble alone (so a core
/// module gets its own message instead of a parser error).
fn check_header(bytes: &[u8]) -> Result<(), PluginErrorKind> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(PluginErrorKind::NotWasm);
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    let layer = u16::from_le_bytes([bytes[6], bytes[7]]);
    match (version, layer) {
        (1, 0) => Err(PluginErrorKind::CoreModule),
        (_, 1) if version >= 0xd => Ok(()),
        _ => Err(PluginErrorKind::UnsupportedBinary { version, layer }),
    }
}

/// Top-level import and export names, and the `policy` functions.
struct Shape {
    imports: Vec<String>,
    exports: Vec<String>,
    functions: Vec<String>,
}

/// Checks the component's imports and exports against the `plugin` world.
fn check_type(engine: &Engine, component: &Component) -> Result<Shape, PluginErrorKind> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();

    // Exports first: a plugin built against another WIT version imports the
    // other `host` version too, and "wrong version" is the useful message.
    let Some((_, item)) = ty.exports(engine).find(|(n, _)| *n == POLICY_EXPORT) else {
        if let Some(found) = exports
            .iter()
            .find(|n| n.starts_with("pvgate:policy/policy"))
        {
            return Err(PluginErrorKind::WrongVersion {
                found: found.clone(),
            });
        }
        let exports = if exports.is_empty() {
            "none".to_string()
        } else {
            exports.join(", ")
        };
        return Err(PluginErrorKind::MissingExport { exports });
    };
    let ComponentItem::ComponentInstance(policy) = item.ty else {
        return Err(PluginErrorKind::ExportMismatch(format!(
            "`{POLICY_EXPORT}` is not an instance"
        )));
    };
    let functions: Vec<String> = policy
        .exports(engine)
        .filter(|(_, i)| matches!(i.ty, ComponentItem::ComponentFunc(_)))
        .map(|(n, _)| n.to_string())
        .collect();
    if let Some(missing) = POLICY_FUNCTIONS
        .iter()
        .find(|f| !functions.iter().any(|g| g == *f))
    {
        return Err(PluginErrorKind::ExportMismatch(format!(
            "function `{missing}` is missing (it has: {})",
            functions.join(", ")
        )));
    }

    for (name, item) in ty.imports(engine) {
        let allowed = if name == HOST_IMPORT {
            true
        } else if name == TYPES_IMPORT {
            // Names the exported records' types; allowed as long as it
            // carries types only (nothing to link, nothing to call).
            match &item.ty {
                ComponentItem::ComponentInstance(i) => i
                    .exports(engine)
                    .all(|(_, e)| matches!(e.ty, ComponentItem::Type(_))),
                _ => false,
            }
        } else {
            false
        };
        if !allowed {
            let hint = if name.starts_with("wasi:") {
                NO_WASI_HINT
            } else if name.starts_with("pvgate:policy/") {
                "It was built against another version of the WIT; rebuild it against \
                 wasm-plugins/wit (pvgate:policy@0.1.0)."
            } else {
                "Remove the dependency that brings it in."
            };
            return Err(PluginErrorKind::ForbiddenImport {
                name: name.to_string(),
                hint,
            });
        }
    }
    Ok(Shape {
        imports,
        exports,
        functions,
    })
}

/// Reads, checks, compiles and links `path`; instantiates nothing.
pub(crate) fn prepare(engine: &EngineInner, path: &Path) -> Result<Prepared, PluginErrorKind> {
    let start = Instant::now();
    let (bytes, sha) = read(path, engine.config.engine_limits.max_plugin_bytes)?;
    check_header(&bytes)?;
    let (component, cache) = engine
        .cache
        .component(&engine.engine, &bytes, &sha)
        .map_err(|e| PluginErrorKind::Compile(error_chain(&e)))?;
    let Shape {
        imports,
        exports,
        functions,
    } = check_type(&engine.engine, &component)?;
    let indices = PolicyIndices::new(&component).map_err(PluginErrorKind::ExportMismatch)?;
    // Imports are checked above, so a failure here is a type mismatch in
    // what we do provide (`host` with other signatures).
    let pre = engine.linker.instantiate_pre(&component).map_err(|e| {
        PluginErrorKind::ForbiddenImport {
            name: format!("{HOST_IMPORT} with other signatures ({})", error_chain(&e)),
            hint: "Rebuild it against wasm-plugins/wit (pvgate:policy@0.1.0).",
        }
    })?;
    let info = PluginInfo {
        path: path.to_path_buf(),
        size: bytes.len() as u64,
        sha256: hex(&sha),
        world: WORLD.to_string(),
        imports,
        exports,
        functions,
        from_cache: cache == CacheOutcome::Hit,
        load_ms: duration_ms(start.elapsed()),
    };
    Ok(Prepared {
        info,
        sha,
        pre,
        indices,
    })
}

pub(crate) fn duration_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// "outer: inner: innermost", for one-line logs and errors.
pub(crate) fn error_chain(e: &wasmtime::Error) -> String {
    let parts: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_kinds() {
        assert!(matches!(
            check_header(b"hello"),
            Err(PluginErrorKind::NotWasm)
        ));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(PluginErrorKind::CoreModule)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(matches!(
            check_header(b"\0asm\x0a\0\x01\0"),
            Err(PluginErrorKind::UnsupportedBinary { .. })
        ));
    }
}

//! Checks a built policy plugin the way the gateway will load it: the
//! component validates under the WebAssembly features wasmtime 48 enables in
//! the gateway, imports nothing but `pvgate:policy/host@0.1.0` (no WASI), and
//! exports `pvgate:policy/policy@0.1.0`.
//!
//! The one other import a component of this world carries is
//! `pvgate:policy/types@0.1.0`: the exported functions use its records, and
//! the component model names a type's interface by importing it. That
//! instance holds types only (no functions), so a host has nothing to
//! provide for it — wasmtime's linker skips type-only instances — and it is
//! allowed here on that condition.

use wasmparser::component_types::ComponentEntityType;
use wasmparser::types::Types;
use wasmparser::{ComponentExternName, Parser, Payload, Validator, WasmFeatures};

pub const HOST: &str = "pvgate:policy/host@0.1.0";
pub const TYPES: &str = "pvgate:policy/types@0.1.0";
pub const POLICY: &str = "pvgate:policy/policy@0.1.0";
pub const POLICY_FUNCTIONS: [&str; 4] = ["video", "audio", "admit", "adjust"];

/// One top-level import or export of a component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub name: String,
    /// "instance", "func", "type", "module", "component" or "value".
    pub kind: &'static str,
    /// For an instance: the names of the functions in it (not its types).
    pub functions: Vec<String>,
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}", self.name, self.kind)?;
        if self.kind == "instance" {
            if self.functions.is_empty() {
                write!(f, ", types only")?;
            } else {
                write!(f, ": {}", self.functions.join(", "))?;
            }
        }
        write!(f, ")")
    }
}

#[derive(Clone, Debug)]
pub struct Inspection {
    pub imports: Vec<Item>,
    pub exports: Vec<Item>,
}

/// The features the gateway's wasmtime 48 accepts: its defaults (`WASM3`)
/// with the component model, and without what the gateway's build of
/// wasmtime leaves out (GC, exceptions, threads, component-model-async).
pub fn gateway_features() -> WasmFeatures {
    (WasmFeatures::WASM3 | WasmFeatures::COMPONENT_MODEL)
        & !(WasmFeatures::GC_TYPES | WasmFeatures::EXCEPTIONS | WasmFeatures::THREADS)
}

/// Validates `bytes` as a component and lists its top-level imports and
/// exports.
pub fn inspect(bytes: &[u8]) -> Result<Inspection, String> {
    if !Parser::is_component(bytes) {
        return Err("not a WebAssembly component (a core module?)".into());
    }
    let types = Validator::new_with_features(gateway_features())
        .validate_all(bytes)
        .map_err(|e| format!("invalid under the gateway's wasm features: {e}"))?;

    let (import_names, export_names) = top_level_names(bytes)?;
    let item = |name: String, entity: Option<&ComponentEntityType>| describe(&types, name, entity);
    Ok(Inspection {
        imports: import_names
            .into_iter()
            .map(|n| {
                let e = types.component_item_for_import(&n).map(|i| &i.ty);
                item(n, e)
            })
            .collect(),
        exports: export_names
            .into_iter()
            .map(|n| {
                let e = types.component_item_for_export(&n).map(|i| &i.ty);
                item(n, e)
            })
            .collect(),
    })
}

/// What is wrong with `inspection` for the gateway; empty when nothing is.
pub fn problems(inspection: &Inspection) -> Vec<String> {
    let mut problems = Vec::new();
    for import in &inspection.imports {
        let allowed = import.name == HOST
            || (import.name == TYPES && import.kind == "instance" && import.functions.is_empty());
        if !allowed {
            problems.push(format!(
                "imports {import}; the gateway provides only {HOST}"
            ));
        }
    }
    match inspection.exports.iter().find(|e| e.name == POLICY) {
        None => problems.push(format!("does not export {POLICY}")),
        Some(policy) => {
            for f in POLICY_FUNCTIONS {
                if !policy.functions.iter().any(|g| g == f) {
                    problems.push(format!("{POLICY} lacks the function {f}"));
                }
            }
        }
    }
    problems
}

/// The names in the outermost component's import and export sections
/// (nested modules and components have their own, which the host never sees).
fn top_level_names(bytes: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    let name = |n: ComponentExternName<'_>| n.name.to_string();
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| e.to_string())? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    imports.push(name(import.map_err(|e| e.to_string())?.name));
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(name(export.map_err(|e| e.to_string())?.name));
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

fn describe(types: &Types, name: String, entity: Option<&ComponentEntityType>) -> Item {
    let (kind, functions) = match entity {
        Some(ComponentEntityType::Instance(id)) => {
            let functions = types[*id]
                .exports
                .iter()
                .filter(|(_, item)| matches!(item.ty, ComponentEntityType::Func(_)))
                .map(|(n, _)| n.clone())
                .collect();
            ("instance", functions)
        }
        Some(ComponentEntityType::Func(_)) => ("func", Vec::new()),
        Some(ComponentEntityType::Type { .. }) => ("type", Vec::new()),
        Some(ComponentEntityType::Module(_)) => ("module", Vec::new()),
        Some(ComponentEntityType::Component(_)) => ("component", Vec::new()),
        Some(ComponentEntityType::Value(_)) => ("value", Vec::new()),
        None => ("unknown", Vec::new()),
    };
    Item {
        name,
        kind,
        functions,
    }
}

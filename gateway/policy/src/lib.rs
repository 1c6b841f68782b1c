//! pvgate's policy host: runs each tenant's policy plugin — a WebAssembly
//! component of the `pvgate:policy/plugin@0.1.0` world
//! (`wasm-plugins/wit/policy.wit`) — in wasmtime, sandboxed (no WASI, fuel
//! and a deadline per call, a memory cap), and turns whatever it returns
//! into decisions the gateway can trust.
//!
//! ```no_run
//! # use pvgate_policy::*;
//! let engine = PolicyEngine::new(PolicyEngineConfig::default()).unwrap();
//! let acme = engine.load("acme", "/etc/pvgate/acme.wasm", Default::default()).unwrap();
//! let other = engine.builtin("other");
//! # let (guest, connector): (types::Guest, types::DisplayConnector) = todo!();
//! let video = acme.video(&guest, &connector); // never fails: validated or fallback
//! ```
//!
//! Map: `engine` (shared engine, ticker and reload threads), `load`
//! (checking a file, [`check`]), `cache` (compiled code on disk), `limits`,
//! `supervisor` (one instance: fuel, deadline, restart with backoff),
//! `tenant` (fallbacks, last-good, reload), `validate`, `defaults` (the
//! built-in policy), `trace` (record and replay), `metrics`.

mod bindings;
mod cache;
pub mod defaults;
mod engine;
mod host;
pub mod limits;
mod load;
pub mod metrics;
mod report;
mod supervisor;
mod tenant;
pub mod trace;
pub mod types;
pub mod validate;

pub use cache::CacheDir;
pub use engine::{check, EngineError, PolicyEngine, PolicyEngineConfig};
pub use limits::{BackoffConfig, Bounds, CallLimits, EngineLimits};
pub use load::{PluginError, PluginErrorKind, PluginInfo};
pub use metrics::{MetricsSnapshot, PolicyMetrics};
pub use report::{CallReport, Source};
pub use supervisor::{CallKind, Failure};
pub use tenant::TenantPolicy;
pub use trace::{
    replay, Decision, PolicyEvent, PolicyTrace, ReplayStep, TraceError, TraceRecorder,
};
pub use validate::{Correction, CorrectionKind};

/// The WIT world this host implements.
pub const WORLD: &str = bindings::WORLD;

// The gateway shares these across its async tasks and threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<PolicyEngine>();
    send_sync::<TenantPolicy>();
    send_sync::<TraceRecorder>();
};

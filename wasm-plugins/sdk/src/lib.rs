//! Write pvgate policy plugins in a few lines of Rust.
//!
//! A plugin is a WebAssembly component of the world `pvgate:policy/plugin@0.1.0`
//! (`wasm-plugins/wit/policy.wit`). The gateway asks it four questions — the
//! encoder settings of a display, what a sound stream may negotiate, whether a
//! viewer gets in (and with which role), and whether to tighten one viewer's
//! video — and clamps whatever it answers.
//!
//! ```ignore
//! #![no_std]
//! use pvgate_policy_sdk::prelude::*;
//!
//! struct HalfFps;
//! impl Policy for HalfFps {
//!     fn video(guest: &Guest, connector: &DisplayConnector) -> VideoPolicy {
//!         info!("video for {} connector {}", guest.name, connector.index);
//!         VideoPolicy { max_fps: 30, ..defaults::video() }
//!     }
//! }
//! pvgate_policy_sdk::export!(HalfFps);
//! ```
//!
//! Every method of [`Policy`] defaults to the gateway's built-in policy (see
//! [`defaults`]), so a plugin overrides only what it changes.
//!
//! # Why `#![no_std]`
//!
//! The gateway instantiates a plugin with exactly one import,
//! `pvgate:policy/host@0.1.0`, and refuses a component that imports anything
//! else. Rust's `std` on `wasm32-wasip2` brings WASI imports with it (stderr
//! for panic messages, the environment, the clock), so plugins are
//! `#![no_std]`: the SDK's `runtime` feature (on by default) supplies the
//! global allocator (dlmalloc over `memory.grow`) and a panic handler that
//! logs the message through `host.log` and then traps. `alloc` (`String`,
//! `Vec`, `format!`) works as usual; the [`prelude`] re-exports it.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

#[cfg(all(target_arch = "wasm32", not(any(target_env = "p1", target_env = ""))))]
mod abi;
pub mod config;
pub mod defaults;
pub mod log;
mod policy;
#[cfg(all(feature = "runtime", target_arch = "wasm32"))]
mod runtime;
pub mod time;
mod types;

pub use config::get as config;
pub use policy::{Export, Policy};
pub use types::*;

/// The generated bindings; use the re-exports at the crate root instead.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        // Exported so that `export!` can expand in the plugin's crate.
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "pvgate_policy_sdk::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

/// What a plugin usually needs: the trait, the WIT types, the defaults, the
/// logging macros, and `alloc`'s `String`, `Vec`, `vec!`, `format!`.
pub mod prelude {
    pub use crate::time::{Days, LocalTime, Schedule, TimeOfDay, TimeRange, Weekday};
    pub use crate::types::*;
    pub use crate::{config, defaults, Policy};
    pub use crate::{debug, error, info, warn};
    pub use alloc::borrow::ToOwned;
    pub use alloc::boxed::Box;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec::Vec;
    pub use alloc::{format, vec};
}

/// Exports a [`Policy`] implementation as the plugin's `pvgate:policy/policy`
/// interface. Use it once, at the top level of the plugin's crate:
///
/// ```ignore
/// struct MyPolicy;
/// impl pvgate_policy_sdk::Policy for MyPolicy {}
/// pvgate_policy_sdk::export!(MyPolicy);
/// ```
#[macro_export]
macro_rules! export {
    ($policy:ty) => {
        const _: () = {
            // wit-bindgen's export macro takes a plain identifier, not a
            // generic type, hence the alias.
            type PvgatePolicyExport = $crate::Export<$policy>;
    $crate::bindings::__export_plugin!(PvgatePolicyExport with_types_in $crate::bindings);
        };
    };
}

/// Used by the logging macros so a plugin need not `extern crate alloc`.
#[doc(hidden)]
pub mod __private {
    pub use alloc::format;
}

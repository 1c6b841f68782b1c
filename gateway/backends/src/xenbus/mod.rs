//! The XenBus lifecycle shared by every backend.
//!
//! [`lifecycle`] decides (pure), [`device`] acts (xenstore, the backend's
//! connect/disconnect).

pub mod device;
pub mod lifecycle;

pub use device::{DeviceBackend, DeviceContext, DeviceError};
pub use lifecycle::{Action, ConnectWhen, Lifecycle};

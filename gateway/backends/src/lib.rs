//! The protocol backends: one per device kind, on the platform seam.
//!
//! [`xenbus`] holds what every backend shares: the XenBus lifecycle of one
//! device (InitWait → frontend Initialised → map/bind → Connected, and every
//! way back), as a sans-IO state machine plus the task that drives it.

pub mod display;
pub mod input;
pub mod sound;
pub mod xenbus;

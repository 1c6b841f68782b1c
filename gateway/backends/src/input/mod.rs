//! The kbdif backend: one per vkbd (or vinput) device, for xen-kbdfront.
//! Keyboard, pointer, wheel and touch from the session layer go into the
//! guest through the shared page's in-ring.
//!
//! | module | job |
//! |---|---|
//! | [`backend`] | [`InputBackend`]: features before InitWait (the pointer space), connect (map the page, bind the channel), disconnect |
//! | [`events`] | [`GuestInput`] → kbdif events: validation, clamping, pointer mode, multi-touch SYN (sans-IO) |
//! | [`ring`] | the in-ring producer: the guest's `in_cons` in, slots to write out (sans-IO) |
//! | [`sink`] | [`InputSink`]: non-blocking delivery into one connected device, drop counting |
//! | [`outputs`] | [`InputOutputs`]: every connected device, for the session layer |
//! | [`limits`] | [`InputLimits`] and the event-rate budget |
//!
//! xen-kbdfront publishes its page at probe, before it sees our state, and
//! reads our `feature-*`, `width`, `height` and `multi-touch-*` at the same
//! moment; so they are written before InitWait, and the guest is Connected
//! as soon as it sees InitWait. It never writes to the out-ring (kbdif
//! defines no out events and we request none), so that ring is not read.

pub mod backend;
pub mod events;
pub mod limits;
pub mod outputs;
pub mod ring;
pub mod sink;

pub use backend::InputBackend;
pub use events::{GuestInput, InputError, InputSpace, TouchPhase, KEY_MAX};
pub use limits::InputLimits;
pub use outputs::InputOutputs;
pub use sink::{InputSink, InputStats};

use pvgate_platform::{DomId, Platform};
use tokio::sync::watch;

use crate::xenbus::{device::run_device, ConnectWhen, DeviceError};

/// The two backend directory names libxl uses for a `vkb` device (both
/// serve a frontend at `device/vkbd/<devid>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// `backend/vkbd` (libxl's default, `backend-type=qemu`).
    Vkbd,
    /// `backend/vinput` (`backend-type=linux`).
    Vinput,
}

impl InputKind {
    pub fn backend_kind(self) -> &'static str {
        match self {
            InputKind::Vkbd => "vkbd",
            InputKind::Vinput => "vinput",
        }
    }

    /// `vkbd` or `vinput`; anything else is not an input device.
    pub fn from_backend_kind(kind: &str) -> Option<InputKind> {
        match kind {
            "vkbd" => Some(InputKind::Vkbd),
            "vinput" => Some(InputKind::Vinput),
            _ => None,
        }
    }
}

/// Serve vkbd device `devid` of `frontend` until it is removed or `stop`
/// turns true: the device supervisor spawns this as soon as the device
/// appears.
pub async fn serve_device(
    platform: Platform,
    frontend: DomId,
    devid: u32,
    outputs: InputOutputs,
    limits: InputLimits,
    stop: watch::Receiver<bool>,
) -> Result<(), DeviceError> {
    serve_device_as(
        InputKind::Vkbd,
        platform,
        frontend,
        devid,
        outputs,
        limits,
        stop,
    )
    .await
}

/// [`serve_device`] for a device under either backend directory.
pub async fn serve_device_as(
    kind: InputKind,
    platform: Platform,
    frontend: DomId,
    devid: u32,
    outputs: InputOutputs,
    limits: InputLimits,
    stop: watch::Receiver<bool>,
) -> Result<(), DeviceError> {
    run_device(
        platform,
        kind.backend_kind(),
        frontend,
        devid,
        ConnectWhen::InitialisedOrConnected,
        InputBackend::new(outputs, limits),
        stop,
    )
    .await
}

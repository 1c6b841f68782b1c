//! The sndif (vsnd) backend: a virtual sound card for snd-xen-front.
//!
//! - [`backend`]: the XenBus device (config, connect: map and bind every
//!   stream, disconnect: release all) on the shared lifecycle.
//! - [`task`]: one task per stream (ring, event page, clock).
//! - [`stream`]: the sans-IO stream: requests, pacing, pipelines.
//! - [`hwparams`]: HW_PARAM_QUERY refinement and OPEN validation.
//! - [`buffer`]: the OPEN buffer through its page directory.
//! - [`requests`]: decoding, refusals and their status codes, flood budget.
//! - [`clock`]: the monotonic clock, injectable for tests.
//! - [`outputs`]: what the browser layer attaches to; per-guest budgets.
//! - [`limits`]: every range and cap, in one overridable place.

pub mod backend;
pub mod buffer;
pub mod clock;
pub mod hwparams;
pub mod limits;
pub mod outputs;
pub mod requests;
pub mod stream;
pub mod task;

use std::sync::Arc;

use pvgate_platform::{DomId, Platform};
use tokio::sync::watch;

pub use backend::SoundBackend;
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use limits::{GuestLimits, PolicyHook, SoundLimits, StreamLimits, StreamPolicy};
pub use outputs::{OpenInfo, SoundOutputs, StreamKey, StreamOutput};

use crate::xenbus::{device::run_device, ConnectWhen, DeviceError};

/// Serves vsnd device `devid` of `frontend_id` until it is removed or
/// `stop` turns true, on the host's monotonic clock.
pub async fn serve_device(
    platform: Platform,
    frontend_id: DomId,
    devid: u32,
    outputs: SoundOutputs,
    limits: SoundLimits,
    stop: watch::Receiver<bool>,
) -> Result<(), DeviceError> {
    serve_device_with_clock(
        platform,
        frontend_id,
        devid,
        outputs,
        limits,
        MonotonicClock::shared(),
        stop,
    )
    .await
}

/// [`serve_device`] on a given clock (tests drive pacing by hand).
pub async fn serve_device_with_clock(
    platform: Platform,
    frontend_id: DomId,
    devid: u32,
    outputs: SoundOutputs,
    limits: SoundLimits,
    clock: Arc<dyn Clock>,
    stop: watch::Receiver<bool>,
) -> Result<(), DeviceError> {
    run_device(
        platform,
        "vsnd",
        frontend_id,
        devid,
        ConnectWhen::Initialised,
        SoundBackend::new(outputs, limits, clock),
        stop,
    )
    .await
}

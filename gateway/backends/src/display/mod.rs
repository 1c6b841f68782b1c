//! The displif backend: one per vdispl device, for xen-drm-front.
//!
//! | module | job |
//! |---|---|
//! | [`backend`] | [`DisplayBackend`]: connect (read keys, map rings, bind channels, start loops) and disconnect (release everything at once) |
//! | [`connector`] | one connector's ring and event page, and the loop that serves it |
//! | [`requests`] | [`DisplayState`]: the request logic (buffers, framebuffers, modes, EDID), a request in, a status and an effect out |
//! | [`buffers`] | display buffers (guest pages via the page directory, or ours for be-alloc) and framebuffers |
//! | [`flip`] | the copy worker: flipped framebuffer → gateway frame → encoder hub, after the guest was answered |
//! | [`flip_bench`] | PG_FLIP → EVT_PG_FLIP latency against the simulated guest (`cargo bench`, `pvgate bench display`) |
//! | [`edid`] | the EDID block GET_EDID returns |
//! | [`outputs`] | [`DisplayOutputs`]: every guest screen, for the HTTP layer |
//! | [`limits`] | per-guest caps and the flood guard |
//! | [`status`] | the error statuses xen-drm-front gets |

pub mod backend;
pub mod buffers;
pub mod connector;
pub mod edid;
pub mod flip;
pub mod flip_bench;
pub mod limits;
pub mod outputs;
pub mod requests;
pub mod status;

pub use backend::DisplayBackend;
pub use flip::{FlipHook, FlipStage};
pub use limits::DisplayLimits;
pub use outputs::{ConnectorOutput, DisplayOutputs, FlipStats, OutputKey};
pub use requests::DisplayState;

use pvgate_media::EncoderHub;
use pvgate_platform::{DomId, Platform};
use tokio::sync::watch;

use crate::xenbus::{device::run_device, ConnectWhen, DeviceError};

/// Serve one vdispl device of `frontend_id` until it is removed or `stop`
/// turns true: the gateway's device supervisor spawns this as soon as the
/// device appears (nothing here delays InitWait).
pub async fn serve_device(
    platform: Platform,
    frontend_id: DomId,
    devid: u32,
    outputs: DisplayOutputs,
    hub: EncoderHub,
    limits: DisplayLimits,
    stop: watch::Receiver<bool>,
) -> Result<(), DeviceError> {
    run_device(
        platform,
        "vdispl",
        frontend_id,
        devid,
        ConnectWhen::Initialised,
        DisplayBackend::new(outputs, hub, limits),
        stop,
    )
    .await
}

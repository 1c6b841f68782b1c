//! A userspace Xen guest for tests and the demo.
//!
//! It plays two parts: dom0's toolstack ([`toolstack`]: the xenstore nodes
//! libxl writes for `vdispl=`, `vsnd=` and `vkb=`), and the guest's kernel
//! frontends, driving displif, sndif and kbdif as xen-drm-front,
//! snd-xen-front and xen-kbdfront do: the same keys, the same handshake
//! order, the same request sequences and timeouts.

pub mod config;
pub mod content;
pub mod display;
pub mod guest;
pub mod input;
pub mod io;
pub mod misbehave;
pub mod sim;
pub mod sound;
pub mod toolstack;
pub mod xenbus;

/// A Xen domain id.
pub type DomId = pvgate_platform::DomId;

pub use config::GuestConfig;
pub use guest::{GuestSim, StartOptions};

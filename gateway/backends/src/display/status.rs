//! Response statuses: displif answers `-XEN_Exx` (xen/errno.h), which
//! xen-drm-front hands back to DRM as the kernel errno of the same number.

/// A bad argument: sizes, formats, geometry, malformed directories.
pub const EINVAL: i32 = -22;
/// No buffer or framebuffer with that cookie.
pub const ENOENT: i32 = -2;
/// A cookie that is already in use.
pub const EEXIST: i32 = -17;
/// A per-guest limit was reached, or memory could not be had.
pub const ENOMEM: i32 = -12;
/// A grant reference we could not map (not granted to us, revoked, foreign).
pub const EFAULT: i32 = -14;
/// An operation displif does not define.
pub const ENOSYS: i32 = -38;

//! How much a plugin may use, and the gateway's bounds on what it decides.
//!
//! Two kinds of limit live here: what a plugin may *consume* (fuel, time,
//! memory, stack; enforced by wasmtime) and what it may *decide* (frame
//! rates, bitrates, sizes; enforced by `validate`). Both have defaults that
//! suit a gateway serving desktops to browsers.

use std::time::Duration;

/// What one plugin call may consume. Per tenant: a tenant can be given a
/// bigger budget without touching the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Fuel (≈ wasm instructions) per call, and for instantiation. The
    /// example plugins use a few thousand per decision; 50 million leaves
    /// room for real logic yet stops a loop in tens of milliseconds.
    pub fuel: u64,
    /// Wall-clock backstop per call: catches what fuel does not (a plugin
    /// blocked in a slow host call, or a very expensive instruction mix).
    pub deadline: Duration,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            fuel: 50_000_000,
            deadline: Duration::from_millis(50),
        }
    }
}

/// Limits fixed per engine (they shape compiled code or the instance pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineLimits {
    /// Linear memory per plugin instance (StoreLimits and the pool's slot
    /// size). 64 MiB is far beyond what a policy needs.
    pub memory_bytes: usize,
    /// Maximum wasm stack (bytes). Deep recursion traps instead of
    /// overflowing the gateway thread's stack.
    pub max_wasm_stack: usize,
    /// Plugin files larger than this are refused before compiling.
    pub max_plugin_bytes: u64,
    /// How many plugins (tenants) the pooling allocator is sized for. Each
    /// tenant can hold two instances at once (the serving one and a new one
    /// being validated during a reload), so the pool has `2 * max_plugins + 2`
    /// component slots.
    pub max_plugins: u32,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            memory_bytes: 64 << 20,
            max_wasm_stack: 512 << 10,
            max_plugin_bytes: 32 << 20,
            max_plugins: 32,
        }
    }
}

impl EngineLimits {
    /// Component instance slots in the pool.
    pub fn pool_slots(&self) -> u32 {
        self.max_plugins.saturating_mul(2).saturating_add(2)
    }
}

/// Restart pacing after a plugin failure: the first retry after `initial`,
/// doubling up to `max`; a good call resets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
        }
    }
}

/// What the gateway accepts from any policy: plugin decisions are clamped
/// into these. They are the media pipeline's capabilities, not taste.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub fps_min: u32,
    pub fps_max: u32,
    /// Lowest encoder bitrate worth sending (below this H.264/VP8 produce
    /// mush at any size).
    pub bitrate_floor_bps: u32,
    /// Highest bitrate the gateway will let one encoder use.
    pub bitrate_ceiling_bps: u32,
    /// The largest picture the encoders accept (8K UHD).
    pub max_width: u32,
    pub max_height: u32,
    pub keyframe_min_ms: u32,
    pub keyframe_max_ms: u32,
    /// Opus' own limits (RFC 6716: 6 kbit/s .. 510 kbit/s).
    pub opus_min_bps: u32,
    pub opus_max_bps: u32,
    /// Longest deny reason passed on to a viewer (bytes, cut at a char
    /// boundary).
    pub deny_reason_max_len: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            fps_min: 1,
            fps_max: 120,
            bitrate_floor_bps: 50_000,
            bitrate_ceiling_bps: 50_000_000,
            max_width: 7680,
            max_height: 4320,
            keyframe_min_ms: 100,
            keyframe_max_ms: 60_000,
            opus_min_bps: 6_000,
            opus_max_bps: 510_000,
            deny_reason_max_len: 256,
        }
    }
}

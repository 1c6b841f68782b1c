//! What one guest's display device may cost us, and the flood guard.

use std::time::{Duration, Instant};

/// Per-device caps. The defaults allow what xen-drm-front needs for four
/// connectors at 4K with triple buffering, and nothing like what a hostile
/// guest would want to pin in dom0 memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayLimits {
    /// Connectors served (xen-drm-front's `XEN_DRM_FRONT_MAX_CRTCS` is 4).
    pub max_connectors: usize,
    /// Display buffers alive at once (frontend-allocated, be-alloc, PRIME).
    pub max_buffers: usize,
    /// Framebuffers attached at once.
    pub max_framebuffers: usize,
    /// Pages of one buffer (a 3840×2160 XRGB8888 buffer is 8100 pages).
    pub max_buffer_pages: usize,
    /// Pages mapped or shared for buffers of this device, all together.
    pub max_mapped_pages: usize,
    /// Largest framebuffer edge (the media frame limit).
    pub max_edge: u32,
    /// Sustained requests per second over all rings of the device.
    pub requests_per_second: u32,
    /// Requests allowed in a burst above the sustained rate.
    pub request_burst: u32,
}

/// Pages of one 3840×2160 buffer at 32 bpp.
const PAGES_4K: usize = (3840 * 2160 * 4usize).div_ceil(4096);

impl Default for DisplayLimits {
    fn default() -> Self {
        DisplayLimits {
            max_connectors: 4,
            max_buffers: 4 * 3 + 4,
            max_framebuffers: 2 * (4 * 3 + 4),
            max_buffer_pages: PAGES_4K,
            max_mapped_pages: 4 * 3 * PAGES_4K,
            max_edge: pvgate_media::frame::MAX_FRAME_EDGE,
            // A 60 Hz desktop on four connectors flips 240 times a second;
            // buffer set-up comes in short bursts.
            requests_per_second: 1000,
            request_burst: 512,
        }
    }
}

/// A token bucket: `burst` requests at once, refilled at `rate` per second.
/// Sans-IO: the caller passes the time.
#[derive(Debug, Clone)]
pub struct RequestBudget {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl RequestBudget {
    pub fn new(rate_per_second: u32, burst: u32) -> RequestBudget {
        RequestBudget {
            rate: f64::from(rate_per_second),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: None,
        }
    }

    /// Take one request's token; false means the guest is flooding.
    pub fn admit(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last);
            self.tokens = (self.tokens + dt.as_secs_f64() * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How long the flood guard's window is, for log lines.
pub fn budget_window(limits: &DisplayLimits) -> Duration {
    Duration::from_secs_f64(
        f64::from(limits.request_burst) / f64::from(limits.requests_per_second.max(1)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_a_flood_does_not_and_the_budget_refills() {
        let mut b = RequestBudget::new(100, 10);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(b.admit(t0));
        }
        assert!(!b.admit(t0), "the 11th request at once is a flood");
        // 50 ms at 100/s gives 5 tokens back.
        let t1 = t0 + Duration::from_millis(50);
        for _ in 0..5 {
            assert!(b.admit(t1));
        }
        assert!(!b.admit(t1));
        // A steady guest below the rate is never refused.
        let mut t = t1 + Duration::from_secs(1);
        for _ in 0..1000 {
            t += Duration::from_millis(11);
            assert!(b.admit(t));
        }
    }

    #[test]
    fn defaults_hold_four_4k_connectors_triple_buffered() {
        let l = DisplayLimits::default();
        assert!(l.max_buffer_pages >= 8100);
        assert!(l.max_mapped_pages >= 12 * 8100);
        assert!(l.max_buffers >= 12);
    }
}

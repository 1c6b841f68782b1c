//! What one input device accepts, in one overridable place, and the
//! token bucket that enforces the event rate (sans-IO: time comes in).

/// Caps per input device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputLimits {
    /// kbdif events per second, sustained. The browser contract allows
    /// 1000 messages a second per session; a touch message can cost two
    /// events (its own and the SYN) and several viewers may control one
    /// guest, so the device allows more than one session can send.
    pub events_per_sec: u32,
    /// Events allowed in a burst above the sustained rate (a typed string
    /// pasted at once, a multi-finger gesture).
    pub burst: u32,
    /// Largest wheel step per event; more is clamped (the client clamps to
    /// ±10 as well).
    pub max_wheel_notches: u32,
    /// Pointer space when the guest has no display whose size we can read.
    pub fallback_space: (u32, u32),
    /// Largest pointer space we accept from a display configuration.
    pub max_space: u32,
    /// `multi-touch-num-contacts` we offer.
    pub touch_contacts: u8,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            events_per_sec: 4000,
            burst: 400,
            max_wheel_notches: 10,
            // A guest without a vdispl shows its screen some other way, at
            // a size we cannot know; the guest scales any absolute range to
            // its screen, and 1280×720 gives whole-pixel precision for the
            // common desktop sizes while matching the gateway's default
            // display.
            fallback_space: (1280, 720),
            max_space: 16384,
            touch_contacts: 10,
        }
    }
}

/// A token bucket of events.
#[derive(Debug, Clone)]
pub struct RateBudget {
    per_sec: u64,
    burst: u64,
    /// Tokens in millionths of an event, so slow rates still refill.
    micro_tokens: u64,
    last_ns: u64,
}

impl RateBudget {
    pub fn new(per_sec: u32, burst: u32, now_ns: u64) -> RateBudget {
        let burst = u64::from(burst.max(1));
        RateBudget {
            per_sec: u64::from(per_sec),
            burst,
            micro_tokens: burst * 1_000_000,
            last_ns: now_ns,
        }
    }

    /// Take `events` tokens if all are there; otherwise take none.
    pub fn take(&mut self, events: u64, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        // per_sec events per 1e9 ns = per_sec / 1000 micro-tokens per ns.
        let refill = u128::from(elapsed) * u128::from(self.per_sec) / 1000;
        let cap = u128::from(self.burst) * 1_000_000;
        self.micro_tokens = (u128::from(self.micro_tokens) + refill).min(cap) as u64;
        let need = events.saturating_mul(1_000_000);
        if need > self.micro_tokens {
            return false;
        }
        self.micro_tokens -= need;
        true
    }

    /// Give back tokens for events that were taken but not delivered (the
    /// ring was full): the cap is on what reaches the guest.
    pub fn refund(&mut self, events: u64) {
        let cap = self.burst * 1_000_000;
        self.micro_tokens = self
            .micro_tokens
            .saturating_add(events.saturating_mul(1_000_000))
            .min(cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let mut b = RateBudget::new(1000, 10, 0);
        assert!(b.take(10, 0));
        assert!(!b.take(1, 0), "the burst is spent");
        // 1000/s refills one event per millisecond.
        assert!(!b.take(2, 1_000_000));
        assert!(b.take(2, 2_000_000));
        // Idle time refills no more than the burst.
        assert!(!b.take(11, 60_000_000_000));
        assert!(b.take(10, 60_000_000_000));
        // Time going backwards refills nothing and does not panic.
        assert!(!b.take(1, 5));
        // Refunds never exceed the burst.
        b.refund(3);
        assert!(b.take(3, 5));
        b.refund(u64::MAX);
        assert!(!b.take(11, 5));
        assert!(b.take(10, 5));
    }
}

//! The clock a sound card would have: monotonic nanoseconds, and a way to
//! sleep until an instant. Injectable, so that tests drive pacing by hand.

use std::sync::Arc;

use tokio::sync::watch;

#[async_trait::async_trait]
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since an arbitrary fixed origin; never goes back.
    fn now_ns(&self) -> u64;
    /// Returns once `now_ns() >= deadline_ns`.
    async fn sleep_until(&self, deadline_ns: u64);
}

/// The host's monotonic clock (tokio's, so it is CLOCK_MONOTONIC and
/// immune to wall-clock steps).
#[derive(Debug, Clone)]
pub struct MonotonicClock {
    origin: tokio::time::Instant,
}

impl MonotonicClock {
    pub fn new() -> MonotonicClock {
        MonotonicClock {
            origin: tokio::time::Instant::now(),
        }
    }

    pub fn shared() -> Arc<dyn Clock> {
        Arc::new(MonotonicClock::new())
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock::new()
    }
}

#[async_trait::async_trait]
impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    async fn sleep_until(&self, deadline_ns: u64) {
        let at = self.origin + std::time::Duration::from_nanos(deadline_ns);
        tokio::time::sleep_until(at).await;
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<u64>>,
}

impl ManualClock {
    pub fn new(start_ns: u64) -> ManualClock {
        ManualClock {
            now: Arc::new(watch::Sender::new(start_ns)),
        }
    }

    /// Moves to `ns` (never backwards) and wakes every sleeper that is due.
    pub fn set(&self, ns: u64) {
        self.now.send_modify(|t| *t = (*t).max(ns));
    }

    pub fn advance(&self, ns: u64) {
        self.now.send_modify(|t| *t = t.saturating_add(ns));
    }
}

#[async_trait::async_trait]
impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        *self.now.borrow()
    }

    async fn sleep_until(&self, deadline_ns: u64) {
        let mut rx = self.now.subscribe();
        // The sender lives as long as self, so this only ends when due.
        let _ = rx.wait_for(|t| *t >= deadline_ns).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_due() {
        let c = ManualClock::new(100);
        let c2 = c.clone();
        let sleeper = tokio::spawn(async move { c2.sleep_until(1_000).await });
        c.advance(500);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        c.set(50); // never backwards
        assert_eq!(c.now_ns(), 600);
        c.set(1_000);
        tokio::time::timeout(std::time::Duration::from_secs(5), sleeper)
            .await
            .expect("woken")
            .unwrap();
    }

    #[tokio::test]
    async fn monotonic_clock_sleeps_until_the_deadline() {
        let c = MonotonicClock::new();
        let t = c.now_ns() + 5_000_000;
        c.sleep_until(t).await;
        assert!(c.now_ns() >= t);
    }
}

//! A latest-wins hand-over between the flip path and one encoder.
//!
//! The flip path must never wait for an encoder (the guest's vsync hangs on
//! it), and an encoder that falls behind should encode the newest picture, not
//! work through a backlog. So the slot holds at most one value: publishing
//! replaces whatever the consumer has not taken yet (counted as dropped) and
//! returns at once. The lock is only held to swap an `Option`, never while
//! anything else runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::Notify;

struct State<T> {
    value: Option<T>,
    closed: bool,
    /// Set by [`LatestSlot::wake`]: a blocking waiter returns `Take::Woken`.
    woken: bool,
}

/// A single-value, latest-wins slot. Share it with `Arc`.
pub struct LatestSlot<T> {
    state: Mutex<State<T>>,
    blocking_waiters: Condvar,
    async_waiters: Notify,
    published: AtomicU64,
    dropped: AtomicU64,
}

/// What a wait on the slot produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Take<T> {
    Value(T),
    /// The deadline passed with nothing published.
    TimedOut,
    /// [`LatestSlot::wake`] was called: the consumer has something else to
    /// look at (e.g. a keyframe request).
    Woken,
    /// The slot was closed and is empty: the producer is gone.
    Closed,
}

impl<T> Default for LatestSlot<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> LatestSlot<T> {
    pub fn new() -> LatestSlot<T> {
        LatestSlot {
            state: Mutex::new(State {
                value: None,
                closed: false,
                woken: false,
            }),
            blocking_waiters: Condvar::new(),
            async_waiters: Notify::new(),
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock can only happen in Option::replace,
        // which does not panic; recover the data rather than propagate.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Put `value` in the slot, replacing (dropping) any value not yet taken.
    /// Returns true if a value was replaced. Never blocks on the consumer.
    /// Publishing to a closed slot drops the value.
    pub fn publish(&self, value: T) -> bool {
        let replaced = {
            let mut st = self.lock();
            if st.closed {
                return false;
            }
            st.value.replace(value)
        };
        self.published.fetch_add(1, Ordering::Relaxed);
        let was_full = replaced.is_some();
        if was_full {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        // Dropping the replaced value happens here, outside the lock.
        drop(replaced);
        self.blocking_waiters.notify_one();
        self.async_waiters.notify_one();
        was_full
    }

    /// Take the value if there is one.
    pub fn try_take(&self) -> Option<T> {
        self.lock().value.take()
    }

    /// Wait (blocking the thread) until a value is published, the slot is
    /// closed, or `deadline` passes (`None`: no deadline).
    pub fn take_blocking(&self, deadline: Option<Instant>) -> Take<T> {
        let mut st = self.lock();
        loop {
            if let Some(v) = st.value.take() {
                return Take::Value(v);
            }
            if st.closed {
                return Take::Closed;
            }
            if std::mem::take(&mut st.woken) {
                return Take::Woken;
            }
            match deadline {
                None => {
                    st = self
                        .blocking_waiters
                        .wait(st)
                        .unwrap_or_else(|p| p.into_inner());
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Take::TimedOut;
                    }
                    st = self
                        .blocking_waiters
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    /// Wait asynchronously until a value is published; `None` once the slot
    /// is closed and empty.
    pub async fn take(&self) -> Option<T> {
        loop {
            let notified = self.async_waiters.notified();
            {
                let mut st = self.lock();
                if let Some(v) = st.value.take() {
                    return Some(v);
                }
                if st.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Wake a blocking waiter without a value (it gets [`Take::Woken`]).
    pub fn wake(&self) {
        self.lock().woken = true;
        self.blocking_waiters.notify_all();
    }

    /// Close the slot: waiters wake up, later publishes are discarded. A
    /// value already in the slot can still be taken.
    pub fn close(&self) {
        self.lock().closed = true;
        self.blocking_waiters.notify_all();
        self.async_waiters.notify_waiters();
        // notify_waiters does not store a permit; a consumer between its
        // check and its await gets this one.
        self.async_waiters.notify_one();
    }

    #[cfg(test)]
    fn try_take_peek_is_some(&self) -> bool {
        self.lock().value.is_some()
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Values published so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Values replaced before the consumer took them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn publish_replaces_untaken_value_and_counts_drops() {
        let slot = LatestSlot::new();
        assert!(!slot.publish(1));
        assert!(slot.publish(2));
        assert!(slot.publish(3));
        assert_eq!(slot.try_take(), Some(3));
        assert_eq!(slot.try_take(), None);
        assert_eq!(slot.published(), 3);
        assert_eq!(slot.dropped(), 2);
    }

    #[test]
    fn publishing_never_waits_for_a_busy_consumer() {
        // The consumer takes one value and then stays busy until the producer
        // says it has finished all its publishes. If publishing waited for the
        // consumer this would deadlock (and the consumer's timeout fail it).
        let slot = Arc::new(LatestSlot::new());
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let consumer = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                let first = slot.take_blocking(None);
                let producer_finished = done_rx.recv_timeout(Duration::from_secs(30)).is_ok();
                let last = slot.take_blocking(None);
                (first, producer_finished, last)
            })
        };
        slot.publish(0u32);
        while slot.published() == 1 && slot.try_take_peek_is_some() {
            std::thread::yield_now();
        }
        for i in 1..10_000u32 {
            slot.publish(i);
        }
        done_tx.send(()).unwrap();
        let (first, producer_finished, last) = consumer.join().unwrap();
        assert!(matches!(first, Take::Value(_)));
        assert!(producer_finished, "publishing blocked on the consumer");
        assert_eq!(last, Take::Value(9_999), "consumer sees the latest value");
        assert!(slot.dropped() >= 9_000, "dropped {}", slot.dropped());
    }

    #[test]
    fn blocking_take_times_out_and_sees_close() {
        let slot: LatestSlot<u8> = LatestSlot::new();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert_eq!(slot.take_blocking(Some(deadline)), Take::TimedOut);
        assert!(Instant::now() >= deadline);
        slot.wake();
        assert_eq!(slot.take_blocking(None), Take::Woken);
        slot.publish(7);
        slot.close();
        assert_eq!(slot.take_blocking(None), Take::Value(7));
        assert_eq!(slot.take_blocking(None), Take::Closed);
        assert!(!slot.publish(8));
        assert_eq!(slot.try_take(), None);
    }

    #[tokio::test]
    async fn async_take_wakes_on_publish_and_close() {
        let slot = Arc::new(LatestSlot::new());
        let waiter = {
            let slot = slot.clone();
            tokio::spawn(async move { slot.take().await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        slot.publish("frame");
        assert_eq!(waiter.await.unwrap(), Some("frame"));
        let waiter = {
            let slot = slot.clone();
            tokio::spawn(async move { slot.take().await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        slot.close();
        assert_eq!(waiter.await.unwrap(), None);
    }
}

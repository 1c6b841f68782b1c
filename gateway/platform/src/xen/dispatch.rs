//! The sans-IO half of event channel delivery: which local port wakes whom.
//!
//! One xenevtchn handle serves every port of the gateway. Its reader (see
//! [`super::evtchn`]) takes each pending port from the kernel and hands it to
//! [`PortTable::deliver`], then unmasks the port if told to. The semantics are
//! the simulator's (`sim/hypervisor/evtchn_client.rs`), which the backends
//! are written against:
//! - a notification that arrives while nobody waits is kept, and the next
//!   `wait` returns at once;
//! - notifications coalesce: however many arrive between two `wait`s, the
//!   second returns once (Xen's pending bit is one bit);
//! - a port that is not (or no longer) ours is ignored and not unmasked.
//!
//! Binding happens under the table's lock (see [`PortTable::register_with`]),
//! so an event that fires between the bind and the registration cannot be
//! dropped on the floor, which would leave the port masked for ever.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;

use crate::{EventChannelError, Port};

/// One local port's wake-up: a pending bit (Xen's, one bit however many
/// events) and a [`Notify`] to wake whoever waits for it.
#[derive(Debug)]
pub struct PortSignal {
    port: Port,
    pending: AtomicBool,
    notify: Notify,
    /// Set once the port is unbound or the handle failed; wakes and fails
    /// every wait from then on.
    closed: OnceLock<String>,
}

impl PortSignal {
    fn new(port: Port) -> PortSignal {
        PortSignal {
            port,
            pending: AtomicBool::new(false),
            notify: Notify::new(),
            closed: OnceLock::new(),
        }
    }

    pub fn port(&self) -> Port {
        self.port
    }

    fn check(&self) -> Result<(), EventChannelError> {
        match self.closed.get() {
            None => Ok(()),
            Some(reason) => Err(EventChannelError::Io(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("event channel port {}: {reason}", self.port),
            ))),
        }
    }

    /// Wait until the port has been signalled at least once since the last
    /// call returned (or since it was bound).
    pub async fn wait(&self) -> Result<(), EventChannelError> {
        loop {
            self.check()?;
            if self.pending.swap(false, Ordering::AcqRel) {
                return Ok(());
            }
            // Registered before the second look at the bit, so a delivery
            // in between still wakes us (notify_waiters keeps no permit:
            // a batch of events must not leave a stale wake behind).
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.check()?;
            if self.pending.swap(false, Ordering::AcqRel) {
                return Ok(());
            }
            notified.await;
        }
    }

    fn signal(&self) {
        self.pending.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    fn close(&self, reason: &str) {
        let _ = self.closed.set(reason.to_string());
        self.notify.notify_waiters();
    }
}

#[derive(Default)]
struct Inner {
    ports: HashMap<Port, Arc<PortSignal>>,
    /// Set when the handle can no longer deliver: new binds are refused.
    failed: Option<String>,
}

/// The ports of one xenevtchn handle.
#[derive(Default)]
pub struct PortTable {
    inner: Mutex<Inner>,
}

impl PortTable {
    pub fn new() -> PortTable {
        PortTable::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing here can panic half-way; a poisoned lock is still sound.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `bind` (the hypercall that yields a new local port) and register
    /// the port, with no delivery in between.
    pub fn register_with(
        &self,
        bind: impl FnOnce() -> Result<Port, EventChannelError>,
    ) -> Result<Arc<PortSignal>, EventChannelError> {
        let mut inner = self.lock();
        if let Some(reason) = &inner.failed {
            return Err(EventChannelError::Io(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("event channels unavailable: {reason}"),
            )));
        }
        let port = bind()?;
        let signal = Arc::new(PortSignal::new(port));
        if let Some(old) = inner.ports.insert(port, signal.clone()) {
            // The kernel gave us a port we think we hold: the old holder's
            // port was unbound behind its back. It must not steal events.
            old.close("the port was unbound and given to another channel");
        }
        Ok(signal)
    }

    /// Forget `signal`'s port (before unbinding it), unless the port has
    /// already been given to a newer registration.
    pub fn unregister(&self, signal: &Arc<PortSignal>) {
        let mut inner = self.lock();
        if inner
            .ports
            .get(&signal.port)
            .is_some_and(|s| Arc::ptr_eq(s, signal))
        {
            inner.ports.remove(&signal.port);
        }
        signal.close("unbound");
    }

    /// The kernel reports `port` pending (and masked). Returns whether the
    /// reader should unmask it: only ports we hold.
    pub fn deliver(&self, port: Port) -> bool {
        match self.lock().ports.get(&port) {
            Some(signal) => {
                signal.signal();
                true
            }
            None => false,
        }
    }

    /// The handle can no longer deliver: fail every wait, now and later.
    pub fn fail(&self, reason: &str) {
        let mut inner = self.lock();
        inner.failed.get_or_insert_with(|| reason.to_string());
        for (_, signal) in inner.ports.drain() {
            signal.close(reason);
        }
    }

    /// How many ports are bound.
    pub fn len(&self) -> usize {
        self.lock().ports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn bound(table: &PortTable, port: Port) -> Arc<PortSignal> {
        table.register_with(|| Ok(port)).unwrap()
    }

    /// Whether a wait would return now (without blocking the test).
    fn ready(signal: &PortSignal) -> Option<Result<(), EventChannelError>> {
        signal.wait().now_or_never()
    }

    #[test]
    fn an_event_before_the_wait_is_kept_and_many_events_coalesce() {
        let table = PortTable::new();
        let a = bound(&table, 5);
        let b = bound(&table, 6);
        assert!(ready(&a).is_none(), "nothing pending yet");
        for _ in 0..3 {
            assert!(table.deliver(5), "our port is unmasked");
        }
        assert!(matches!(ready(&a), Some(Ok(()))));
        assert!(ready(&a).is_none(), "three events, one wake");
        assert!(ready(&b).is_none(), "the other port saw nothing");
    }

    #[tokio::test]
    async fn an_event_wakes_a_waiting_task() {
        let table = Arc::new(PortTable::new());
        let a = bound(&table, 7);
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(table.deliver(7));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn events_delivered_to_a_parked_waiter_wake_it_once() {
        let table = PortTable::new();
        let a = bound(&table, 8);
        let mut wait = Box::pin(a.wait());
        assert!((&mut wait).now_or_never().is_none());
        for _ in 0..3 {
            table.deliver(8);
        }
        assert!(matches!((&mut wait).now_or_never(), Some(Ok(()))));
        assert!(ready(&a).is_none(), "no stale wake after the batch");
    }

    #[test]
    fn unknown_and_unbound_ports_are_ignored_and_stay_masked() {
        let table = PortTable::new();
        assert!(!table.deliver(9));
        let a = bound(&table, 9);
        table.unregister(&a);
        assert!(!table.deliver(9));
        assert!(table.is_empty());
        let err = ready(&a).unwrap().unwrap_err().to_string();
        assert!(err.contains("port 9") && err.contains("unbound"), "{err}");
    }

    #[test]
    fn a_reused_port_number_belongs_to_the_new_channel() {
        let table = PortTable::new();
        let old = bound(&table, 11);
        let new = bound(&table, 11);
        assert!(ready(&old).unwrap().is_err(), "the stale holder is closed");
        // The stale holder's drop must not unregister the new one.
        table.unregister(&old);
        assert!(table.deliver(11));
        assert!(matches!(ready(&new), Some(Ok(()))));
    }

    #[test]
    fn a_failed_bind_registers_nothing() {
        let table = PortTable::new();
        let err = table
            .register_with(|| Err(EventChannelError::Closed(3)))
            .unwrap_err();
        assert!(matches!(err, EventChannelError::Closed(3)));
        assert!(table.is_empty());
    }

    #[test]
    fn a_failed_handle_fails_every_wait_and_refuses_binds() {
        let table = PortTable::new();
        let a = bound(&table, 2);
        table.fail("xenevtchn_pending: EFBIG");
        let err = ready(&a).unwrap().unwrap_err().to_string();
        assert!(err.contains("EFBIG"), "{err}");
        let mut called = false;
        let refused = table.register_with(|| {
            called = true;
            Ok(4)
        });
        assert!(refused.is_err() && !called);
    }

    #[test]
    fn a_wait_already_parked_sees_the_failure() {
        let table = PortTable::new();
        let a = bound(&table, 2);
        let mut wait = Box::pin(a.wait());
        assert!((&mut wait).now_or_never().is_none());
        table.fail("gone");
        assert!(matches!((&mut wait).now_or_never(), Some(Err(_))));
    }
}

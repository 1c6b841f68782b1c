//! [`InputOutputs`]: every connected input device, for the session layer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use pvgate_platform::DomId;

use super::sink::InputSink;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The registry shared by all input devices: a device is listed from the
/// moment its page is mapped until it disconnects.
#[derive(Clone, Default)]
pub struct InputOutputs {
    inner: Arc<Mutex<BTreeMap<(DomId, u32), InputSink>>>,
}

impl InputOutputs {
    pub fn new() -> Self {
        InputOutputs::default()
    }

    /// The guest's input device: the lowest devid that is connected (the
    /// browser contract's "first vkbd device").
    pub fn get(&self, domid: DomId) -> Option<InputSink> {
        lock(&self.inner)
            .range((domid, 0)..=(domid, u32::MAX))
            .map(|(_, s)| s.clone())
            .next()
    }

    /// Every connected device, in (guest, devid) order.
    pub fn list(&self) -> Vec<(DomId, u32, InputSink)> {
        lock(&self.inner)
            .iter()
            .map(|(&(d, n), s)| (d, n, s.clone()))
            .collect()
    }

    pub(crate) fn insert(&self, sink: InputSink) {
        lock(&self.inner).insert(sink.device(), sink);
    }

    pub(crate) fn remove(&self, domid: DomId, devid: u32) {
        lock(&self.inner).remove(&(domid, devid));
    }
}

//! The guest's xenbus: finding a device's other end, switching our state,
//! and following the backend's state, as Linux's xenbus core does for every
//! frontend driver. The per-driver rules live in [`policy`].

pub mod driver;
pub mod policy;

use std::sync::Arc;

use futures::StreamExt;
use pvgate_platform::{Store, StoreError};

use crate::DomId;

pub use policy::{Action, Driver, FrontendPolicy};

/// `enum xenbus_state` (xenbus.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenbusState {
    Unknown = 0,
    Initialising = 1,
    InitWait = 2,
    Initialised = 3,
    Connected = 4,
    Closing = 5,
    Closed = 6,
    Reconfiguring = 7,
    Reconfigured = 8,
}

impl XenbusState {
    pub fn from_u32(v: u32) -> XenbusState {
        use XenbusState::*;
        match v {
            1 => Initialising,
            2 => InitWait,
            3 => Initialised,
            4 => Connected,
            5 => Closing,
            6 => Closed,
            7 => Reconfiguring,
            8 => Reconfigured,
            _ => Unknown,
        }
    }

    /// Parse a `state` node as Linux's `xenbus_read_driver_state` does: a
    /// missing or unreadable node is Unknown.
    pub fn parse(value: Option<&str>) -> XenbusState {
        value
            .and_then(|v| v.trim().parse::<u32>().ok())
            .map(XenbusState::from_u32)
            .unwrap_or(XenbusState::Unknown)
    }
}

/// Why a device could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum XenbusError {
    #[error("{path}: {source}")]
    Store {
        path: String,
        #[source]
        source: StoreError,
    },
    #[error("{path}: bad value '{value}': {reason}")]
    BadValue {
        path: String,
        value: String,
        reason: String,
    },
}

/// One frontend device as the xenbus core knows it.
#[derive(Clone)]
pub struct XenbusDevice {
    pub store: Arc<dyn Store>,
    /// Our directory, e.g. `/local/domain/5/device/vdispl/0`.
    pub nodename: String,
    /// The backend's directory, read from our `backend` node.
    pub otherend: String,
    pub otherend_id: DomId,
}

impl XenbusDevice {
    /// `talk_to_otherend`: read `backend` and `backend-id` from our node.
    pub async fn probe(store: Arc<dyn Store>, nodename: &str) -> Result<XenbusDevice, XenbusError> {
        let otherend = read(&*store, &format!("{nodename}/backend")).await?;
        let id_path = format!("{nodename}/backend-id");
        let id_text = read(&*store, &id_path).await?;
        let otherend_id = id_text
            .trim()
            .parse::<DomId>()
            .map_err(|e| XenbusError::BadValue {
                path: id_path,
                value: id_text.clone(),
                reason: e.to_string(),
            })?;
        Ok(XenbusDevice {
            store,
            nodename: nodename.to_string(),
            otherend,
            otherend_id,
        })
    }

    /// `xenbus_switch_state`.
    pub async fn switch_state(&self, state: XenbusState) -> Result<(), XenbusError> {
        let path = format!("{}/state", self.nodename);
        self.store
            .write(&path, &(state as u32).to_string())
            .await
            .map_err(|source| XenbusError::Store { path, source })
    }

    pub async fn backend_state(&self) -> XenbusState {
        let v = self
            .store
            .read_opt(&format!("{}/state", self.otherend))
            .await
            .ok()
            .flatten();
        XenbusState::parse(v.as_deref())
    }

    /// The backend's state each time its `state` node is written (the first
    /// item is the state when the watch was set, as xenstored fires every new
    /// watch once).
    pub async fn watch_backend_state(
        &self,
    ) -> Result<impl futures::Stream<Item = XenbusState> + Send + 'static, XenbusError> {
        let path = format!("{}/state", self.otherend);
        let watch = self
            .store
            .watch(&path)
            .await
            .map_err(|source| XenbusError::Store {
                path: path.clone(),
                source,
            })?;
        let store = self.store.clone();
        Ok(watch.then(move |_| {
            let store = store.clone();
            let path = path.clone();
            async move { XenbusState::parse(store.read_opt(&path).await.ok().flatten().as_deref()) }
        }))
    }

    /// `xenbus_read_unsigned(otherend, key, default)`.
    pub async fn read_backend_unsigned(&self, key: &str, default: u32) -> u32 {
        read_unsigned(&*self.store, &format!("{}/{key}", self.otherend), default).await
    }

    /// `xenbus_read_unsigned(nodename, key, default)`.
    pub async fn read_own_unsigned(&self, key: &str, default: u32) -> u32 {
        read_unsigned(&*self.store, &format!("{}/{key}", self.nodename), default).await
    }

    pub async fn read_own(&self, key: &str) -> Option<String> {
        self.store
            .read_opt(&format!("{}/{key}", self.nodename))
            .await
            .ok()
            .flatten()
    }

    pub async fn write_own(&self, key: &str, value: &str) -> Result<(), XenbusError> {
        let path = format!("{}/{key}", self.nodename);
        self.store
            .write(&path, value)
            .await
            .map_err(|source| XenbusError::Store { path, source })
    }
}

/// How long Linux's `xenbus_reset_wait_for_backend` waits for each step.
pub const RESET_STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl XenbusDevice {
    /// Wait (following a watch) until the backend's state is `want`; false
    /// after `timeout`.
    pub async fn wait_backend_state(
        &self,
        want: XenbusState,
        timeout: std::time::Duration,
    ) -> bool {
        let Ok(states) = self.watch_backend_state().await else {
            return false;
        };
        let mut states = Box::pin(states);
        tokio::time::timeout(timeout, async {
            while let Some(s) = states.next().await {
                if s == want {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false)
    }

    /// `xenbus_check_frontend` + `xenbus_reset_frontend`, run when a guest
    /// boots (again): a device left Connected or Closed by a previous life
    /// while its backend is still Connected is walked back through Closing
    /// and Closed to Initialising, waiting for the backend to follow each
    /// step (as long as it does, 5 s per step), so that the backend forgets
    /// the old rings before the driver publishes new ones. Returns whether a
    /// reset was done.
    pub async fn reset_if_stale(&self) -> bool {
        let ours = XenbusState::parse(self.read_own("state").await.as_deref());
        if !matches!(ours, XenbusState::Connected | XenbusState::Closed) {
            return false;
        }
        if self.backend_state().await != XenbusState::Connected {
            return false;
        }
        tracing::info!(device = %self.nodename, ?ours, "resetting a device left over by a previous life");
        for (ours, theirs) in [
            (XenbusState::Closing, XenbusState::Closing),
            (XenbusState::Closed, XenbusState::Closed),
            (XenbusState::Initialising, XenbusState::InitWait),
        ] {
            let _ = self.switch_state(ours).await;
            if !self.wait_backend_state(theirs, RESET_STEP_TIMEOUT).await {
                tracing::warn!(device = %self.nodename, ?theirs, "backend did not follow the reset");
            }
        }
        true
    }
}

async fn read(store: &dyn Store, path: &str) -> Result<String, XenbusError> {
    store.read(path).await.map_err(|source| XenbusError::Store {
        path: path.to_string(),
        source,
    })
}

/// Like Linux's `xenbus_read_unsigned`: missing or unparsable gives `default`.
pub async fn read_unsigned(store: &dyn Store, path: &str, default: u32) -> u32 {
    match store.read_opt(path).await {
        Ok(Some(v)) => v.trim().parse().unwrap_or(default),
        _ => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_parsing_is_lenient_like_linux() {
        assert_eq!(XenbusState::parse(Some("4")), XenbusState::Connected);
        assert_eq!(XenbusState::parse(Some(" 2\n")), XenbusState::InitWait);
        assert_eq!(XenbusState::parse(Some("x")), XenbusState::Unknown);
        assert_eq!(XenbusState::parse(Some("99")), XenbusState::Unknown);
        assert_eq!(XenbusState::parse(None), XenbusState::Unknown);
    }
}

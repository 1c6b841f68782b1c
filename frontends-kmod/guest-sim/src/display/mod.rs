//! The displif frontend, as xen-drm-front drives it.
//!
//! - Config at backend InitWait (`xen_drm_front_cfg_card`): `be-alloc` and up
//!   to 4 connectors `<i>/resolution` from our own directory.
//! - Per connector a request ring and an event page, published as
//!   `<i>/req-ring-ref`, `<i>/req-event-channel`, `<i>/evt-ring-ref`,
//!   `<i>/evt-event-channel` in one transaction.
//! - Buffer requests (DBUF_CREATE/DESTROY, FB_ATTACH/DETACH) go on connector
//!   0's ring (the driver's `GENERIC_OP_EVT_CHNL`); SET_CONFIG and PG_FLIP on
//!   the connector's own ring; EVT_PG_FLIP comes on its event page.
//!
//! [`DisplayFrontend`] runs the xenbus side; each connection to a backend is a
//! [`DisplaySession`] on which tests issue requests step by step.

mod buffer;
pub mod render;
mod session;

pub use buffer::{Dbuf, DbufStorage};
pub use session::{
    ConnectorInfo, DisplayError, DisplaySession, FlipOutcome, EDID_MAX_SIZE, FRAME_DONE_TIMEOUT,
};

use std::sync::Arc;

use pvgate_platform::{store, Platform, StoreError};
use pvgate_protocol::ring::RingLayout;
use tokio::sync::watch;

use crate::config::parse_resolution;
use crate::io::channel::ChannelPair;
use crate::xenbus::driver::FrontendOps;
use crate::xenbus::XenbusDevice;
use futures::FutureExt;

/// xen-drm-front's `XEN_DRM_FRONT_MAX_CRTCS`.
pub const MAX_CONNECTORS: u32 = 4;

/// Configuration as the driver reads it at InitWait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardConfig {
    pub be_alloc: bool,
    /// (width, height) per connector, in index order.
    pub connectors: Vec<(u32, u32)>,
}

/// `xen_drm_front_cfg_card`: connectors are read from index 0 up until one
/// is missing or unparsable.
pub async fn read_card_config(dev: &XenbusDevice) -> Result<CardConfig, String> {
    let be_alloc = dev.read_own_unsigned("be-alloc", 0).await != 0;
    let mut connectors = Vec::new();
    for i in 0..MAX_CONNECTORS {
        let Some(res) = dev.read_own(&format!("{i}/resolution")).await else {
            break;
        };
        let Some(wh) = parse_resolution(&res) else {
            break;
        };
        connectors.push(wh);
    }
    if connectors.is_empty() {
        return Err(format!("No connector(s) configured at {}", dev.nodename));
    }
    Ok(CardConfig {
        be_alloc,
        connectors,
    })
}

/// The driver-specific half of the xenbus loop for displif.
pub struct DisplayOps {
    platform: Platform,
    pending: Option<(CardConfig, Vec<ChannelPair>)>,
    session: watch::Sender<Option<Arc<DisplaySession>>>,
}

impl DisplayOps {
    pub fn new(
        platform: Platform,
        session: watch::Sender<Option<Arc<DisplaySession>>>,
    ) -> DisplayOps {
        DisplayOps {
            platform,
            pending: None,
            session,
        }
    }
}

#[async_trait::async_trait]
impl FrontendOps for DisplayOps {
    async fn publish(&mut self, dev: &XenbusDevice) -> Result<(), String> {
        let cfg = read_card_config(dev).await?;
        let mut pairs = Vec::with_capacity(cfg.connectors.len());
        for _ in &cfg.connectors {
            pairs.push(
                ChannelPair::allocate(&self.platform, dev.otherend_id, RingLayout::DISPLIF).await?,
            );
        }
        let keys: Vec<(String, String)> = pairs
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                [
                    (
                        format!("{}/{i}/req-ring-ref", dev.nodename),
                        p.req.gref().to_string(),
                    ),
                    (
                        format!("{}/{i}/req-event-channel", dev.nodename),
                        p.req.port().to_string(),
                    ),
                    (
                        format!("{}/{i}/evt-ring-ref", dev.nodename),
                        p.evt.gref().to_string(),
                    ),
                    (
                        format!("{}/{i}/evt-event-channel", dev.nodename),
                        p.evt.port().to_string(),
                    ),
                ]
            })
            .collect();
        publish_keys(dev, keys)
            .await
            .map_err(|e| format!("writing Xen store: {e}"))?;
        self.pending = Some((cfg, pairs));
        Ok(())
    }

    async fn connect(&mut self, dev: &XenbusDevice) -> Result<(), String> {
        let (cfg, pairs) = self
            .pending
            .take()
            .ok_or("connect without published rings")?;
        let session = DisplaySession::start(
            self.platform.clone(),
            dev.otherend_id,
            cfg,
            pairs,
            dev.nodename.clone(),
        );
        self.session.send_replace(Some(Arc::new(session)));
        Ok(())
    }

    async fn teardown(&mut self) {
        self.pending = None;
        if let Some(old) = self.session.send_replace(None) {
            old.disconnect();
        }
    }
}

/// Write `(path, value)` pairs in one transaction, retrying on conflict.
pub async fn publish_keys(
    dev: &XenbusDevice,
    keys: Vec<(String, String)>,
) -> Result<(), StoreError> {
    store::transaction(&*dev.store, |tx| {
        let keys = keys.clone();
        async move {
            for (k, v) in &keys {
                tx.write(k, v).await?;
            }
            Ok(())
        }
        .boxed()
    })
    .await
}

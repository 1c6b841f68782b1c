//! The sndif frontend, as snd-xen-front drives it.
//!
//! - Config at backend InitWait: the card → device → stream tree from our own
//!   directory, inherited as `xen_snd_front_cfg.c` does (the protocol
//!   crate's `sndif_config::read_card`).
//! - Per stream (numbered card-wide) a request ring and an event page,
//!   published as `ring-ref`, `event-channel`, `evt-ring-ref`,
//!   `evt-event-channel` under the stream's node, in one transaction.
//! - Per stream: HW_PARAM_QUERY (many, while ALSA refines), OPEN with the
//!   buffer behind a page directory, TRIGGER, WRITE/READ chunks, CLOSE; the
//!   position moves only with CUR_POS events.

mod stream;

pub use stream::{SoundError, SoundStream, StreamStats};

use std::sync::Arc;

use pvgate_platform::Platform;
use pvgate_protocol::ring::RingLayout;
use pvgate_protocol::sndif_config::{self, CardConfig};
use tokio::sync::watch;

use crate::display::publish_keys;
use crate::io::channel::ChannelPair;
use crate::io::snapshot::snapshot;
use crate::xenbus::driver::FrontendOps;
use crate::xenbus::XenbusDevice;

/// A connected sndif card.
pub struct SoundSession {
    pub card: CardConfig,
    streams: Vec<Arc<SoundStream>>,
}

impl SoundSession {
    /// Streams in card-wide order (the driver's stream index).
    pub fn streams(&self) -> &[Arc<SoundStream>] {
        &self.streams
    }

    pub fn stream(&self, index: usize) -> Option<Arc<SoundStream>> {
        self.streams.get(index).cloned()
    }

    /// The stream whose xenstore `unique-id` is `id`.
    pub fn stream_by_id(&self, id: &str) -> Option<Arc<SoundStream>> {
        self.streams
            .iter()
            .find(|s| s.config.unique_id.as_deref() == Some(id))
            .cloned()
    }

    /// Stop consuming events on every stream (a hung guest).
    pub fn freeze(&self) {
        for s in &self.streams {
            s.freeze();
        }
    }

    fn disconnect(&self) {
        for s in &self.streams {
            s.disconnect();
        }
    }
}

/// The driver-specific half of the xenbus loop for sndif.
pub struct SoundOps {
    platform: Platform,
    pending: Option<(CardConfig, Vec<ChannelPair>)>,
    session: watch::Sender<Option<Arc<SoundSession>>>,
}

impl SoundOps {
    pub fn new(platform: Platform, session: watch::Sender<Option<Arc<SoundSession>>>) -> SoundOps {
        SoundOps {
            platform,
            pending: None,
            session,
        }
    }
}

#[async_trait::async_trait]
impl FrontendOps for SoundOps {
    async fn publish(&mut self, dev: &XenbusDevice) -> Result<(), String> {
        // card/device/stream/key: three levels below the card.
        let tree = snapshot(&*dev.store, &dev.nodename, 3).await;
        let card = sndif_config::read_card(&tree, &dev.nodename).map_err(|e| e.to_string())?;
        let mut pairs = Vec::new();
        let mut keys = Vec::new();
        for s in card.streams() {
            let pair =
                ChannelPair::allocate(&self.platform, dev.otherend_id, RingLayout::SNDIF).await?;
            keys.push((format!("{}/ring-ref", s.path), pair.req.gref().to_string()));
            keys.push((
                format!("{}/event-channel", s.path),
                pair.req.port().to_string(),
            ));
            keys.push((
                format!("{}/evt-ring-ref", s.path),
                pair.evt.gref().to_string(),
            ));
            keys.push((
                format!("{}/evt-event-channel", s.path),
                pair.evt.port().to_string(),
            ));
            pairs.push(pair);
        }
        publish_keys(dev, keys)
            .await
            .map_err(|e| format!("writing XenStore: {e}"))?;
        self.pending = Some((card, pairs));
        Ok(())
    }

    async fn connect(&mut self, dev: &XenbusDevice) -> Result<(), String> {
        let (card, pairs) = self
            .pending
            .take()
            .ok_or("connect without published rings")?;
        let streams = card
            .streams()
            .cloned()
            .zip(pairs)
            .map(|(cfg, pair)| {
                Arc::new(SoundStream::start(
                    self.platform.clone(),
                    dev.otherend_id,
                    cfg,
                    pair,
                ))
            })
            .collect();
        self.session
            .send_replace(Some(Arc::new(SoundSession { card, streams })));
        Ok(())
    }

    async fn teardown(&mut self) {
        self.pending = None;
        if let Some(old) = self.session.send_replace(None) {
            old.disconnect();
        }
    }
}

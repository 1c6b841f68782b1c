//! The displif [`DeviceBackend`]: what happens at connect and disconnect.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use pvgate_media::EncoderHub;
use pvgate_protocol::keys::{self, displif as dkeys};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::connector::{self, ConnectorChannel, DeviceShared};
use super::flip::{CopyWorker, FlipHook};
use super::limits::DisplayLimits;
use super::outputs::{ConnectorOutput, DisplayOutputs, OutputKey};
use super::requests::DisplayState;
use crate::xenbus::{DeviceBackend, DeviceContext, DeviceError};

/// A connected device: its loops, copy workers and state.
struct Live {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    workers: Vec<CopyWorker>,
    state: Arc<Mutex<DisplayState>>,
    keys: Vec<OutputKey>,
}

/// The displif backend of one vdispl device.
pub struct DisplayBackend {
    outputs: DisplayOutputs,
    hub: EncoderHub,
    limits: DisplayLimits,
    hook: Option<FlipHook>,
    live: Option<Live>,
}

impl DisplayBackend {
    pub fn new(outputs: DisplayOutputs, hub: EncoderHub, limits: DisplayLimits) -> DisplayBackend {
        DisplayBackend {
            outputs,
            hub,
            limits,
            hook: None,
            live: None,
        }
    }

    /// Be told of every flip's stages (tests, tracing).
    pub fn with_flip_hook(mut self, hook: FlipHook) -> DisplayBackend {
        self.hook = Some(hook);
        self
    }

    async fn release(&mut self, ctx: &DeviceContext) {
        let Some(live) = self.live.take() else { return };
        live.stop.send_replace(true);
        // The loops own the rings and channels: when they end, those are
        // unmapped and unbound.
        for t in live.tasks {
            let _ = t.await;
        }
        for w in live.workers {
            w.shutdown().await;
        }
        // Every buffer mapping goes now; our be-alloc pages are revoked.
        live.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .release_all();
        self.outputs.remove_device(ctx.frontend_id, ctx.devid);
        for k in live.keys {
            self.hub.remove_connector(k.hub_id());
        }
    }
}

impl Drop for DisplayBackend {
    fn drop(&mut self) {
        if let Some(live) = &self.live {
            live.stop.send_replace(true);
        }
    }
}

/// The frontend keys connect needs, read once into a snapshot for the
/// protocol crate's (synchronous) readers.
async fn snapshot_keys(
    ctx: &DeviceContext,
    max_connectors: usize,
) -> Result<BTreeMap<String, String>, DeviceError> {
    let store = &ctx.platform.store;
    let fe = &ctx.frontend_path;
    let mut paths = vec![format!("{fe}/{}", dkeys::BE_ALLOC)];
    for i in 0..dkeys::LINUX_MAX_CONNECTORS.min(max_connectors as u32) {
        let c = dkeys::connector_path(fe, i);
        for k in [
            dkeys::RESOLUTION,
            dkeys::UNIQUE_ID,
            dkeys::REQ_RING_REF,
            dkeys::REQ_CHANNEL,
            dkeys::EVT_RING_REF,
            dkeys::EVT_CHANNEL,
        ] {
            paths.push(format!("{c}/{k}"));
        }
    }
    let mut snap = BTreeMap::new();
    for p in paths {
        if let Some(v) = store.read_opt(&p).await? {
            snap.insert(p, v);
        }
    }
    Ok(snap)
}

#[async_trait::async_trait]
impl DeviceBackend for DisplayBackend {
    async fn prepare(&mut self, _ctx: &DeviceContext) -> Result<(), DeviceError> {
        // displif's only backend node is the optional `versions`, which
        // xen-drm-front never reads; nothing may delay InitWait.
        Ok(())
    }

    async fn connect(&mut self, ctx: &DeviceContext) -> Result<(), DeviceError> {
        self.release(ctx).await;
        let snap = snapshot_keys(ctx, self.limits.max_connectors).await?;
        let cfg =
            dkeys::read_config(&snap, &ctx.frontend_path).map_err(|e| DeviceError::BadKey {
                key: format!("{}/0/{}", ctx.frontend_path, dkeys::RESOLUTION),
                reason: e.to_string(),
            })?;
        let connectors: Vec<_> = cfg
            .connectors
            .into_iter()
            .take(self.limits.max_connectors)
            .collect();
        let mut channels = Vec::with_capacity(connectors.len());
        for (i, c) in connectors.iter().enumerate() {
            let pair =
                keys::displif::read_transport(&snap, &c.path).map_err(|e| DeviceError::BadKey {
                    key: c.path.clone(),
                    reason: e.to_string(),
                })?;
            channels.push(ConnectorChannel::open(&ctx.platform, ctx.frontend_id, i, &pair).await?);
        }
        let resolutions: Vec<_> = connectors.iter().map(|c| c.resolution).collect();
        let state = Arc::new(Mutex::new(DisplayState::new(
            ctx.frontend_id,
            ctx.devid,
            &resolutions,
            self.limits.clone(),
        )));
        let mut workers = Vec::new();
        let mut outputs = Vec::new();
        for (i, c) in connectors.iter().enumerate() {
            let key = OutputKey {
                domid: ctx.frontend_id,
                devid: ctx.devid,
                connector: i as u32,
            };
            let output = Arc::new(ConnectorOutput::new(
                key,
                (c.resolution.width, c.resolution.height),
            ));
            let worker = CopyWorker::spawn(
                output.clone(),
                self.hub.feed(key.hub_id()),
                self.hook.clone(),
            )
            .map_err(|e| DeviceError::Protocol(format!("cannot start the copy thread: {e}")))?;
            workers.push(worker);
            outputs.push(output);
        }
        let shared = Arc::new(DeviceShared {
            ctx: ctx.clone(),
            state: state.clone(),
            grants: ctx.platform.grants.clone(),
            progress: workers.iter().map(|w| w.progress()).collect(),
            hook: self.hook.clone(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for ((ch, w), out) in channels.into_iter().zip(&workers).zip(&outputs) {
            let Some(sub) = w.submitter() else {
                return Err(DeviceError::Protocol("copy worker ended at start".into()));
            };
            tasks.push(tokio::spawn(connector::serve(
                ch,
                sub,
                out.clone(),
                shared.clone(),
                stop_rx.clone(),
            )));
        }
        let keys = outputs.iter().map(|o| o.key).collect();
        for o in outputs {
            self.outputs.insert(o);
        }
        tracing::info!(
            guest = ctx.frontend_id,
            device = ctx.devid,
            connectors = connectors.len(),
            be_alloc = cfg.be_alloc,
            "display connected"
        );
        self.live = Some(Live {
            stop,
            tasks,
            workers,
            state,
            keys,
        });
        Ok(())
    }

    async fn disconnect(&mut self, ctx: &DeviceContext) {
        self.release(ctx).await;
    }
}

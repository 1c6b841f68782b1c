//! The kbdif [`DeviceBackend`]: the features written before InitWait, and
//! what connect and disconnect do with the guest's page and channel.

use std::collections::BTreeMap;
use std::sync::Arc;

use pvgate_protocol::keys::{self, displif as dkeys, kbdif as kkeys};
use pvgate_protocol::xenbus::XenbusState;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::events::{InputSpace, PointerMode};
use super::limits::InputLimits;
use super::outputs::InputOutputs;
use super::sink::{DeviceIo, InputSink};
use crate::xenbus::{DeviceBackend, DeviceContext, DeviceError};

/// xen-kbdfront's pointer size when the backend writes none (fbif.h's
/// XENFB_WIDTH × XENFB_HEIGHT).
const XENFB_SIZE: (u32, u32) = (800, 600);

/// What we told the guest at probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Offer {
    pointer: (u32, u32),
    touch: (u32, u32),
    contacts: u8,
}

struct Live {
    io: Arc<DeviceIo>,
    stop: watch::Sender<bool>,
    watcher: JoinHandle<()>,
}

/// The kbdif backend of one vkbd/vinput device.
pub struct InputBackend {
    outputs: InputOutputs,
    limits: InputLimits,
    offer: Option<Offer>,
    live: Option<Live>,
}

impl InputBackend {
    pub fn new(outputs: InputOutputs, limits: InputLimits) -> InputBackend {
        InputBackend {
            outputs,
            limits,
            offer: None,
            live: None,
        }
    }

    async fn release(&mut self, ctx: &DeviceContext) {
        self.outputs.remove(ctx.frontend_id, ctx.devid);
        let Some(live) = self.live.take() else { return };
        // Unmapped here, whoever still holds a sink.
        live.io.close();
        live.stop.send_replace(true);
        let _ = live.watcher.await;
    }
}

impl Drop for InputBackend {
    fn drop(&mut self) {
        if let Some(live) = &self.live {
            live.io.close();
            live.watcher.abort();
        }
    }
}

async fn read_opt(ctx: &DeviceContext, path: &str) -> Option<String> {
    ctx.platform.store.read_opt(path).await.ok().flatten()
}

async fn read_u32(ctx: &DeviceContext, path: &str) -> Option<u32> {
    read_opt(ctx, path)
        .await
        .and_then(|v| keys::parse_u32("", &v).ok())
}

/// The size of the guest's first display (lowest vdispl devid, connector
/// 0), if the toolstack configured one we can read.
async fn display_size(ctx: &DeviceContext, max: u32) -> Option<(u32, u32)> {
    let dir = format!("/local/domain/{}/device/vdispl", ctx.frontend_id);
    let devids = ctx.platform.store.directory(&dir).await.ok()?;
    let first = devids.iter().filter_map(|d| d.parse::<u32>().ok()).min()?;
    let conn = dkeys::connector_path(&format!("{dir}/{first}"), 0);
    let value = read_opt(ctx, &format!("{conn}/{}", dkeys::RESOLUTION)).await?;
    let r = keys::parse_resolution(&value).ok()?;
    (r.width <= max && r.height <= max).then_some((r.width, r.height))
}

impl InputBackend {
    /// The space to offer. Browsers send positions in guest display pixels
    /// (web/PROTOCOL.md), so the guest's own display size makes them pass
    /// through unscaled; see [`InputLimits::fallback_space`] otherwise.
    ///
    /// A frontend that has already probed (a gateway restart under a
    /// connected xen-kbdfront) read the values in our directory then and
    /// will not read them again: keep those, or our positions would land
    /// scaled wrong.
    async fn choose_offer(&self, ctx: &DeviceContext) -> Offer {
        let be = &ctx.backend_path;
        let frontend = XenbusState::parse_like_linux(
            read_opt(ctx, &format!("{}/state", ctx.frontend_path))
                .await
                .as_deref(),
        );
        let contacts = self.limits.touch_contacts;
        if matches!(frontend, XenbusState::Initialised | XenbusState::Connected) {
            // Absent nodes were read as xen-kbdfront's defaults
            // (XENFB_WIDTH × XENFB_HEIGHT).
            let w = read_u32(ctx, &format!("{be}/{}", kkeys::WIDTH)).await;
            let h = read_u32(ctx, &format!("{be}/{}", kkeys::HEIGHT)).await;
            let (w, h) = (w.unwrap_or(XENFB_SIZE.0), h.unwrap_or(XENFB_SIZE.1));
            let mw = read_u32(ctx, &format!("{be}/{}", kkeys::MT_WIDTH)).await;
            let mh = read_u32(ctx, &format!("{be}/{}", kkeys::MT_HEIGHT)).await;
            let mn = read_u32(ctx, &format!("{be}/{}", kkeys::MT_NUM_CONTACTS)).await;
            return Offer {
                pointer: (w, h),
                touch: (mw.unwrap_or(XENFB_SIZE.0), mh.unwrap_or(XENFB_SIZE.1)),
                contacts: mn.map_or(contacts, |n| n.min(u32::from(contacts)) as u8),
            };
        }
        let size = display_size(ctx, self.limits.max_space)
            .await
            .unwrap_or(self.limits.fallback_space);
        Offer {
            pointer: size,
            touch: size,
            contacts,
        }
    }
}

#[async_trait::async_trait]
impl DeviceBackend for InputBackend {
    async fn prepare(&mut self, ctx: &DeviceContext) -> Result<(), DeviceError> {
        let offer = self.choose_offer(ctx).await;
        let be = &ctx.backend_path;
        // The toolstack may have disabled the keyboard or pointer (xl's
        // vkb options): that is the administrator's choice, keep it.
        let flag = |v: Option<String>| keys::flag_like_linux(v.as_deref());
        let features = kkeys::BackendFeatures {
            abs_pointer: true,
            // Raw coordinates would only rescale what the session layer
            // already puts in guest pixels.
            raw_pointer: false,
            disable_keyboard: flag(
                read_opt(ctx, &format!("{be}/{}", kkeys::FEATURE_DISABLE_KEYBOARD)).await,
            ),
            disable_pointer: flag(
                read_opt(ctx, &format!("{be}/{}", kkeys::FEATURE_DISABLE_POINTER)).await,
            ),
            size: Some(offer.pointer),
            multi_touch: Some((offer.touch.0, offer.touch.1, u32::from(offer.contacts))),
            unique_id: None,
        };
        // Our values replace any the toolstack wrote: the guest must scale
        // from the space the session layer's positions are in.
        for (key, value) in features.nodes() {
            ctx.platform
                .store
                .write(&format!("{be}/{key}"), &value)
                .await?;
        }
        tracing::debug!(device = %ctx.name(), ?offer, "input features written");
        self.offer = Some(offer);
        Ok(())
    }

    async fn connect(&mut self, ctx: &DeviceContext) -> Result<(), DeviceError> {
        self.release(ctx).await;
        let fe = &ctx.frontend_path;
        let mut snap = BTreeMap::new();
        for key in [
            kkeys::PAGE_GREF,
            kkeys::PAGE_REF,
            kkeys::EVENT_CHANNEL,
            kkeys::REQUEST_ABS_POINTER,
            kkeys::REQUEST_MULTI_TOUCH,
            kkeys::REQUEST_RAW_POINTER,
        ] {
            let path = format!("{fe}/{key}");
            if let Some(v) = ctx.platform.store.read_opt(&path).await? {
                snap.insert(path, v);
            }
        }
        if !snap.contains_key(&format!("{fe}/{}", kkeys::PAGE_GREF))
            && snap.contains_key(&format!("{fe}/{}", kkeys::PAGE_REF))
        {
            // Frontends older than Linux 2.6.36 publish only the frame
            // number; mapping it needs foreign-memory rights a grant-based
            // backend does not have.
            return Err(DeviceError::BadKey {
                key: format!("{fe}/{}", kkeys::PAGE_GREF),
                reason: "missing; only the obsolete page-ref (a frame number) was published".into(),
            });
        }
        let req = kkeys::read_frontend(&snap, fe).map_err(|e| DeviceError::BadKey {
            key: fe.clone(),
            reason: e.to_string(),
        })?;
        let offer = self.offer.unwrap_or(Offer {
            pointer: self.limits.fallback_space,
            touch: self.limits.fallback_space,
            contacts: 0,
        });
        let space = InputSpace {
            pointer: offer.pointer,
            touch: offer.touch,
            // Without request-multi-touch xen-kbdfront has no touch device.
            contacts: if req.multi_touch { offer.contacts } else { 0 },
        };
        let mode = PointerMode {
            absolute: req.abs_pointer,
        };
        let domid = ctx.frontend_id;
        let page = ctx.platform.grants.map(domid, &[req.page_gref], true)?;
        let channel: Arc<dyn pvgate_platform::EventChannel> = Arc::from(
            ctx.platform
                .events
                .bind_interdomain(domid, req.event_channel)
                .await?,
        );
        let fail_ctx = ctx.clone();
        let io = DeviceIo::attach(
            domid,
            ctx.devid,
            ctx.name(),
            page,
            channel.clone(),
            space,
            mode,
            self.limits.clone(),
            Box::new(move |reason| fail_ctx.fail(reason)),
        )
        .map_err(DeviceError::Protocol)?;
        let (stop, mut stop_rx) = watch::channel(false);
        let watched = io.clone();
        let watcher = tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = channel.wait() => {
                        if r.is_err() {
                            return;
                        }
                        watched.check_consumer();
                    }
                    _ = stop_rx.changed() => return,
                }
            }
        });
        self.outputs.insert(InputSink { io: io.clone() });
        tracing::info!(
            device = %ctx.name(),
            pointer = ?space.pointer,
            absolute = mode.absolute,
            contacts = space.contacts,
            "input connected"
        );
        self.live = Some(Live { io, stop, watcher });
        Ok(())
    }

    async fn disconnect(&mut self, ctx: &DeviceContext) {
        self.release(ctx).await;
    }
}

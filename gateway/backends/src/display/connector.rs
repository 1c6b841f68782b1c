//! One connector's transport: its request ring and event page, and the
//! loop that serves the ring.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use pvgate_platform::{DomId, EventChannel, GrantMapper, Mapping, Platform};
use pvgate_protocol::displif::{DisplEvent, DisplEventKind, Slot};
use pvgate_protocol::evtpage::{EventProducer, EventRingError, EventRingLayout, EVENT_SIZE};
use pvgate_protocol::keys::RingPair;
use pvgate_protocol::ring::{BackRing, RingLayout};
use tokio::sync::watch;

use super::flip::{CopyProgress, CopySubmitter, FlipHook, FlipStage};
use super::outputs::ConnectorOutput;
use super::requests::{decode_request, DisplayState, Effect};
use crate::xenbus::{DeviceContext, DeviceError};

/// A connector's mapped rings and bound channels. Dropping it unmaps and
/// unbinds everything.
pub struct ConnectorChannel {
    pub index: usize,
    ring: BackRing<Mapping>,
    ring_port: Box<dyn EventChannel>,
    events: EventProducer<Mapping, EVENT_SIZE>,
    event_port: Box<dyn EventChannel>,
    /// xen-drm-front drops an event whose id is not the next one it
    /// expects, starting at 0 on every connection.
    next_event_id: u16,
    /// EVT_PG_FLIPs dropped since the event page was last found full (the
    /// warning is logged once per episode, not once per flip).
    dropping: u64,
}

impl ConnectorChannel {
    pub async fn open(
        platform: &Platform,
        domid: DomId,
        index: usize,
        pair: &RingPair,
    ) -> Result<ConnectorChannel, DeviceError> {
        let ring_page = platform.grants.map(domid, &[pair.req_ring_ref], true)?;
        let event_page = platform.grants.map(domid, &[pair.evt_ring_ref], true)?;
        let events = EventProducer::init(event_page, EventRingLayout::DISPLIF, 0)
            .map_err(|e| DeviceError::Protocol(format!("connector {index} event page: {e}")))?;
        let ring_port = platform
            .events
            .bind_interdomain(domid, pair.req_event_channel)
            .await?;
        let event_port = platform
            .events
            .bind_interdomain(domid, pair.evt_event_channel)
            .await?;
        Ok(ConnectorChannel {
            index,
            ring: BackRing::attach(ring_page, RingLayout::DISPLIF, 0),
            ring_port,
            events,
            event_port,
            next_event_id: 0,
            dropping: 0,
        })
    }

    fn respond(&mut self, slot: &Slot) -> Result<(), String> {
        self.ring.put_response(slot).map_err(|e| e.to_string())?;
        if self
            .ring
            .push_responses_and_check_notify()
            .map_err(|e| e.to_string())?
        {
            // A frontend that went away is the lifecycle's business.
            let _ = self.ring_port.notify();
        }
        Ok(())
    }

    /// EVT_PG_FLIP. A full page means the guest stopped reading events
    /// (hung, or its interrupt handler is stuck): the event is dropped — not
    /// queued, so a hung guest costs no memory and never delays the flip's
    /// answer or any other guest — and counted. Its id is not used up, so
    /// when the guest reads again the ids it sees still run in sequence;
    /// it times out the frames whose events were dropped, as with a slow
    /// backend.
    fn flip_event(
        &mut self,
        fb_cookie: std::num::NonZeroU64,
        output: &ConnectorOutput,
        ctx: &DeviceContext,
    ) -> Result<(), String> {
        let ev = DisplEvent {
            id: self.next_event_id,
            kind: DisplEventKind::PgFlip { fb_cookie },
        };
        match self.events.push(&ev.encode()) {
            Ok(()) => {
                self.next_event_id = self.next_event_id.wrapping_add(1);
                let _ = self.event_port.notify();
                if self.dropping > 0 {
                    tracing::info!(
                        guest = ctx.frontend_id,
                        device = ctx.devid,
                        connector = self.index,
                        dropped = self.dropping,
                        "the guest reads EVT_PG_FLIP again"
                    );
                    self.dropping = 0;
                }
                Ok(())
            }
            Err(EventRingError::Full { .. }) => {
                if self.dropping == 0 {
                    tracing::warn!(guest = ctx.frontend_id, device = ctx.devid, connector = self.index,
                        "event page full: the guest is not reading EVT_PG_FLIP; dropping events until it does");
                }
                self.dropping += 1;
                output.record_event_dropped();
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// What every connector loop of one device shares.
pub struct DeviceShared {
    pub ctx: DeviceContext,
    pub state: Arc<Mutex<DisplayState>>,
    pub grants: Arc<dyn GrantMapper>,
    /// Copy progress of every connector, by index.
    pub progress: Vec<Arc<CopyProgress>>,
    pub hook: Option<FlipHook>,
}

impl DeviceShared {
    pub fn state(&self) -> MutexGuard<'_, DisplayState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn all_copies_idle(&self) {
        for p in &self.progress {
            p.idle().await;
        }
    }
}

/// Serve one connector's ring until `stop`, the peer going away, or a
/// protocol failure (reported through `ctx.fail`, which closes the device).
pub async fn serve(
    mut ch: ConnectorChannel,
    copies: CopySubmitter,
    output: Arc<ConnectorOutput>,
    shared: Arc<DeviceShared>,
    mut stop: watch::Receiver<bool>,
) {
    let ctx = &shared.ctx;
    let conn = ch.index;
    loop {
        if let Err(reason) = drain(&mut ch, &copies, &output, &shared).await {
            tracing::warn!(guest = ctx.frontend_id, device = ctx.devid, connector = conn, %reason, "closing the display device");
            ctx.fail(format!("connector {conn}: {reason}"));
            return;
        }
        match ch.ring.final_check_for_requests() {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => {
                ctx.fail(format!("connector {conn}: request ring: {e}"));
                return;
            }
        }
        tokio::select! {
            r = ch.ring_port.wait() => {
                if let Err(e) = r {
                    tracing::debug!(guest = ctx.frontend_id, device = ctx.devid, connector = conn, error = %e, "request channel closed");
                    return;
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Take and answer every request on the ring.
async fn drain(
    ch: &mut ConnectorChannel,
    copies: &CopySubmitter,
    output: &ConnectorOutput,
    shared: &DeviceShared,
) -> Result<(), String> {
    let ctx = &shared.ctx;
    let conn = ch.index;
    while let Some(slot) = ch
        .ring
        .next_request()
        .map_err(|e| format!("request ring: {e}"))?
    {
        if !shared.state().admit(Instant::now()) {
            return Err("request flood: more requests than the device's budget allows".into());
        }
        let req = match decode_request(&slot) {
            Ok(r) => r,
            Err(bad) => {
                tracing::warn!(guest = ctx.frontend_id, device = ctx.devid, connector = conn,
                    operation = bad.operation, reason = %bad.error, status = bad.status(), "refused displif request");
                ch.respond(&bad.response())?;
                continue;
            }
        };
        let answer = shared.state().handle(conn, &req, &*shared.grants);
        if let Some(reason) = &answer.refusal {
            tracing::warn!(guest = ctx.frontend_id, device = ctx.devid, connector = conn,
                op = req.op.op().name(), %reason, status = answer.response.status, "refused displif request");
        }
        let rsp = answer.response.encode();
        match answer.effect {
            Effect::Flip(fb) => {
                let seq = copies.next_seq();
                if let Some(h) = &shared.hook {
                    h(output.key, FlipStage::Received { seq });
                }
                // The previous copy on this connector must be finished before
                // the guest may reuse the buffer it read (see flip.rs).
                copies.idle().await;
                let cookie = std::num::NonZeroU64::new(fb.cookie);
                let flipped = Instant::now();
                ch.respond(&rsp)?;
                if let Some(cookie) = cookie {
                    ch.flip_event(cookie, output, ctx)?;
                }
                output.record_flip();
                if let Some(h) = &shared.hook {
                    h(output.key, FlipStage::Answered { seq });
                }
                if copies.submit(fb, flipped).is_none() {
                    return Err("the copy worker is gone".into());
                }
            }
            Effect::AfterCopies => {
                shared.all_copies_idle().await;
                ch.respond(&rsp)?;
            }
            Effect::Configured(shown) => {
                output.set_enabled(shown.is_some());
                match shown {
                    // The first picture of a mode is the configured
                    // framebuffer itself, copied like a flip's.
                    Some(fb) => {
                        copies.idle().await;
                        ch.respond(&rsp)?;
                        if copies.submit(fb, Instant::now()).is_none() {
                            return Err("the copy worker is gone".into());
                        }
                    }
                    None => ch.respond(&rsp)?,
                }
            }
            Effect::None => {
                let is_flip = matches!(
                    req.op,
                    pvgate_protocol::displif::DisplRequestOp::PgFlip { .. }
                );
                ch.respond(&rsp)?;
                if is_flip && answer.response.status == 0 {
                    // A flip while the display is off: still the guest's vsync.
                    if let pvgate_protocol::displif::DisplRequestOp::PgFlip { fb_cookie } = req.op {
                        ch.flip_event(fb_cookie, output, ctx)?;
                        output.record_flip();
                    }
                }
            }
        }
    }
    Ok(())
}

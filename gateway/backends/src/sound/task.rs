//! The task serving one stream: its request ring, its event page, its
//! clock, and the sans-IO [`StreamCore`].

use std::sync::Arc;

use pvgate_platform::{EventChannel, Mapping};
use pvgate_protocol::evtpage::{EventProducer, EventRingError, EVENT_SIZE};
use pvgate_protocol::ring::BackRing;
use pvgate_protocol::sndif::{SndEvent, SndEventKind};
use tokio::sync::{mpsc, watch};

use super::buffer::GrantBufferMapper;
use super::clock::Clock;
use super::requests::{self, Incoming, RequestBudget};
use super::stream::{response, StreamCore};
use crate::xenbus::DeviceContext;

/// Everything one stream's task owns; dropped (unmapped, unbound) when
/// the task ends.
pub struct StreamTask {
    pub ctx: DeviceContext,
    /// `dom5 vsnd/0 stream 1 (0/1)` for log lines.
    pub name: String,
    pub core: StreamCore,
    pub ring: BackRing<Mapping>,
    pub req_channel: Box<dyn EventChannel>,
    pub events: EventProducer<Mapping, EVENT_SIZE>,
    pub evt_channel: Box<dyn EventChannel>,
    pub clock: Arc<dyn Clock>,
    pub budget: RequestBudget,
    pub mapper: GrantBufferMapper,
    pub capture_rx: mpsc::Receiver<Vec<u8>>,
    pub stop: watch::Receiver<bool>,
}

/// Backlog slices encoded per turn of the loop at most (80 ms of audio)
/// before the ring and the clock are looked at again.
const ENCODE_STEPS_PER_TURN: usize = 4;

#[derive(Default)]
struct Warned {
    dropped: bool,
    nonfinite: bool,
}

/// Why the task gave up on the device.
enum Fatal {
    /// Close the device (a broken ring, a flood).
    Device(String),
    /// The frontend's channel is gone: the lifecycle will see it leave.
    Gone,
}

impl StreamTask {
    pub async fn run(mut self) {
        // Per event channel, ids run 0, 1, 2… for the whole connection
        // (snd-xen-front drops an event whose id is not the next one).
        let mut next_event_id: u16 = 0;
        let mut positions = Vec::new();
        let mut warned = Warned::default();
        loop {
            if *self.stop.borrow() {
                break;
            }
            let result = self.serve_requests(&mut positions);
            let result = result.and_then(|()| {
                while let Ok(p) = self.capture_rx.try_recv() {
                    self.core.push_capture(&p);
                }
                self.core.poll(self.clock.now_ns(), &mut positions);
                // Counters first: whoever sees the event sees them too.
                self.core.publish_stats();
                self.send_events(&mut positions, &mut next_event_id)
            });
            // Positions are out; now the encoder. One slice at a time, and
            // only while no deadline is due, so CUR_POS never waits for
            // more than one Opus frame of encoding, however slow the CPU.
            let mut more = result.is_ok() && self.core.encode_backlog_frames() > 0;
            let mut steps = 0;
            while more && steps < ENCODE_STEPS_PER_TURN {
                more = self.core.encode_step();
                steps += 1;
                if self
                    .core
                    .next_deadline()
                    .is_some_and(|d| self.clock.now_ns() >= d)
                {
                    break;
                }
            }
            self.core.publish_stats();
            self.warn_once(&mut warned);
            match result {
                Ok(()) => {}
                Err(Fatal::Device(reason)) => {
                    tracing::warn!(guest = self.ctx.frontend_id, device = self.ctx.devid, stream = %self.name, %reason, "closing the device");
                    self.ctx.fail(format!("{}: {reason}", self.name));
                    break;
                }
                Err(Fatal::Gone) => break,
            }
            // Audio still waiting to be encoded: come straight back.
            let deadline = if more {
                Some(self.clock.now_ns())
            } else {
                self.core.next_deadline()
            };
            let clock = self.clock.clone();
            let sleep = async move {
                match deadline {
                    Some(d) => clock.sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.req_channel.wait() => {
                    if r.is_err() {
                        break;
                    }
                }
                _ = sleep => {}
                Some(p) = self.capture_rx.recv() => self.core.push_capture(&p),
                _ = self.stop.changed() => break,
            }
        }
        self.core.close();
    }

    /// Says once per stream (per OPEN) that audio was dropped or cleaned
    /// before the encoder; the counters carry the totals.
    fn warn_once(&self, warned: &mut Warned) {
        let Some(stats) = self.core.stats() else {
            *warned = Warned::default();
            return;
        };
        if stats.encode_dropped_frames > 0 && !warned.dropped {
            warned.dropped = true;
            tracing::warn!(guest = self.ctx.frontend_id, device = self.ctx.devid, stream = %self.name,
                frames = stats.encode_dropped_frames,
                "the Opus encoder fell behind the stream (a starved CPU?): dropping the oldest audio; the guest's position still follows the clock");
        }
        if stats.nonfinite_samples > 0 && !warned.nonfinite {
            warned.nonfinite = true;
            tracing::warn!(guest = self.ctx.frontend_id, device = self.ctx.devid, stream = %self.name,
                samples = stats.nonfinite_samples,
                "non-finite samples before the Opus encoder were replaced by silence");
        }
    }

    /// Takes every request off the ring, answers each at once.
    fn serve_requests(&mut self, positions: &mut Vec<u64>) -> Result<(), Fatal> {
        loop {
            while let Some(slot) = self
                .ring
                .next_request()
                .map_err(|e| Fatal::Device(format!("request ring: {e}")))?
            {
                let now = self.clock.now_ns();
                if !self.budget.take(now) {
                    return Err(Fatal::Device(
                        "request flood: far more requests than any period size needs".into(),
                    ));
                }
                let answer = match requests::decode(&slot) {
                    Incoming::Request(req) => {
                        let result = self.core.handle(&req, now, &mut self.mapper, positions);
                        if let Err(r) = &result {
                            tracing::warn!(guest = self.ctx.frontend_id, device = self.ctx.devid, stream = %self.name, op = req.op.op().name(), reason = %r, "request refused");
                        }
                        response(&req, &result).encode()
                    }
                    Incoming::Refused {
                        response,
                        operation,
                        refusal,
                    } => {
                        tracing::warn!(guest = self.ctx.frontend_id, device = self.ctx.devid, stream = %self.name, op = %requests::op_name(operation), reason = %refusal, "request refused");
                        response
                    }
                };
                self.ring
                    .put_response(&answer)
                    .map_err(|e| Fatal::Device(format!("request ring: {e}")))?;
            }
            let notify = self
                .ring
                .push_responses_and_check_notify()
                .map_err(|e| Fatal::Device(format!("request ring: {e}")))?;
            if notify && self.req_channel.notify().is_err() {
                return Err(Fatal::Gone);
            }
            if !self
                .ring
                .final_check_for_requests()
                .map_err(|e| Fatal::Device(format!("request ring: {e}")))?
            {
                return Ok(());
            }
        }
    }

    /// Pushes CUR_POS events. A full page (the guest is not consuming) is
    /// not an error: the position is cumulative, so the next event that
    /// fits tells the guest everything; no id is used for an event not
    /// sent, so the sequence stays unbroken.
    fn send_events(&mut self, positions: &mut Vec<u64>, next_id: &mut u16) -> Result<(), Fatal> {
        let mut sent = false;
        for position in positions.drain(..) {
            let ev = SndEvent {
                id: *next_id,
                kind: SndEventKind::CurPos { position },
            }
            .encode();
            match self.events.push(&ev) {
                Ok(()) => {
                    *next_id = next_id.wrapping_add(1);
                    sent = true;
                }
                Err(EventRingError::Full { .. }) => {
                    tracing::debug!(stream = %self.name, position, "event page full; CUR_POS skipped");
                }
                Err(e) => return Err(Fatal::Device(format!("event page: {e}"))),
            }
        }
        if sent && self.evt_channel.notify().is_err() {
            return Err(Fatal::Gone);
        }
        Ok(())
    }
}

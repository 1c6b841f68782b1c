//! The frontend's end of one "event channel pair" as xen-drm-front and
//! snd-xen-front build them (`xen_*_evtchnl.c`): a request ring page and an
//! event page, each granted to the backend with its own unbound event
//! channel.
//!
//! Request channel, as `be_stream_do_io`/`be_stream_wait_io`: one request
//! in flight at a time (the driver's `req_io_lock`), ids from a per-channel
//! counter, a response counts only if its id is the one we wait for, and we
//! wait at most [`REQUEST_TIMEOUT`]. Event page, as `evtchnl_interrupt_evt`:
//! an event counts only if its id is the next expected one (the counter
//! advances either way).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pvgate_platform::{EventChannel, GrantRef, Platform, Port, SharedPages};
use pvgate_protocol::evtpage::{EventConsumer, EventRingLayout, EVENT_SIZE};
use pvgate_protocol::ring::{FrontRing, RingLayout, Slot};
use tokio::sync::{mpsc, Mutex};

use super::shm::Shm;
use crate::DomId;

/// xen-drm-front's `XEN_DRM_FRONT_WAIT_BACK_MS` and snd-xen-front's
/// `VSND_WAIT_BACK_MS`: 3000 ms for every response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(3000);

/// Why a request got no (good) answer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The channel was torn down (the drivers answer -EIO).
    #[error("channel disconnected")]
    Disconnected,
    /// No response within the timeout (-ETIMEDOUT).
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The backend broke the ring (indices, memory).
    #[error("ring error: {0}")]
    Ring(String),
    /// Event channel failure.
    #[error("event channel: {0}")]
    EventChannel(String),
}

/// One page granted to the backend, with its event channel: what the
/// drivers publish as `*ring-ref` and `*event-channel`.
pub struct GrantedPage {
    pub shm: Shm,
    pub gref: GrantRef,
    pub evtchn: Arc<dyn EventChannel>,
    // Keeps the grant alive (revoked when dropped, as xenbus_teardown_ring).
    _refs: Vec<GrantRef>,
}

impl GrantedPage {
    /// `xenbus_setup_ring` + `xenbus_alloc_evtchn`.
    pub async fn allocate(platform: &Platform, backend: DomId) -> Result<GrantedPage, String> {
        let SharedPages { mapping, refs } = platform
            .grants
            .share(backend, 1, true)
            .map_err(|e| format!("cannot grant a ring page to domain {backend}: {e}"))?;
        let gref = *refs.first().ok_or("share returned no grant reference")?;
        let evtchn: Arc<dyn EventChannel> =
            Arc::from(platform.events.alloc_unbound(backend).await.map_err(|e| {
                format!("cannot allocate an event channel for domain {backend}: {e}")
            })?);
        Ok(GrantedPage {
            shm: Shm::new(mapping),
            gref,
            evtchn,
            _refs: refs,
        })
    }

    pub fn port(&self) -> Port {
        self.evtchn.local_port()
    }
}

struct RequestState {
    ring: FrontRing<Shm>,
    next_id: u16,
}

/// The request ring of one channel pair.
pub struct RequestChannel {
    page: GrantedPage,
    state: Mutex<RequestState>,
    connected: AtomicBool,
    timeout: Duration,
}

impl RequestChannel {
    /// `XEN_FRONT_RING_INIT` on a fresh granted page.
    pub fn new(page: GrantedPage, layout: RingLayout) -> Result<RequestChannel, String> {
        let ring = FrontRing::init(page.shm.clone(), layout, 0)
            .map_err(|e| format!("cannot initialise ring: {e}"))?;
        Ok(RequestChannel {
            page,
            state: Mutex::new(RequestState { ring, next_id: 0 }),
            connected: AtomicBool::new(false),
            timeout: REQUEST_TIMEOUT,
        })
    }

    pub fn gref(&self) -> GrantRef {
        self.page.gref
    }

    pub fn port(&self) -> Port {
        self.page.port()
    }

    /// The ring page itself (for misbehaviour: scribbling on indices).
    pub fn shm(&self) -> &Shm {
        &self.page.shm
    }

    /// `EVTCHNL_STATE_CONNECTED` / `_DISCONNECTED`.
    pub fn set_connected(&self, on: bool) {
        self.connected.store(on, Ordering::SeqCst);
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Send one request built by `build(id)` and wait for the response with
    /// that id.
    pub async fn call(&self, build: impl FnOnce(u16) -> Slot) -> Result<Slot, CallError> {
        let mut st = self.state.lock().await;
        if !self.is_connected() {
            return Err(CallError::Disconnected);
        }
        let id = st.next_id;
        st.next_id = st.next_id.wrapping_add(1);
        let req = build(id);
        st.ring
            .put_request(&req)
            .map_err(|e| CallError::Ring(e.to_string()))?;
        let notify = st
            .ring
            .push_requests_and_check_notify()
            .map_err(|e| CallError::Ring(e.to_string()))?;
        if notify {
            self.notify();
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            while let Some(rsp) = st
                .ring
                .next_response()
                .map_err(|e| CallError::Ring(e.to_string()))?
            {
                // Both drivers skip responses whose id is not the awaited one.
                if u16::from_le_bytes([rsp[0], rsp[1]]) == id {
                    return Ok(rsp);
                }
            }
            if st
                .ring
                .final_check_for_responses()
                .map_err(|e| CallError::Ring(e.to_string()))?
            {
                continue;
            }
            if !self.is_connected() {
                return Err(CallError::Disconnected);
            }
            match tokio::time::timeout_at(deadline, self.page.evtchn.wait()).await {
                Err(_) => return Err(CallError::Timeout(self.timeout)),
                Ok(Err(e)) => return Err(CallError::EventChannel(e.to_string())),
                Ok(Ok(())) => {}
            }
        }
    }

    /// Put raw slots on the ring without waiting for answers (for floods and
    /// garbage). Returns how many fitted.
    pub async fn send_raw(&self, slots: &[Slot]) -> Result<usize, CallError> {
        let mut st = self.state.lock().await;
        let mut sent = 0;
        for s in slots {
            if st.ring.is_full() {
                break;
            }
            st.ring
                .put_request(s)
                .map_err(|e| CallError::Ring(e.to_string()))?;
            sent += 1;
        }
        if st
            .ring
            .push_requests_and_check_notify()
            .map_err(|e| CallError::Ring(e.to_string()))?
        {
            self.notify();
        }
        Ok(sent)
    }

    /// Take whatever responses are there now (after `send_raw`), waiting up
    /// to `wait` for the first.
    pub async fn drain_responses(&self, wait: Duration) -> Result<Vec<Slot>, CallError> {
        let mut st = self.state.lock().await;
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(rsp) = st
                .ring
                .next_response()
                .map_err(|e| CallError::Ring(e.to_string()))?
            {
                out.push(rsp);
            }
            if !out.is_empty() {
                return Ok(out);
            }
            if st
                .ring
                .final_check_for_responses()
                .map_err(|e| CallError::Ring(e.to_string()))?
            {
                continue;
            }
            match tokio::time::timeout_at(deadline, self.page.evtchn.wait()).await {
                Err(_) => return Ok(out),
                Ok(Err(e)) => return Err(CallError::EventChannel(e.to_string())),
                Ok(Ok(())) => {}
            }
        }
    }

    /// Requests we put that got no response yet.
    pub async fn outstanding(&self) -> u32 {
        let st = self.state.lock().await;
        st.ring.req_prod_pvt().wrapping_sub(st.ring.rsp_cons())
    }

    pub fn notify(&self) {
        // A backend that went away makes this fail; the caller's wait times
        // out as the Linux driver's would.
        let _ = self.page.evtchn.notify();
    }
}

/// The event page of one channel pair: a task consumes events as the
/// driver's interrupt handler does and hands the good ones on.
pub struct EventPage {
    page: GrantedPage,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Set by [`Self::stop`]; the consumer takes it around every event, so
    /// once `stop` returns not one more event is consumed (aborting the task
    /// alone takes effect only at its next await, and a busy consumer could
    /// take several more events first).
    stopped: Arc<std::sync::Mutex<bool>>,
}

impl EventPage {
    pub fn new(page: GrantedPage) -> EventPage {
        EventPage {
            page,
            task: None,
            stopped: Arc::default(),
        }
    }

    pub fn gref(&self) -> GrantRef {
        self.page.gref
    }

    pub fn port(&self) -> Port {
        self.page.port()
    }

    /// Start consuming: every event whose id is the next expected one is
    /// sent to `out` (raw 64 bytes; the device decodes). Ids that do not
    /// match are dropped but still advance the counter, as in Linux.
    pub fn start(
        &mut self,
        out: mpsc::UnboundedSender<[u8; EVENT_SIZE]>,
        layout: EventRingLayout<EVENT_SIZE>,
        label: String,
    ) {
        let shm = self.page.shm.clone();
        let evtchn = self.page.evtchn.clone();
        let stopped = self.stopped.clone();
        self.task = Some(tokio::spawn(async move {
            let mut consumer = match EventConsumer::attach(shm, layout) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(%label, "cannot attach to event page: {e}");
                    return;
                }
            };
            let mut expected: u16 = 0;
            loop {
                loop {
                    let stop = stopped.lock().unwrap_or_else(|p| p.into_inner());
                    if *stop {
                        return;
                    }
                    match consumer.next_event() {
                        Ok(Some(ev)) => {
                            let id = u16::from_le_bytes([ev[0], ev[1]]);
                            let want = expected;
                            expected = expected.wrapping_add(1);
                            if id != want {
                                tracing::warn!(%label, id, want, "event with unexpected id dropped");
                                continue;
                            }
                            if out.send(ev).is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::error!(%label, "backend broke the event page: {e}");
                            return;
                        }
                    }
                }
                if evtchn.wait().await.is_err() {
                    return;
                }
            }
        }));
    }
}

impl EventPage {
    /// Stop consuming (a hung guest), keeping the page and channel.
    pub fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl Drop for EventPage {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A request channel and an event page: one per displif connector, one per
/// sndif stream.
pub struct ChannelPair {
    pub req: Arc<RequestChannel>,
    pub evt: EventPage,
}

impl ChannelPair {
    pub async fn allocate(
        platform: &Platform,
        backend: DomId,
        layout: RingLayout,
    ) -> Result<ChannelPair, String> {
        let req_page = GrantedPage::allocate(platform, backend).await?;
        let evt_page = GrantedPage::allocate(platform, backend).await?;
        Ok(ChannelPair {
            req: Arc::new(RequestChannel::new(req_page, layout)?),
            evt: EventPage::new(evt_page),
        })
    }
}

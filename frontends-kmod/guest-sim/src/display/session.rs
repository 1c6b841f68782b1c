//! One connection of the displif frontend to its backend: the requests
//! xen-drm-front sends, one call each, and the EVT_PG_FLIP wait.

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pvgate_platform::Platform;
use pvgate_protocol::displif::{
    DbufCreate, DisplEvent, DisplEventKind, DisplRequest, DisplRequestOp, DisplResponse,
    DisplResponseBody, FbAttach, GetEdid, PixelFormat, SetConfig,
};
use pvgate_protocol::evtpage::{EventRingLayout, EVENT_SIZE};
use tokio::sync::{mpsc, Mutex};

use super::buffer::{BufferError, Dbuf};
use super::CardConfig;
use crate::io::channel::{CallError, ChannelPair, EventPage, RequestChannel, REQUEST_TIMEOUT};
use crate::DomId;

/// displif.h's `XENDISPL_EDID_MAX_SIZE`: the smallest GET_EDID buffer.
pub const EDID_MAX_SIZE: u32 = 128 * 256;

/// xen-drm-front's `FRAME_DONE_TO_MS`: a bit more than the I/O timeout.
pub const FRAME_DONE_TIMEOUT: Duration = Duration::from_millis(3100);

/// Why a display request failed.
#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    #[error("{op}: {source}")]
    Call {
        op: &'static str,
        #[source]
        source: CallError,
    },
    #[error("{op}: backend answered status {status}")]
    Status { op: &'static str, status: i32 },
    #[error("{op}: bad response: {reason}")]
    BadResponse { op: &'static str, reason: String },
    #[error("connector {0} does not exist")]
    NoConnector(usize),
    #[error(transparent)]
    Buffer(#[from] BufferError),
}

/// How a page flip ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlipOutcome {
    /// The response came and then EVT_PG_FLIP for our framebuffer.
    Done,
    /// The response came but no EVT_PG_FLIP within [`FRAME_DONE_TIMEOUT`]
    /// (the driver logs "Frame done timed-out, releasing" and goes on).
    FrameDoneTimedOut,
}

/// What a connector is, for callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectorInfo {
    pub index: usize,
    pub width: u32,
    pub height: u32,
}

struct Connector {
    info: ConnectorInfo,
    req: Arc<RequestChannel>,
    _evt: EventPage,
    events: Mutex<mpsc::UnboundedReceiver<[u8; EVENT_SIZE]>>,
}

/// A connected displif device.
pub struct DisplaySession {
    platform: Platform,
    backend: DomId,
    pub be_alloc: bool,
    pub nodename: String,
    connectors: Vec<Connector>,
    next_cookie: AtomicU64,
}

fn call_err(op: &'static str) -> impl Fn(CallError) -> DisplayError {
    move |source| DisplayError::Call { op, source }
}

impl DisplaySession {
    pub(crate) fn start(
        platform: Platform,
        backend: DomId,
        cfg: CardConfig,
        pairs: Vec<ChannelPair>,
        nodename: String,
    ) -> DisplaySession {
        let connectors = cfg
            .connectors
            .iter()
            .zip(pairs)
            .enumerate()
            .map(|(index, (&(width, height), mut pair))| {
                let (tx, rx) = mpsc::unbounded_channel();
                pair.evt
                    .start(tx, EventRingLayout::DISPLIF, format!("{nodename}/{index}"));
                pair.req.set_connected(true);
                Connector {
                    info: ConnectorInfo {
                        index,
                        width,
                        height,
                    },
                    req: pair.req,
                    _evt: pair.evt,
                    events: Mutex::new(rx),
                }
            })
            .collect();
        DisplaySession {
            platform,
            backend,
            be_alloc: cfg.be_alloc,
            nodename,
            connectors,
            // Linux uses kernel pointers as cookies; any unique non-zero value
            // does. Start high so that they do not look like small ids.
            next_cookie: AtomicU64::new(0xffff_8880_0000_1000),
        }
    }

    /// Requests fail with "disconnected" from now on (`evtchnl_free`).
    pub(crate) fn disconnect(&self) {
        for c in &self.connectors {
            c.req.set_connected(false);
        }
    }

    /// Stop consuming events (a hung guest): rings and grants stay.
    pub fn freeze(&self) {
        for c in &self.connectors {
            c._evt.stop();
        }
    }

    pub fn connectors(&self) -> Vec<ConnectorInfo> {
        self.connectors.iter().map(|c| c.info).collect()
    }

    pub fn backend(&self) -> DomId {
        self.backend
    }

    /// The guest platform this session allocates from.
    pub fn platform(&self) -> Platform {
        self.platform.clone()
    }

    /// A fresh cookie (for dbufs and framebuffers).
    pub fn new_cookie(&self) -> u64 {
        self.next_cookie.fetch_add(0x40, Ordering::Relaxed)
    }

    fn connector(&self, index: usize) -> Result<&Connector, DisplayError> {
        self.connectors
            .get(index)
            .ok_or(DisplayError::NoConnector(index))
    }

    /// The request channel of a connector (for misbehaviour and raw tests).
    pub fn request_channel(&self, index: usize) -> Result<Arc<RequestChannel>, DisplayError> {
        Ok(self.connector(index)?.req.clone())
    }

    /// Send a typed request on a connector's ring and check the answer.
    async fn request(
        &self,
        conn: usize,
        op: &'static str,
        body: DisplRequestOp,
    ) -> Result<DisplResponse, DisplayError> {
        let c = self.connector(conn)?;
        let slot = c
            .req
            .call(|id| DisplRequest { id, op: body }.encode())
            .await
            .map_err(call_err(op))?;
        let rsp = DisplResponse::decode(&slot).map_err(|e| DisplayError::BadResponse {
            op,
            reason: e.to_string(),
        })?;
        if rsp.op() != body.op() {
            return Err(DisplayError::BadResponse {
                op,
                reason: format!("answer is for {:?}", rsp.op()),
            });
        }
        if rsp.status != 0 {
            return Err(DisplayError::Status {
                op,
                status: rsp.status,
            });
        }
        Ok(rsp)
    }

    /// DBUF_CREATE (on connector 0's ring) for a `width × height` buffer at
    /// `bpp`, sized as a dumb buffer (`pitch × height`).
    pub async fn create_dbuf(
        &self,
        width: u32,
        height: u32,
        bpp: u32,
    ) -> Result<Dbuf, DisplayError> {
        let size = pvgate_protocol::displif::dumb_size(width, height, bpp)
            .and_then(|s| u32::try_from(s).ok())
            .ok_or_else(|| DisplayError::BadResponse {
                op: "DBUF_CREATE",
                reason: format!("{width}x{height}x{bpp} is too large"),
            })?;
        self.create_dbuf_sized(width, height, bpp, size).await
    }

    /// DBUF_CREATE with an explicit buffer size.
    pub async fn create_dbuf_sized(
        &self,
        width: u32,
        height: u32,
        bpp: u32,
        size: u32,
    ) -> Result<Dbuf, DisplayError> {
        let cookie = self.new_cookie();
        let mut dbuf = Dbuf::allocate(
            &self.platform,
            self.backend,
            cookie,
            (width, height, bpp),
            size,
            self.be_alloc,
        )?;
        self.send_dbuf_create(&dbuf, 0).await?;
        if self.be_alloc {
            dbuf.map_backend_pages(&self.platform, self.backend)?;
        }
        Ok(dbuf)
    }

    /// Just the DBUF_CREATE request for an allocated buffer.
    pub async fn send_dbuf_create(&self, dbuf: &Dbuf, data_ofs: u32) -> Result<(), DisplayError> {
        let cookie = NonZeroU64::new(dbuf.cookie).ok_or(DisplayError::BadResponse {
            op: "DBUF_CREATE",
            reason: "cookie 0".into(),
        })?;
        self.request(
            0,
            "DBUF_CREATE",
            DisplRequestOp::DbufCreate(DbufCreate {
                dbuf_cookie: cookie,
                width: dbuf.width,
                height: dbuf.height,
                bpp: dbuf.bpp,
                buffer_sz: dbuf.size,
                be_alloc: self.be_alloc,
                gref_directory: dbuf.gref_directory,
                data_ofs,
            }),
        )
        .await
        .map(drop)
    }

    /// DBUF_DESTROY. For be-alloc the driver drops its mapping first so the
    /// backend can free the pages; otherwise after the answer.
    pub async fn destroy_dbuf(&self, dbuf: Dbuf) -> Result<(), DisplayError> {
        let cookie = nz(dbuf.cookie, "DBUF_DESTROY")?;
        let keep = if self.be_alloc {
            drop(dbuf);
            None
        } else {
            Some(dbuf)
        };
        let r = self
            .request(
                0,
                "DBUF_DESTROY",
                DisplRequestOp::DbufDestroy {
                    dbuf_cookie: cookie,
                },
            )
            .await;
        drop(keep);
        r.map(drop)
    }

    /// FB_ATTACH (connector 0's ring); returns the new framebuffer cookie.
    pub async fn fb_attach(&self, dbuf: &Dbuf, format: PixelFormat) -> Result<u64, DisplayError> {
        let fb_cookie = self.new_cookie();
        self.request(
            0,
            "FB_ATTACH",
            DisplRequestOp::FbAttach(FbAttach {
                dbuf_cookie: nz(dbuf.cookie, "FB_ATTACH")?,
                fb_cookie: nz(fb_cookie, "FB_ATTACH")?,
                width: dbuf.width,
                height: dbuf.height,
                pixel_format: format,
            }),
        )
        .await?;
        Ok(fb_cookie)
    }

    pub async fn fb_detach(&self, fb_cookie: u64) -> Result<(), DisplayError> {
        self.request(
            0,
            "FB_DETACH",
            DisplRequestOp::FbDetach {
                fb_cookie: nz(fb_cookie, "FB_DETACH")?,
            },
        )
        .await
        .map(drop)
    }

    /// SET_CONFIG on connector `conn`: `Some((fb, width, height, bpp))` at
    /// 0,0 enables it (display_enable), `None` disables it (all zeros).
    pub async fn set_config(
        &self,
        conn: usize,
        mode: Option<(u64, u32, u32, u32)>,
    ) -> Result<(), DisplayError> {
        let cfg = match mode {
            None => SetConfig::Reset,
            Some((fb, width, height, bpp)) => SetConfig::Set {
                fb_cookie: nz(fb, "SET_CONFIG")?,
                x: 0,
                y: 0,
                width,
                height,
                bpp,
            },
        };
        self.request(conn, "SET_CONFIG", DisplRequestOp::SetConfig(cfg))
            .await
            .map(drop)
    }

    /// PG_FLIP on connector `conn`, then wait for its EVT_PG_FLIP (the
    /// guest's vsync).
    pub async fn page_flip(
        &self,
        conn: usize,
        fb_cookie: u64,
    ) -> Result<FlipOutcome, DisplayError> {
        let c = self.connector(conn)?;
        self.request(
            conn,
            "PG_FLIP",
            DisplRequestOp::PgFlip {
                fb_cookie: nz(fb_cookie, "PG_FLIP")?,
            },
        )
        .await?;
        let mut events = c.events.lock().await;
        let deadline = tokio::time::Instant::now() + FRAME_DONE_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => return Ok(FlipOutcome::FrameDoneTimedOut),
                Ok(None) => {
                    return Err(DisplayError::Call {
                        op: "EVT_PG_FLIP",
                        source: CallError::Disconnected,
                    })
                }
                Ok(Some(raw)) => match DisplEvent::decode(&raw) {
                    Ok(DisplEvent {
                        kind: DisplEventKind::PgFlip { fb_cookie: done },
                        ..
                    }) if done.get() == fb_cookie => return Ok(FlipOutcome::Done),
                    Ok(other) => tracing::debug!(?other, "event for another framebuffer"),
                    Err(e) => tracing::warn!("undecodable event: {e}"),
                },
            }
        }
    }

    /// The next event on connector `conn`'s page, raw (for tests).
    pub async fn next_event(&self, conn: usize, wait: Duration) -> Option<DisplEvent> {
        let c = self.connector(conn).ok()?;
        let mut events = c.events.lock().await;
        let raw = tokio::time::timeout(wait, events.recv()).await.ok()??;
        DisplEvent::decode(&raw).ok()
    }

    /// GET_EDID on connector `conn` into a frontend-allocated buffer of
    /// `buffer_sz` bytes (displif.h: at least [`EDID_MAX_SIZE`]); returns
    /// the EDID bytes the backend wrote.
    pub async fn get_edid(&self, conn: usize, buffer_sz: u32) -> Result<Vec<u8>, DisplayError> {
        let buf = Dbuf::allocate(&self.platform, self.backend, 0, (0, 0, 0), buffer_sz, false)?;
        let rsp = self
            .request(
                conn,
                "GET_EDID",
                DisplRequestOp::GetEdid(GetEdid {
                    buffer_sz,
                    gref_directory: buf.gref_directory,
                }),
            )
            .await?;
        let DisplResponseBody::GetEdid { edid_sz } = rsp.body else {
            return Err(DisplayError::BadResponse {
                op: "GET_EDID",
                reason: "no edid_sz".into(),
            });
        };
        if edid_sz > buffer_sz {
            return Err(DisplayError::BadResponse {
                op: "GET_EDID",
                reason: format!("edid_sz {edid_sz} exceeds our buffer of {buffer_sz}"),
            });
        }
        let mut out = vec![0u8; edid_sz as usize];
        buf.read(0, &mut out)?;
        Ok(out)
    }

    /// How long one request may take.
    pub fn request_timeout(&self) -> Duration {
        REQUEST_TIMEOUT
    }
}

fn nz(v: u64, op: &'static str) -> Result<NonZeroU64, DisplayError> {
    NonZeroU64::new(v).ok_or(DisplayError::BadResponse {
        op,
        reason: "cookie 0".into(),
    })
}

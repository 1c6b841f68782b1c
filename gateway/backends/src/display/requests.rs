//! The displif request logic of one device, sans-IO apart from the grant
//! mapper it is handed: a decoded request in, a status and an effect out.
//!
//! Buffer requests (DBUF_*, FB_*) arrive on connector 0's ring and are
//! device-wide; SET_CONFIG, PG_FLIP and GET_EDID name the connector whose
//! ring carried them. Every refusal says why, for the log line.

use std::collections::HashMap;
use std::mem::offset_of;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Instant;

use pvgate_platform::{DomId, GrantMapper};
use pvgate_protocol::abi::displif::{
    xendispl_dbuf_create_req, xendispl_req, xendispl_resp, XENDISPL_DBUF_FLG_REQ_ALLOC,
    XENDISPL_OP_DBUF_CREATE,
};
use pvgate_protocol::displif::{
    dumb_size, DbufCreate, DisplDecodeError, DisplRequest, DisplRequestOp, DisplResponse,
    DisplResponseBody, FbAttach, GetEdid, PixelFormat, SetConfig, Slot,
};
use pvgate_protocol::keys::Resolution;
use pvgate_protocol::pagedir;

use super::buffers::{self, DbufGeometry, DisplayBuffer, Framebuffer};
use super::edid;
use super::limits::{DisplayLimits, RequestBudget};
use super::status;

/// A request slot that could not be decoded, answered with a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    pub id: u16,
    pub operation: u8,
    pub error: DisplDecodeError,
}

impl Undecodable {
    pub fn status(&self) -> i32 {
        match self.error {
            DisplDecodeError::UnknownOperation(_) => status::ENOSYS,
            _ => status::EINVAL,
        }
    }

    /// The answer, echoing the guest's id and operation byte.
    pub fn response(&self) -> Slot {
        let mut s = [0u8; 64];
        s[offset_of!(xendispl_resp, id)..][..2].copy_from_slice(&self.id.to_le_bytes());
        s[offset_of!(xendispl_resp, operation)] = self.operation;
        s[offset_of!(xendispl_resp, status)..][..4].copy_from_slice(&self.status().to_le_bytes());
        s
    }
}

fn u32_at(s: &Slot, at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(src) = s.get(at..at + 4) {
        b.copy_from_slice(src);
    }
    u32::from_le_bytes(b)
}

fn u64_at(s: &Slot, at: usize) -> u64 {
    u64::from(u32_at(s, at)) | (u64::from(u32_at(s, at + 4)) << 32)
}

/// Decode a slot copied off the ring. xen-drm-front imports PRIME buffers
/// with DBUF_CREATE width = height = bpp = 0 (the geometry comes with
/// FB_ATTACH); the protocol decoder refuses zero sizes, so that one shape
/// is read here and becomes a `DbufCreate` with zero geometry.
pub fn decode_request(slot: &Slot) -> Result<DisplRequest, Undecodable> {
    let id = u16::from_le_bytes([slot[0], slot[1]]);
    let operation = slot[offset_of!(xendispl_req, operation)];
    match DisplRequest::decode(slot) {
        Ok(r) => Ok(r),
        Err(error) => {
            if let DisplDecodeError::ZeroSize { field, .. } = &error {
                if operation == XENDISPL_OP_DBUF_CREATE
                    && matches!(*field, "width" | "height" | "bpp")
                {
                    if let Some(req) = decode_prime_create(slot, id) {
                        return Ok(req);
                    }
                }
            }
            Err(Undecodable {
                id,
                operation,
                error,
            })
        }
    }
}

fn decode_prime_create(slot: &Slot, id: u16) -> Option<DisplRequest> {
    let f = offset_of!(xendispl_req, op);
    let field = |o: usize| u32_at(slot, f + o);
    let (w, h, bpp) = (
        field(offset_of!(xendispl_dbuf_create_req, width)),
        field(offset_of!(xendispl_dbuf_create_req, height)),
        field(offset_of!(xendispl_dbuf_create_req, bpp)),
    );
    if (w, h, bpp) != (0, 0, 0) {
        return None;
    }
    let buffer_sz = field(offset_of!(xendispl_dbuf_create_req, buffer_sz));
    let gref_directory = field(offset_of!(xendispl_dbuf_create_req, gref_directory));
    let cookie = NonZeroU64::new(u64_at(
        slot,
        f + offset_of!(xendispl_dbuf_create_req, dbuf_cookie),
    ))?;
    if buffer_sz == 0 || gref_directory == 0 {
        return None;
    }
    Some(DisplRequest {
        id,
        op: DisplRequestOp::DbufCreate(DbufCreate {
            dbuf_cookie: cookie,
            width: 0,
            height: 0,
            bpp: 0,
            buffer_sz,
            be_alloc: field(offset_of!(xendispl_dbuf_create_req, flags))
                & XENDISPL_DBUF_FLG_REQ_ALLOC
                != 0,
            gref_directory,
            data_ofs: field(offset_of!(xendispl_dbuf_create_req, data_ofs)),
        }),
    })
}

/// What SET_CONFIG enabled on a connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    pub fb_cookie: u64,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub bpp: u32,
}

/// One connector as the request logic sees it.
#[derive(Debug, Clone)]
pub struct ConnectorState {
    pub resolution: Resolution,
    pub mode: Option<Mode>,
}

/// What the I/O around the request must do besides answering.
pub enum Effect {
    None,
    /// Answer, send EVT_PG_FLIP, then copy this framebuffer (PG_FLIP).
    Flip(Framebuffer),
    /// Answer only once no copy reads a buffer any more (DBUF_DESTROY: the
    /// guest frees the pages as soon as it has the answer).
    AfterCopies,
    /// SET_CONFIG: the connector shows this framebuffer from now on (copy
    /// it, like a flip, once answered), or nothing (`None`).
    Configured(Option<Framebuffer>),
}

/// The outcome of one request.
pub struct Answer {
    pub response: DisplResponse,
    pub effect: Effect,
    /// Why the request was refused (for the log line), if it was.
    pub refusal: Option<String>,
}

/// The device-wide displif state.
pub struct DisplayState {
    domid: DomId,
    devid: u32,
    limits: DisplayLimits,
    connectors: Vec<ConnectorState>,
    buffers: HashMap<u64, Arc<DisplayBuffer>>,
    framebuffers: HashMap<u64, Framebuffer>,
    mapped_pages: usize,
    budget: RequestBudget,
}

type Refused = (i32, String);

fn refuse<T>(status: i32, why: impl Into<String>) -> Result<T, Refused> {
    Err((status, why.into()))
}

impl DisplayState {
    pub fn new(
        domid: DomId,
        devid: u32,
        resolutions: &[Resolution],
        limits: DisplayLimits,
    ) -> DisplayState {
        let budget = RequestBudget::new(limits.requests_per_second, limits.request_burst);
        DisplayState {
            domid,
            devid,
            connectors: resolutions
                .iter()
                .take(limits.max_connectors)
                .map(|r| ConnectorState {
                    resolution: *r,
                    mode: None,
                })
                .collect(),
            limits,
            buffers: HashMap::new(),
            framebuffers: HashMap::new(),
            mapped_pages: 0,
            budget,
        }
    }

    pub fn connectors(&self) -> &[ConnectorState] {
        &self.connectors
    }

    pub fn buffer_count(&self) -> usize {
        self.buffers.len()
    }

    pub fn framebuffer_count(&self) -> usize {
        self.framebuffers.len()
    }

    /// Pages mapped from or shared to the guest for buffers.
    pub fn mapped_pages(&self) -> usize {
        self.mapped_pages
    }

    /// The flood guard: false if the device exceeded its request budget.
    pub fn admit(&mut self, now: Instant) -> bool {
        self.budget.admit(now)
    }

    /// Handle one request that arrived on connector `conn`'s ring.
    pub fn handle(&mut self, conn: usize, req: &DisplRequest, grants: &dyn GrantMapper) -> Answer {
        let mut edid_sz = None;
        let result = match req.op {
            DisplRequestOp::DbufCreate(c) => self.dbuf_create(&c, grants).map(|_| Effect::None),
            DisplRequestOp::DbufDestroy { dbuf_cookie } => self.dbuf_destroy(dbuf_cookie.get()),
            DisplRequestOp::FbAttach(a) => self.fb_attach(&a).map(|_| Effect::None),
            DisplRequestOp::FbDetach { fb_cookie } => self.fb_detach(fb_cookie.get()),
            DisplRequestOp::SetConfig(c) => self.set_config(conn, &c),
            DisplRequestOp::PgFlip { fb_cookie } => self.page_flip(conn, fb_cookie.get()),
            DisplRequestOp::GetEdid(g) => self.get_edid(conn, &g, grants).map(|n| {
                edid_sz = Some(n);
                Effect::None
            }),
        };
        let (status, effect, refusal) = match result {
            Ok(effect) => (0, effect, None),
            Err((status, why)) => (status, Effect::None, Some(why)),
        };
        let body = match req.op {
            DisplRequestOp::GetEdid(_) => DisplResponseBody::GetEdid {
                edid_sz: edid_sz.unwrap_or(0),
            },
            _ => DisplResponseBody::Status(req.op.op()),
        };
        Answer {
            response: DisplResponse {
                id: req.id,
                status,
                body,
            },
            effect,
            refusal,
        }
    }

    fn connector(&self, conn: usize) -> Result<&ConnectorState, Refused> {
        match self.connectors.get(conn) {
            Some(c) => Ok(c),
            None => refuse(
                status::EINVAL,
                format!(
                    "connector {conn} out of range (the device has {})",
                    self.connectors.len()
                ),
            ),
        }
    }

    fn dbuf_create(&mut self, c: &DbufCreate, grants: &dyn GrantMapper) -> Result<(), Refused> {
        let cookie = c.dbuf_cookie.get();
        if self.buffers.contains_key(&cookie) {
            return refuse(
                status::EEXIST,
                format!("DBUF_CREATE: dbuf_cookie {cookie:#x} is already in use"),
            );
        }
        let geometry = DbufGeometry {
            width: c.width,
            height: c.height,
            bpp: c.bpp,
        };
        if geometry.is_prime() {
            if c.data_ofs >= c.buffer_sz {
                return refuse(
                    status::EINVAL,
                    format!(
                        "DBUF_CREATE: data_ofs {} is beyond buffer_sz {}",
                        c.data_ofs, c.buffer_sz
                    ),
                );
            }
            if c.be_alloc {
                return refuse(
                    status::EINVAL,
                    "DBUF_CREATE: an imported (PRIME) buffer cannot be backend-allocated",
                );
            }
        } else if c.width > self.limits.max_edge || c.height > self.limits.max_edge {
            return refuse(
                status::EINVAL,
                format!(
                    "DBUF_CREATE: {}x{} exceeds the largest edge {}",
                    c.width, c.height, self.limits.max_edge
                ),
            );
        }
        let pages = pagedir::grant_count(c.buffer_sz) as usize;
        if self.buffers.len() >= self.limits.max_buffers {
            return refuse(
                status::ENOMEM,
                format!(
                    "DBUF_CREATE: the guest already has {} buffers (limit {})",
                    self.buffers.len(),
                    self.limits.max_buffers
                ),
            );
        }
        if pages > self.limits.max_buffer_pages {
            return refuse(
                status::ENOMEM,
                format!(
                    "DBUF_CREATE: {pages} pages in one buffer (limit {})",
                    self.limits.max_buffer_pages
                ),
            );
        }
        let total = self.mapped_pages.saturating_add(pages);
        if total > self.limits.max_mapped_pages {
            return refuse(
                status::ENOMEM,
                format!(
                    "DBUF_CREATE: {pages} more pages would make {total} (limit {})",
                    self.limits.max_mapped_pages
                ),
            );
        }
        let memory = if c.be_alloc {
            buffers::share_buffer(grants, self.domid, c.gref_directory, c.buffer_sz)
        } else {
            buffers::map_guest_buffer(grants, self.domid, c.gref_directory, c.buffer_sz)
        }
        .map_err(|e| (e.status(), format!("DBUF_CREATE {cookie:#x}: {e}")))?;
        let buffer = DisplayBuffer::new(cookie, geometry, c.buffer_sz, c.data_ofs, memory);
        self.mapped_pages = self.mapped_pages.saturating_add(buffer.pages);
        self.buffers.insert(cookie, Arc::new(buffer));
        Ok(())
    }

    fn dbuf_destroy(&mut self, cookie: u64) -> Result<Effect, Refused> {
        let Some(buffer) = self.buffers.remove(&cookie) else {
            return refuse(
                status::ENOENT,
                format!("DBUF_DESTROY: no buffer with cookie {cookie:#x}"),
            );
        };
        self.mapped_pages = self.mapped_pages.saturating_sub(buffer.pages);
        // Framebuffers on a destroyed buffer are gone with it; a later flip
        // of one is refused.
        self.framebuffers.retain(|_, fb| fb.buffer.cookie != cookie);
        Ok(Effect::AfterCopies)
    }

    fn fb_attach(&mut self, a: &FbAttach) -> Result<(), Refused> {
        let fb_cookie = a.fb_cookie.get();
        let dbuf_cookie = a.dbuf_cookie.get();
        let Some(buffer) = self.buffers.get(&dbuf_cookie).cloned() else {
            return refuse(
                status::ENOENT,
                format!("FB_ATTACH: no buffer with cookie {dbuf_cookie:#x}"),
            );
        };
        if self.framebuffers.contains_key(&fb_cookie) {
            return refuse(
                status::EEXIST,
                format!("FB_ATTACH: fb_cookie {fb_cookie:#x} is already in use"),
            );
        }
        if self.framebuffers.len() >= self.limits.max_framebuffers {
            return refuse(
                status::ENOMEM,
                format!(
                    "FB_ATTACH: the guest already has {} framebuffers",
                    self.framebuffers.len()
                ),
            );
        }
        if a.width > self.limits.max_edge || a.height > self.limits.max_edge {
            return refuse(
                status::EINVAL,
                format!(
                    "FB_ATTACH: {}x{} exceeds the largest edge {}",
                    a.width, a.height, self.limits.max_edge
                ),
            );
        }
        if a.pixel_format == PixelFormat::Yuyv && a.width & 1 == 1 {
            return refuse(
                status::EINVAL,
                format!("FB_ATTACH: YUYV needs an even width, got {}", a.width),
            );
        }
        let needed = dumb_size(a.width, a.height, a.pixel_format.bpp())
            .and_then(|n| n.checked_add(u64::from(buffer.data_ofs)));
        match needed {
            Some(n) if n <= u64::from(buffer.size) => {}
            _ => {
                return refuse(
                    status::EINVAL,
                    format!(
                        "FB_ATTACH: {}x{} {} from data_ofs {} does not fit the {}-byte buffer {dbuf_cookie:#x}",
                        a.width,
                        a.height,
                        a.pixel_format.name(),
                        buffer.data_ofs,
                        buffer.size
                    ),
                )
            }
        }
        self.framebuffers.insert(
            fb_cookie,
            Framebuffer {
                cookie: fb_cookie,
                buffer,
                width: a.width,
                height: a.height,
                format: a.pixel_format,
            },
        );
        Ok(())
    }

    fn fb_detach(&mut self, cookie: u64) -> Result<Effect, Refused> {
        if self.framebuffers.remove(&cookie).is_none() {
            return refuse(
                status::ENOENT,
                format!("FB_DETACH: no framebuffer with cookie {cookie:#x}"),
            );
        }
        Ok(Effect::None)
    }

    fn set_config(&mut self, conn: usize, c: &SetConfig) -> Result<Effect, Refused> {
        let res = self.connector(conn)?.resolution;
        let mut shown = None;
        let mode = match *c {
            SetConfig::Reset => None,
            SetConfig::Set {
                fb_cookie,
                x,
                y,
                width,
                height,
                bpp,
            } => {
                let cookie = fb_cookie.get();
                let Some(fb) = self.framebuffers.get(&cookie) else {
                    return refuse(
                        status::ENOENT,
                        format!("SET_CONFIG: no framebuffer with cookie {cookie:#x}"),
                    );
                };
                if !c.fits(res.width, res.height) {
                    return refuse(
                        status::EINVAL,
                        format!(
                            "SET_CONFIG: {width}x{height}+{x}+{y} exceeds connector {conn}'s {}x{}",
                            res.width, res.height
                        ),
                    );
                }
                if bpp != fb.format.bpp() {
                    return refuse(
                        status::EINVAL,
                        format!(
                            "SET_CONFIG: bpp {bpp} but framebuffer {cookie:#x} is {}",
                            fb.format.name()
                        ),
                    );
                }
                shown = Some(fb.clone());
                Some(Mode {
                    fb_cookie: cookie,
                    x,
                    y,
                    width,
                    height,
                    bpp,
                })
            }
        };
        if let Some(c) = self.connectors.get_mut(conn) {
            c.mode = mode;
        }
        Ok(Effect::Configured(shown))
    }

    fn page_flip(&mut self, conn: usize, cookie: u64) -> Result<Effect, Refused> {
        let enabled = self.connector(conn)?.mode.is_some();
        let Some(fb) = self.framebuffers.get(&cookie) else {
            return refuse(
                status::ENOENT,
                format!(
                    "PG_FLIP: no framebuffer with cookie {cookie:#x} (detached or never attached)"
                ),
            );
        };
        // A flip while the display is off still completes (it is the
        // guest's vsync) but shows nothing.
        Ok(if enabled {
            Effect::Flip(fb.clone())
        } else {
            Effect::None
        })
    }

    fn get_edid(
        &mut self,
        conn: usize,
        g: &GetEdid,
        grants: &dyn GrantMapper,
    ) -> Result<u32, Refused> {
        let res = self.connector(conn)?.resolution;
        let serial =
            (u32::from(self.domid) << 16) | ((self.devid & 0xff) << 8) | (conn as u32 & 0xff);
        let block = edid::build_edid(res.width, res.height, serial)
            .map_err(|e| (status::EINVAL, format!("GET_EDID: {e}")))?;
        buffers::write_guest_buffer(grants, self.domid, g.gref_directory, g.buffer_sz, &block)
            .map_err(|e| (e.status(), format!("GET_EDID: {e}")))?;
        Ok(block.len() as u32)
    }

    /// Drop every buffer and framebuffer (disconnect): mappings go and our
    /// shared pages are revoked once no copy holds them.
    pub fn release_all(&mut self) {
        self.framebuffers.clear();
        self.buffers.clear();
        self.mapped_pages = 0;
        for c in &mut self.connectors {
            c.mode = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvgate_platform::{GrantError, GrantRef, Mapping, SharedPages};
    use pvgate_protocol::pagedir::build_directory;
    use std::collections::HashMap;

    const DOM: DomId = 5;

    /// Grants as plain bytes: `map` copies them into fresh local memory.
    #[derive(Default)]
    struct FakeGrants {
        pages: Mutex<HashMap<GrantRef, Vec<u8>>>,
    }

    use std::sync::Mutex;

    impl FakeGrants {
        /// A guest buffer of `size` bytes with its directory; returns the
        /// directory's first ref.
        fn buffer(&self, first_ref: GrantRef, size: u32) -> GrantRef {
            let n = pagedir::grant_count(size);
            let data: Vec<GrantRef> = (0..n).map(|i| first_ref + 100 + i).collect();
            let dirs: Vec<GrantRef> = (0..pagedir::directory_pages(n))
                .map(|i| first_ref + i)
                .collect();
            let pages = build_directory(&dirs, &data).unwrap();
            let mut g = self.pages.lock().unwrap();
            for (r, p) in dirs.iter().zip(pages) {
                g.insert(*r, p.to_vec());
            }
            for r in data {
                g.insert(r, vec![0x5a; 4096]);
            }
            dirs[0]
        }
    }

    impl GrantMapper for FakeGrants {
        fn map(&self, domid: DomId, refs: &[GrantRef], _w: bool) -> Result<Mapping, GrantError> {
            let m = pvgate_platform::mapping::anonymous(refs.len() * 4096)?;
            let g = self.pages.lock().unwrap();
            for (i, r) in refs.iter().enumerate() {
                let page = g.get(r).ok_or_else(|| GrantError::Invalid {
                    domid,
                    gref: *r,
                    reason: "not granted".into(),
                })?;
                m.write(i * 4096, page).unwrap();
            }
            Ok(m)
        }

        fn share(&self, _domid: DomId, pages: usize, _w: bool) -> Result<SharedPages, GrantError> {
            Ok(SharedPages {
                mapping: pvgate_platform::mapping::anonymous(pages * 4096)?,
                refs: (0..pages as u32).map(|i| 50_000 + i).collect(),
            })
        }
    }

    fn nz(v: u64) -> NonZeroU64 {
        NonZeroU64::new(v).unwrap()
    }

    fn state(limits: DisplayLimits) -> DisplayState {
        DisplayState::new(
            DOM,
            0,
            &[
                Resolution {
                    width: 64,
                    height: 32,
                },
                Resolution {
                    width: 32,
                    height: 32,
                },
            ],
            limits,
        )
    }

    fn run(st: &mut DisplayState, g: &FakeGrants, conn: usize, op: DisplRequestOp) -> i32 {
        st.handle(conn, &DisplRequest { id: 1, op }, g)
            .response
            .status
    }

    fn create(
        cookie: u64,
        dir: GrantRef,
        w: u32,
        h: u32,
        size: u32,
        data_ofs: u32,
    ) -> DisplRequestOp {
        DisplRequestOp::DbufCreate(DbufCreate {
            dbuf_cookie: nz(cookie),
            width: w,
            height: h,
            bpp: 32,
            buffer_sz: size,
            be_alloc: false,
            gref_directory: dir,
            data_ofs,
        })
    }

    fn attach(dbuf: u64, fb: u64, w: u32, h: u32) -> DisplRequestOp {
        DisplRequestOp::FbAttach(FbAttach {
            dbuf_cookie: nz(dbuf),
            fb_cookie: nz(fb),
            width: w,
            height: h,
            pixel_format: PixelFormat::Xrgb8888,
        })
    }

    #[test]
    fn cookies_buffers_and_framebuffers_are_validated() {
        let g = FakeGrants::default();
        let mut st = state(DisplayLimits::default());
        let dir = g.buffer(10, 64 * 32 * 4);
        assert_eq!(
            run(&mut st, &g, 0, create(1, dir, 64, 32, 64 * 32 * 4, 0)),
            0
        );
        assert_eq!(st.mapped_pages(), 2);
        // Duplicate cookie.
        assert_eq!(
            run(&mut st, &g, 0, create(1, dir, 64, 32, 64 * 32 * 4, 0)),
            status::EEXIST
        );
        // A directory that lists fewer pages than the size needs.
        let short = g.buffer(300, 4096);
        assert_eq!(
            run(&mut st, &g, 0, create(2, short, 64, 64, 64 * 64 * 4, 0)),
            status::EINVAL
        );
        // A directory page that was never granted.
        assert_eq!(
            run(&mut st, &g, 0, create(3, 9999, 8, 8, 256, 0)),
            status::EFAULT
        );
        // Attach: unknown buffer, too big, fine, duplicate fb cookie.
        assert_eq!(run(&mut st, &g, 0, attach(7, 100, 64, 32)), status::ENOENT);
        assert_eq!(run(&mut st, &g, 0, attach(1, 100, 64, 33)), status::EINVAL);
        assert_eq!(run(&mut st, &g, 0, attach(1, 100, 64, 32)), 0);
        assert_eq!(run(&mut st, &g, 0, attach(1, 100, 32, 32)), status::EEXIST);
        // SET_CONFIG: connector out of range, unknown fb, too big, fine.
        let set = |fb, w, h| {
            DisplRequestOp::SetConfig(SetConfig::Set {
                fb_cookie: nz(fb),
                x: 0,
                y: 0,
                width: w,
                height: h,
                bpp: 32,
            })
        };
        assert_eq!(run(&mut st, &g, 7, set(100, 64, 32)), status::EINVAL);
        assert_eq!(run(&mut st, &g, 0, set(101, 64, 32)), status::ENOENT);
        assert_eq!(run(&mut st, &g, 1, set(100, 64, 32)), status::EINVAL);
        let a = st.handle(
            0,
            &DisplRequest {
                id: 9,
                op: set(100, 64, 32),
            },
            &g,
        );
        assert_eq!(a.response.status, 0);
        assert!(matches!(a.effect, Effect::Configured(Some(_))));
        // Flip: out of range, unknown, fine.
        let flip = |fb| DisplRequestOp::PgFlip { fb_cookie: nz(fb) };
        assert_eq!(run(&mut st, &g, 4, flip(100)), status::EINVAL);
        assert_eq!(run(&mut st, &g, 0, flip(555)), status::ENOENT);
        assert!(matches!(
            st.handle(
                0,
                &DisplRequest {
                    id: 2,
                    op: flip(100)
                },
                &g
            )
            .effect,
            Effect::Flip(_)
        ));
        // Detach, then the flip of the detached fb is refused.
        assert_eq!(
            run(
                &mut st,
                &g,
                0,
                DisplRequestOp::FbDetach { fb_cookie: nz(100) }
            ),
            0
        );
        assert_eq!(
            run(
                &mut st,
                &g,
                0,
                DisplRequestOp::FbDetach { fb_cookie: nz(100) }
            ),
            status::ENOENT
        );
        assert_eq!(run(&mut st, &g, 0, flip(100)), status::ENOENT);
        // Destroy; attaching to the destroyed buffer is refused.
        let destroy = DisplRequestOp::DbufDestroy { dbuf_cookie: nz(1) };
        assert!(matches!(
            st.handle(0, &DisplRequest { id: 3, op: destroy }, &g)
                .effect,
            Effect::AfterCopies
        ));
        assert_eq!(st.mapped_pages(), 0);
        assert_eq!(run(&mut st, &g, 0, destroy), status::ENOENT);
        assert_eq!(run(&mut st, &g, 0, attach(1, 102, 64, 32)), status::ENOENT);
    }

    #[test]
    fn destroying_a_buffer_takes_its_framebuffers_with_it() {
        let g = FakeGrants::default();
        let mut st = state(DisplayLimits::default());
        let dir = g.buffer(10, 4096);
        assert_eq!(run(&mut st, &g, 0, create(1, dir, 32, 32, 4096, 0)), 0);
        assert_eq!(run(&mut st, &g, 0, attach(1, 100, 32, 32)), 0);
        assert_eq!(
            run(
                &mut st,
                &g,
                0,
                DisplRequestOp::DbufDestroy { dbuf_cookie: nz(1) }
            ),
            0
        );
        assert_eq!(st.framebuffer_count(), 0);
        assert_eq!(
            run(
                &mut st,
                &g,
                0,
                DisplRequestOp::PgFlip { fb_cookie: nz(100) }
            ),
            status::ENOENT
        );
    }

    #[test]
    fn per_guest_caps_refuse_with_enomem() {
        let g = FakeGrants::default();
        let limits = DisplayLimits {
            max_buffers: 2,
            max_buffer_pages: 4,
            max_mapped_pages: 6,
            ..DisplayLimits::default()
        };
        let mut st = state(limits);
        let big = g.buffer(10, 5 * 4096);
        assert_eq!(
            run(&mut st, &g, 0, create(1, big, 32, 32, 5 * 4096, 0)),
            status::ENOMEM
        );
        let a = g.buffer(1000, 4 * 4096);
        let b = g.buffer(2000, 3 * 4096);
        let c = g.buffer(3000, 4096);
        assert_eq!(run(&mut st, &g, 0, create(2, a, 32, 32, 4 * 4096, 0)), 0);
        assert_eq!(
            run(&mut st, &g, 0, create(3, b, 32, 16, 3 * 4096, 0)),
            status::ENOMEM,
            "7 pages > 6"
        );
        assert_eq!(run(&mut st, &g, 0, create(4, c, 32, 32, 4096, 0)), 0);
        assert_eq!(
            run(&mut st, &g, 0, create(5, c, 32, 32, 4096, 0)),
            status::ENOMEM,
            "3 buffers > 2"
        );
        assert_eq!(st.buffer_count(), 2);
        assert_eq!(st.mapped_pages(), 5);
    }

    #[test]
    fn be_alloc_fills_the_guests_directory() {
        let g = FakeGrants::default();
        let mut st = state(DisplayLimits::default());
        let dir = g.buffer(10, 4096);
        let mut c = match create(1, dir, 32, 32, 4096, 0) {
            DisplRequestOp::DbufCreate(c) => c,
            _ => unreachable!(),
        };
        c.be_alloc = true;
        assert_eq!(run(&mut st, &g, 0, DisplRequestOp::DbufCreate(c)), 0);
        assert_eq!(st.mapped_pages(), 1);
    }

    #[test]
    fn prime_and_garbage_slots_decode() {
        let mut slot = DisplRequest {
            id: 4,
            op: create(9, 3, 1, 1, 8192, 100),
        }
        .encode();
        // width/height/bpp = 0: a PRIME import.
        slot[16..28].fill(0);
        let r = decode_request(&slot).unwrap();
        let DisplRequestOp::DbufCreate(c) = r.op else {
            panic!()
        };
        assert_eq!(
            (c.width, c.height, c.bpp, c.data_ofs, c.buffer_sz),
            (0, 0, 0, 100, 8192)
        );
        // Only width 0 is not PRIME, it is invalid.
        slot[16] = 1;
        let bad = decode_request(&slot).unwrap_err();
        assert_eq!(bad.status(), status::EINVAL);
        let mut junk = [0xa5u8; 64];
        junk[2] = 0xee;
        let bad = decode_request(&junk).unwrap_err();
        let rsp = bad.response();
        assert_eq!(rsp[2], 0xee);
        assert_eq!(
            i32::from_le_bytes([rsp[4], rsp[5], rsp[6], rsp[7]]),
            status::ENOSYS
        );
    }
}

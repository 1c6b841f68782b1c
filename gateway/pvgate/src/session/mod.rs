//! Viewer sessions: the signalling WebSocket, one WebRTC peer connection (or
//! the WebSocket fallback) per viewer, input and microphone back to the
//! guest. The wire contract is web/PROTOCOL.md.
//!
//! | module | job |
//! |---|---|
//! | [`protocol`] | client/server JSON messages, parsed and validated (sans-IO) |
//! | [`signalling`] | which message is allowed when (sans-IO state machine) |
//! | [`input`] | input messages → kbdif events: role, rate, ranges, contacts (sans-IO) |
//! | [`frames`] | the 12-byte binary frame header of the WebSocket transport |
//! | [`outqueue`] | bounded per-socket send queue: skip to keyframes, drop old audio (sans-IO) |
//! | [`bitrate`] | congestion estimate → a few shared encoder bitrate steps (sans-IO) |
//! | [`outbox`] | the queue shared by the session's tasks and the socket writer |
//! | [`websocket`] | the fallback transport's media pumps and microphone |
//! | [`rtc`] | the WebRTC peer connection per viewer |
//! | [`run`] | one session from `hello` to close |
//! | this file | the route (authentication before upgrading) and the registry |

pub mod admission;
pub mod audio_rtp;
pub mod bitrate;
pub mod frames;
pub mod input;
pub mod outbox;
pub mod outqueue;
pub mod protocol;
pub mod rtc;
pub mod run;
pub mod signalling;
pub mod udp_ports;
pub mod websocket;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pvgate_platform::DomId;

use crate::http::AppState;

/// One viewer's live figures, for /metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ViewerStats {
    pub session: String,
    pub domid: DomId,
    pub tenant: String,
    pub user: String,
    /// `"webrtc"` or `"websocket"`.
    pub transport: &'static str,
    pub rtt_ms: Option<f64>,
    /// Fraction of packets lost, 0..1.
    pub loss: Option<f64>,
    /// The congestion controller's estimate (WebRTC) or the measured send rate.
    pub bitrate_bps: Option<u64>,
    /// The bitrate of the shared encoder this viewer watches (its step).
    pub encoder_bitrate_bps: Option<u64>,
    /// Input messages dropped (view-only role, invalid, over the rate).
    pub input_dropped: u64,
    /// Video frames dropped because the viewer's WebSocket fell behind.
    pub video_dropped: u64,
}

/// What a running session updates for /metrics.
#[derive(Debug, Default)]
pub struct Live {
    figures: Mutex<Figures>,
    pub input_dropped: AtomicU64,
    pub video_dropped: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    rtt_ms: Option<f64>,
    loss: Option<f64>,
    bitrate_bps: Option<u64>,
    encoder_bitrate_bps: Option<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data behind these locks; a panicking holder cannot break it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Live {
    pub fn set_rtt_ms(&self, v: Option<f64>) {
        if v.is_some() {
            lock(&self.figures).rtt_ms = v;
        }
    }
    pub fn set_loss(&self, v: Option<f64>) {
        if v.is_some() {
            lock(&self.figures).loss = v;
        }
    }
    pub fn set_bitrate(&self, v: Option<u64>) {
        if v.is_some() {
            lock(&self.figures).bitrate_bps = v;
        }
    }
    pub fn set_encoder_bitrate(&self, bps: u32) {
        lock(&self.figures).encoder_bitrate_bps = Some(u64::from(bps));
    }
    pub fn count_input_drop(&self) {
        self.input_dropped.fetch_add(1, Ordering::Relaxed);
    }
    /// The last round-trip time (ms) and loss fraction measured, if any.
    pub fn link(&self) -> (Option<f64>, Option<f64>) {
        let f = lock(&self.figures);
        (f.rtt_ms, f.loss)
    }
}

#[derive(Debug)]
struct Entry {
    domid: DomId,
    tenant: String,
    user: String,
    transport: &'static str,
    live: Arc<Live>,
}

/// Every live viewer session.
#[derive(Debug, Default)]
pub struct Sessions {
    entries: Mutex<BTreeMap<String, Entry>>,
    next_id: AtomicU64,
    /// Where the next peer connection looks for a free port of
    /// `[streaming] udp_ports` (see [`udp_ports`]).
    pub udp_cursor: std::sync::atomic::AtomicU32,
}

/// Removes its session from the registry when dropped (however the
/// session ends).
#[derive(Debug)]
pub struct Registration {
    sessions: Arc<Sessions>,
    pub id: String,
    pub live: Arc<Live>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.sessions.entries).remove(&self.id);
    }
}

impl Sessions {
    /// Viewers currently watching `domid`.
    pub fn viewer_count(&self, domid: DomId) -> usize {
        lock(&self.entries)
            .values()
            .filter(|e| e.domid == domid)
            .count()
    }

    /// Viewers per guest.
    pub fn viewer_counts(&self) -> HashMap<DomId, usize> {
        let mut out = HashMap::new();
        for e in lock(&self.entries).values() {
            *out.entry(e.domid).or_default() += 1;
        }
        out
    }

    pub fn viewer_stats(&self) -> Vec<ViewerStats> {
        lock(&self.entries)
            .iter()
            .map(|(id, e)| {
                let f = *lock(&e.live.figures);
                ViewerStats {
                    session: id.clone(),
                    domid: e.domid,
                    tenant: e.tenant.clone(),
                    user: e.user.clone(),
                    transport: e.transport,
                    rtt_ms: f.rtt_ms,
                    loss: f.loss,
                    bitrate_bps: f.bitrate_bps,
                    encoder_bitrate_bps: f.encoder_bitrate_bps,
                    input_dropped: e.live.input_dropped.load(Ordering::Relaxed),
                    video_dropped: e.live.video_dropped.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// A fresh session id: unique in this process, and not guessable from
    /// another session's (ids show in /metrics; they grant nothing, but
    /// there is no reason to make them sequential).
    pub fn new_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mix =
            (nanos ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        format!("s{n}-{:012x}", mix >> 16)
    }

    pub fn register(
        self: &Arc<Self>,
        id: String,
        domid: DomId,
        tenant: String,
        user: String,
        transport: &'static str,
    ) -> Registration {
        let live = Arc::new(Live::default());
        lock(&self.entries).insert(
            id.clone(),
            Entry {
                domid,
                tenant,
                user,
                transport,
                live: live.clone(),
            },
        );
        Registration {
            sessions: self.clone(),
            id,
            live,
        }
    }
}

/// The session WebSocket route(s).
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/guests/{domid}/session", get(session_socket))
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// `GET /api/guests/{domid}/session`: everything is checked before the
/// upgrade, so a refused browser gets an HTTP status it can show.
async fn session_socket(
    State(state): State<AppState>,
    Path(domid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let viewer = match state
        .access
        .authenticate(&headers, query.get("token").map(String::as_str))
    {
        Ok(v) => v,
        Err(e) => return refuse(e.status(), e.to_string()),
    };
    let Ok(domid) = domid.parse::<DomId>() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("{domid:?} is not a domain id"),
        );
    };
    let guest = state.view.guests().into_iter().find(|g| g.domid == domid);
    let name = guest.as_ref().map(|g| g.name.clone()).unwrap_or_default();
    // Ownership before existence, so another tenant cannot probe which
    // domids exist.
    if let Err(e) = state.access.may_open(&viewer, domid, &name) {
        return refuse(e.status(), e.to_string());
    }
    let Some(guest) = guest else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("there is no guest with domid {domid} (is it running, with a vdispl device?)"),
        );
    };
    if let Err(e) = state.access.check_origin(&headers) {
        return refuse(e.status(), e.to_string());
    }
    // The tenant's policy last: it may refuse, or lower control to view.
    let remote = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let viewer = match admission::admit(&state.policies(), &guest, viewer, remote) {
        Ok(v) => v,
        Err(reason) => return refuse(StatusCode::FORBIDDEN, reason),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    ws.max_message_size(protocol::MAX_TEXT_FRAME)
        .max_frame_size(protocol::MAX_TEXT_FRAME)
        .on_upgrade(move |socket| run::run(socket, state, viewer, guest, remote))
}

//! Viewer sessions: the signalling WebSocket, one WebRTC peer connection (or
//! the WebSocket fallback) per viewer, input and microphone back to the
//! guest. The wire contract is web/PROTOCOL.md.
//!
//! OWNER: the session work. This first version only has the shape the HTTP
//! layer and /metrics use.

use axum::Router;
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
    /// Input messages dropped (view-only role, invalid, over the rate).
    pub input_dropped: u64,
}

/// Every live viewer session.
#[derive(Debug, Default)]
pub struct Sessions {}

impl Sessions {
    /// Viewers currently watching `domid`.
    pub fn viewer_count(&self, _domid: DomId) -> usize {
        0
    }

    pub fn viewer_stats(&self) -> Vec<ViewerStats> {
        Vec::new()
    }
}

/// The session WebSocket route(s).
pub fn routes() -> Router<AppState> {
    Router::new()
}

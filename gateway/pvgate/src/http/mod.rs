//! The HTTP server: JSON API, snapshots, health, metrics, the embedded web
//! client and the session WebSocket (web/PROTOCOL.md is the contract).

mod api;
mod assets;
pub mod metrics;
pub mod snapshot;
mod thumbnail;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::FromRef;
use axum::routing::get;
use axum::Router;
use pvgate_backends::sound::StreamOutput;
use pvgate_media::{EncodeError, EncoderParams, SharedFrame, Subscription};
use pvgate_platform::DomId;
use serde::Serialize;

use crate::access::Access;
use crate::config::StreamingConfig;
use crate::policy::Policies;
use crate::session::input::InputTarget;
use crate::session::Sessions;

/// One display connector of a guest as the API shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DisplayInfo {
    /// Position in the guest's list of displays (what URLs use).
    pub index: usize,
    /// The vdispl device and connector it is.
    pub device: u32,
    pub connector: u32,
    pub width: u32,
    pub height: u32,
}

/// One sound stream of a guest as the API shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SoundInfo {
    /// The vsnd device and its card-wide stream index.
    pub device: u32,
    pub stream: u32,
    /// `"playback"` or `"capture"`.
    pub direction: &'static str,
    /// Whether the guest has the stream open (OPEN without CLOSE).
    pub open: bool,
}

/// One guest as the API shows it. `GatewayView::guests` fills what the
/// backends know; the API adds `tenant` (from the access rules) and
/// `viewers` (from the sessions).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct GuestInfo {
    pub domid: DomId,
    pub name: String,
    /// The tenant that owns the guest; null when authentication is off or
    /// no tenant claims it.
    pub tenant: Option<String>,
    pub displays: Vec<DisplayInfo>,
    pub sound: Vec<SoundInfo>,
    /// The guest has a connected keyboard/pointer device.
    pub input: bool,
    /// Viewers watching it now.
    pub viewers: usize,
}

/// What the HTTP layer needs to know of the running backends.
pub trait GatewayView: Send + Sync + 'static {
    /// Every guest with at least one served device, by domid.
    fn guests(&self) -> Vec<GuestInfo>;
    /// The latest frame of display `index` of guest `domid`, if it has one.
    fn display_frame(&self, domid: DomId, index: usize) -> Option<SharedFrame>;
    /// Counters of every connector, encoder and sound stream, for /metrics.
    fn metrics(&self) -> metrics::GatewaySample {
        metrics::GatewaySample::default()
    }

    // What viewer sessions need (crate::session). The defaults say "this
    // guest has none", so views that only serve the API need not care.

    /// A viewer's video: display `index` of guest `domid` from the shared
    /// encoder for `params` (the first frame is a keyframe). `None`: no
    /// such display.
    fn subscribe_video(
        &self,
        _domid: DomId,
        _index: usize,
        _params: EncoderParams,
    ) -> Option<Result<Subscription, EncodeError>> {
        None
    }

    /// The guest's first playback stream: what viewers hear.
    fn playback_stream(&self, _domid: DomId) -> Option<Arc<StreamOutput>> {
        None
    }

    /// The guest's first capture stream: where a viewer's microphone goes.
    fn capture_stream(&self, _domid: DomId) -> Option<Arc<StreamOutput>> {
        None
    }

    /// The guest's first input device: where keyboard, pointer and touch go.
    fn input_target(&self, _domid: DomId) -> Option<Arc<dyn InputTarget>> {
        None
    }

    /// Tenants' policies (admission and role, codecs, bitrates, the
    /// microphone). `None`: the built-in policy for everyone.
    fn policies(&self) -> Option<Arc<Policies>> {
        None
    }
}

/// What every handler can reach. Handlers that need only a part take it
/// through `FromRef` (e.g. `State<Arc<dyn GatewayView>>`).
#[derive(Clone)]
pub struct AppState {
    pub view: Arc<dyn GatewayView>,
    pub access: Arc<Access>,
    pub sessions: Arc<Sessions>,
    pub streaming: Arc<StreamingConfig>,
}

impl AppState {
    /// Default streaming settings around `view`, with authentication OFF
    /// (every request is a controlling viewer: tests, `--insecure-no-auth`).
    /// `pvgate serve` replaces `access` with its configuration's rules.
    pub fn new(view: Arc<dyn GatewayView>) -> AppState {
        AppState {
            view,
            access: Arc::new(Access::insecure_open()),
            sessions: Arc::new(Sessions::default()),
            streaming: Arc::new(StreamingConfig::default()),
        }
    }
}

impl AppState {
    /// The policies sessions and /metrics ask: the gateway's, else the
    /// built-in policy.
    pub fn policies(&self) -> Arc<Policies> {
        self.view
            .policies()
            .unwrap_or_else(|| Arc::new(Policies::builtin_only(self.access.clone())))
    }
}

impl FromRef<AppState> for Arc<dyn GatewayView> {
    fn from_ref(state: &AppState) -> Self {
        state.view.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/view/{domid}", get(assets::view))
        .route("/static/{*path}", get(assets::static_file))
        .route("/healthz", get(api::healthz))
        .route("/api/guests", get(api::list_guests))
        .route("/api/guests/{domid}", get(api::get_guest))
        .route(
            "/api/guests/{domid}/displays/{index}/snapshot.png",
            get(api::snapshot_png),
        )
        .route(
            "/api/guests/{domid}/displays/{index}/snapshot.jpg",
            get(api::snapshot_jpg),
        )
        .route(
            "/api/guests/{domid}/displays/{index}/thumbnail.jpg",
            get(api::thumbnail_jpg),
        )
        .route("/metrics", get(metrics::metrics))
        .merge(crate::session::routes())
        .layer(axum::middleware::map_response(api::security_headers))
        .with_state(state)
}

/// Bind `listen` and serve until the future is dropped.
pub async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await.with_context(|| {
        format!("cannot listen on {listen} (is another pvgate running? choose another address with --listen)")
    })
}

pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    // The peer address reaches the tenant's admission policy.
    axum::serve(
        listener.tap_io(tune_connection),
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .context("the HTTP server stopped")
}

/// Unsent bytes the kernel keeps per connection before the socket stops
/// being writable (`TCP_NOTSENT_LOWAT`): a few frames of 1080p video.
const UNSENT_LIMIT: libc::c_int = 128 << 10;

/// Per accepted connection: no Nagle delay (small input acknowledgements
/// and media frames go out at once), and a short unsent queue in the
/// kernel. Without the limit a slow WebSocket viewer's backlog piles up in
/// megabytes of socket buffer, seconds of delay that no later frame can
/// skip; with it the backlog builds in the session's queue, which drops
/// it and resumes at the next keyframe (`session::outqueue`).
fn tune_connection(tcp: &mut tokio::net::TcpStream) {
    use std::os::fd::AsRawFd;
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY: {e}");
    }
    // SAFETY: setsockopt on a socket this stream owns, with a pointer to
    // an int that lives across the call and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&UNSENT_LIMIT as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!("TCP_NOTSENT_LOWAT: {}", std::io::Error::last_os_error());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use pvgate_media::Frame;
    use tower::ServiceExt;

    struct OneGuest(SharedFrame);

    impl GatewayView for OneGuest {
        fn guests(&self) -> Vec<GuestInfo> {
            vec![GuestInfo {
                domid: 5,
                name: "guest<5>".into(),
                displays: vec![DisplayInfo {
                    index: 0,
                    device: 0,
                    connector: 0,
                    width: 32,
                    height: 16,
                }],
                ..GuestInfo::default()
            }]
        }
        fn display_frame(&self, domid: DomId, index: usize) -> Option<SharedFrame> {
            (domid == 5 && index == 0).then(|| self.0.clone())
        }
    }

    async fn get(uri: &str) -> (StatusCode, Option<String>, Vec<u8>) {
        let mut frame = Frame::new(32, 16).unwrap();
        frame.fill_rect(0, 0, 32, 16, 0x0012_3456);
        let app = router(AppState::new(Arc::new(OneGuest(Arc::new(frame)))));
        let rsp = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = rsp.status();
        let ctype = rsp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let body = rsp.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, ctype, body)
    }

    #[tokio::test]
    async fn guests_are_listed_as_json() {
        let (status, _, body) = get("/api/guests").await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v[0]["domid"], 5);
        assert_eq!(v[0]["displays"][0]["width"], 32);
        let (status, _, body) = get("/api/guests/6").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(String::from_utf8_lossy(&body).contains("domid 6"));
    }

    #[tokio::test]
    async fn a_snapshot_is_the_frame() {
        let (status, ctype, body) = get("/api/guests/5/displays/0/snapshot.png").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ctype.as_deref(), Some("image/png"));
        let img = image::load_from_memory(&body).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (32, 16));
        assert_eq!(img.get_pixel(3, 3).0, [0x12, 0x34, 0x56]);
        let (status, ctype, _) = get("/api/guests/5/displays/0/snapshot.jpg").await;
        assert_eq!(
            (status, ctype.as_deref()),
            (StatusCode::OK, Some("image/jpeg"))
        );
        let (status, _, _) = get("/api/guests/5/displays/1/snapshot.png").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_web_client_is_served() {
        let (status, ctype, body) = get("/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ctype.as_deref(), Some("text/html; charset=utf-8"));
        assert!(String::from_utf8(body).unwrap().contains("static/list.js"));
        let (status, ctype, _) = get("/view/5").await;
        assert_eq!(
            (status, ctype.as_deref()),
            (StatusCode::OK, Some("text/html; charset=utf-8"))
        );
        let (status, ctype, _) = get("/static/main.js").await;
        assert_eq!(
            (status, ctype.as_deref()),
            (StatusCode::OK, Some("text/javascript; charset=utf-8"))
        );
    }
}

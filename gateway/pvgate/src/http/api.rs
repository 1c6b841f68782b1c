//! Handlers of the JSON API, snapshots and thumbnails.
//!
//! Every handler here authenticates first (401 without a valid token) and
//! answers only about the token's tenant's guests (403 for another's), so a
//! guest's existence, name and screen never reach another tenant.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pvgate_media::SharedFrame;
use pvgate_platform::DomId;
use serde::Deserialize;

use super::snapshot::{self, SnapshotFormat};
use super::{thumbnail, AppState, GuestInfo};
use crate::access::{AccessError, Viewer};

/// The `?token=` query parameter (other parameters are ignored here).
#[derive(Debug, Default, Deserialize)]
pub struct TokenQuery {
    pub token: Option<String>,
}

/// The authenticated viewer of a request: from `Authorization: Bearer` or
/// `?token=`; rejects with 401 JSON.
pub struct Authed(pub Viewer);

impl FromRequestParts<AppState> for Authed {
    type Rejection = AccessError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AccessError> {
        // A query string that does not parse carries no token (and then
        // the header may still).
        let query = Query::<TokenQuery>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default();
        state
            .access
            .authenticate(&parts.headers, query.token.as_deref())
            .map(Authed)
    }
}

fn not_found(what: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": what })),
    )
        .into_response()
}

/// Why a guest or display cannot be shown to this viewer.
enum Refused {
    Access(AccessError),
    NotFound(String),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Access(e) => e.into_response(),
            Refused::NotFound(what) => not_found(what),
        }
    }
}

fn server_error(what: String) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(serde_json::json!({ "error": what })),
    )
        .into_response()
}

/// Headers on every response. Viewer pages carry their token in the URL
/// (`/view/5?token=…`), so no Referer may ever take that URL elsewhere; and
/// no browser may guess a type other than the one we send.
pub async fn security_headers(mut rsp: Response) -> Response {
    let h = rsp.headers_mut();
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    rsp
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// A guest as the API shows it to this gateway's users: with its tenant and
/// viewer count.
fn decorate(state: &AppState, mut guest: GuestInfo) -> GuestInfo {
    guest.tenant = state.access.tenant_of(guest.domid, &guest.name);
    guest.viewers = state.sessions.viewer_count(guest.domid);
    guest
}

/// The guest `domid` if `viewer` may open it: 403 if it is not the
/// viewer's tenant's, 404 if it is but is not served. Ownership is checked
/// first (a domid nobody runs belongs to no tenant by name), so another
/// tenant cannot probe which domids exist; the session WebSocket does the
/// same.
fn guest_for(state: &AppState, viewer: &Viewer, domid: DomId) -> Result<GuestInfo, Refused> {
    let guest = state.view.guests().into_iter().find(|g| g.domid == domid);
    let name = guest.as_ref().map_or("", |g| g.name.as_str());
    state
        .access
        .may_open(viewer, domid, name)
        .map_err(Refused::Access)?;
    let guest = guest
        .ok_or_else(|| Refused::NotFound(format!("no guest with domid {domid} is served here")))?;
    Ok(decorate(state, guest))
}

pub async fn list_guests(State(state): State<AppState>, Authed(viewer): Authed) -> Response {
    let guests: Vec<GuestInfo> = state
        .view
        .guests()
        .into_iter()
        .filter(|g| state.access.may_open(&viewer, g.domid, &g.name).is_ok())
        .map(|g| decorate(&state, g))
        .collect();
    Json(guests).into_response()
}

pub async fn get_guest(
    State(state): State<AppState>,
    Authed(viewer): Authed,
    Path(domid): Path<DomId>,
) -> Response {
    match guest_for(&state, &viewer, domid) {
        Ok(guest) => Json(guest).into_response(),
        Err(refused) => refused.into_response(),
    }
}

/// The latest frame of a display the viewer may see, or the error response.
fn frame_for(
    state: &AppState,
    viewer: &Viewer,
    domid: DomId,
    index: usize,
) -> Result<SharedFrame, Refused> {
    guest_for(state, viewer, domid)?;
    state.view.display_frame(domid, index).ok_or_else(|| {
        Refused::NotFound(format!(
            "guest {domid} has no display {index} with a picture yet (see GET /api/guests/{domid})"
        ))
    })
}

/// Encode off the async workers (a 1080p JPEG or a scale takes
/// milliseconds) and answer with the picture.
async fn picture(
    content_type: &'static str,
    work: impl FnOnce() -> anyhow::Result<Vec<u8>> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(bytes)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-store"),
            ],
            bytes,
        )
            .into_response(),
        Ok(Err(e)) => server_error(format!("cannot encode the picture: {e:#}")),
        Err(e) => server_error(format!("the picture task failed: {e}")),
    }
}

pub async fn snapshot_png(
    state: State<AppState>,
    viewer: Authed,
    path: Path<(DomId, usize)>,
) -> Response {
    snapshot_as(state, viewer, path, SnapshotFormat::Png).await
}

pub async fn snapshot_jpg(
    state: State<AppState>,
    viewer: Authed,
    path: Path<(DomId, usize)>,
) -> Response {
    snapshot_as(state, viewer, path, SnapshotFormat::Jpeg).await
}

async fn snapshot_as(
    State(state): State<AppState>,
    Authed(viewer): Authed,
    Path((domid, index)): Path<(DomId, usize)>,
    format: SnapshotFormat,
) -> Response {
    match frame_for(&state, &viewer, domid, index) {
        Ok(frame) => {
            picture(format.content_type(), move || {
                Ok(snapshot::encode(&frame, format)?)
            })
            .await
        }
        Err(refused) => refused.into_response(),
    }
}

pub async fn thumbnail_jpg(
    State(state): State<AppState>,
    Authed(viewer): Authed,
    Path((domid, index)): Path<(DomId, usize)>,
) -> Response {
    match frame_for(&state, &viewer, domid, index) {
        Ok(frame) => picture("image/jpeg", move || thumbnail::encode(&frame)).await,
        Err(refused) => refused.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use pvgate_backends::display::FlipStats;
    use pvgate_media::Frame;
    use tower::ServiceExt;

    use super::super::metrics::{tests::parse, ConnectorSample, GatewaySample};
    use super::super::{router, DisplayInfo, GatewayView, GuestInfo, SoundInfo};
    use super::*;
    use crate::access::Access;
    use crate::config::{sha256_hex, Config};

    /// Guest 5 "acme-web" (tenant acme, 1280×720), guest 7 "beta-db"
    /// (tenant beta, 640×480), guest 9 "orphan" (no tenant).
    struct Guests {
        frame: SharedFrame,
    }

    fn guest(domid: DomId, name: &str, w: u32, h: u32) -> GuestInfo {
        GuestInfo {
            domid,
            name: name.into(),
            displays: vec![DisplayInfo {
                index: 0,
                device: 0,
                connector: 0,
                width: w,
                height: h,
            }],
            sound: vec![SoundInfo {
                device: 0,
                stream: 0,
                direction: "playback",
                open: true,
            }],
            ..GuestInfo::default()
        }
    }

    impl GatewayView for Guests {
        fn guests(&self) -> Vec<GuestInfo> {
            vec![
                guest(5, "acme-web", 1280, 720),
                guest(7, "beta-db", 640, 480),
                guest(9, "orphan", 64, 64),
            ]
        }
        fn display_frame(&self, domid: DomId, index: usize) -> Option<SharedFrame> {
            (index == 0 && [5, 7, 9].contains(&domid)).then(|| self.frame.clone())
        }
        fn metrics(&self) -> GatewaySample {
            let connector = |domid, flips| ConnectorSample {
                domid,
                width: 1280,
                height: 720,
                enabled: true,
                flips: FlipStats {
                    flips,
                    ..FlipStats::default()
                },
                ..ConnectorSample::default()
            };
            GatewaySample {
                connectors: vec![connector(5, 555), connector(7, 777)],
                ..GatewaySample::default()
            }
        }
    }

    fn app() -> axum::Router {
        let config = Config::parse(
            &format!(
                r#"
metrics_token_sha256 = "{}"
[[tenant]]
name = "acme"
guests = [6, "acme-*"]
[[tenant.token]]
user = "alice"
role = "control"
sha256 = "{}"
[[tenant]]
name = "beta"
guests = [7]
[[tenant.token]]
user = "carol"
role = "view"
sha256 = "{}"
"#,
                sha256_hex("prometheus-token"),
                sha256_hex("alice-token"),
                sha256_hex("carol-token"),
            ),
            "test.toml",
        )
        .unwrap();
        let mut frame = Frame::new(1280, 720).unwrap();
        frame.fill_rect(0, 0, 1280, 720, 0x0000_C000);
        let mut state = AppState::new(Arc::new(Guests {
            frame: Arc::new(frame),
        }));
        state.access = Arc::new(Access::from_config(&config));
        router(state)
    }

    struct Rsp {
        status: StatusCode,
        ctype: Option<String>,
        headers: axum::http::HeaderMap,
        body: Vec<u8>,
    }

    impl Rsp {
        fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body))
            })
        }
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }

    async fn get_with(uri: &str, bearer: Option<&str>) -> Rsp {
        let mut req = Request::get(uri);
        if let Some(t) = bearer {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let rsp = app()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = rsp.status();
        let headers = rsp.headers().clone();
        let ctype = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let body = rsp.into_body().collect().await.unwrap().to_bytes().to_vec();
        Rsp {
            status,
            ctype,
            headers,
            body,
        }
    }

    async fn get(uri: &str) -> Rsp {
        get_with(uri, None).await
    }

    #[tokio::test]
    async fn health_and_the_web_client_need_no_token() {
        assert_eq!(get("/healthz").await.status, StatusCode::OK);
        let r = get("/view/5?token=alice-token").await;
        assert_eq!(r.status, StatusCode::OK);
        // The page's URL holds the token: it must not leak through Referer.
        assert_eq!(r.headers["referrer-policy"], "no-referrer");
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
        assert_eq!(get("/").await.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn every_api_endpoint_needs_a_token() {
        for uri in [
            "/api/guests",
            "/api/guests/5",
            "/api/guests/5/displays/0/snapshot.png",
            "/api/guests/5/displays/0/snapshot.jpg",
            "/api/guests/5/displays/0/thumbnail.jpg",
            "/metrics",
        ] {
            let r = get(uri).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
            assert!(
                r.json()["error"].as_str().unwrap().contains("?token="),
                "{uri}"
            );
            assert!(r.headers.contains_key("www-authenticate"), "{uri}");
            let r = get(&format!("{uri}?token=wrong")).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
            assert!(
                r.json()["error"].as_str().unwrap().contains("unknown"),
                "{uri}"
            );
        }
    }

    #[tokio::test]
    async fn a_token_lists_only_its_tenants_guests() {
        let r = get("/api/guests?token=alice-token").await;
        assert_eq!(r.status, StatusCode::OK);
        let v = r.json();
        let list = v.as_array().unwrap();
        assert_eq!(list.len(), 1, "{v}");
        assert_eq!(list[0]["domid"], 5);
        assert_eq!(list[0]["tenant"], "acme");
        assert_eq!(list[0]["viewers"], 0);
        assert_eq!(list[0]["input"], false);
        assert_eq!(list[0]["sound"][0]["direction"], "playback");
        assert_eq!(list[0]["sound"][0]["open"], true);
        assert_eq!(list[0]["displays"][0]["width"], 1280);

        // The header form, another tenant.
        let v = get_with("/api/guests", Some("carol-token")).await.json();
        let domids: Vec<_> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["domid"].clone())
            .collect();
        assert_eq!(domids, [7]);
    }

    #[tokio::test]
    async fn another_tenants_guest_is_403_and_a_missing_one_404() {
        let r = get("/api/guests/5?token=alice-token").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["name"], "acme-web");
        for uri in [
            "/api/guests/7",
            "/api/guests/9",
            "/api/guests/7/displays/0/snapshot.png",
            "/api/guests/7/displays/0/thumbnail.jpg",
        ] {
            let r = get(&format!("{uri}?token=alice-token")).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
            assert!(
                r.json()["error"].as_str().unwrap().contains("may not open"),
                "{uri}"
            );
        }
        // A domid nobody runs: 403 (whether it exists is none of acme's
        // business), unless acme owns it, then 404.
        let r = get("/api/guests/42?token=alice-token").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = get("/api/guests/6?token=alice-token").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(r.json()["error"].as_str().unwrap().contains("domid 6"));
        let r = get("/api/guests/5/displays/3/thumbnail.jpg?token=alice-token").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        // A path that is not a domid is refused, not a crash.
        let r = get("/api/guests/abc?token=alice-token").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = get("/api/guests/99999999/displays/0/snapshot.png?token=alice-token").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn thumbnails_fit_320x180() {
        let r = get("/api/guests/5/displays/0/thumbnail.jpg?token=alice-token").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.ctype.as_deref(), Some("image/jpeg"));
        assert_eq!(r.headers["cache-control"], "no-store");
        let img = image::load_from_memory(&r.body).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (320, 180));
        let [red, green, blue] = img.get_pixel(160, 90).0;
        assert!(red < 20 && green > 170 && blue < 20, "{red} {green} {blue}");
        let r = get("/api/guests/5/displays/0/snapshot.png?token=alice-token").await;
        assert_eq!(r.status, StatusCode::OK);
        let img = image::load_from_memory(&r.body).unwrap();
        assert_eq!((img.width(), img.height()), (1280, 720));
    }

    #[tokio::test]
    async fn metrics_show_everything_to_the_metrics_token_and_a_tenant_its_own() {
        let r = get_with("/metrics", Some("prometheus-token")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.ctype.as_deref(),
            Some(super::super::metrics::CONTENT_TYPE)
        );
        let text = r.text();
        let samples = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let flips: Vec<_> = samples
            .iter()
            .filter(|s| s.name == "pvgate_display_flips_total")
            .map(|s| {
                (
                    s.labels["guest"].clone(),
                    s.labels["tenant"].clone(),
                    s.value,
                )
            })
            .collect();
        assert_eq!(
            flips,
            [
                ("acme-web".to_string(), "acme".to_string(), 555.0),
                ("beta-db".to_string(), "beta".to_string(), 777.0)
            ]
        );

        let text = get("/metrics?token=alice-token").await.text();
        let samples = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(samples
            .iter()
            .any(|s| s.name == "pvgate_display_flips_total" && s.value == 555.0));
        assert!(!text.contains("beta"), "{text}");
        assert!(!text.contains("orphan"), "{text}");
    }
}

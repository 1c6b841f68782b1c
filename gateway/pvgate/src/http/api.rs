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

fn server_error(what: String) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(serde_json::json!({ "error": what })),
    )
        .into_response()
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

/// The guest `domid` if `viewer` may open it: 404 if no such guest is
/// served, 403 if another tenant's.
fn guest_for(state: &AppState, viewer: &Viewer, domid: DomId) -> Result<GuestInfo, Response> {
    let guest = state
        .view
        .guests()
        .into_iter()
        .find(|g| g.domid == domid)
        .ok_or_else(|| not_found(format!("no guest with domid {domid} is served here")))?;
    state
        .access
        .may_open(viewer, domid, &guest.name)
        .map_err(IntoResponse::into_response)?;
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
        Err(rsp) => rsp,
    }
}

/// The latest frame of a display the viewer may see, or the error response.
fn frame_for(
    state: &AppState,
    viewer: &Viewer,
    domid: DomId,
    index: usize,
) -> Result<SharedFrame, Response> {
    guest_for(state, viewer, domid)?;
    state.view.display_frame(domid, index).ok_or_else(|| {
        not_found(format!(
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
        Err(rsp) => rsp,
    }
}

pub async fn thumbnail_jpg(
    State(state): State<AppState>,
    Authed(viewer): Authed,
    Path((domid, index)): Path<(DomId, usize)>,
) -> Response {
    match frame_for(&state, &viewer, domid, index) {
        Ok(frame) => picture("image/jpeg", move || thumbnail::encode(&frame)).await,
        Err(rsp) => rsp,
    }
}

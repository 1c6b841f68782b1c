//! Handlers of the JSON API, snapshots and the status page.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use pvgate_platform::DomId;

use super::snapshot::{self, SnapshotFormat};
use super::GatewayView;

type View = State<Arc<dyn GatewayView>>;

fn not_found(what: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": what })),
    )
        .into_response()
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn list_guests(State(view): View) -> Response {
    Json(view.guests()).into_response()
}

pub async fn get_guest(State(view): View, Path(domid): Path<DomId>) -> Response {
    match view.guests().into_iter().find(|g| g.domid == domid) {
        Some(guest) => Json(guest).into_response(),
        None => not_found(format!("no guest with domid {domid} is served here")),
    }
}

pub async fn snapshot_png(view: View, path: Path<(DomId, usize)>) -> Response {
    snapshot_as(view, path, SnapshotFormat::Png).await
}

pub async fn snapshot_jpg(view: View, path: Path<(DomId, usize)>) -> Response {
    snapshot_as(view, path, SnapshotFormat::Jpeg).await
}

async fn snapshot_as(
    State(view): View,
    Path((domid, index)): Path<(DomId, usize)>,
    format: SnapshotFormat,
) -> Response {
    let Some(frame) = view.display_frame(domid, index) else {
        return not_found(format!(
            "guest {domid} has no display {index} with a picture yet (see GET /api/guests/{domid})"
        ));
    };
    // Compressing a 1080p picture takes milliseconds: keep it off the
    // async workers.
    match tokio::task::spawn_blocking(move || snapshot::encode(&frame, format)).await {
        Ok(Ok(bytes)) => (
            [
                (header::CONTENT_TYPE, format.content_type()),
                (header::CACHE_CONTROL, "no-store"),
            ],
            bytes,
        )
            .into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the snapshot: {e}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("snapshot task failed: {e}\n"),
        )
            .into_response(),
    }
}

/// A plain status page until the browser client arrives: every display as a
/// snapshot refreshed once a second.
pub async fn index(State(view): View) -> Html<String> {
    let mut body = String::from(
        "<!doctype html><meta charset=utf-8><title>pvgate</title>\
         <style>body{font:14px sans-serif;background:#222;color:#eee}img{max-width:45vw;border:1px solid #555;margin:4px}</style>\
         <h1>pvgate</h1>",
    );
    let guests = view.guests();
    if guests.is_empty() {
        body.push_str("<p>No guests yet. Devices appear here as guests connect.</p>");
    }
    for g in guests {
        body.push_str(&format!("<h2>dom{} {}</h2>", g.domid, html_escape(&g.name)));
        for d in g.displays {
            body.push_str(&format!(
                "<figure style=display:inline-block><img data-src=/api/guests/{}/displays/{}/snapshot.jpg>\
                 <figcaption>display {} ({}x{})</figcaption></figure>",
                g.domid, d.index, d.index, d.width, d.height
            ));
        }
    }
    body.push_str(
        "<script>function r(){for(const i of document.querySelectorAll('img[data-src]'))\
         i.src=i.dataset.src+'?t='+Date.now()}r();setInterval(r,1000)</script>",
    );
    Html(body)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

//! The web client (`web/`) embedded in the binary and served from it: the
//! guest list at `/`, the viewer at `/view/{domid}`, modules and styles under
//! `/static/`. Nothing is read from disk at run time (rust-embed's
//! `debug-embed` makes debug builds embed too), so the binary is
//! self-contained and no request path can reach the file system.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

/// Everything the browser loads. Tests of the JavaScript (`web/tests/`) and
/// the protocol notes are not served (see [`static_file`]), and are left out
/// of the binary.
#[derive(RustEmbed)]
#[folder = "../../web/"]
#[exclude = "tests/*"]
#[exclude = "*.md"]
struct Web;

/// `GET /`: the guest list.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /view/{domid}`: the viewer page. The domid must be a number; the
/// page itself reads it from its URL.
pub async fn view(Path(domid): Path<String>, headers: HeaderMap) -> Response {
    if domid.parse::<u32>().is_err() {
        return not_found();
    }
    serve("view.html", &headers)
}

/// `GET /static/{*path}`: client modules, styles, icons.
pub async fn static_file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    // The embedded table is looked up by exact name, so `..` cannot escape it;
    // still refuse anything that is not a plain relative path, so that what is
    // served never depends on how a name would resolve.
    let plain = !path.is_empty()
        && !path.contains('\\')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if !plain {
        return not_found();
    }
    serve(&format!("static/{path}"), &headers)
}

/// The content type of an embedded file, by its extension.
fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "webmanifest" => "application/manifest+json",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Web::get(name) else {
        return not_found();
    };
    // The first 16 bytes of the file's SHA-256, in hex.
    let mut etag = String::with_capacity(34);
    etag.push('"');
    for b in &file.metadata.sha256_hash()[..16] {
        etag.push(char::from_digit(u32::from(b >> 4), 16).expect("a nibble"));
        etag.push(char::from_digit(u32::from(b & 15), 16).expect("a nibble"));
    }
    etag.push('"');
    let etag = HeaderValue::from_str(&etag).expect("hex is a valid header value");
    // `no-cache`: the browser may keep a copy but asks every time, so a new
    // gateway's client is picked up at once; the ETag makes asking cheap.
    let cache = (header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, [cache, (header::ETAG, etag)]).into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(name)),
            ),
            cache,
            (header::ETAG, etag),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        file.data.into_owned(),
    )
        .into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use axum::Router;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route("/", get(index))
            .route("/view/{domid}", get(view))
            .route("/static/{*path}", get(static_file))
    }

    async fn fetch(uri: &str, inm: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::get(uri);
        if let Some(tag) = inm {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        let rsp = app()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = rsp.status();
        let headers = rsp.headers().clone();
        let body = rsp.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, headers, body)
    }

    fn ctype(h: &HeaderMap) -> &str {
        h.get(header::CONTENT_TYPE).unwrap().to_str().unwrap()
    }

    #[tokio::test]
    async fn pages_are_served_as_html() {
        for (uri, marker) in [("/", "guest-list"), ("/view/5", "id=\"screen\"")] {
            let (status, h, body) = fetch(uri, None).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            assert_eq!(ctype(&h), "text/html; charset=utf-8", "{uri}");
            assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), "no-cache");
            let html = String::from_utf8(body).unwrap();
            assert!(html.contains(marker), "{uri} lacks {marker}");
        }
        let (status, _, _) = fetch("/view/not-a-domid", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn every_module_and_style_is_served_with_its_type() {
        let mut seen = 0;
        for name in Web::iter() {
            let Some(rel) = name.strip_prefix("static/") else {
                continue;
            };
            let (status, h, body) = fetch(&format!("/static/{rel}"), None).await;
            assert_eq!(status, StatusCode::OK, "{name}");
            assert_eq!(Web::get(&name).unwrap().data.as_ref(), &body[..]);
            let want = match rel.rsplit_once('.').unwrap().1 {
                "js" => "text/javascript; charset=utf-8",
                "css" => "text/css; charset=utf-8",
                "svg" => "image/svg+xml",
                other => panic!("unexpected file type {other} in web/static"),
            };
            assert_eq!(ctype(&h), want, "{name}");
            seen += 1;
        }
        // The viewer's modules: a missing one would break the page.
        for module in [
            "main.js",
            "session.js",
            "webrtc.js",
            "wsmedia.js",
            "input.js",
            "keymap.js",
            "stats.js",
            "ui.js",
            "style.css",
        ] {
            assert!(
                Web::get(&format!("static/{module}")).is_some(),
                "{module} is not embedded"
            );
        }
        assert!(seen >= 9);
    }

    #[tokio::test]
    async fn an_unchanged_file_is_not_sent_again() {
        let (_, h, _) = fetch("/static/main.js", None).await;
        let tag = h.get(header::ETAG).unwrap().to_str().unwrap().to_string();
        let (status, _, body) = fetch("/static/main.js", Some(&tag)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn unknown_and_escaping_paths_are_404() {
        for uri in [
            "/static/nope.js",
            "/static/../Cargo.toml",
            "/static/%2e%2e/PROTOCOL.md",
            "/static/..%2f..%2fCargo.toml",
            "/static/%2e%2e%2f%2e%2e%2fgateway%2fpvgate%2fCargo.toml",
            "/static/./main.js",
            "/static//main.js",
            "/static/..\\index.html",
            "/static/tests/keymap.test.js",
            "/static/",
            "/PROTOCOL.md",
            "/tests/keymap.test.js",
            "/index.html/../../Cargo.toml",
        ] {
            let (status, _, _) = fetch(uri, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        }
        // The test files and protocol notes are not even in the binary.
        assert!(Web::iter().all(|n| !n.starts_with("tests/") && !n.ends_with(".md")));
    }
}
